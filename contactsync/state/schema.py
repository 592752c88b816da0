"""Every table of the sync's own (the steps that create them are in ``migrations``).

The state store is a database of its own (never inside the CRM). Its schema version
lives in ``meta`` (vdirsyncer's ``status.py``); each version step is one function in
``MIGRATIONS``, run in the opener's transaction, serialised against concurrent openers.
The id counter of ``contactsync.crm.ids`` is one of these tables: it moved here from a
schema of its own in version 2, so one migration path creates everything the sync keeps.
"""

from __future__ import annotations

import sqlalchemy as sa

from contactsync.model import FIELDS
from contactsync.plan.schema import CONFLICT_COLUMNS

#: The version this program writes; every step up to it is in migrations.MIGRATIONS.
SCHEMA_VERSION = 5
QUARANTINE_COLUMNS: tuple[str, ...] = ("side", "record_id", "field", "rule", "reason", "value")

metadata = sa.MetaData()
_S = sa.String(255)


def _field_columns() -> list[sa.Column]:
    return [sa.Column(f, sa.Text) for f in FIELDS]


meta_table = sa.Table(
    "meta", metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)
links_table = sa.Table(
    "links", metadata,
    sa.Column("crm_user", sa.String(32), primary_key=True),
    sa.Column("crm_id", sa.String(64), primary_key=True),
    sa.Column("outlook_id", _S),
    sa.Column("status", sa.String(16), nullable=False),
    *_field_columns(),
    sa.Column("updated_at", sa.String(40), nullable=False),
    sa.UniqueConstraint("crm_user", "outlook_id", name="uq_links_outlook"),
)
outlook_table = sa.Table(
    "outlook_contacts", metadata,
    sa.Column("crm_user", sa.String(32), primary_key=True),
    sa.Column("folder_id", _S, primary_key=True),
    sa.Column("outlook_id", _S, primary_key=True),
    sa.Column("change_key", sa.Text),
    sa.Column("outlook_created", sa.String(40)),
    sa.Column("outlook_modified", sa.String(40)),
    sa.Column("crm_tag", sa.Text),
    sa.Column("business_phones_rest", sa.Text),
    *_field_columns(),
)
delta_table = sa.Table(
    "outlook_delta", metadata,
    sa.Column("crm_user", sa.String(32), primary_key=True),
    sa.Column("folder_id", _S, primary_key=True),
    sa.Column("delta_link", sa.Text),
    sa.Column("updated_at", sa.String(40), nullable=False),
)
journal_table = sa.Table(
    "journal", metadata,
    sa.Column("crm_user", sa.String(32), primary_key=True),
    sa.Column("action_id", _S, primary_key=True),
    sa.Column("run_id", sa.String(32), nullable=False, index=True),
    sa.Column("side", sa.String(16), nullable=False),
    sa.Column("op", sa.String(32), nullable=False),
    sa.Column("crm_id", sa.String(64)),
    sa.Column("outlook_id", _S),
    sa.Column("new_key", _S),
    sa.Column("allocated", sa.Text),  # JSON object
    sa.Column("payload", sa.Text),  # JSON object
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("final", sa.Boolean, nullable=False, default=False),
    sa.Column("error", sa.Text),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("created_at", sa.String(40), nullable=False),
    sa.Column("updated_at", sa.String(40), nullable=False),
)
runs_table = sa.Table(
    "runs", metadata,
    sa.Column("run_id", sa.String(32), primary_key=True),
    sa.Column("crm_user", sa.String(32), nullable=False),
    sa.Column("started_at", sa.String(40), nullable=False),
    sa.Column("finished_at", sa.String(40)),
    sa.Column("dry_run", sa.Boolean, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("params", sa.Text),
    sa.Column("summary", sa.Text),
    sa.Index("ix_runs_user_started", "crm_user", "started_at"),
)
conflicts_table = sa.Table(
    "conflicts", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(32), nullable=False, index=True),
    sa.Column("crm_user", sa.String(32), nullable=False),
    *[sa.Column(c, sa.Text) for c in CONFLICT_COLUMNS],
)
quarantine_table = sa.Table(
    "quarantine", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(32), nullable=False, index=True),
    sa.Column("crm_user", sa.String(32), nullable=False),
    *[sa.Column(c, sa.Text) for c in QUARANTINE_COLUMNS],
)
locks_table = sa.Table(
    "locks", metadata,
    sa.Column("crm_user", sa.String(32), primary_key=True),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("proc_start", sa.Float),  # holder's process start time: catches pid reuse
    sa.Column("token", sa.String(32), nullable=False),
    sa.Column("acquired_at", sa.Float, nullable=False),
    sa.Column("heartbeat_at", sa.Float, nullable=False),
)
#: The CRM id counter (contactsync.crm.ids). The prefix is stored as its code point: 'a'
#: (ADDRESS) and 'A' (ACCOUNT) must stay two rows even on case-insensitive collations.
id_counter_table = sa.Table(
    "sync_id_counter", metadata,
    sa.Column("prefix_code", sa.Integer, primary_key=True),
    sa.Column("site_code", sa.String(4), primary_key=True),
    sa.Column("next_value", sa.BigInteger, nullable=False),
)

