"""Reliability fixtures: the Prefect test harness (shared with tests/e2e when both run).

The crash scenario's worlds are built once per module by ``scenario.py``; the recovery
cycles run through the real command (``SyncEnv.sync``), which needs Prefect's harness.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session", autouse=True)
def reliability_prefect_harness() -> Iterator[None]:
    """One temporary Prefect API for the session; reuse tests/e2e's when it already runs."""
    import prefect.settings
    from prefect.testing.utilities import prefect_test_harness

    if prefect.settings.PREFECT_API_URL.value():
        yield
        return
    with prefect_test_harness(server_startup_timeout=120):
        yield
