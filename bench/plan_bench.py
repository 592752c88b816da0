"""Planning benchmark: `python -m bench.plan_bench` -> bench/results/plan.json.

Two scenarios of 100,000 contacts (goal: each plan < 1 s, peak memory < 1 GB):
- ``steady``: 100,000 linked pairs, 1 % changed in CRM and another 1 % in Outlook
  (0.1 % of them on the same field of the same pair: conflicts);
- ``first_sync``: 100,000 unlinked CRM group members and 100,000 Outlook contacts, half
  of which are the same people as CRM contacts (same email, upper-cased for half of
  them; 10 % with an empty field, 5 % with a conflicting one), the rest created on both
  sides (R4, R5).
Timing is the best of ``--repeat`` runs; memory is the process's peak RSS during one more
run (sampled every 5 ms; the inputs are already loaded) and the tracemalloc peak of the
planning's own allocations in another.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import psutil

from contactsync.model import CRM_COLUMNS, FIELDS, OUTLOOK_COLUMNS, conform
from contactsync.plan import LINK_COLUMNS, PlanInputs, PlanSettings, plan_cycle

RESULTS = Path(__file__).parent / "results" / "plan.json"
T0 = pd.Timestamp("2026-01-01T00:00:00Z")


def _values(n: int, prefix: str, seed: int) -> dict[str, np.ndarray]:
    """Plausible field values for n contacts, built column-wise."""
    rng = np.random.default_rng(seed)
    i = np.arange(n).astype(str).astype(object)
    pick = rng.integers(0, 1000, n).astype(str).astype(object)
    cols: dict[str, np.ndarray] = {}
    for f in FIELDS:
        cols[f] = (f + "-" + pick).astype(object)
    cols["first_name"] = ("First" + i).astype(object)
    cols["last_name"] = ("Last" + pick).astype(object)
    cols["email1"] = (prefix + i + "@example.com").astype(object)
    cols["email2"] = np.full(n, None, dtype=object)
    cols["email3"] = np.full(n, None, dtype=object)
    cols["company"] = ("Company " + (rng.integers(0, 5000, n)).astype(str)).astype(object)
    cols["birthday"] = np.full(n, "1980-01-01", dtype=object)
    return cols


def _times(n: int, seed: int) -> pd.DatetimeIndex:
    rng = np.random.default_rng(seed)
    return T0 + pd.to_timedelta(rng.integers(0, 10_000, n), unit="m")


def steady_inputs(n: int = 100_000, share: float = 0.01) -> PlanInputs:
    values = _values(n, "c", 1)
    crm_ids = ("C" + np.arange(n).astype(str)).astype(object)
    olk_ids = ("O" + np.arange(n).astype(str)).astype(object)
    links = pd.DataFrame({"crm_id": crm_ids, "outlook_id": olk_ids, "status": "active",
                          **values})
    crm_vals = {f: v.copy() for f, v in values.items()}
    olk_vals = {f: v.copy() for f, v in values.items()}
    rng = np.random.default_rng(7)
    k = int(n * share)
    c_rows = rng.choice(n, k, replace=False)
    o_rows = rng.choice(n, k, replace=False)
    crm_vals["job_title"][c_rows] = "New CRM title"
    olk_vals["mobile_phone"][o_rows] = "+1 555 0100"
    both = c_rows[: k // 10]
    olk_vals["job_title"][both] = "New Outlook title"  # conflicts (R9)
    crm = pd.DataFrame({"crm_id": crm_ids, "crm_modified": _times(n, 2), "in_group": True,
                        "read_only": False, **crm_vals})
    outlook = pd.DataFrame({"outlook_id": olk_ids, "outlook_modified": _times(n, 3),
                            "outlook_created": _times(n, 4), "crm_tag": crm_ids, **olk_vals})
    return PlanInputs(crm=conform(crm, CRM_COLUMNS), outlook=conform(outlook, OUTLOOK_COLUMNS),
                      links=conform(links, LINK_COLUMNS))


def first_sync_inputs(n: int = 100_000, matching: float = 0.5) -> PlanInputs:
    crm_vals = _values(n, "c", 1)
    olk_vals = _values(n, "o", 2)
    m = int(n * matching)
    for f in FIELDS:  # half are the same people, already in both systems (R7)
        olk_vals[f][:m] = crm_vals[f][:m]
    olk_vals["email1"][: m // 2] = np.char.upper(olk_vals["email1"][: m // 2].astype(str))
    olk_vals["mobile_phone"][: m // 10] = None  # 10 % filled from CRM by the merge
    olk_vals["job_title"][: m // 20] = "Outlook title"  # 5 % conflicts (R9)
    crm = pd.DataFrame({"crm_id": ("C" + np.arange(n).astype(str)).astype(object),
                        "crm_modified": _times(n, 2), "in_group": True, "read_only": False,
                        **crm_vals})
    outlook = pd.DataFrame({"outlook_id": ("O" + np.arange(n).astype(str)).astype(object),
                            "outlook_modified": _times(n, 3), "outlook_created": _times(n, 4),
                            **olk_vals})
    return PlanInputs(crm=conform(crm, CRM_COLUMNS), outlook=conform(outlook, OUTLOOK_COLUMNS),
                      links=conform(pd.DataFrame(columns=list(LINK_COLUMNS)), LINK_COLUMNS))


def _rss_peak(run: Callable[[], object]) -> tuple[float, float]:
    """(peak, before) resident set size in MB of the process while ``run`` runs."""
    proc = psutil.Process()
    base = proc.memory_info().rss
    peak = [base]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        run()
    finally:
        done.set()
        sampler.join()
    return round(max(peak[0], proc.memory_info().rss) / 2**20, 1), round(base / 2**20, 1)


def measure(name: str, inputs: PlanInputs, repeat: int) -> dict[str, object]:
    settings = PlanSettings()
    timings = []
    for _ in range(repeat):
        start = time.perf_counter()
        result = plan_cycle(inputs, settings)
        timings.append(time.perf_counter() - start)
    rss_peak_mb, rss_base_mb = _rss_peak(lambda: plan_cycle(inputs, settings))
    tracemalloc.start()
    plan_cycle(inputs, settings)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    counts = result.summary()
    return {
        "scenario": name,
        "seconds_best": round(min(timings), 3),
        "seconds_all": [round(t, 3) for t in timings],
        "traced_peak_mb": round(peak / 2**20, 1),
        "rss_peak_mb": rss_peak_mb,
        "rss_before_mb": rss_base_mb,
        "actions": len(result.actions),
        "conflicts": len(result.conflicts),
        "snapshots": len(result.snapshots),
        "counts": {f"{s} {o} {r}": int(c) for s, o, r, c in counts.itertuples(index=False)},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    results = [
        measure("steady", steady_inputs(args.n), args.repeat),
        measure("first_sync", first_sync_inputs(args.n), args.repeat),
    ]
    max_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    report = {
        "contacts": args.n,
        "goal": {"seconds": 1.0, "memory_mb": 1024},
        "process_max_rss_mb": round(max_rss_mb, 1),
        "python": sys.version.split()[0],
        "pandas": pd.__version__,
        "machine": platform.machine(),
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    for r in results:
        print(f"{r['scenario']:>10}: {r['seconds_best']:.3f} s, traced peak "
              f"{r['traced_peak_mb']} MB, RSS peak {r['rss_peak_mb']} MB (inputs loaded: "
              f"{r['rss_before_mb']} MB), {r['actions']} actions, {r['conflicts']} conflicts")
    print(f"process max RSS {max_rss_mb:.0f} MB -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
