"""glibc's malloc settings against the whole first sync's peak RSS (issue 15 goal 3).

``python -m bench.allocator_bench`` (``--base``, the commit without the in-process setting,
default the one before it; ``--n``, default 100,000).

One run, each arm in a fresh child process from a fresh copy of the same data (the whole
first sync of ``bench.plan_bench --whole-first-sync``: ``bench.cycles_bench``'s seeded
100,000 people, window lifted, no latency, the steps one after another, the default
install without pyarrow):

- ``base, glibc defaults``: the code at ``--base``, which sets nothing;
- ``base, MALLOC_*``: the same code with glibc's environment variables
  (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_ARENA_MAX``), the grid that chose the settings;
- ``this tree``: ``contactsync.cycle.memory.tune_allocator``, which sets the chosen ones
  in-process at the cycle's start.

For each: peak RSS (VmHWM), RSS after each step, and the steps' CPU seconds, so the memory
won and the CPU paid stand side by side. Results: ``bench/results/allocator.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import cycles_bench as cb
from bench.harness import RESULTS, ROOT, UNLIMITED, Emulator, log, machine

#: (arm, environment) of the base code; the last arm is this tree with no variable set.
GRID: tuple[tuple[str, dict[str, str]], ...] = (
    ("base, glibc defaults", {}),
    ("base, MALLOC_MMAP_THRESHOLD_=262144", {"MALLOC_MMAP_THRESHOLD_": "262144"}),
    ("base, MALLOC_MMAP_THRESHOLD_=131072", {"MALLOC_MMAP_THRESHOLD_": "131072"}),
    ("base, MALLOC_ARENA_MAX=1", {"MALLOC_ARENA_MAX": "1"}),
    ("base, MALLOC_MMAP_THRESHOLD_=262144 MALLOC_ARENA_MAX=1",
     {"MALLOC_MMAP_THRESHOLD_": "262144", "MALLOC_ARENA_MAX": "1"}),
    ("base, MALLOC_MMAP_THRESHOLD_=131072 MALLOC_ARENA_MAX=1",
     {"MALLOC_MMAP_THRESHOLD_": "131072", "MALLOC_ARENA_MAX": "1"}),
    ("base, MALLOC_MMAP_THRESHOLD_=65536 MALLOC_ARENA_MAX=1",
     {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_ARENA_MAX": "1"}),
    ("base, MALLOC_MMAP_THRESHOLD_=131072 MALLOC_ARENA_MAX=2",
     {"MALLOC_MMAP_THRESHOLD_": "131072", "MALLOC_ARENA_MAX": "2"}),
)
THIS_TREE = "this tree (tune_allocator)"
_MALLOC_VARS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_ARENA_MAX", "MALLOC_TRIM_THRESHOLD_")


def _parent_commit() -> str:
    """The commit before the one that set the allocator up in-process."""
    out = subprocess.run(["git", "log", "-n", "1", "--format=%H", "-S", "def tune_allocator",
                          "--", "contactsync/cycle/memory.py"], cwd=ROOT.parent, capture_output=True,
                         text=True, check=True).stdout.strip()
    return f"{out}~1" if out else "HEAD"


def _arm(code: Path, folder: Path, cache: Path, upn: str, extra: dict[str, str]) -> dict[str, Any]:
    folder.mkdir()
    for name in ("crm.db", "graph.db"):
        shutil.copy2(cache / name, folder / name)
    saved = {k: os.environ.pop(k) for k in _MALLOC_VARS if k in os.environ}
    os.environ.update(extra)
    emu = Emulator(folder / "graph.db")
    try:
        emu.limits(requests_per_window=UNLIMITED, window_s=600.0)
        r = cb._child(code, cb._config(folder, emu.graph_url, upn), None, arrow=False)
    finally:
        emu.stop()
        for k in extra:
            os.environ.pop(k, None)
        os.environ.update(saved)
        shutil.rmtree(folder, ignore_errors=True)
    return {"peak_rss_mb": r["peak_rss_mb"], "rss_mb_at_start": r.get("rss_mb_at_start"),
            "rss_mb_after_step": r.get("rss_mb_after_step"), "steps_cpu_s": r.get("steps_cpu_s"),
            "cycle_cpu_s": r.get("cycle_cpu_s"), "counts": r.get("counts"), "errors": r.get("errors")}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--base", default="", help="the commit without the in-process setting")
    args = parser.parse_args(argv)
    base = args.base or _parent_commit()
    cache = cb.seeded_cache(args.n)
    upn = json.loads((cache / "manifest.json").read_text())["upn"]
    work = Path(tempfile.mkdtemp(prefix="allocator-bench-"))
    load_before = list(os.getloadavg())
    arms: dict[str, dict[str, Any]] = {}
    try:
        base_code = cb.old_code(base, work / "base-code")
        for i, (name, extra) in enumerate((*GRID, (THIS_TREE, {}))):
            code = ROOT.parent if name == THIS_TREE else base_code
            log(f"allocator: {name} ...")
            arms[name] = _arm(code, work / f"arm{i}", cache, upn, extra)
            log(f"  peak RSS {arms[name]['peak_rss_mb']} MB, steps' CPU {arms[name]['cycle_cpu_s']} s")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    defaults = arms["base, glibc defaults"]
    table = {name: {"peak_rss_mb": a["peak_rss_mb"],
                    "peak_saved_mb": round(defaults["peak_rss_mb"] - a["peak_rss_mb"], 1),
                    "steps_cpu_s": a["cycle_cpu_s"],
                    "cpu_ratio_over_defaults": round(a["cycle_cpu_s"] / defaults["cycle_cpu_s"], 3)}
             for name, a in arms.items()}
    result = {
        "what": "issue 15 goal 3: glibc malloc settings against the whole first sync's peak RSS "
                f"at {args.n:,} contacts, default install, one run",
        "how_to_run": "python -m bench.allocator_bench  (--base, --n)",
        "base": base, "machine": machine(), "goal_mb": 500,
        "load_average_before": load_before, "load_average_after": list(os.getloadavg()),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "table": table, "arms": arms,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "allocator.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    for name, row in table.items():
        print(f"{name:60s} {row['peak_rss_mb']:7.1f} MB ({row['peak_saved_mb']:+.1f}), "
              f"CPU {row['steps_cpu_s']} s (x{row['cpu_ratio_over_defaults']})")
    return result


if __name__ == "__main__":
    main()