#: One contact's history across cycles (contactsync.state.history, `contact-sync explain`):
#: writes with the values before and after, conflicts (R9), quarantine (R19).
history_table = sa.Table(
    "contact_history", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("crm_user", sa.String(32), nullable=False),
    sa.Column("run_id", sa.String(32), nullable=False),
    sa.Column("at", sa.String(40), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),  # write | conflict | quarantine
    sa.Column("side", sa.String(16)),
    sa.Column("op", sa.String(32)),
    sa.Column("rule", sa.String(16)),
    sa.Column("crm_id", sa.String(64)),
    sa.Column("outlook_id", _S),
    sa.Column("emails", sa.Text),  # " a@x b@y ": lower-case, space-delimited (R7 keys)
    sa.Column("fields", sa.Text),
    sa.Column("before", sa.Text),  # JSON {field: value}
    sa.Column("after", sa.Text),  # JSON {field: value}
    sa.Column("winner", sa.String(16)),
    sa.Column("reason", sa.Text),
    sa.Index("ix_contact_history_crm", "crm_user", "crm_id"),
    sa.Index("ix_contact_history_outlook", "crm_user", "outlook_id"),
    sa.Index("ix_contact_history_at", "crm_user", "at"),
)

#: Version 4: a user's links and Outlook mirror as one columnar blob each
#: (contactsync.state.columnar; ``folder_id`` "" for links); the ``links`` and
#: ``outlook_contacts`` rows hold only what changed since the blob was written.
blobs_table = sa.Table(
    "state_blobs", metadata,
    sa.Column("crm_user", sa.String(32), primary_key=True),
    sa.Column("kind", sa.String(16), primary_key=True),  # links | mirror
    sa.Column("folder_id", _S, primary_key=True),
    sa.Column("rows", sa.Integer, nullable=False),
    sa.Column("data", sa.LargeBinary, nullable=False),
    sa.Column("updated_at", sa.String(40), nullable=False),
)

#: Version 5: the rows changed since a user's base was written, as small columnar blobs
#: appended one per save (``seq`` in write order; contactsync.state.blobs): a cycle reads
#: a few of them in milliseconds where the same rows in ``links`` / ``outlook_contacts``
#: cost a ``fetchall`` and a ``conform`` of every value (~0.15 s per 9,000 rows, issue 15).
#: The row tables are read still (what version 4 wrote) and emptied at the next save.
segments_table = sa.Table(
    "state_segments", metadata,
    sa.Column("crm_user", sa.String(32), primary_key=True),
    sa.Column("kind", sa.String(16), primary_key=True),  # links | mirror
    sa.Column("folder_id", _S, primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True),
    sa.Column("rows", sa.Integer, nullable=False),
    sa.Column("data", sa.LargeBinary, nullable=False),
)

VERSION_1_TABLES = (meta_table, links_table, outlook_table, delta_table, journal_table, runs_table,
              conflicts_table, quarantine_table, locks_table)
