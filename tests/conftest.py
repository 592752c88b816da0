"""Session-wide fixtures shared by every test package."""

from __future__ import annotations

import os
import tempfile

# Prefect must never touch the user's home or phone home from the tests.
_PREFECT_HOME = tempfile.mkdtemp(prefix="contactsync-prefect-")
os.environ.setdefault("PREFECT_HOME", _PREFECT_HOME)
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

pytest_plugins = ["tests.fixtures.postgres", "tests.fixtures.emulator"]
