"""Issue 16 item 3: with ``[orchestration] dask_address`` the users' cycles run on that Dask
cluster (prefect-dask), here a real ``dask scheduler`` with two ``dask worker`` processes."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import LEE, SAM, SyncEnv, make_env
from tests.fanout.prefect_api import last_fan_out

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A scheduler and two single-process workers on 127.0.0.1, stopped after the module."""
    dask = shutil.which("dask", path=str(Path(sys.executable).parent))
    if dask is None:
        pytest.skip("the `dask` command (package distributed) is not installed")
    logs = tmp_path_factory.mktemp("dask")
    address = f"tcp://127.0.0.1:{_free_port()}"
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    commands = {
        "scheduler": [dask, "scheduler", "--host", "127.0.0.1", "--port", address.rsplit(":", 1)[1],
                      "--no-dashboard"],
        **{name: [dask, "worker", address, "--name", name, "--nthreads", "2", "--no-dashboard", "--no-nanny"]
           for name in ("w1", "w2")},
    }
    procs = []
    for name, cmd in commands.items():
        with open(logs / f"{name}.log", "w") as log:  # the child keeps its own handle
            procs.append(subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT))
    try:
        from distributed import Client

        with Client(address, timeout=120) as client:
            client.wait_for_workers(2, timeout=180)
        yield address
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def _executed_per_worker(address: str) -> dict[str, int]:
    from distributed import Client

    with Client(address, timeout=60) as client:
        return client.run(lambda dask_worker: dask_worker.state.executed_count)


@pytest.mark.slow  # three processes that import Prefect and Dask: about a minute here
def test_cycles_run_on_the_configured_dask_cluster(dask_cluster: str, tmp_path: Path) -> None:
    from contactsync.emulator import start_in_thread

    before = sum(_executed_per_worker(dask_cluster).values())
    with start_in_thread(db_path=tmp_path / "graph.db") as emu:
        extra = f'\n[orchestration]\ndask_address = "{dask_cluster}"\n'
        env: SyncEnv = make_env(tmp_path, f"sqlite:///{tmp_path / 'crm.db'}", emu, extra=extra)
        res = env.sync()
        assert res.exit_code == 0, res.stdout + res.stderr
        lines = res.by_user()
        assert {u: line["status"] for u, line in lines.items()} == {LEE: "ok", SAM: "ok"}
        assert all(line["counts"]["outlook"]["create"] == 9 for line in lines.values()), lines
        assert len(env.graph(LEE).contacts()) == 9 and len(env.graph(SAM).contacts()) == 9
    # Both users' cycles were tasks of the cluster's workers, not of this process.
    assert sum(_executed_per_worker(dask_cluster).values()) - before == 2
    runs = last_fan_out()
    assert runs.fan_out.state.is_completed()
    assert all(runs.cycles[u][0].state.is_completed() for u in (LEE, SAM)), runs.cycles
