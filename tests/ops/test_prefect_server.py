"""Which Prefect API the commands use, and the local server they start once and reuse
(issue 16 item 1; spec/INTERFACE.md "Prefect" and `contact-sync prefect status|stop`)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import requests

from contactsync.cli.prefect_server import configured_api, read_server, use_prefect_api
from contactsync.emulator import start_in_thread
from tests.e2e.conftest import MAILBOXES, SyncEnv, make_env

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-c", "from contactsync.cli import main; main()"]


def _profiles(path: Path, active: str, **profiles: dict[str, str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    body = f'active = "{active}"\n' + "".join(
        f"\n[profiles.{name}]\n" + "".join(f'{k} = "{v}"\n' for k, v in values.items())
        for name, values in profiles.items()
    )
    path.write_text(body, encoding="utf-8")
    return path


def test_an_api_url_in_the_environment_is_used_and_no_server_starts(tmp_path: Path) -> None:
    env = {"PREFECT_HOME": str(tmp_path / "home"), "PREFECT_API_URL": "http://prefect.example:4200/api"}
    choice = use_prefect_api(env)
    assert (choice.url, choice.started) == ("http://prefect.example:4200/api", False)
    assert read_server(tmp_path / "home") is None
    assert not (tmp_path / "home" / "contact-sync-server.json").exists()


def test_moving_prefect_home_keeps_the_users_active_profile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The user's ~/.prefect/profiles.toml names their API; contact-sync moves PREFECT_HOME
    to its own folder, and Prefect itself must still read that profile."""
    monkeypatch.setenv("HOME", str(tmp_path))
    _profiles(
        tmp_path / ".prefect" / "profiles.toml", "team",
        team={"PREFECT_API_URL": "http://team-prefect:4200/api"}, other={"PREFECT_API_URL": "http://other:4200/api"},
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env["HOME"] = str(tmp_path)
    choice = use_prefect_api(env)
    assert choice.url == "http://team-prefect:4200/api" and "team" in choice.source
    assert env["PREFECT_HOME"] == str(tmp_path / ".contact-sync" / "prefect")
    assert read_server(Path(env["PREFECT_HOME"])) is None
    seen = subprocess.run(
        [sys.executable, "-c", "from prefect.settings import PREFECT_API_URL as u; print(u.value())"],
        env=env, capture_output=True, text=True, check=True, timeout=120,
    )
    assert seen.stdout.strip() == "http://team-prefect:4200/api"
    env2 = {"HOME": str(tmp_path), "PREFECT_PROFILE": "other"}
    assert configured_api(env2).url == "http://other:4200/api"  # type: ignore[union-attr]


def test_a_profile_without_an_api_url_is_not_a_configured_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    _profiles(tmp_path / ".prefect" / "profiles.toml", "ephemeral", ephemeral={"PREFECT_SERVER_EPHEMERAL_ENABLED": "true"})
    assert configured_api({"HOME": str(tmp_path)}) is None


# --- the real thing: commands in their own processes, as a user runs them ----------------------
@pytest.fixture()
def world(tmp_path: Path) -> Iterator[tuple[SyncEnv, dict[str, str]]]:
    home = tmp_path / "prefect-home"
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "CONTACT_SYNC_WARM")}
    env.update(PREFECT_HOME=str(home), PYTHONPATH=str(ROOT))
    with start_in_thread(db_path=tmp_path / "graph.db") as emulator:
        sync_env = make_env(tmp_path, f"sqlite:///{tmp_path / 'crm.db'}", emulator)
        try:
            yield sync_env, env
        finally:
            subprocess.run([*CLI, "prefect", "stop"], env=env, capture_output=True, timeout=60)


