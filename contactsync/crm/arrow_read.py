"""The CRM's reads as Arrow tables through ADBC, where that is safe: PostgreSQL.

Why: a read through the DBAPI drivers makes one Python object per value before pandas
sees it (100,000 group members: SQLite's own join 0.21 s, its ``fetchall`` 1.17 s, issue 15).
ADBC drivers hand the rows over as Arrow columns instead, and the canonical frame is
built from those columns (``crm/arrow_frame.py``).

- The same SQLAlchemy statement is run (R1 stays in the SQL): compiled for the
  database with every value a bound parameter (``$n``), never pasted into the SQL text.
- Which way an engine reads is decided once per engine: PostgreSQL reads through ADBC;
  any other dialect (SQL Server in production: arrow-odbc exists, untestable here) or a
  driver that cannot connect reads through SQLAlchemy as before.
- **SQLite stays on SQLAlchemy.** ``adbc-driver-sqlite`` links its own copy of SQLite
  (3.53 in its wheel) beside the one Python's ``sqlite3`` uses (the system's). Two
  copies of SQLite opening one file in one process break each other's POSIX locks
  (https://sqlite.org/howtocorrupt.html, section 2.2.1: closing a file in one copy
  drops the locks the other holds). Tried here: after an ADBC read, a CRM write through
  SQLAlchemy and the next ADBC read returned the rows as before the write, and a new
  ``sqlite3`` connection failed with "disk I/O error". The CRM engine always has
  ``sqlite3`` connections open (the writer, the group lookups), so an in-process ADBC
  read of SQLite would miss changes or corrupt the WAL index.
- The ADBC connection string is derived from the engine's URL. The password is part of
  it and never appears in a log or an error raised here.
- Each statement is shown to the engine's ``before_cursor_execute`` and
  ``after_cursor_execute`` listeners as SQLAlchemy would show it (with no connection
  object), so what counts or times the CRM's statements (bench/driver.py,
  bench/fleet_child.py, tests/crm's R1 checks) sees these reads too.
- **pyarrow is optional** (the ``arrow`` extra, with the ADBC driver): nothing here or in
  the SQLAlchemy path imports it. It is imported only once an engine reads through ADBC,
  so a process without it, or on SQLite, never pays its ~60 MB (pandas imports pyarrow
  whenever it can; issue 15 goal 3). :func:`is_table` tells a read's Arrow table from a
  frame without importing it.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import weakref
from collections.abc import Iterator
from types import ModuleType
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger(__name__)

class ArrowSource:
    """How to open ADBC connections to one engine's database and run statements on them."""

    def __init__(self, engine: sa.Engine, uri: str, shown: str) -> None:
        self._engine = weakref.ref(engine)  # (the sources are kept by engine, weakly)
        self._uri = uri  # holds the password: never logged, never in an error
        self.shown = shown  # the URL without its password, for messages
        self._compile_dialect = _dollar_dialect()

    @contextlib.contextmanager
    def connect(self) -> Iterator[Any]:
        """One ADBC connection (autocommit: reads only) for the reads of one call."""
        import adbc_driver_postgresql.dbapi as driver

        try:
            conn = driver.connect(self._uri)
        except Exception as exc:  # the driver's message may quote the connection string
            raise ConnectionError(
                f"CRM database {self.shown}: the ADBC connection failed "
                f"({type(exc).__name__}); check the [crm] url and that the server is up"
            ) from None
        try:
            yield conn
        finally:
            conn.close()

    def compile(self, stmt: sa.Executable) -> tuple[str, list[Any]]:
        """SQL text with positional placeholders, and the values bound to them in order."""
        compiled = stmt.compile(dialect=self._compile_dialect,
                                compile_kwargs={"render_postcompile": True})
        params = compiled.construct_params()
        order = compiled.positiontup or []
        return str(compiled), [params[name] for name in order]

    def read(self, conn: Any, stmt: sa.Executable) -> pa.Table:
        """The rows of ``stmt`` as one Arrow table; columns NULL throughout are typed null
        (so tables of several chunks concatenate whatever a chunk inferred)."""
        sql, params = self.compile(stmt)
        engine = self._engine()
        with conn.cursor() as cur:
            if engine is not None:
                engine.dispatch.before_cursor_execute(None, cur, sql, params, None, False)
            cur.execute(sql, params if params else None)
            table = cur.fetch_arrow_table()
            if engine is not None:
                engine.dispatch.after_cursor_execute(None, cur, sql, params, None, False)
        return _nulls_typed_null(table)


