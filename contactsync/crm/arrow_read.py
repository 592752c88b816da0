"""The CRM's reads as Arrow tables through ADBC, for the databases that have a driver.

Why: a read through the DBAPI drivers makes one Python object per value before pandas
sees it (100,000 group members: SQLite's own join 0.21 s, its ``fetchall`` 1.17 s, issue 15).
ADBC drivers hand the rows over as Arrow columns instead, and the canonical frame is
built from those columns (``crm/arrow_frame.py``).

- The same SQLAlchemy statement is run (R1 stays in the SQL): compiled for the
  database with every value a bound parameter (qmark for SQLite, ``$n`` for
  PostgreSQL), never pasted into the SQL text.
- Which way an engine reads is decided once per engine: SQLite files and PostgreSQL
  read through ADBC; any other dialect (SQL Server in production), an in-memory
  SQLite, or a driver that cannot connect reads through SQLAlchemy as before.
- The ADBC connection string is derived from the engine's URL. The password is part of
  it and never appears in a log or an error raised here.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import weakref
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import sqlalchemy as sa

log = logging.getLogger(__name__)

#: Rows per Arrow batch for SQLite. The SQLite driver infers each column's type from its
#: first batch (a column NULL throughout it becomes int64 and a later text value is then
#: an error), so the whole result is one batch: types inferred from every row. The
#: driver grows its buffers as rows come, it does not allocate this many rows.
SQLITE_BATCH_ROWS = 2**30


class ArrowSource:
    """How to open ADBC connections to one engine's database and run statements on them."""

    def __init__(self, dialect: str, uri: str, shown: str) -> None:
        self.dialect = dialect  # "sqlite" or "postgresql"
        self._uri = uri  # may hold the password: never logged, never in an error
        self.shown = shown  # the URL without its password, for messages
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql.base import PGDialect

            self._compile_dialect: sa.Dialect = PGDialect(paramstyle="numeric_dollar")
        else:
            from sqlalchemy.dialects.sqlite.base import SQLiteDialect

            self._compile_dialect = SQLiteDialect(paramstyle="qmark")

    @contextlib.contextmanager
    def connect(self) -> Iterator[Any]:
        """One ADBC connection (autocommit: reads only) for the reads of one call."""
        if self.dialect == "postgresql":
            import adbc_driver_postgresql.dbapi as driver
        else:
            import adbc_driver_sqlite.dbapi as driver
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
        with conn.cursor() as cur:
            if self.dialect == "sqlite":
                cur.adbc_statement.set_options(
                    **{"adbc.sqlite.query.batch_rows": str(SQLITE_BATCH_ROWS)})
            cur.execute(sql, params if params else None)
            table = cur.fetch_arrow_table()
        return _nulls_typed_null(table)


def _nulls_typed_null(table: pa.Table) -> pa.Table:
    for i, field in enumerate(table.schema):
        col = table.column(i)
        if col.null_count == len(col) and not pa.types.is_null(field.type):
            table = table.set_column(i, pa.field(field.name, pa.null()), pa.nulls(len(col)))
    return table


def concat(tables: list[pa.Table]) -> pa.Table:
    """The chunks of one read as one table (a column typed null in one chunk takes the
    type another chunk found)."""
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
    name = engine.dialect.name
    try:
        if name == "sqlite":
            import adbc_driver_sqlite.dbapi  # noqa: F401
        elif name == "postgresql":
            import adbc_driver_postgresql.dbapi  # noqa: F401
        else:
            return None  # SQL Server and the rest: SQLAlchemy's driver (arrow-odbc untested here)
    except ImportError:
        log.info("CRM reads of %s through SQLAlchemy: no ADBC driver installed", shown)
        return None
    if name == "sqlite":
        database = url.database
        if not database or database == ":memory:" or url.query:
            return None  # an in-memory database is per connection; URI options: SQLAlchemy's
        return ArrowSource("sqlite", database, shown)
    # libpq takes the same URL (user, password, host, port, database, query options such
    # as sslmode) without SQLAlchemy's driver suffix.
    uri = url.set(drivername="postgresql").render_as_string(hide_password=False)
    return ArrowSource("postgresql", uri, shown)
