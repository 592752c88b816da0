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

The package imports nothing on its own: importing ``contactsync.emulator.props`` (or
the package) does not start pulling in the web server; ``start_in_thread`` and the
other names below are looked up in ``contactsync.emulator.server`` when first asked for.
Modules: ``store`` (mailboxes in SQLite), ``props``/``odata`` (the JSON), ``graph`` (the
API as a function), ``batch``, ``controls`` (throttling, faults, counts), ``app`` (the
HTTP face), ``endpoints`` (``/_emulator/...``), ``server`` (running it).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__all__ = ["EmulatorHandle", "create_app", "serve", "start_in_thread"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(import_module("contactsync.emulator.server"), name)
    raise AttributeError(f"module 'contactsync.emulator' has no attribute {name!r}")
