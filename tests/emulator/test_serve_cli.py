"""`contact-sync emulator serve` as the demo and the benchmarks run it: a subprocess with a db file."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

SERVE = [sys.executable, "-c", "from contactsync.cli import main; main()", "emulator", "serve"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(port: int, db: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([*SERVE, "--port", str(port), "--db", str(db)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/_emulator/health", timeout=1).ok:
                return proc
        except requests.ConnectionError:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.1)
    proc.kill()
    raise AssertionError("the emulator did not start")


@pytest.mark.slow  # two interpreter start-ups: several seconds on a busy machine
def test_serve_stops_cleanly_on_sigterm_and_keeps_its_db(tmp_path: Path) -> None:
    port, db = free_port(), tmp_path / "outlook.db"
    auth = {"Authorization": "Bearer t"}
    user = f"http://127.0.0.1:{port}/v1.0/users/lee@example.com"
    proc = start(port, db)
    try:
        cid = requests.post(f"{user}/contacts", json={"givenName": "Kept"}, headers=auth, timeout=5).json()["id"]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    proc = start(port, db)
    try:
        assert requests.get(f"{user}/contacts/{cid}", headers=auth, timeout=5).json()["givenName"] == "Kept"
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=15)
