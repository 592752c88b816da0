"""Planning benchmark: `python -m bench.plan_bench` -> bench/results/plan.json.

Two scenarios of 100,000 contacts (goal: each plan <= 1 s):
- ``steady``: 100,000 linked pairs, 1 % changed in CRM and another 1 % in Outlook
  (0.1 % of them on the same field of the same pair: conflicts);
- ``first_sync``: 100,000 unlinked CRM group members and 100,000 Outlook contacts, half
  of which are the same people as CRM contacts (same email, upper-cased for half of
  them; 10 % with an empty field, 5 % with a conflicting one), the rest created on both
  sides (R4, R5).
Side by side in one run: today's planning ("after") and the planning at git ref
``--before`` ("before", imported beside it from git), alternately on the same inputs so
both see the same load of a shared machine; the ratios (before / after) are what holds
from run to run. Timing is the best of ``--repeat`` runs, wall and CPU (``process_time``,
which the other processes on the machine do not inflate); memory is the tracemalloc peak
of one plan's own allocations, and the peak RSS of one plan in a fresh process per way
(sampled every 5 ms; ``rss_inputs_mb`` = the process with its inputs built). The two
plans must be identical frame for frame (``same_result_as_before``). The load average is
recorded at the start and the end.

``python -m bench.plan_bench --whole-first-sync`` measures instead the peak RSS of the whole
first sync at 100,000 people (goal: 500 MB) and the RSS after each of its steps, in turn:
this tree as the default install has it (pyarrow refused: bench/no_pyarrow.py), this tree
with the ``arrow`` extra (pyarrow imported by pandas), and the code at ``--whole-base``
(main before this round, pyarrow a dependency), each a full first sync in a fresh process
(~3-4 min each; ``--whole-ways`` picks some) -> bench/results/first_sync_memory.json.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import psutil

from contactsync.model import CRM_COLUMNS, FIELDS, OUTLOOK_COLUMNS, conform
from contactsync.plan import LINK_COLUMNS, PlanInputs, PlanResult, PlanSettings, plan_cycle

RESULTS = Path(__file__).parent / "results" / "plan.json"
#: main before issue 15's planning work (first-sync plan 1.7 s on an idle machine): the
#: "before" side of the side-by-side run (``--before`` chooses another ref).
BEFORE_REF = "610c796"
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


def plan_at(ref: str) -> Callable[[PlanInputs, PlanSettings], PlanResult] | None:
    """``plan_cycle`` of the planning package as it was at git ``ref``, imported beside
    today's (as the package ``_plan_<ref>``), so both ways run in one process on the same
    inputs and the same load. None when git or the ref is not available."""
    root = Path(__file__).resolve().parent.parent
    try:
        listed = subprocess.run(["git", "-C", str(root), "ls-tree", "-r", "--name-only", ref,
                                 "contactsync/plan"], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    package = "_plan_" + "".join(ch if ch.isalnum() else "_" for ch in ref)
    folder = Path(tempfile.mkdtemp(prefix="plan-before-")) / package
    folder.mkdir()
    for path in listed.stdout.split():
        if path.endswith(".py"):
            code = subprocess.run(["git", "-C", str(root), "show", f"{ref}:{path}"],
                                  capture_output=True, text=True, check=True).stdout
            (folder / Path(path).name).write_text(code.replace("contactsync.plan", package))
    sys.path.insert(0, str(folder.parent))
    return importlib.import_module(package).plan_cycle


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


SCENARIOS: dict[str, Callable[[int], PlanInputs]] = {
    "steady": steady_inputs,
    "first_sync": first_sync_inputs,
}


def _rss_child(way: str, scenario: str, n: int, before: str) -> dict[str, float]:
    """Peak RSS of one plan in a fresh process (``way`` = after or before): RSS does not
    shrink back after a run, so each way's peak is measured alone."""
    proc = subprocess.run(
        [sys.executable, "-m", "bench.plan_bench", "--rss-child", way, scenario, "-n", str(n),
         "--before", before],
        capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent,
    )
    if proc.returncode:
        raise RuntimeError(f"RSS child {way} {scenario} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _same(a: PlanResult, b: PlanResult) -> str | None:
    """None when two plans are identical frame for frame (values, order, dtypes), else
    the first difference."""
    for name in ("actions", "conflicts", "snapshots"):
        try:
            pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name))
        except AssertionError as exc:
            return f"{name}: {str(exc).splitlines()[0]}"
    return None if vars(a.guard) == vars(b.guard) else "guard verdicts differ"


