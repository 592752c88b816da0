"""A quiet `contact-sync sync` as a user runs it, against a naive script (issue 16 item 1).

Both are timed as whole processes, side by side in one run, in turn (A B A B ...), and
compared run by run as ratios (command / naive), so a drift of this shared machine's
speed hits both alike:

- A: ``contact-sync sync --config ...`` as a user runs it, for one user whose 2,000
  contacts are already in step (a quiet cycle: nothing to write): by default served by the
  warm process (contactsync/cli/warm.py) that the first command started, through the
  Prefect flow and the local Prefect server that the commands start once and reuse
  (contactsync/cli/prefect_server.py);
- P: the same command with ``CONTACT_SYNC_WARM=0``: the plain path, the command's own
  process imports Prefect and the rest;
- B: :mod:`bench.naive_quiet`: what a user would write to check the same: list the whole
  Outlook folder (pages of 999) and compare it with the CRM sync group read in one query.

The Graph emulator runs in its own process with 50 ms added to every answer. Before the
pairs, the local server is stopped and one command is timed alone: the first command
after a boot, which pays the server's start (its database already exists). Load averages
are recorded before and after: other work on the machine shows in them.

``python -m bench.command_bench`` (also run by ``make bench`` unless ``BENCH_COMMAND=0``): results in
``bench/results/command.json``.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.harness import LATENCY_MS, RESULTS, UNLIMITED, USER, Emulator, build, log

N = int(os.environ.get("BENCH_COMMAND_N", "2000"))
PAIRS = int(os.environ.get("BENCH_COMMAND_PAIRS", "7"))
WARMUP = 1
GOAL_RATIO = 2.0
CLI = [str(Path(sys.executable).with_name("contact-sync"))]


def timed(cmd: list[str], env: dict[str, str]) -> dict[str, Any]:
    """One whole process: wall time from fork to reap, and its CPU from the kernel."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate()
    wall = time.perf_counter() - t0
    return {"wall_s": round(wall, 3), "rc": proc.returncode, "stdout": out[-2000:], "stderr": err[-2000:]}


def _children_cpu() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def timed_cpu(cmd: list[str], env: dict[str, str]) -> dict[str, Any]:
    """:func:`timed` plus the CPU seconds of the reaped process (RUSAGE_CHILDREN grows by it)."""
    before = _children_cpu()
    result = timed(cmd, env)
    result["cpu_s"] = round(_children_cpu() - before, 3)
    return result


def _summary(values: list[float]) -> dict[str, float]:
    return {"min": round(min(values), 3), "median": round(statistics.median(values), 3), "max": round(max(values), 3)}


def main() -> int:
    RESULTS.mkdir(exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="contactsync-command-bench-"))
    home = root / "prefect-home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env.update(PREFECT_HOME=str(home))
    emu = Emulator(root / "graph.db")
    emu.limits(requests_per_window=UNLIMITED, window_s=600.0)
    try:
        log(f"command bench: {N} contacts")
        ds = build(root, emu, N, "command")
        cfg = str(ds.config)
        sync = [*CLI, "sync", "--config", cfg]
        naive = [sys.executable, "-m", "bench.naive_quiet", ds.crm_url, emu.graph_url, ds.upn, USER]
        log("first sync (bulk load, --force past the guard R16) and its echo; starts the local server")
        for args in ([*sync, "--force"], sync):
            r = timed(args, env)
            if r["rc"] != 0:
                raise RuntimeError(f"set-up sync failed: {r['stderr']}")
        emu.latency(LATENCY_MS)
        subprocess.run([*CLI, "prefect", "stop"], env=env, check=True, capture_output=True)
        after_boot = timed_cpu(sync, env)
        log(f"first command after a boot (starts the server): {after_boot['wall_s']} s")
        plain_env = {**env, "CONTACT_SYNC_WARM": "0"}
        deadline = time.monotonic() + 300  # the command after the boot started the warm process
        while not list(home.glob("contact-sync-warm-*.sock")) and time.monotonic() < deadline:
            time.sleep(0.5)
        load_before = os.getloadavg()
        for _ in range(WARMUP):
            timed(sync, env), timed(sync, plain_env), timed(naive, env)
        pairs = []
        for k in range(PAIRS):
            a, p, b = timed_cpu(sync, env), timed_cpu(sync, plain_env), timed_cpu(naive, env)
            if a["rc"] or p["rc"] or b["rc"]:
                raise RuntimeError(f"round {k}: rc {a['rc']}/{p['rc']}/{b['rc']}: {a['stderr']} {p['stderr']} {b['stderr']}")
            pairs.append({"command": a, "plain": p, "naive": b, "ratio": round(a["wall_s"] / b["wall_s"], 3),
                          "plain_ratio": round(p["wall_s"] / b["wall_s"], 3)})
            log(f"  round {k}: command {a['wall_s']} s, plain {p['wall_s']} s, naive {b['wall_s']} s; "
                f"ratios {pairs[-1]['ratio']} / {pairs[-1]['plain_ratio']}")
        load_after = os.getloadavg()
        naive_out = json.loads(pairs[-1]["naive"]["stdout"].strip().splitlines()[-1])
        quiet_line = pairs[-1]["command"]["stdout"].strip().splitlines()[-1]
        ratio = _summary([p["ratio"] for p in pairs])
        plain_ratio = _summary([p["plain_ratio"] for p in pairs])
        result = {
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "n_contacts": N, "latency_ms": LATENCY_MS, "pairs": PAIRS, "warmup": WARMUP,
            "command": "contact-sync sync --config CFG (one user, quiet; the default: the warm process serves it)",
            "plain": "the same with CONTACT_SYNC_WARM=0 (the command's own process does it all)",
            "naive": "python -m bench.naive_quiet (list the folder, compare with the CRM group)",
            "command_wall_s": _summary([p["command"]["wall_s"] for p in pairs]),
            "plain_wall_s": _summary([p["plain"]["wall_s"] for p in pairs]),
            "naive_wall_s": _summary([p["naive"]["wall_s"] for p in pairs]),
            "command_client_cpu_s": _summary([p["command"]["cpu_s"] for p in pairs]),
            "plain_cpu_s": _summary([p["plain"]["cpu_s"] for p in pairs]),
            "naive_cpu_s": _summary([p["naive"]["cpu_s"] for p in pairs]),
            "ratio_command_over_naive": ratio, "goal_ratio": GOAL_RATIO,
            "meets_goal": ratio["median"] <= GOAL_RATIO,
            "ratio_plain_over_naive": plain_ratio, "plain_meets_goal": plain_ratio["median"] <= GOAL_RATIO,
            "note": "command_client_cpu_s is the calling process only; the warm process's child does the work",
            "first_after_boot_wall_s": after_boot["wall_s"],
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in load_after],
            "cores": os.cpu_count(),
            "naive_compared": naive_out, "command_last_line": quiet_line,
        }
        (RESULTS / "command.json").write_text(json.dumps(result, indent=2) + "\n")
        log(f"median ratios: command {ratio['median']}, plain {plain_ratio['median']} (goal <= {GOAL_RATIO}); "
            f"results in {RESULTS / 'command.json'}")
    finally:
        subprocess.run([*CLI, "prefect", "stop"], env=env, capture_output=True)  # stop what we started
        emu.stop()
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
