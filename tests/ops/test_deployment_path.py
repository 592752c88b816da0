"""The deployment path as an admin follows it from the README (issue 16 item 7).

A Prefect server, `PREFECT_API_URL` pointing at it, a process work pool, `prefect deploy
--all` run from the project root with `CONTACT_SYNC_HOME` set (baked into the
deployments), a worker with `CONTACT_SYNC_CONFIG` in its environment, then
`prefect deployment run sync_all_users/sync-all-users`: one run that syncs, and one that
fails with Graph down. Every step is the real command in its own process.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from contactsync.cli.prefect_server import ensure_server, stop_server
from contactsync.emulator import start_in_thread
from tests.e2e.conftest import LEE, MAILBOXES, Mailbox, make_env

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
PREFECT = [sys.executable, "-m", "prefect"]
DEPLOYMENT = "sync_all_users/sync-all-users"


def _run(env: dict[str, str], *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PREFECT, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


@pytest.fixture()
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, dict[str, str]]]:
    """`prefect server start` (through the commands' local server) in a home of its own;
    its scheduler off so that the 15-minute schedule does not race the triggered runs."""
    home = tmp_path / "prefect-home"
    home.mkdir()
    monkeypatch.setenv("PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED", "false")
    info, _ = ensure_server(home)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "CONTACT_SYNC_"))}
    env.update(PREFECT_HOME=str(home), PREFECT_API_URL=info.url, PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_WORKER_QUERY_SECONDS="2")
    try:
        yield info.url, env
    finally:
        stop_server(home)


def _flow_run(api: str, flow_run_id: str) -> dict:
    r = requests.get(f"{api}/flow_runs/{flow_run_id}", timeout=10)
    r.raise_for_status()
    return r.json()


def _run_id(output: str) -> str:
    for line in output.splitlines():
        if "UUID:" in line:
            return line.split("UUID:")[1].strip()
    raise AssertionError(f"no flow run id in:\n{output}")


def test_deploy_work_pool_worker_and_triggered_runs(server: tuple[str, dict[str, str]], tmp_path: Path) -> None:
    api, env = server
    emulator = start_in_thread(db_path=tmp_path / "graph.db")
    sync_env = make_env(tmp_path, f"sqlite:///{tmp_path / 'crm.db'}", emulator)
    worker = None
    try:
        pool = _run(env, "work-pool", "create", "contact-sync", "--type", "process")
        assert pool.returncode == 0, pool.stdout + pool.stderr
        # At deploy time, from the project root: CONTACT_SYNC_HOME is baked into the deployments.
        deploy = _run({**env, "CONTACT_SYNC_HOME": str(ROOT)},
                      "--no-prompt", "deploy", "--all", "--prefect-file", "deployments/prefect.yaml")
        assert deploy.returncode == 0, deploy.stdout + deploy.stderr
        listed = _run(env, "deployment", "ls")
        for name in (DEPLOYMENT, "backfill/backfill", "quality_report/quality-report"):
            assert name in listed.stdout, listed.stdout
        deployments = requests.post(f"{api}/deployments/filter", json={}, timeout=10).json()
        pulls = [d["pull_steps"] for d in deployments]
        assert all(str(ROOT) in str(p) for p in pulls), pulls  # the path on the worker, baked in

        # The worker: CONTACT_SYNC_CONFIG in its environment, nothing else of contact-sync's.
        worker_env = {**env, "CONTACT_SYNC_CONFIG": str(sync_env.config)}
        worker = subprocess.Popen(
            [*PREFECT, "worker", "start", "--pool", "contact-sync"], env=worker_env, cwd=tmp_path,
            stdout=open(tmp_path / "worker.log", "w"), stderr=subprocess.STDOUT,  # noqa: SIM115
        )

        synced = _run(env, "deployment", "run", DEPLOYMENT, "--watch", "--watch-timeout", "600")
        log = (tmp_path / "worker.log").read_text()
        assert synced.returncode == 0, synced.stdout + synced.stderr + log
        run = _flow_run(api, _run_id(synced.stdout))
        assert run["state_type"] == "COMPLETED"
        assert len(Mailbox(emulator, MAILBOXES[LEE]).contacts()) > 0  # the run synced Lee's folder
        assert sync_env.crm_rows("SELECT COUNT(*) AS n FROM ADHOCGROUP")[0]["n"] > 0

        emulator.stop()  # Graph down
        failed = _run(env, "deployment", "run", DEPLOYMENT, "--watch", "--watch-timeout", "900", timeout=960)
        assert failed.returncode == 1, failed.stdout + failed.stderr
        run = _flow_run(api, _run_id(failed.stdout))
        assert run["state_type"] == "FAILED", run["state"]
        assert LEE.strip() in (run["state"].get("message") or ""), run["state"]
    finally:
        if worker is not None:
            worker.terminate()
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
        with contextlib.suppress(Exception):
            emulator.stop()
