"""50 quiet users in one command (issue 16 item 3): ``python -m bench.fanout_bench``.

The demo CRM plus 48 more users, each owning a contact sync group of the demo's seven
"Everyone" contacts, found in the CRM by ``[users_from_crm]`` (50 users, two of them
configured); the Graph emulator in its own process with 50 ms latency per request. After
two set-up commands (the first sync, then the quiet cycle that settles, R17), the same
quiet ``contact-sync sync --json`` of all 50 users is timed as a whole process, side by
side: the fan-out as configured (``sync.parallel_users`` = 4, the default) and one user at
a time (``parallel_users`` = 1, as before the fan-out). Both start Prefect the same way
(the commands' own API), so the ratio is the fan-out's. Goal: under 30 s on this 2-core
machine. The load average is recorded with the figures (other work shares the machine).

Results: ``bench/results/fanout.json``.
"""

from __future__ import annotations

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


def command(cfg: Path, home: Path, parallel: int | None = None) -> dict[str, Any]:
    """One `contact-sync sync --json` of every user, timed as a whole process."""
    env = {**os.environ, "PREFECT_HOME": str(home)}
    if parallel is not None:
        env["CONTACT_SYNC_SYNC__PARALLEL_USERS"] = str(parallel)
    started = time.perf_counter()
    res = subprocess.run([CONTACT_SYNC, "sync", "--json", "--config", str(cfg)], capture_output=True,
                         text=True, env=env, timeout=1800)
    wall = round(time.perf_counter() - started, 2)
    lines = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    statuses: dict[str, int] = {}
    for line in lines:
        statuses[line["status"]] = statuses.get(line["status"], 0) + 1
    writes = sum(n for line in lines for side in line["counts"].values() for n in side.values())
    if res.returncode != 0 or len(lines) != USERS:
        log(f"  exit {res.returncode}, {len(lines)} line(s): {res.stderr[-1500:]}")
    return {"process_wall_s": wall, "exit_code": res.returncode, "users": len(lines), "statuses": statuses,
            "writes": writes, "load_average": [round(x, 2) for x in os.getloadavg()]}


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
        one_by_one = command(cfg, home, parallel=1)
        one_by_one["graph_requests"] = emu.stats()["requests"]
        log(f"  quiet, parallel_users 4: {fan_out['process_wall_s']} s; one at a time: "
            f"{one_by_one['process_wall_s']} s")
        result = {
            "machine": machine(), "users": USERS, "contacts_per_user": len(EVERYONES),
            "set_up": setup,
            "quiet_fan_out_parallel_4": fan_out,
            "quiet_one_at_a_time": one_by_one,
            "ratio_one_at_a_time_over_fan_out": round(one_by_one["process_wall_s"] / fan_out["process_wall_s"], 2),
            "goal": "50 quiet users in one command in under 30 s",
            "goal_met": fan_out["process_wall_s"] < 30 and fan_out["statuses"] == {"ok": USERS},
            "note": "whole processes against one local Prefect server (started by the first "
                    "set-up command, reused); the load average is taken right after each command",
        }
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
