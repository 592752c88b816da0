"""The report's tests read a scripted week (tests/report/week.py) from a real state store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from contactsync.state import StateStore
from tests.conftest import prefect_harness

from .week import PEOPLE


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StateStore]:
    url = f"sqlite:///{tmp_path / 'state.db'}" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    s = StateStore(url)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture()
def people() -> dict[str, dict[str, str]]:
    return {uid: {"name": name, "mailbox": mailbox} for uid, (name, mailbox) in PEOPLE.items()}


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[None]:
    """One temporary Prefect API (reused when another test package already runs one)."""
    with prefect_harness(startup_timeout=120):
        yield