def _way(
    plan: Callable[[PlanInputs, PlanSettings], PlanResult], inputs: PlanInputs,
    settings: PlanSettings,
) -> tuple[float, float, PlanResult]:
    """(wall s, CPU s, plan) of one run."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = plan(inputs, settings)
    return time.perf_counter() - wall, time.process_time() - cpu, result


def _traced_peak_mb(run: Callable[[], object]) -> float:
    tracemalloc.start()
    run()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return round(peak / 2**20, 1)


def measure(
    name: str, inputs: PlanInputs, repeat: int, before: Callable[..., PlanResult] | None,
    rss: Callable[[str], dict[str, float]] | None = None,
) -> dict[str, object]:
    """Today's plan and, when ``before`` is given, the earlier one, run alternately."""
    settings = PlanSettings()
    ways: dict[str, Callable[..., PlanResult]] = {"after": plan_cycle}
    if before is not None:
        ways["before"] = before
    runs: dict[str, list[tuple[float, float]]] = {w: [] for w in ways}
    results: dict[str, PlanResult] = {}
    for _ in range(repeat):  # alternating: both ways see the same load of the machine
        for way, plan in ways.items():
            wall, cpu, results[way] = _way(plan, inputs, settings)
            runs[way].append((wall, cpu))
    figures: dict[str, dict[str, object]] = {}
    for way, plan in ways.items():
        figures[way] = {
            "seconds_best": round(min(w for w, _ in runs[way]), 3),
            "seconds_all": [round(w, 3) for w, _ in runs[way]],
            "cpu_seconds_best": round(min(c for _, c in runs[way]), 3),
            "traced_peak_mb": _traced_peak_mb(lambda plan=plan: plan(inputs, settings)),
            **(rss(way) if rss else {}),
        }
    result = results["after"]
    counts = result.summary()
    entry: dict[str, object] = {
        "scenario": name,
        **figures["after"],
        "actions": len(result.actions),
        "conflicts": len(result.conflicts),
        "snapshots": len(result.snapshots),
        "counts": {f"{s} {o} {r}": int(c) for s, o, r, c in counts.itertuples(index=False)},
    }
    if "before" in results:
        b, a = figures["before"], figures["after"]
        entry["before"] = b
        entry["ratio_before_over_after"] = {
            k: round(float(b[k]) / max(float(a[k]), 1e-9), 2)  # type: ignore[arg-type]
            for k in ("seconds_best", "cpu_seconds_best", "traced_peak_mb", "rss_peak_mb")
            if k in a and k in b
        }
        difference = _same(results["before"], result)
        entry["same_result_as_before"] = difference is None
        if difference:
            entry["difference"] = difference
    return entry


#: main before this round's work (issue 15 goal 3, sixth round: pyarrow still a dependency):
#: the "base" whole first sync.
WHOLE_BASE = "ac65e3d"
WHOLE_RESULTS = Path(__file__).parent / "results" / "first_sync_memory.json"
#: The ways the whole first sync is measured, in the order run: this tree as the default
#: install has it (pyarrow refused, bench/no_pyarrow.py), this tree with the ``arrow``
#: extra installed, the base commit with it (as main had it: a dependency).
WHOLE_WAYS = ("default", "arrow", "base")
_WHOLE_KEEP = ("status", "pyarrow", "peak_rss_mb", "rss_mb_at_start", "peak_rss_mb_after_step",
               "rss_mb_after_step", "steps_cpu_s", "cycle_cpu_s", "counts", "errors", "emulator_cpu_s")