def _cli(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def _events(api: str, prefix: str) -> list[dict]:
    body = {"filter": {"event": {"prefix": [prefix]}, "occurred": {"since": "2000-01-01T00:00:00Z"}}, "limit": 50}
    r = requests.post(f"{api}/events/filter", json=body, timeout=10)
    r.raise_for_status()
    return r.json()["events"]


def _wait_warm(home: Path, not_pid: int | None = None, timeout: float = 240) -> None:
    """Until a warm process (another than ``not_pid``) listens in ``home``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = [p.read_text() for p in home.glob("contact-sync-warm-*.pid")]
        if list(home.glob("contact-sync-warm-*.sock")) and pids and str(not_pid) not in pids:
            return
        time.sleep(0.5)
    raise AssertionError(f"no warm process in {home}: {sorted(p.name for p in home.iterdir())}")


def _wait_gone(pid: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, f"process {pid} still runs"
        time.sleep(0.1)


@pytest.mark.slow  # make test in CI ran 17 min against its ~15 min budget
def test_commands_start_one_local_server_reuse_it_and_stop_it(world: tuple[SyncEnv, dict[str, str]]) -> None:
    sync_env, warm_env = world
    env = {**warm_env, "CONTACT_SYNC_WARM": "0"}  # first the plain path: every command in its own process
    home = Path(env["PREFECT_HOME"])
    status = _cli(env, "prefect", "status")
    assert status.returncode == 1 and "not running" in status.stdout

    first = _cli(env, "sync", "--json", "--config", str(sync_env.config))
    assert first.returncode == 0, first.stderr
    assert {json.loads(x)["status"] for x in first.stdout.splitlines() if x.startswith("{")} == {"ok"}
    server = read_server(home)
    assert server is not None and server.url.startswith("http://127.0.0.1:")
    status = _cli(env, "prefect", "status")
    assert status.returncode == 0, status.stdout
    assert server.url in status.stdout and server.log_file in status.stdout
    assert Path(server.log_file).is_file() and Path(server.log_file).parent == home
    assert (home / "prefect.db").is_file()  # its database under the Prefect home
    # Started through flows/local_server.py: its SQLite writers wait for the lock, not 503.
    assert "SQLite write transactions begin IMMEDIATE: yes" in Path(server.log_file).read_text()

    second = _cli(env, "sync", "--json", "--config", str(sync_env.config))
    assert second.returncode == 0, second.stderr
    again = read_server(home)
    assert again is not None and again.pid == server.pid  # reused, not started again

    # Both commands' flow runs are in that server, for the admin to see.
    runs = requests.post(f"{server.url}/flow_runs/filter", json={}, timeout=10).json()
    assert sum(r["state_type"] == "COMPLETED" for r in runs) >= 2 * len(MAILBOXES)
    # Heartbeats off for the command's own runs: a heartbeat thread sends its first beat
    # as the run starts; the runs' own events arrive, no heartbeat does.
    deadline = time.monotonic() + 60
    while not _events(server.url, "prefect.flow-run.Completed") and time.monotonic() < deadline:
        time.sleep(1)
    assert _events(server.url, "prefect.flow-run.Completed")
    assert _events(server.url, "prefect.flow-run.heartbeat") == []

    # The default: the first command runs here and warms a process up; the next is served
    # by it (a child of its own), with the same output and exit code.
    assert "CONTACT_SYNC_WARM" not in warm_env
    assert not list(home.glob("contact-sync-warm-*.sock"))  # none started while it was off
    cold = _cli(warm_env, "sync", "--json", "--config", str(sync_env.config))
    assert cold.returncode == 0, cold.stderr
    _wait_warm(home)
    warm_log = next(home.glob("contact-sync-warm-*.log"))
    warm = _cli(warm_env, "sync", "--json", "--config", str(sync_env.config))
    assert warm.returncode == 0, warm.stderr
    assert {json.loads(x)["status"] for x in warm.stdout.splitlines() if x.startswith("{")} == {"ok"}
    assert "command in child" in warm_log.read_text()
    refused = _cli(warm_env, "sync", "--config", str(sync_env.config), "--user", "NOBODY")
    assert refused.returncode == 2 and "NOBODY" in refused.stderr  # its exit code and stderr
    assert warm_log.read_text().count("command in child") == 2
    warm_pid = int(next(home.glob("contact-sync-warm-*.pid")).read_text())
    runs = requests.post(f"{server.url}/flow_runs/filter", json={}, timeout=10).json()
    assert sum(r["state_type"] == "COMPLETED" for r in runs) >= 4 * len(MAILBOXES)

    # A warm process that crashed (its socket left behind): the command runs here, as
    # without it, and a new warm process is started for the next one.
    os.kill(warm_pid, signal.SIGKILL)
    _wait_gone(warm_pid)
    assert list(home.glob("contact-sync-warm-*.sock"))  # stale, refuses connections
    after_crash = _cli(warm_env, "sync", "--json", "--config", str(sync_env.config))
    assert after_crash.returncode == 0, after_crash.stderr
    assert {json.loads(x)["status"] for x in after_crash.stdout.splitlines() if x.startswith("{")} == {"ok"}
    assert warm_log.read_text().count("command in child") == 2  # not served by a warm process
    _wait_warm(home, not_pid=warm_pid)
    warm_pid = int(next(home.glob("contact-sync-warm-*.pid")).read_text())

    stopped = _cli(env, "prefect", "stop")
    assert stopped.returncode == 0 and str(server.pid) in stopped.stdout
    assert not psutil.pid_exists(server.pid) or psutil.Process(server.pid).status() == psutil.STATUS_ZOMBIE
    assert read_server(home) is None
    assert not psutil.pid_exists(warm_pid) or psutil.Process(warm_pid).status() == psutil.STATUS_ZOMBIE
    assert _cli(env, "prefect", "status").returncode == 1
