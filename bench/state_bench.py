"""State-store benchmark: `python -m bench.state_bench` -> bench/results/state.json.

What every cycle that cannot settle pays at 100,000 linked contacts (issue 15, goal 2):
reading the user's links and Outlook mirror, and writing back 1 % changed rows of each;
and what a first sync's Outlook load costs the store in memory (goal 3): 25,000 written
contacts saved into a 75,000-row mirror in the recorder's rounds of 200, which compact
the delta into the base several times while the cycle holds both sides.

Side by side in one run: this tree ("new") and the ``contactsync/`` of git ref
``--before`` ("old", default the main of this round's start), each in a child process of
its own (a fresh interpreter: imports, allocator and peak are its own) on the same data,
each step in a fresh SQLite file; best of ``--repeat``; CPU seconds, and for the rounds
the peak of memory the Python allocators saw (``tracemalloc``, numpy's arrays included)
and the process's peak RSS. The load average is recorded: the machine is shared, so read
the CPU seconds and the ratios, not the walls.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

RESULTS = Path(__file__).parent / "results" / "state.json"
BEFORE_REF = "ac65e3d"  # main before the sixth round (state6: the delta as columnar segments)
USER, FOLDER = "ULEE00000001", "AAMkFolder=="
ROOT = Path(__file__).resolve().parent.parent


def data(n: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """n links (snapshots) and the n mirror rows of their Outlook contacts, with the
    repetition real folders have (27 companies, 300 cities, 40 job titles)."""
    from contactsync.model import FIELDS, OUTLOOK_COLUMNS
    from contactsync.plan.schema import SNAPSHOT_COLUMNS

    i = pd.RangeIndex(n).astype(str).astype(object)
    k = pd.RangeIndex(n)
    snaps = pd.DataFrame({"crm_id": "CSYNC" + i.str.zfill(7), "outlook_id": "AAMkAGI2" + i.str.zfill(120) + "="},
                         dtype=object)
    values = {"first_name": "First " + i, "last_name": "Last " + i, "email1": "p" + i + "@example.com",
              "street": i + " Main Street", "work_phone": "+1 555 " + (k % 10_000).astype(str).astype(object),
              "company": "Company " + (k % 27).astype(str).astype(object),
              "city": "City " + (k % 300).astype(str).astype(object),
              "job_title": "Title " + (k % 40).astype(str).astype(object)}
    for f in FIELDS:
        snaps[f] = pd.Series(values[f], dtype=object) if f in values else None
    snaps["status"] = "active"
    snaps = snaps.reindex(columns=list(SNAPSHOT_COLUMNS)).astype(object)
    mirror = snaps.drop(columns=["crm_id", "new_key", "status"]).assign(
        change_key="EQAAABYAAAA" + i, crm_tag=snaps["crm_id"].where(k % 4 != 1, None),
        outlook_created=pd.Timestamp("2026-01-01", tz="UTC"),
        outlook_modified=pd.Timestamp("2026-06-01 10:00", tz="UTC"))
    return snaps.where(snaps.notna(), None), mirror.reindex(columns=list(OUTLOOK_COLUMNS))


def _cpu(run: Callable[[], object]) -> float:
    started = time.process_time()
    run()
    return time.process_time() - started


def measure(n: int, repeat: int) -> dict[str, object]:
    """Every step in this process's code (the child of one way)."""
    from contactsync.state import StateStore

    snaps, mirror = data(n)
    best: dict[str, float] = {}
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as tmp:
            store = StateStore(f"sqlite:///{Path(tmp) / 'state.db'}")
            try:
                run = _one_run(store, snaps, mirror)
            finally:
                store.close()
        best = {s: round(min(best.get(s, 1e9), v), 3) for s, v in run.items()}
    return {"cpu_s": best, **first_sync_rounds(mirror, StateStore)}


