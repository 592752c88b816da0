"""The report of a scripted week, opened in headless Chromium as an admin would open it.

Skipped only where no chromium is installed; .ci/run installs it and sets
CONTACT_SYNC_REQUIRE_CHROMIUM=1, so in CI a missing browser fails instead.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from contactsync.report import write_report
from contactsync.state import StateStore

from .browser import chromium_path, view
from .week import HOSTILE, NOW, PEOPLE, scripted_week

ROWS = "[...document.querySelectorAll('table.health tbody tr')].map(r => r.innerText)"


@pytest.fixture()
def sqlite_store(tmp_path: Path):
    s = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    yield s
    s.close()


def test_the_week_reads_at_a_glance_in_a_real_browser(sqlite_store: StateStore, people, tmp_path: Path) -> None:
    chromium_path()
    scripted_week(sqlite_store)
    out = tmp_path / "report"
    paths = write_report(sqlite_store, list(PEOPLE), out, people=people, now=NOW)
    page = view(paths["html"], tmp_path / "report.png", expressions={
        "rows": ROWS, "scripts": "document.querySelectorAll('script').length",
        "svgs": "document.querySelectorAll('svg.chart').length"})
    assert page.problems == [], page.problems  # no console error, exception or blocked load
    assert page.screenshot is not None and page.screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert page.screenshot.stat().st_size > 20_000  # a rendered page, not a blank one

    # The hostile display name and conflict value are shown as text, never run as markup.
    assert page.values["scripts"] == 0
    assert page.text.count(HOSTILE) >= 2  # the name (health row + section) and the conflict value

    # Every user's name and health, worst first: the two who sync nothing, then the one
    # with a record held back, then the fine ones.
    rows = page.values["rows"]
    assert len(rows) == len(PEOPLE)
    health = [(r.split("\t")[0].strip(), r.split("\t")[1]) for r in rows]
    assert [h for h, _ in health] == ["needs attention", "needs attention", "check", "fine", "fine"]
    assert {n.split(" U")[0] for _, n in health[:2]} == {"Kim Failing", "Gus Guarded"}
    assert health[2][1].startswith("Quinn Quarantine")
    assert any("failed cycle(s) in a row" in r for r in rows[:2])
    assert any("mass-change guard (R16) 2 time(s) in a row" in r for r in rows[:2])
    for name, mailbox in PEOPLE.values():
        assert name in page.text and mailbox in page.text

    # A conflict of three days ago is still there, with both values, the winner and its history command.
    assert "2026-11-27" in page.text and "CLEEP0000042" in page.text and "+1 555 0199" in page.text
    assert "contact-sync explain --crm-id CLEEP0000042 --user ULEEP0000001" in page.text
    assert page.values["svgs"] == 1 + len(PEOPLE)  # the fleet chart and one per user
    assert "invalid email address: fix it in the CRM" in page.text  # open quarantine, what to fix
    assert "CQUIN0000FIX" in page.text  # fixed since


def test_the_browser_check_catches_console_errors(tmp_path: Path) -> None:
    """The check above would fail on a page with errors (so its ``== []`` means something)."""
    chromium_path()
    bad = tmp_path / "bad.html"
    bad.write_text("<!DOCTYPE html><html><body><p>hello</p><script>console.error('boom');"
                   "undefinedFunction();</script><img src='missing.png'></body></html>", encoding="utf-8")
    page = view(bad, tmp_path / "bad.png")
    joined = "\n".join(page.problems)
    assert "boom" in joined and "undefinedFunction" in joined
    assert "missing.png" in joined or "ERR_FILE_NOT_FOUND" in joined
    assert page.text.strip() == "hello"
