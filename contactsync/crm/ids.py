"""SalesLogix 12-character ids the sync makes for the rows it creates (spec/CRM_SCHEMA.md).

An id is a table prefix letter, the 4-character site code and a 7-character base-36
counter (``CSYNC000001A``). The sync has a site code of its own, so its ids never collide
with the ids the CRM makes; its counter lives in the sync's STATE database (never in the
CRM), in the table ``sync_id_counter``, created by the state store's migrations
(``contactsync.state.schema``) like every other table of the sync's own.

Two guarantees (R18): two processes allocating at once never get the same id (the counter
moves by one atomic UPDATE per block), and a lost or rolled-back state database never
reuses an id (every block starts above the highest id of that prefix and site already in
the CRM table).
"""

from __future__ import annotations

import string
import time

import sqlalchemy as sa

from contactsync.crm.schema import crm_tables
from contactsync.state.migrations import migrate
from contactsync.state.schema import id_counter_table

DIGITS = string.digits + string.ascii_uppercase
COUNTER_WIDTH = 7
MAX_COUNTER = 36**COUNTER_WIDTH - 1
#: prefix -> (table attribute of CrmTables, key column) whose ids bound the counter.
PREFIX_TABLES: dict[str, tuple[str, str]] = {
    "C": ("contact", "CONTACTID"),
    "A": ("account", "ACCOUNTID"),
    "a": ("address", "ADDRESSID"),
    "p": ("plugin", "PLUGINID"),
    "Q": ("secrights", "SECRIGHTSID"),
}


def to_base36(value: int, width: int = COUNTER_WIDTH) -> str:
    """``value`` in upper-case base 36, zero padded to ``width``."""
    if value < 0 or value > 36**width - 1:
        raise ValueError(f"{value} does not fit in {width} base-36 digits")
    out = []
    for _ in range(width):
        value, digit = divmod(value, 36)
        out.append(DIGITS[digit])
    return "".join(reversed(out))


def parse_counter(crm_id: str, prefix: str, site_code: str) -> int | None:
    """The counter of an id made with this prefix and site code, else None."""
    crm_id = crm_id.rstrip()
    if len(crm_id) != 12 or crm_id[0] != prefix or crm_id[1:5] != site_code:
        return None
    tail = crm_id[5:]
    if any(ch not in DIGITS for ch in tail):
        return None
    return int(tail, 36)


def make_id(prefix: str, site_code: str, value: int) -> str:
    return f"{prefix}{site_code}{to_base36(value)}"


class IdAllocator:
    """Hands out blocks of new ids; safe across threads and processes.

    ``counter_engine`` is the sync's state database (the counter row lives there);
    ``crm_engine`` is only read, for the highest id already present.
    """

    def __init__(
        self,
        counter_engine: sa.Engine,
        crm_engine: sa.Engine,
        crm_schema: str | None,
        site_code: str,
    ) -> None:
        if len(site_code) != 4 or not site_code.isalnum():
            raise ValueError(f"site code {site_code!r} must be 4 letters or digits")
        self.counter_engine = counter_engine
        self.crm_engine = crm_engine
        self.tables = crm_tables(crm_schema)
        self.site_code = site_code
        self._created = False

    def allocate(self, prefix: str, n: int) -> list[str]:
        """``n`` new, never used ids of table ``prefix`` (C, A, a, p, Q)."""
        if prefix not in PREFIX_TABLES:
            raise ValueError(f"unknown id prefix {prefix!r}; known: {', '.join(PREFIX_TABLES)}")
        if n <= 0:
            return []
        floor = self._crm_floor(prefix)
        first = self._reserve(prefix, n, floor)
        if first + n - 1 > MAX_COUNTER:
            raise OverflowError(f"the id counter for {prefix}{self.site_code} is exhausted")
        return [make_id(prefix, self.site_code, v) for v in range(first, first + n)]

    # --- internals ---------------------------------------------------------------------
    def _crm_floor(self, prefix: str) -> int:
        """1 + the highest counter of ``prefix``+site already in the CRM (so never reused)."""
        attr, key = PREFIX_TABLES[prefix]
        col = getattr(self.tables, attr).c[key]
        low, high = f"{prefix}{self.site_code}", f"{prefix}{self.site_code}" + "Z" * COUNTER_WIDTH
        # A range on the key uses its index; the exact prefix (case) is checked in Python
        # because some collations compare case-insensitively.
        stmt = sa.select(col).where(col >= low, col <= high).order_by(col.desc()).limit(50)
        with self.crm_engine.connect() as conn:
            ids = conn.execute(stmt).scalars().all()
        values = [v for v in (parse_counter(i, prefix, self.site_code) for i in ids) if v is not None]
        return max(values, default=0) + 1

    def _ensure_table(self) -> None:
        """The counter table exists once the state store is migrated; an allocator given
        a bare engine (a fresh state database) migrates it first."""
        if self._created:
            return
        migrate(self.counter_engine)
        self._created = True

    def _reserve(self, prefix: str, n: int, floor: int) -> int:
        """Atomically move the counter past ``n`` values (>= floor); return the first."""
        self._ensure_table()
        key = {"prefix_code": ord(prefix), "site_code": self.site_code}
        t = id_counter_table
        where = sa.and_(t.c.prefix_code == key["prefix_code"], t.c.site_code == key["site_code"])
        start = sa.case((t.c.next_value >= floor, t.c.next_value), else_=floor)
        upd = sa.update(t).where(where).values(next_value=start + n)
        deadline = time.monotonic() + 60
        delay = 0.01
        while True:
            try:
                with self.counter_engine.begin() as conn:
                    # The first statement of the transaction is a write, so on SQLite the
                    # write lock is taken at once (as BEGIN IMMEDIATE would); elsewhere
                    # the UPDATE locks the row until commit.
                    if self.counter_engine.dialect.update_returning:
                        new_next = conn.execute(upd.returning(t.c.next_value)).scalar()
                    else:
                        rows = conn.execute(upd).rowcount
                        new_next = (
                            conn.execute(sa.select(t.c.next_value).where(where)).scalar()
                            if rows else None
                        )
                    if new_next is None:
                        conn.execute(sa.insert(t).values(**key, next_value=floor + n))
                        new_next = floor + n
                return int(new_next) - n
            except (sa.exc.OperationalError, sa.exc.IntegrityError) as exc:
                # Locked (SQLite busy) or a concurrent first INSERT of the row: try again.
                if time.monotonic() > deadline:
                    raise
                if isinstance(exc, sa.exc.OperationalError) and "lock" not in str(exc).lower():
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 0.5)