def _one_run(store: object, snaps: pd.DataFrame, mirror: pd.DataFrame) -> dict[str, float]:
    s: Any = store
    k = max(1, len(snaps) // 100)
    run = {
        "first_save_links": _cpu(lambda: s.save_pairs(USER, snaps)),
        "first_save_mirror": _cpu(lambda: s.save_outlook(USER, FOLDER, "t1", frame=mirror, full=True)),
        "load_links": _cpu(lambda: s.load_links(USER)),
        "load_mirror": _cpu(lambda: s.load_outlook(USER, FOLDER)),
        "save_1pct_links": _cpu(lambda: s.save_pairs(USER, snaps.iloc[::100][:k].assign(job_title="edited"))),
        "save_1pct_mirror": _cpu(lambda: s.save_outlook(
            USER, FOLDER, "t2", changed=mirror.iloc[1::100][:k].assign(job_title="edited"))),
        "load_links_after_1pct": _cpu(lambda: s.load_links(USER)),
        "load_mirror_after_1pct": _cpu(lambda: s.load_outlook(USER, FOLDER)),
    }
    assert (s.load_links(USER)["job_title"] == "edited").sum() == k
    return run


def first_sync_rounds(mirror: pd.DataFrame, store_cls: type) -> dict[str, object]:
    """A first sync's mirror saves: the full read of 3/4 of the folder, then the other 1/4
    (the contacts the sync creates) in rounds of 200, as cycle/record.py saves them. Run
    twice: for the CPU, then under ``tracemalloc`` for the peak (which slows allocation)."""
    out: dict[str, object] = {}
    for traced in (False, True):
        n = len(mirror)
        read, written = mirror.iloc[: 3 * n // 4], mirror.iloc[3 * n // 4 :]
        with tempfile.TemporaryDirectory() as tmp:
            store = store_cls(f"sqlite:///{Path(tmp) / 'state.db'}")
            try:
                store.save_outlook(USER, FOLDER, "t1", frame=read, full=True)
                if traced:
                    tracemalloc.start()
                    base = tracemalloc.get_traced_memory()[0]
                started, slowest = time.process_time(), 0.0
                for at in range(0, len(written), 200):
                    one = time.process_time()
                    store.save_outlook(USER, FOLDER, "t1", changed=written.iloc[at : at + 200])
                    slowest = max(slowest, time.process_time() - one)
                if traced:
                    out["traced_peak_mb"] = round((tracemalloc.get_traced_memory()[1] - base) / 2**20, 1)
                    tracemalloc.stop()
                else:
                    out.update(rounds=-(-len(written) // 200), cpu_s=round(time.process_time() - started, 3),
                               slowest_round_cpu_s=round(slowest, 3))
                assert len(store.load_outlook(USER, FOLDER)[1]) == n
            finally:
                store.close()
    return {"first_sync_rounds": out,
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def _child(code: Path, n: int, repeat: int) -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": str(code)}
    proc = subprocess.run([sys.executable, "-m", "bench.state_bench", "_measure", str(n), str(repeat)],
                          capture_output=True, text=True, cwd=code, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"state bench child ({code}) failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def old_code(ref: str, into: Path) -> Path:
    """The ref's ``contactsync/`` with this bench module beside it."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "contactsync"],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    (into / "bench").mkdir()
    shutil.copy2(Path(__file__), into / "bench" / "state_bench.py")
    (into / "bench" / "__init__.py").write_text("")
    return into


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--before", default=BEFORE_REF)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        ways = {"new": ROOT, **({"old": old_code(args.before, Path(tmp))} if args.before else {})}
        runs = {way: _child(code, args.n, args.repeat) for way, code in ways.items()}
    report: dict[str, object] = {
        "what": "issue 15 goals 2 and 3: the state store's loads and saves at N linked contacts, and a first "
                "sync's mirror saves in rounds of 200; this tree ('new') beside --before ('old'), each in a child",
        "how_to_run": "python -m bench.state_bench  [-n 100000] [--before REF]",
        "contacts": args.n, "before_ref": args.before or None,
        "load_average_at_start": [round(x, 2) for x in load_start],
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "python": sys.version.split()[0],
        "results": runs,
    }
    if "old" in runs:
        old, new = runs["old"], runs["new"]
        report["ratio_old_over_new"] = {
            **{s: round(old["cpu_s"][s] / max(new["cpu_s"][s], 1e-3), 2) for s in new["cpu_s"]},
            "first_sync_rounds_cpu": round(old["first_sync_rounds"]["cpu_s"]
                                           / max(new["first_sync_rounds"]["cpu_s"], 1e-3), 2),
            "first_sync_rounds_traced_peak": round(old["first_sync_rounds"]["traced_peak_mb"]
                                                   / max(new["first_sync_rounds"]["traced_peak_mb"], 0.1), 2),
        }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    for step in runs["new"]["cpu_s"]:
        line = f"{step:>24}: new {runs['new']['cpu_s'][step]:.3f} s CPU"
        if "old" in runs:
            line += f", old {runs['old']['cpu_s'][step]:.3f} s, x{report['ratio_old_over_new'][step]}"
        print(line)
    for way, r in runs.items():
        print(f"{way}: first sync's rounds {r['first_sync_rounds']}, peak RSS {r['peak_rss_mb']} MB")
    print(f"load average {report['load_average_at_start']} -> {report['load_average_at_end']}; -> {args.out}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_measure":
        print(json.dumps(measure(int(sys.argv[2]), int(sys.argv[3]))))
        raise SystemExit(0)
    raise SystemExit(main())
