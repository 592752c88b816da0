"""Running the Graph emulator: uvicorn in the foreground, or in a background thread.

The app itself is ``app.py``; this module only serves it (``contact-sync emulator serve``,
``start_in_thread`` for tests, the demo and rehearsals).
"""

from __future__ import annotations

import signal
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import uvicorn
from starlette.applications import Starlette

from contactsync.emulator.app import Emulator
from contactsync.emulator.store import Store


def create_app(db_path: str | Path | None = None) -> Starlette:
    """The ASGI app of a fresh emulator; ``app.state.emulator`` holds its store and controls.

    ``db_path`` None keeps the mailboxes in memory; a path keeps them across restarts.
    """
    return Emulator(db_path).app


def _config(app: Starlette, host: str, port: int) -> uvicorn.Config:
    return uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                          lifespan="off", loop="asyncio", http="h11", timeout_graceful_shutdown=2)


class _ForegroundServer(uvicorn.Server):
    """uvicorn, but a Ctrl-C or SIGTERM ends it with exit code 0 once it has shut down.

    (uvicorn re-raises the signal after its graceful shutdown, so a supervised emulator
    would look killed rather than stopped.)
    """

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def serve(host: str = "127.0.0.1", port: int = 8765, db_path: Path | None = None) -> None:
    """Run in the foreground until Ctrl-C or SIGTERM, then shut down cleanly (exit code 0)."""
    emulator = Emulator(db_path)
    server = _ForegroundServer(_config(emulator.app, host, port))
    print(f"Graph emulator: http://{host}:{port}/v1.0 (db: {db_path or 'in memory'})", flush=True)
    try:
        server.run()
    finally:
        emulator.store.close()


class EmulatorHandle:
    """A running emulator in a background thread; a context manager that stops it."""

    def __init__(self, emulator: Emulator, server: uvicorn.Server, thread: threading.Thread,
                 host: str, port: int) -> None:
        self.emulator, self._server, self._thread = emulator, server, thread
        self.host, self.port = host, port
        self.url = f"http://{host}:{port}"
        self.graph_url = self.url + "/v1.0"

    @property
    def store(self) -> Store:
        return self.emulator.store

    def stop(self, wait: bool = True) -> None:
        """Stop serving; the store closes when the server thread ends.

        ``wait=False`` returns at once (uvicorn needs ~0.2 s to wind down): handy for
        per-test emulators; the port is not reused, since each picks a free one.
        """
        self._server.should_exit = True
        if wait:
            self._thread.join(timeout=10)

    def __enter__(self) -> EmulatorHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_in_thread(host: str = "127.0.0.1", port: int = 0, db_path: str | Path | None = None) -> EmulatorHandle:
    """Start an emulator on ``host:port`` (0: a free port) in a daemon thread; returns when it listens."""
    emulator = Emulator(db_path)
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets that name it, and
    # without it every answer waits ~40 ms for a delayed ACK (Nagle).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.setblocking(False)
    server = uvicorn.Server(_config(emulator.app, host, sock.getsockname()[1]))
    def run() -> None:
        try:
            server.run(sockets=[sock])
        finally:
            emulator.store.close()

    thread = threading.Thread(target=run, daemon=True, name="graph-emulator")
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("the Graph emulator failed to start")
        thread.join(0.01)
    return EmulatorHandle(emulator, server, thread, host, sock.getsockname()[1])


@contextmanager
def running(db_path: str | Path | None = None) -> Iterator[EmulatorHandle]:
    """``with running() as emu:`` a throw-away emulator on a free port."""
    handle = start_in_thread(db_path=db_path)
    try:
        yield handle
    finally:
        handle.stop()
