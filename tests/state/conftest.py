"""The state-store contract runs on every backend (STYLE.md: Singer SDK's shared tests)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from contactsync.state import StateStore

USER = "ULEE00000001"
OTHER = "UKIM00000002"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh state-store URL: a SQLite file, or an empty PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture()
def store(store_url: str) -> Iterator[StateStore]:
    s = StateStore(store_url, lock_ttl=1.5, heartbeat=0.2)
    try:
        yield s
    finally:
        s.close()