def _peak_step(run: dict[str, object]) -> str | None:
    """The step in which the process reached its peak: the first whose peak-so-far is within
    1 MB of the highest ("after the steps" when the run record after them went higher)."""
    after: dict[str, float] = run.get("peak_rss_mb_after_step") or {}  # type: ignore[assignment]
    if not after:
        return None
    top = max(after.values())
    if float(run.get("peak_rss_mb") or 0) > top + 1.0:  # type: ignore[arg-type]
        return "after the steps"
    return next(step for step, mb in after.items() if mb >= top - 1.0)


def _step_table(runs: dict[str, dict[str, object]]) -> dict[str, dict[str, object]]:
    """Per step: each way's RSS after it and its growth over the step before, side by side."""
    table: dict[str, dict[str, object]] = {}
    last = {way: r.get("rss_mb_at_start") for way, r in runs.items()}
    table["start (imports)"] = dict(last)
    steps = next(iter(runs.values())).get("rss_mb_after_step") or {}
    for step in steps:  # type: ignore[union-attr]
        row: dict[str, object] = {}
        for way, r in runs.items():
            now = (r.get("rss_mb_after_step") or {}).get(step)  # type: ignore[union-attr]
            row[way] = now
            if isinstance(now, float) and isinstance(last[way], float):
                row[f"{way}_growth"] = round(now - last[way], 1)  # type: ignore[operator]
            last[way] = now
        table[step] = row
    return table


