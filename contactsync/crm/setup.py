"""``contact-sync crm init``: create Infor CRM's tables in an empty database, and the demo
data (``contactsync.crm.demo``) when asked.

A module of its own because it needs both the tables and the demo seed, and the seed
needs the tables: kept in ``schema`` it made an import circle.
"""

from __future__ import annotations

import sqlalchemy as sa

from contactsync.crm.demo import seed_demo
from contactsync.crm.schema import crm_tables
from contactsync.db import make_engine, shown_url
from contactsync.errors import ConfigError


def init_database(url: str, *, schema: str | None = None, demo: bool = False) -> str:
    """Create the CRM tables in an empty database (and the demo data); return a summary.

    Refuses a database that already has a CONTACT table: creating tables there would mix
    the sync's idea of the schema into a real (or an earlier demo) CRM.
    """
    engine = make_engine(url)
    try:
        if schema and engine.dialect.name == "sqlite":
            raise ConfigError(
                f"SQLite has no schema {schema!r}", hint="leave --schema empty for a SQLite CRM"
            )
        tables = crm_tables(schema)
        try:
            with engine.connect() as conn:
                if schema and conn.dialect.name == "postgresql":
                    conn.execute(sa.schema.CreateSchema(schema, if_not_exists=True))
                    conn.commit()
                existing = sa.inspect(conn).get_table_names(schema=schema)
        except sa.exc.SQLAlchemyError as exc:
            raise ConfigError(
                f"cannot open the CRM database {shown_url(engine)}: {exc}",
                hint="check --url (a SQLAlchemy URL such as sqlite:///crm.db)",
            ) from exc
        if any(name.upper() == "CONTACT" for name in existing):
            raise ConfigError(
                f"the database {shown_url(engine)} already has a "
                "CONTACT table; crm init only creates the tables in an empty database",
                hint="use a new database (or a new SQLite file), or drop the CRM tables first",
            )
        tables.metadata.create_all(engine)
        where = f"schema {schema}" if schema else "the default schema"
        summary = (
            f"Created the CRM tables ({', '.join(t.name for t in tables.all)}) in {where} of "
            f"{shown_url(engine)}."
        )
        if demo:
            counts = seed_demo(engine, schema)
            summary += "\nDemo data: " + ", ".join(f"{v} {k}" for k, v in counts.items()) + "."
        return summary
    finally:
        engine.dispose()
