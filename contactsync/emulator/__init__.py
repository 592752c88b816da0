"""A local Microsoft Graph contacts server (spec/GRAPH_API.md, spec/INTERFACE.md) for the demo,
the tests and rehearsals: real HTTP, state in SQLite, Outlook's throttling and injectable faults."""

from contactsync.emulator.server import EmulatorHandle, create_app, serve, start_in_thread

__all__ = ["EmulatorHandle", "create_app", "serve", "start_in_thread"]
