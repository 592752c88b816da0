"""Session-wide fixtures shared by every test package."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

# Prefect must never touch the user's home or phone home from the tests.
_PREFECT_HOME = tempfile.mkdtemp(prefix="contactsync-prefect-")
os.environ.setdefault("PREFECT_HOME", _PREFECT_HOME)
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

pytest_plugins = ["tests.fixtures.postgres", "tests.fixtures.emulator"]


@pytest.fixture(scope="session", autouse=True)
def stop_local_prefect_server() -> Iterator[None]:
    """The tests stop what they start: a local Prefect server that a command started in the
    session's Prefect home (contactsync/cli/prefect_server.py) is stopped at the end."""
    from contactsync.cli.prefect_server import read_server, stop_server

    home = Path(os.environ["PREFECT_HOME"])
    running_before = read_server(home) if home.is_dir() else None
    yield
    if running_before is None and home.is_dir():
        stop_server(home)


@contextlib.contextmanager
def prefect_harness(startup_timeout: int = 180) -> Iterator[None]:
    """One temporary Prefect API for a package's tests, unless this process already has
    one (another package's harness, or PREFECT_API_URL): at most one per session."""
    import prefect.settings
    from prefect.testing.utilities import prefect_test_harness

    if prefect.settings.PREFECT_API_URL.value():
        yield
        return
    with prefect_test_harness(server_startup_timeout=startup_timeout):
        yield
