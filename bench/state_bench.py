"""State-store benchmark: `python -m bench.state_bench` -> bench/results/state.json.

What every cycle that cannot settle pays at 100,000 linked contacts (issue 15, goal 2):
reading the user's links and Outlook mirror, and writing back 1 % changed rows of each.
Side by side in one run: today's store (columnar base + delta, contactsync.state.blobs)
and the row store at git ref ``--before`` (the single-module contactsync/state.py,
imported beside today's from git), alternately on the same data, each in a fresh SQLite
file; best of ``--repeat``, wall and CPU; the load average is recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from contactsync.model import FIELDS, OUTLOOK_COLUMNS
from contactsync.plan.schema import SNAPSHOT_COLUMNS
from contactsync.state import StateStore

RESULTS = Path(__file__).parent / "results" / "state.json"
BEFORE_REF = "610c796"
USER, FOLDER = "ULEE00000001", "AAMkFolder=="


def store_at(ref: str) -> type | None:
    """The StateStore class of contactsync/state.py at ``ref`` (a module of its own)."""
    root = Path(__file__).resolve().parent.parent
    try:
        code = subprocess.run(["git", "-C", str(root), "show", f"{ref}:contactsync/state.py"],
                              capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    module = types.ModuleType(f"_state_{ref}")
    sys.modules[module.__name__] = module  # dataclasses look their module up
    exec(compile(code, f"{ref}:contactsync/state.py", "exec"), module.__dict__)  # noqa: S102
    return module.StateStore


def data(n: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """n links (snapshots) and the n mirror rows of their Outlook contacts."""
    i = pd.RangeIndex(n).astype(str)
    snaps = pd.DataFrame({"crm_id": "CSYNC" + i.str.zfill(7), "outlook_id": "AAMkAGI2" + i.str.zfill(9) + "="})
    for f in FIELDS:
        snaps[f] = (f + " " + i) if f in ("first_name", "last_name", "email1", "company", "job_title",
                                         "city", "work_phone", "street", "postal_code") else None
    snaps = snaps.reindex(columns=list(SNAPSHOT_COLUMNS)).astype(object)
    mirror = snaps.drop(columns=["crm_id", "new_key", "status"]).assign(
        change_key="EQAAABYAAAA", crm_tag=snaps["crm_id"],
        outlook_created=pd.Timestamp("2026-01-01", tz="UTC"),
        outlook_modified=pd.Timestamp("2026-06-01 10:00", tz="UTC"))
    return snaps.where(snaps.notna(), None), mirror.reindex(columns=list(OUTLOOK_COLUMNS))


def _timed(run: Callable[[], object]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    return time.perf_counter() - wall, time.process_time() - cpu


def measure(store_cls: type, snaps: pd.DataFrame, mirror: pd.DataFrame, folder: Path) -> dict[str, tuple[float, float]]:
    store = store_cls(f"sqlite:///{folder / 'state.db'}")
    try:
        out = {
            "first_save_links": _timed(lambda: store.save_pairs(USER, snaps)),
            "first_save_mirror": _timed(lambda: store.save_outlook(USER, FOLDER, "t1", frame=mirror, full=True)),
            "load_links": _timed(lambda: store.load_links(USER)),
            "load_mirror": _timed(lambda: store.load_outlook(USER, FOLDER)),
        }
        k = max(1, len(snaps) // 100)
        edited = snaps.iloc[::100][:k].assign(job_title="edited")
        out["save_1pct_links"] = _timed(lambda: store.save_pairs(USER, edited))
        out["save_1pct_mirror"] = _timed(lambda: store.save_outlook(
            USER, FOLDER, "t2", changed=mirror.iloc[1::100][:k].assign(job_title="edited")))
        out["load_links_after_1pct"] = _timed(lambda: store.load_links(USER))
        out["load_mirror_after_1pct"] = _timed(lambda: store.load_outlook(USER, FOLDER))
        assert (store.load_links(USER)["job_title"] == "edited").sum() == k
    finally:
        store.close()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--before", default=BEFORE_REF)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    ways: dict[str, type] = {"after": StateStore}
    before = store_at(args.before) if args.before else None
    if before is not None:
        ways["before"] = before
    snaps, mirror = data(args.n)
    load_start = os.getloadavg()
    runs: dict[str, list[dict[str, tuple[float, float]]]] = {w: [] for w in ways}
    for _ in range(args.repeat):
        for way, cls in ways.items():
            with tempfile.TemporaryDirectory() as tmp:
                runs[way].append(measure(cls, snaps, mirror, Path(tmp)))
    best = {w: {step: {"seconds": round(min(r[step][0] for r in rs), 3),
                       "cpu_seconds": round(min(r[step][1] for r in rs), 3)} for step in rs[0]}
            for w, rs in runs.items()}
    report: dict[str, object] = {
        "contacts": args.n, "before_ref": args.before if before is not None else None,
        "load_average_at_start": [round(x, 2) for x in load_start],
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "python": sys.version.split()[0],
        "results": best,
    }
    if "before" in best:
        report["ratio_before_over_after"] = {
            step: round(best["before"][step]["seconds"] / max(best["after"][step]["seconds"], 1e-9), 2)
            for step in best["after"]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    for step in best["after"]:
        line = f"{step:>24}: after {best['after'][step]['seconds']:.3f} s"
        if "before" in best:
            line += f", before {best['before'][step]['seconds']:.3f} s, ratio {report['ratio_before_over_after'][step]}"
        print(line)
    print(f"load average {report['load_average_at_start']} -> {report['load_average_at_end']}; -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
