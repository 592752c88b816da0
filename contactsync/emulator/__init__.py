"""A local Microsoft Graph contacts server for the demo, the tests and rehearsals.

It serves the Graph v1.0 contacts API of spec/GRAPH_API.md over real HTTP (Starlette on
uvicorn, mailboxes in SQLite) with Outlook's throttling and injectable faults, so the
sync's Outlook client runs against it exactly as against a tenant (spec/INTERFACE.md).

Use::

    from contactsync.emulator import start_in_thread
    with start_in_thread(db_path="graph.db") as emu:   # port 0: a free port
        settings.graph_url = emu.graph_url               # http://127.0.0.1:PORT/v1.0
        ...

or ``contact-sync emulator serve --port 8765 --db graph.db`` in the foreground.

Control endpoints (not Graph, not counted in the stats) are under ``/_emulator/``:
``stats``, ``stats/reset``, ``faults``, ``limits``, ``latency``,
``users/{upn}/contacts/{id}/move``, ``users/{upn}/deleted`` (the contract), and
``health``, ``reset`` (forget everything), ``users/{upn}/seed`` (bulk contacts) as extras.
"""

from contactsync.emulator.server import EmulatorHandle, create_app, serve, start_in_thread

__all__ = ["EmulatorHandle", "create_app", "serve", "start_in_thread"]
