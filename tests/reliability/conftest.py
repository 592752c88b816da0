"""Reliability fixtures: the Prefect test harness (shared with tests/e2e when both run).

The crash scenario's worlds are built once per module by ``scenario.py``; the recovery
cycles run through the real command (``SyncEnv.sync``), which needs Prefect's harness.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import prefect_harness
from tests.e2e.conftest import LEE
from tests.reliability import scenario
from tests.reliability.world import child_cycle, clone, world_picture, writes


@pytest.fixture(scope="session", autouse=True)
def reliability_prefect_harness() -> Iterator[None]:
    """One temporary Prefect API for the session; reuse tests/e2e's when it already runs."""
    with prefect_harness(startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return scenario.build(tmp_path_factory.mktemp("crash-base"))


@pytest.fixture(scope="session")
def reference(base: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The uninterrupted cycle: its end state and how many writes it committed per side."""
    env, emu = clone(base, tmp_path_factory.mktemp("crash-ref"), scenario.EXTRA)
    try:
        run = child_cycle(env.config, LEE)
        assert run.returncode == 0, run.stdout + run.stderr
        outcome = run.outcome()
        again = env.sync("--user", LEE).by_user()[LEE]
        assert again["status"] == "ok" and writes(again) == 0, again  # R17
        return {"picture": world_picture(env), "outcome": outcome}
    finally:
        emu.stop()
