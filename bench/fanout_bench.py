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

Then the anatomy (``BENCH_FANOUT_ANATOMY=0`` skips it; ``python -m bench.fanout_bench
anatomy`` runs it alone): Prefect's own CPU per user without the cycle's work, the fan-out's
thread per user beside the former task run per user, in one process (:func:`anatomy`).

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


def _cpu_where(home: Path) -> dict[str, float]:
    """CPU so far of the local Prefect server and of the warm processes (which run the
    commands' cycles in their children: cli/warm.py)."""
    try:
        server = int(json.loads((home / "contact-sync-server.json").read_text())["pid"])
    except (OSError, ValueError, KeyError):
        server = None
    warm = 0.0
    for pid_file in home.glob("contact-sync-warm-*.pid"):
        with contextlib.suppress(OSError, ValueError):
            warm += _tree_cpu_s(int(pid_file.read_text()))
    return {"server": _tree_cpu_s(server), "warm": warm}


def command(cfg: Path, home: Path, parallel: int | None = None) -> dict[str, Any]:
    """One `contact-sync sync --json` of every user, timed as a whole process, with the CPU
    seconds it cost: the command's own process, the warm process's child that ran it, and
    the local Prefect server's."""
    env = {**os.environ, "PREFECT_HOME": str(home)}
    if parallel is not None:
        env["CONTACT_SYNC_SYNC__PARALLEL_USERS"] = str(parallel)
    before, children = _cpu_where(home), os.times()
    started = time.perf_counter()
    res = subprocess.run([CONTACT_SYNC, "sync", "--json", "--config", str(cfg)], capture_output=True,
                         text=True, env=env, timeout=1800)
    wall = round(time.perf_counter() - started, 2)
    after, children_after = _cpu_where(home), os.times()
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
        if os.environ.get("BENCH_FANOUT_ANATOMY", "1") != "0":
            result["prefect_anatomy"] = anatomy()
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "fanout.json").write_text(json.dumps(result, indent=2) + "\n")
        log(f"results in {RESULTS / 'fanout.json'}")
    finally:
        emu.stop()
        subprocess.run([CONTACT_SYNC, "prefect", "stop"], env={**os.environ, "PREFECT_HOME": str(root / "prefect-home")},
                       capture_output=True, timeout=120)
        shutil.rmtree(root, ignore_errors=True)
    return 0


# --- the anatomy: Prefect's own cost per run, the two ways a user can be fanned out -------
ANATOMY_USERS = 20


def anatomy() -> dict[str, Any]:
    """What Prefect costs per user, without the cycle's work, side by side in one process and
    against one local server: each user an empty ``sync_contacts``-shaped subflow with two
    task runs (a quiet cycle: extract-crm, extract-outlook), fanned out 4 at a time either
    as the fan-out does now (a thread of the fan-out run per user, the subflow called
    directly) or as before (a ``user-cycles`` task run per user holding the subflow); and
    task runs alone. CPU seconds of this process and of the server, per user or task run
    (the server's idle rate, measured before each, taken out)."""
    import contextvars
    import resource
    from concurrent.futures import ThreadPoolExecutor

    from contactsync.cli.prefect_server import read_server, stop_server, use_prefect_api

    home = Path(tempfile.mkdtemp(prefix="contactsync-anatomy-"))
    env_before = {k: os.environ.get(k) for k in ("PREFECT_HOME", "PREFECT_API_URL")}
    os.environ["PREFECT_HOME"] = str(home)
    os.environ.pop("PREFECT_API_URL", None)
    try:
        choice = use_prefect_api()
        from flows.runtime import command_settings

        command_settings(choice.url)
        from prefect import flow, task
        from prefect.cache_policies import NO_CACHE
        from prefect.futures import wait
        from prefect.states import Completed
        from prefect.task_runners import ThreadPoolTaskRunner

        info = read_server(home)
        assert info is not None

        @task(name="step", cache_policy=NO_CACHE, persist_result=False)
        def step(i: int) -> int:
            return i

        @flow(name="anatomy-cycle", flow_run_name="cycle-{user}")
        def cycle(user: str) -> Any:
            step(1)
            step(2)
            return Completed(message="ok", data={"user": user})

        @task(name="anatomy-user", task_run_name="cycles-{user}", cache_policy=NO_CACHE, persist_result=False)
        def wrapped(user: str) -> Any:
            return cycle(user=user, return_state=True)

        @flow(name="anatomy-fan-out")
        def fan(way: str, n: int) -> None:
            users = [f"U{i:03d}" for i in range(n)]
            if way == "task per user":
                with ThreadPoolTaskRunner(max_workers=4) as runner:
                    wait([runner.submit(wrapped, {"user": u}) for u in users])
            elif way == "thread per user":
                with ThreadPoolExecutor(4) as pool:
                    runs = [pool.submit(contextvars.copy_context().run, cycle, user=u, return_state=True) for u in users]
                    for r in runs:
                        r.result()
            else:
                for i in range(n):
                    step(i)

        def client_cpu() -> float:
            r = resource.getrusage(resource.RUSAGE_SELF)
            return r.ru_utime + r.ru_stime

        fan("thread per user", 2)  # warm-up: the flows registered, the connections open
        out: dict[str, Any] = {"users": ANATOMY_USERS, "parallel": 4}
        for way in ("thread per user", "task per user", "task runs only"):
            s0 = _tree_cpu_s(info.pid)
            time.sleep(5)
            idle = (_tree_cpu_s(info.pid) - s0) / 5
            s0, c0, t0 = _tree_cpu_s(info.pid), client_cpu(), time.perf_counter()
            fan(way, ANATOMY_USERS)
            wall, c1 = time.perf_counter() - t0, client_cpu()
            time.sleep(5)  # the server records task runs from their events a little later
            server = _tree_cpu_s(info.pid) - s0 - idle * (time.perf_counter() - t0)
            unit = "per task run" if way == "task runs only" else "per user"
            out[way] = {"wall_s": round(wall, 2), f"client_cpu_s_{unit.replace(' ', '_')}": round((c1 - c0) / ANATOMY_USERS, 3),
                        f"server_cpu_s_{unit.replace(' ', '_')}": round(server / ANATOMY_USERS, 3),
                        "server_idle_cpu_s_per_s": round(idle, 3), "load_average": [round(x, 2) for x in os.getloadavg()]}
            log(f"  anatomy, {way}: {out[way]}")
        a, b = out["task per user"], out["thread per user"]
        out["ratio_task_over_thread"] = {
            "client": round(a["client_cpu_s_per_user"] / max(b["client_cpu_s_per_user"], 1e-6), 2),
            "server": round(a["server_cpu_s_per_user"] / max(b["server_cpu_s_per_user"], 1e-6), 2),
        }
        return out
    finally:
        stop_server(home)
        for k, v in env_before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    if sys.argv[1:] == ["anatomy"]:  # the anatomy alone, into the results: python -m bench.fanout_bench anatomy
        path = RESULTS / "fanout.json"
        results = json.loads(path.read_text()) if path.exists() else {}
        results["prefect_anatomy"] = anatomy()
        path.write_text(json.dumps(results, indent=2) + "\n")
        sys.exit(0)
    sys.exit(main())
