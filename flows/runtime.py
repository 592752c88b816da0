"""The Prefect settings of a command's own process, for the command runner (contactsync.cli).

Here, in flows/, because contactsync never imports Prefect (DESIGN.md "The layer rule"):
the CLI decides which API to use and asks this module to put it into Prefect's settings.
"""

from __future__ import annotations


def api_url_in_process() -> str | None:
    """The API that this process's Prefect settings already name (a test harness's, say)."""
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    return str(url) if url else None


def refresh_settings() -> None:
    """Re-read the PREFECT_* environment (a warm process's child takes its caller's)."""
    import prefect.context

    prefect.context.refresh_global_settings_context()


def preload_validation() -> None:
    """Import GX and make its context now (the warm process, cli/warm.py, before it forks
    its commands): the GX task of a cycle with changes would otherwise pay that in every
    command's process, seconds each time."""
    from expectations.runner import _gx

    _gx()


def command_settings(api_url: str) -> None:
    """This process's flow runs (the command's own) use ``api_url`` and send no heartbeats.

    Heartbeats let Prefect mark a run Crashed when its worker dies; a command's runs live
    and die with the command, which reports itself, and each run waits up to a second at
    its end for the heartbeat thread. Deployment runs (a worker's processes) keep them.
    ``None`` cannot be given through the environment (an int >= 30), hence a settings
    context entered for the rest of the process; it also carries the API URL when Prefect
    was imported before the environment named it. Called by the command runner
    (contactsync.cli), which keeps Prefect itself out of contactsync.
    """
    from prefect import settings

    updates: dict[object, object] = {settings.PREFECT_API_URL: api_url}
    heartbeat = getattr(settings, "PREFECT_FLOWS_HEARTBEAT_FREQUENCY", None)
    if heartbeat is not None:  # Prefect < 3.5: runner.heartbeat_frequency, off by default
        updates[heartbeat] = None
    context = settings.temporary_settings(updates=updates)  # type: ignore[arg-type]
    context.__enter__()
    _KEPT.append(context)  # a collected generator would leave the context


_KEPT: list[object] = []
