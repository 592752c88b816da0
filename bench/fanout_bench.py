"""50 quiet users in one command (issue 16 item 3): ``python -m bench.fanout_bench``.

The demo CRM plus 48 more users, each owning a contact sync group of the demo's seven
"Everyone" contacts, found in the CRM by ``[users_from_crm]`` (50 users, two of them
configured); the Graph emulator in its own process with 50 ms latency per request. After
two set-up commands (the first sync, then the quiet cycle that settles, R17), the same
quiet ``contact-sync sync --json`` of all 50 users is timed as a whole process, side by
side: the fan-out as configured (``sync.parallel_users`` = 4, the default), two at a time,
and one user at a time (``parallel_users`` = 1, as before the fan-out). All start Prefect
the same way (the commands' own API), so the ratios are the fan-out's. Each command's CPU
seconds are recorded where they were spent: the command's process, the warm process's
child that ran it (cli/warm.py) and the local Prefect server: the anatomy of a user's cost. Goal: under 30 s on this 2-core
machine. The load average is recorded with the figures (other work shares the machine).

Then, side by side in the same run, the same quiet command against a Prefect server as
Prefect ships it (``prefect server start``, configured through ``PREFECT_API_URL``, a home
of its own) instead of the commands' local server (flows/local_server.py: its SQLite write
transactions begin IMMEDIATE, so concurrent run creations wait for the lock instead of
being answered 503 and retried ~2 s later by Prefect's client, PrefectHQ/prefect issue
18934). Each server's 503s and "database is locked" refusals are counted from its log
(``PREFECT_API_LOG_RETRYABLE_ERRORS``).
``BENCH_FANOUT_STOCK=0`` skips it.

Results: ``bench/results/fanout.json``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench.harness import LATENCY_MS, RESULTS, Emulator, log, machine
from contactsync.crm import demo
from contactsync.crm.setup import init_database
from tests.fanout.crm_users import add_crm_user

USERS = 50
EVERYONES = [demo.cid(n) for n in (1, 5, 9, 14, 25, 27, 30)]
CONTACT_SYNC = str(Path(sys.executable).with_name("contact-sync"))


def build(root: Path, emu: Emulator) -> Path:
    """The CRM with ``USERS`` users who sync, and the configuration that finds them."""
    crm_url = f"sqlite:///{root / 'crm.db'}"
    init_database(crm_url, demo=True)
    engine = sa.create_engine(crm_url)
    try:
        for i in range(1, USERS - 1):  # Lee and Sam are the demo's own two
            add_crm_user(engine, f"UBENCH{i:06d}", first="Bench", last=f"User{i:02d}",
                         email=f"bench{i:02d}@example.com", group_members=EVERYONES)
    finally:
        engine.dispose()
    cfg = root / "contact-sync.toml"
    cfg.write_text(
        f'[crm]\nurl = "{crm_url}"\n\n[outlook]\ngraph_url = "{emu.graph_url}"\ntoken = "bench"\n\n'
        '[state]\nurl = "sqlite:///state.db"\n\n[sync]\ngx_validation = false\n\n'
        "[users_from_crm]\nenabled = true\n\n"
        '[[users]]\ncrm_user = "UDEMOA000001"\nmailbox = "lee@example.com"\n\n'
        '[[users]]\ncrm_user = "UDEMOA000002"\nmailbox = "sam@example.com"\n'
    )
    return cfg


def _tree_cpu_s(pid: int | None) -> float:
    """CPU seconds of a process and its children, the reaped ones included."""
    import psutil

    if pid is None:
        return 0.0
    total = 0.0
    try:
        procs = [psutil.Process(pid)]
        procs += procs[0].children(recursive=True)
    except psutil.Error:
        return 0.0
    for proc in procs:
        try:
            t = proc.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
        except psutil.Error:
            pass
    return total


def _cpu_where(home: Path, server_pid: int | None = None) -> dict[str, float]:
    """CPU so far of the Prefect server (the local one unless ``server_pid``) and of the warm
    processes (which run the commands' cycles in their children: cli/warm.py)."""
    server = server_pid
    if server is None:
        with contextlib.suppress(OSError, ValueError, KeyError):
            server = int(json.loads((home / "contact-sync-server.json").read_text())["pid"])
    warm = 0.0
    for pid_file in home.glob("contact-sync-warm-*.pid"):
        with contextlib.suppress(OSError, ValueError):
            warm += _tree_cpu_s(int(pid_file.read_text()))
    return {"server": _tree_cpu_s(server), "warm": warm}


#: Every request a Prefect server refuses as retryable (503) is logged with this line when
#: PREFECT_API_LOG_RETRYABLE_ERRORS is on (prefect/server/api/server.py).
REFUSED = "Encountered retryable exception in request"


def server_refusals(log_file: Path) -> dict[str, int]:
    """A server's 503 refusals so far, and how many were SQLite's "database is locked"."""
    text = log_file.read_text(errors="replace") if log_file.is_file() else ""
    return {"retryable_503": text.count(REFUSED), "database_is_locked": text.count("database is locked")}


def command(cfg: Path, home: Path, parallel: int | None = None, *, api_url: str | None = None,
            server_pid: int | None = None) -> dict[str, Any]:
    """One `contact-sync sync --json` of every user, timed as a whole process, with the CPU
    seconds it cost: the command's own process, the warm process's child that ran it, and
    the Prefect server's (the local one, or ``api_url``'s, process ``server_pid``)."""
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_API_LOG_RETRYABLE_ERRORS": "true"}
    env.pop("PREFECT_API_URL", None)
    if api_url is not None:
        env["PREFECT_API_URL"] = api_url
    if parallel is not None:
        env["CONTACT_SYNC_SYNC__PARALLEL_USERS"] = str(parallel)
    before, children = _cpu_where(home, server_pid), os.times()
    started = time.perf_counter()
    res = subprocess.run([CONTACT_SYNC, "sync", "--json", "--config", str(cfg)], capture_output=True,
                         text=True, env=env, timeout=1800)
    wall = round(time.perf_counter() - started, 2)
    after, children_after = _cpu_where(home, server_pid), os.times()
    cpu = {
        "command_process": children_after.children_user + children_after.children_system
        - children.children_user - children.children_system,
        "warm_child": max(0.0, after["warm"] - before["warm"]),
        "prefect_server": max(0.0, after["server"] - before["server"]),
    }
    lines = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    statuses: dict[str, int] = {}
    for line in lines:
        statuses[line["status"]] = statuses.get(line["status"], 0) + 1
    writes = sum(n for line in lines for side in line["counts"].values() for n in side.values())
    if res.returncode != 0 or len(lines) != USERS:
        log(f"  exit {res.returncode}, {len(lines)} line(s): {res.stderr[-1500:]}")
    client = cpu["command_process"] + cpu["warm_child"]
    return {"process_wall_s": wall, "exit_code": res.returncode, "users": len(lines), "statuses": statuses,
            "writes": writes, "cpu_s": {k: round(v, 2) for k, v in cpu.items()},
            "cpu_s_per_user": {"client": round(client / USERS, 3), "prefect_server": round(cpu["prefect_server"] / USERS, 3)},
            "load_average": [round(x, 2) for x in os.getloadavg()]}


def against_stock_server(cfg: Path, home: Path, root: Path, emu: Emulator) -> dict[str, Any]:
    """The quiet command of every user (``parallel_users`` 4) against ``prefect server start``
    as Prefect ships it, in a home of its own, named by ``PREFECT_API_URL`` (a configured API
    wins over the local server), after one untimed command; its 503 refusals counted from
    its log."""
    import socket

    from contactsync.cli.prefect_server import healthy

    stock_home = root / "stock-prefect-home"
    stock_home.mkdir()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log_file = stock_home / "server.log"
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(PREFECT_HOME=str(stock_home), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_API_LOG_RETRYABLE_ERRORS="true")
    with open(log_file, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                                 "--port", str(port)], stdout=out, stderr=subprocess.STDOUT, env=env,
                                cwd=str(stock_home), start_new_session=True)
    url = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + 300
        while not healthy(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Prefect's server did not start: {log_file.read_text()[-2000:]}")
            time.sleep(0.5)
        # Untimed first: the warm process (cli/warm.py) starts afresh for other PREFECT_*
        # settings, so the first command against this server runs cold and starts it.
        warm_up = command(cfg, home, api_url=url, server_pid=proc.pid)
        before = server_refusals(log_file)
        emu.reset_stats()
        result = command(cfg, home, api_url=url, server_pid=proc.pid)
        result["warm_up_process_wall_s"] = warm_up["process_wall_s"]
        result["graph_requests"] = emu.stats()["requests"]
        result["server_refusals"] = {k: v - before[k] for k, v in server_refusals(log_file).items()}
        return result
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 15)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=30)


