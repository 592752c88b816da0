"""`contact-sync demo` when a cycle fails (issue 16 item 3): the message and exit code of
spec/INTERFACE.md, not CycleFailed's traceback (the demo used to call the flow plainly, and
a flow run that ends Failed raises)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from contactsync.cli import app
from contactsync.emulator import server
from contactsync.emulator.controls import Fault


def test_a_failed_demo_cycle_prints_the_reason_and_exits_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = server.start_in_thread

    @contextmanager
    def refusing_tokens(**kwargs: Any) -> Iterator[server.EmulatorHandle]:
        with real(**kwargs) as handle:
            handle.emulator.controls.set_fault(Fault(status=401))  # every token refused: not retried away
            yield handle

    monkeypatch.setattr(server, "start_in_thread", refusing_tokens)
    res = CliRunner().invoke(app, ["demo", "--dir", str(tmp_path / "demo")])
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    assert res.exit_code == 1, res.stdout + res.stderr
    assert "Traceback" not in res.stdout + res.stderr and "CycleFailed" not in res.stdout + res.stderr
    assert "contact-sync: UDEMOA000001: failed:" in res.stderr and "access token" in res.stderr
    assert "3. First cycle" in res.stdout and "4. Edits" not in res.stdout  # stopped at the failed cycle
    assert "The demo stopped" in res.stdout
