"""When the warm process (contactsync/cli/warm.py, the default path of `sync` and
`backfill`) must not serve a command: changed code, packages, Prefect settings, a stale
or crashed one; `CONTACT_SYNC_WARM=0` turns it off (issue 16 item 1)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from contactsync.cli import warm


@pytest.fixture()
def code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "code"
    (root / "contactsync" / "cycle").mkdir(parents=True)
    (root / "contactsync" / "cycle" / "run.py").write_text("X = 1\n")
    (root / "expectations" / "suites").mkdir(parents=True)
    (root / "expectations" / "suites" / "plan.json").write_text("{}")
    monkeypatch.setattr(warm, "_CODE", root)
    return root


def test_the_key_changes_with_the_code_the_suites_the_profiles_and_prefect_settings(
    code: Path, tmp_path: Path
) -> None:
    env = {"PREFECT_HOME": str(tmp_path / "home"), "PREFECT_PROFILES_PATH": str(tmp_path / "profiles.toml")}
    key = warm.warm_key(env)
    assert warm.warm_key(dict(env)) == key  # stable while nothing changes
    assert warm.warm_key({**env, "CONTACT_SYNC_CONFIG": "/etc/other.toml"}) == key  # read per command

    run = code / "contactsync" / "cycle" / "run.py"
    run.write_text("X = 22\n")
    assert warm.warm_key(env) != key, "edited code must get a new warm process"
    key = warm.warm_key(env)
    os.utime(code / "expectations" / "suites" / "plan.json", ns=(1, 1))
    assert warm.warm_key(env) != key, "an edited GX suite must get a new warm process"
    key = warm.warm_key(env)
    (tmp_path / "profiles.toml").write_text('active = "team"\n')
    assert warm.warm_key(env) != key, "a changed Prefect profile must get a new warm process"
    key = warm.warm_key(env)
    other = warm.warm_key({**env, "PREFECT_API_URL": "http://prefect:4200/api"})
    assert other != key and other.split("-")[0] == key.split("-")[0]  # same code, other settings


def test_the_warm_process_is_the_default_and_can_be_turned_off() -> None:
    assert warm.enabled({})
    assert warm.enabled({"CONTACT_SYNC_WARM": "1"})
    for off in ("0", "false", "off", "no"):
        assert not warm.enabled({"CONTACT_SYNC_WARM": off})
    assert warm.run_warm(["report"]) is None  # only sync and backfill are served warm


def test_starting_a_warm_process_stops_those_of_stale_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    home.mkdir()
    stale = subprocess.Popen(["sleep", "60"])  # stands for a warm process of older code
    same_code = subprocess.Popen(["sleep", "60"])  # same code, other Prefect settings: kept
    try:
        for name, proc in (("aaaaaaaaaaaa-11111111", stale), ("bbbbbbbbbbbb-22222222", same_code)):
            (home / f"contact-sync-warm-{name}.pid").write_text(str(proc.pid))
            (home / f"contact-sync-warm-{name}.sock").touch()
        started: list[list[str]] = []
        monkeypatch.setattr(warm.subprocess, "Popen", lambda args, **_: started.append(args))
        warm._spawn(home / "contact-sync-warm-bbbbbbbbbbbb-33333333.sock")
        assert stale.wait(timeout=10) == -15  # SIGTERM
        assert not (home / "contact-sync-warm-aaaaaaaaaaaa-11111111.sock").exists()
        assert same_code.poll() is None and (home / "contact-sync-warm-bbbbbbbbbbbb-22222222.pid").exists()
        assert started and started[0][-1].endswith("contact-sync-warm-bbbbbbbbbbbb-33333333.sock")
    finally:
        for proc in (stale, same_code):
            proc.kill()
            proc.wait()


def test_a_warm_process_leaves_when_its_socket_is_removed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A removed Prefect home (a test's temporary one) leaves no warm process behind."""
    home = tmp_path / "home"
    home.mkdir()
    sock = home / "contact-sync-warm-cccccccccccc-44444444.sock"
    proc = subprocess.Popen([sys.executable, "-c", (
        "import sys; from pathlib import Path; from contactsync.cli import warm; "
        "warm.POLL_S = 0.2; warm.serve(Path(sys.argv[1]))"), str(sock)])
    try:
        deadline = time.monotonic() + 240
        while not sock.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "the warm process did not start"
            time.sleep(0.2)
        sock.unlink()
        assert proc.wait(timeout=30) == 0
        assert not sock.with_suffix(".pid").exists()
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A Prefect home for run_warm, with every variable it sets restored afterwards."""
    home = tmp_path / "home"
    monkeypatch.setenv("PREFECT_HOME", str(home))
    monkeypatch.delenv("CONTACT_SYNC_WARM", raising=False)
    monkeypatch.delenv("CONTACT_SYNC_WARM_CHILD", raising=False)
    for name in ("PREFECT_PROFILES_PATH", "PREFECT_SERVER_ANALYTICS_ENABLED", "PREFECT_LOGGING_LEVEL",
                 "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW"):
        monkeypatch.setenv(name, os.environ.get(name, "x"))
    from contactsync.cli.prefect_server import prepare_environment

    prepare_environment()
    return home


def _fake_warm(home: Path, answer: bytes | None) -> tuple[threading.Thread, subprocess.Popen[bytes]]:
    """A listening socket where run_warm looks for the warm process: it takes the
    command and then sends ``answer`` and hangs up (None: never answers)."""
    path = warm._socket_path(home, warm.warm_key(os.environ))
    stands_for = subprocess.Popen(["sleep", "60"])  # the warm process's pid, for its lock file
    path.with_suffix(".pid").write_text(str(stands_for.pid))
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    warm._at(path, server.bind)
    server.listen(1)

    def serve() -> None:
        conn, _ = server.accept()
        socket.recv_fds(conn, 1 << 20, 3)
        if answer is None:
            time.sleep(3)
        else:
            conn.sendall(answer)
        conn.close()
        server.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread, stands_for


def test_a_warm_process_that_does_not_answer_is_stopped_and_the_command_runs_here(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(warm, "ANSWER_S", 0.5)
    thread, stands_for = _fake_warm(home, None)
    try:
        assert warm.run_warm(["sync", "--config", "x.toml"]) is None  # None: run in this process
        assert stands_for.wait(timeout=10) == -15  # the hung one got SIGTERM
        assert not list(home.glob("contact-sync-warm-*.sock"))
    finally:
        stands_for.kill()
        thread.join(5)


def test_a_command_whose_warm_child_died_exits_1_and_says_what_to_do(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    thread, stands_for = _fake_warm(home, b"4242\n")  # took the command, then no exit code
    handler = signal.getsignal(signal.SIGINT)
    try:
        assert warm.run_warm(["sync"]) == 1
        assert signal.getsignal(signal.SIGINT) is handler  # Ctrl-C is no longer sent to pid 4242
        err = capsys.readouterr().err
        assert "pid 4242" in err and "run the command again" in err and "CONTACT_SYNC_WARM=0" in err
    finally:
        stands_for.kill()
        stands_for.wait()
        thread.join(5)
