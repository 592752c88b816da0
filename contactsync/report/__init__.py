"""The data-quality report: each user's health, the period's cycles, conflicts, quarantine.

Everything comes from the state store (runs, conflicts, quarantine, history), so the
report can be written at any time by ``contact-sync report`` without touching either
side (the CRM is read only for the users' display names). ``summary`` holds the shape a
cycle records; ``data`` reads a period; ``facts`` turns it into the facts of
report.json; ``health`` and ``charts`` compute the top table and the SVG shapes;
``render`` writes the Jinja2 templates of ``templates/``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from contactsync.report.summary import COUNT_OPS, run_summary

if TYPE_CHECKING:
    from contactsync.report.facts import collect
    from contactsync.report.render import render_html, write_report

__all__ = ["COUNT_OPS", "collect", "render_html", "run_summary", "write_report"]


def __getattr__(name: str) -> Any:
    """The report's reading and rendering load pandas queries and Jinja2 only when used:
    the cycle imports this package for :func:`run_summary` alone."""
    if name == "collect":
        from contactsync.report.facts import collect

        return collect
    if name in ("render_html", "write_report"):
        from contactsync.report import render

        return getattr(render, name)
    raise AttributeError(name)