def whole_first_sync(n: int, base: str, out: Path, ways: tuple[str, ...] = WHOLE_WAYS) -> dict[str, object]:
    """The peak RSS (VmHWM) and the RSS after each step of the whole first sync at ``n``
    contacts (``bench.cycles_bench``'s seeded data, read-only cache; its first sync: window
    lifted, no latency, the steps one after another) in ``ways`` (:data:`WHOLE_WAYS`), one
    after the other in one run, each in a fresh process from a fresh copy of the same data,
    so that the figures differ by the install and the code alone (issue 15 goal 3)."""
    import shutil

    from bench import cycles_bench as cb
    from bench.harness import UNLIMITED, Emulator

    if "base" in ways and not base:
        ways = tuple(w for w in ways if w != "base")
    cache = cb.seeded_cache(n)
    manifest = json.loads((cache / "manifest.json").read_text())
    work = Path(tempfile.mkdtemp(prefix="plan-bench-first-sync-"))
    load_before = os.getloadavg()
    runs: dict[str, dict[str, object]] = {}
    here = Path(__file__).resolve().parent.parent
    try:
        for way in ways:
            code = cb.old_code(base, work / "base-code") if way == "base" else here
            folder = work / way
            folder.mkdir()
            for name in ("crm.db", "graph.db"):
                shutil.copy2(cache / name, folder / name)
            emu = Emulator(folder / "graph.db")  # any port: a first sync follows no stored link
            try:
                emu.limits(requests_per_window=UNLIMITED, window_s=600.0)
                cpu = emu.cpu_s()
                r = cb._child(code, cb._config(folder, emu.graph_url, manifest["upn"]), None,
                              arrow=way != "default")
                r["emulator_cpu_s"] = round(emu.cpu_s() - cpu, 2)
            finally:
                emu.stop()
            runs[way] = {k: r.get(k) for k in _WHOLE_KEEP}
            runs[way]["peak_in_step"] = _peak_step(r)
            print(f"whole first sync [{way}]: peak RSS {r['peak_rss_mb']} MB (in {runs[way]['peak_in_step']}), "
                  f"{r.get('rss_mb_at_start')} MB at the start, pyarrow {r.get('pyarrow')}, "
                  f"load {[round(x, 2) for x in os.getloadavg()]}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    peaks = {way: float(r["peak_rss_mb"]) for way, r in runs.items()}  # type: ignore[arg-type]
    report: dict[str, object] = {
        "what": f"issue 15 goal 3: peak RSS of the whole first sync of {n:,} people (bench.cycles_bench "
                "data): this tree as the default install has it (no pyarrow: 'default'), this tree with "
                f"the arrow extra ('arrow'), and the code at {base} with pyarrow ('base'), one run",
        "how_to_run": "python -m bench.plan_bench --whole-first-sync  (--whole-ways, --whole-base)",
        "goal_mb": 500, "contacts": n, "base": base or None, "ways": list(ways),
        "load_average_at_start": [round(x, 2) for x in load_before],
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "peak_rss_mb": peaks,
        "goal_met": {way: mb <= 500 for way, mb in peaks.items()},
        "ratios": {f"{a}_over_{b}": round(peaks[a] / max(peaks[b], 1e-9), 3)
                   for a, b in (("arrow", "default"), ("base", "default"), ("base", "arrow"))
                   if a in peaks and b in peaks},
        "rss_mb_by_step": _step_table(runs),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "runs": runs,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    print(f"whole first sync: peak RSS {peaks} MB; load {report['load_average_at_start']} -> "
          f"{report['load_average_at_end']}; -> {out}")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--before", default=BEFORE_REF,
                        help="git ref of the planning to compare with ('' = none)")
    parser.add_argument("--no-rss", action="store_true", help="skip the per-way RSS children")
    parser.add_argument("--whole-first-sync", action="store_true",
                        help="only the whole first sync's peak RSS, each way in turn (minutes each)")
    parser.add_argument("--whole-base", default=WHOLE_BASE,
                        help="git ref of the 'base' whole first sync ('' = none)")
    parser.add_argument("--whole-ways", default=",".join(WHOLE_WAYS),
                        help="which of default (no pyarrow), arrow, base to run, comma-separated")
    parser.add_argument("--rss-child", nargs=2, metavar=("WAY", "SCENARIO"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.whole_first_sync:
        ways = tuple(w for w in args.whole_ways.split(",") if w)
        if unknown := set(ways) - set(WHOLE_WAYS):
            parser.error(f"--whole-ways: unknown {sorted(unknown)}; choose among {', '.join(WHOLE_WAYS)}")
        whole_first_sync(args.n, args.whole_base, WHOLE_RESULTS if args.out == RESULTS else args.out, ways)
        return 0
    before = plan_at(args.before) if args.before else None
    if args.rss_child:
        way, scenario = args.rss_child
        inputs = SCENARIOS[scenario](args.n)
        plan = plan_cycle if way == "after" else before
        assert plan is not None, f"no planning at {args.before}"
        peak, base = _rss_peak(lambda: plan(inputs, PlanSettings()))
        print(json.dumps({"rss_peak_mb": peak, "rss_inputs_mb": base}))
        return 0
    load_before = os.getloadavg()
    results = []
    for name, make in SCENARIOS.items():
        def rss(way: str, name: str = name) -> dict[str, float]:
            return _rss_child(way, name, args.n, args.before)
        results.append(measure(name, make(args.n), args.repeat, before,
                               None if args.no_rss else rss))
    max_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    report = {
        "contacts": args.n,
        "goal": {"seconds": 1.0, "first_sync_whole_cycle_rss_mb": 500},
        "before_ref": args.before or None,
        "load_average_at_start": [round(x, 2) for x in load_before],
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "cores": os.cpu_count(),
        "process_max_rss_mb": round(max_rss_mb, 1),
        "python": sys.version.split()[0],
        "pandas": pd.__version__,
        "machine": platform.machine(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    for r in results:
        line = (f"{r['scenario']:>10}: {r['seconds_best']:.3f} s ({r['cpu_seconds_best']:.3f} CPU), "
                f"traced peak {r['traced_peak_mb']} MB, RSS peak {r.get('rss_peak_mb', '-')} MB, "
                f"{r['actions']} actions, {r['conflicts']} conflicts")
        if "before" in r:
            line += (f"; before {r['before']['seconds_best']:.3f} s, ratio "
                     f"{r['ratio_before_over_after']}, same result: {r['same_result_as_before']}")
        print(line)
    print(f"load average {report['load_average_at_start']} -> {report['load_average_at_end']}; "
          f"-> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