def _dollar_dialect() -> sa.Dialect:
    """PostgreSQL's dialect with ``$n`` placeholders, each with its type cast.

    ADBC binds a str as ``text``; compared with a CHAR(12) column (every CRM key, the
    padded USERID) PostgreSQL would then trim the column and compare texts, so 'ADMIN' padded
    to 12 would match nothing. psycopg sends untyped values, so PostgreSQL takes the column's
    type. Here a value bound to a CHAR column is cast to ``bpchar`` (blank-padded, no length:
    a longer value is not truncated into a false match), the rest as SQLAlchemy casts them.
    """
    from sqlalchemy.dialects.postgresql.psycopg import PGCompiler_psycopg, PGDialect_psycopg

    class Compiler(PGCompiler_psycopg):
        def render_bind_cast(self, type_: Any, dbapi_type: Any, sqltext: str) -> str:
            if isinstance(type_, sa.CHAR):
                return f"{sqltext}::BPCHAR"
            return str(super().render_bind_cast(type_, dbapi_type, sqltext))

    class Dialect(PGDialect_psycopg):
        statement_compiler = Compiler

    return Dialect(paramstyle="numeric_dollar")


def is_table(raw: object) -> bool:
    """Whether a read gave an Arrow table (ADBC) rather than a frame: without importing
    pyarrow, since a table exists only once something imported it."""
    arrow = sys.modules.get("pyarrow")
    return arrow is not None and isinstance(raw, arrow.Table)


def frames() -> ModuleType:
    """``crm/arrow_frame.py`` (which imports pyarrow), for a read that gave a table."""
    from contactsync.crm import arrow_frame

    return arrow_frame


def _nulls_typed_null(table: pa.Table) -> pa.Table:
    import pyarrow as pa

    for i, field in enumerate(table.schema):
        col = table.column(i)
        if col.null_count == len(col) and not pa.types.is_null(field.type):
            table = table.set_column(i, pa.field(field.name, pa.null()), pa.nulls(len(col)))
    return table


def concat(tables: list[pa.Table]) -> pa.Table:
    """The chunks of one read as one table (a column typed null in one chunk takes the
    type another chunk found)."""
    import pyarrow as pa

    return tables[0] if len(tables) == 1 else pa.concat_tables(tables, promote_options="default")


_SOURCES: weakref.WeakKeyDictionary[sa.Engine, ArrowSource | None] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def source_for(engine: sa.Engine) -> ArrowSource | None:
    """The engine's ADBC source, or None where its reads stay on SQLAlchemy (decided once
    per engine; users' cycles share the engine from several threads)."""
    with _LOCK:
        if engine not in _SOURCES:
            _SOURCES[engine] = _make_source(engine)
        return _SOURCES[engine]


def _make_source(engine: sa.Engine) -> ArrowSource | None:
    url = engine.url
    shown = url.render_as_string(hide_password=True)
    if engine.dialect.name != "postgresql":
        return None  # SQLite (module docstring), SQL Server and the rest: SQLAlchemy's driver
    try:
        import adbc_driver_postgresql.dbapi  # noqa: F401
    except ImportError:
        log.info("CRM reads of %s through SQLAlchemy: no ADBC driver installed", shown)
        return None
    # libpq takes the same URL (user, password, host, port, database, query options such
    # as sslmode) without SQLAlchemy's driver suffix.
    uri = url.set(drivername="postgresql").render_as_string(hide_password=False)
    return ArrowSource(engine, uri, shown)
