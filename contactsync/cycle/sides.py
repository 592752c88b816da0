"""Open both sides and the state store for one user: the I/O handles a cycle works with.

Engines are cached per URL within a process, so a fan-out over many users in one worker
shares connection pools instead of opening one per user.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from contactsync.config import Settings, UserSettings
from contactsync.plan.schema import PlanSettings

if TYPE_CHECKING:
    import sqlalchemy as sa

    from contactsync.crm.extract import CrmReader
    from contactsync.crm.load import CrmWriter
    from contactsync.outlook.client import GraphClient
    from contactsync.state import StateStore


@lru_cache(maxsize=16)
def crm_engine(url: str) -> sa.Engine:
    from contactsync.crm.schema import make_engine

    return make_engine(url)


@lru_cache(maxsize=16)
def state_store(url: str) -> StateStore:
    from contactsync.state import StateStore

    return StateStore(url)


@dataclass
class Sides:
    """Everything one user's cycle reads from and writes to."""

    settings: Settings
    user: UserSettings
    store: StateStore
    reader: CrmReader
    writer: CrmWriter
    graph: GraphClient

    @property
    def user_id(self) -> str:
        return self.user.crm_user


def open_sides(settings: Settings, user: UserSettings) -> Sides:
    """Connect to the CRM, Outlook and the state store for ``user`` (nothing is read yet)."""
    from contactsync.crm.extract import CrmReader
    from contactsync.crm.ids import IdAllocator
    from contactsync.crm.load import CrmWriter
    from contactsync.outlook.client import GraphClient

    schema = settings.crm.schema_name or None
    engine = crm_engine(settings.crm_url())
    store = state_store(settings.state_url())
    allocator = IdAllocator(store.engine, engine, schema, settings.crm.site_code)
    return Sides(
        settings=settings,
        user=user,
        store=store,
        reader=CrmReader(engine, schema=schema, user_id=user.crm_user),
        writer=CrmWriter(
            engine, schema=schema, user_id=user.crm_user,
            site_code=settings.crm.site_code, allocator=allocator,
        ),
        graph=GraphClient(settings.outlook, user.mailbox),
    )


def plan_settings(
    settings: Settings, *, policy: str | None = None, direction: str | None = None
) -> PlanSettings:
    """The rule switches of this run: the configuration, with command-line overrides."""
    sync = settings.sync
    return PlanSettings(
        conflict_policy=policy or sync.conflict_policy,  # type: ignore[arg-type]
        direction=direction or sync.direction,  # type: ignore[arg-type]
        field_direction=dict(sync.field_direction),
        create_in_crm=sync.create_in_crm,
        keep_outlook_copy=sync.keep_outlook_copy_on_group_removal,
        mass_change_share=sync.mass_change_share,
        mass_change_min=sync.mass_change_min,
        tag_links=sync.tag_links,
    )