def main() -> int:
    root = Path(tempfile.mkdtemp(prefix="contactsync-fanout-"))
    emu = Emulator(root / "graph.db")
    try:
        cfg = build(root, emu)
        emu.latency(LATENCY_MS)
        home = root / "prefect-home"
        log(f"fan-out bench: {USERS} users, first sync and the settling cycle ...")
        setup = [command(cfg, home), command(cfg, home)]
        log(f"  set-up: {setup[0]['process_wall_s']} s, {setup[1]['process_wall_s']} s")
        local_log = home / "contact-sync-server.log"
        after_setup = server_refusals(local_log)
        emu.reset_stats()
        fan_out = command(cfg, home)
        fan_out["graph_requests"] = emu.stats()["requests"]
        emu.reset_stats()
        two = command(cfg, home, parallel=2)
        two["graph_requests"] = emu.stats()["requests"]
        emu.reset_stats()
        one_by_one = command(cfg, home, parallel=1)
        one_by_one["graph_requests"] = emu.stats()["requests"]
        log(f"  quiet, parallel_users 4: {fan_out['process_wall_s']} s; 2: {two['process_wall_s']} s; "
            f"one at a time: {one_by_one['process_wall_s']} s")
        refusals = {k: v - after_setup[k] for k, v in server_refusals(local_log).items()}  # the 3 quiet commands
        result = {
            "machine": machine(), "users": USERS, "contacts_per_user": len(EVERYONES),
            "set_up": setup,
            "quiet_fan_out_parallel_4": fan_out,
            "quiet_parallel_2": two,
            "quiet_one_at_a_time": one_by_one,
            "ratio_one_at_a_time_over_fan_out": round(one_by_one["process_wall_s"] / fan_out["process_wall_s"], 2),
            "ratio_parallel_2_over_fan_out": round(two["process_wall_s"] / fan_out["process_wall_s"], 2),
            "goal": "50 quiet users in one command in under 30 s",
            "goal_met": fan_out["process_wall_s"] < 30 and fan_out["statuses"] == {"ok": USERS},
            "note": "whole processes against one local Prefect server (started by the first "
                    "set-up command, reused); the load average is taken right after each command",
        }
        if os.environ.get("BENCH_FANOUT_STOCK", "1") != "0":
            stock = against_stock_server(cfg, home, root, emu)
            result["quiet_parallel_4_stock_prefect_server"] = stock
            result["ratio_stock_server_over_local_server"] = round(stock["process_wall_s"] / fan_out["process_wall_s"], 2)
            result["local_server_refusals_in_the_three_quiet_commands"] = refusals
            log(f"  Prefect's server as shipped, parallel_users 4: {stock['process_wall_s']} s, "
                f"refusals {stock['server_refusals']}; the local server's (3 commands): {refusals}")
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "fanout.json").write_text(json.dumps(result, indent=2) + "\n")
        log(f"results in {RESULTS / 'fanout.json'}")
    finally:
        emu.stop()
        subprocess.run([CONTACT_SYNC, "prefect", "stop"], env={**os.environ, "PREFECT_HOME": str(root / "prefect-home")},
                       capture_output=True, timeout=120)
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
