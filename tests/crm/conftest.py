"""CRM fixtures: every important test runs on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from contactsync.crm.ids import IdAllocator
from contactsync.crm.load import CrmWriter
from contactsync.crm.schema import make_engine
from contactsync.crm.setup import init_database

LEE = "UDEMOA000001"
SAM = "UDEMOA000002"
GROUP = "Outlook Sync"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def crm_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'crm.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture()
def crm_engine(crm_url: str) -> Iterator[sa.Engine]:
    """The CRM tables with the demo data set (contactsync.crm.demo docstring)."""
    init_database(crm_url, demo=True)
    engine = make_engine(crm_url)
    yield engine
    engine.dispose()


@pytest.fixture()
def state_engine(tmp_path: Path) -> Iterator[sa.Engine]:
    """The sync's own state database (where the id counter lives)."""
    engine = make_engine(f"sqlite:///{tmp_path / 'state.db'}")
    yield engine
    engine.dispose()


@pytest.fixture()
def allocator(state_engine: sa.Engine, crm_engine: sa.Engine) -> IdAllocator:
    return IdAllocator(state_engine, crm_engine, None, "SYNC")


@pytest.fixture()
def lee_writer(crm_engine: sa.Engine, allocator: IdAllocator) -> CrmWriter:
    return CrmWriter(crm_engine, schema=None, user_id=LEE, site_code="SYNC", allocator=allocator)
