"""How each cycle's cost grows with the size it works on (issue 15 goal 4): the growth table.

A number in a table shows a regression in that number; it does not show a cycle that used
to cost the same at every size starting to cost more with every contact. So each cycle
is measured at several sizes and its cost is fitted against the size, and the fit is
named: ``constant`` (log-log slope below 0.2), ``linear in size`` (slope about 1),
``linear in changes`` (the 1 % cycle grows with its changes, and the same cycle with a
fixed number of changes does not grow with the size), or ``a + b·size`` in between (a
fixed part still large beside a part that grows with the size). A change that moves a row
from one name to another is a change in how that cycle scales, whatever its figures.

Commands (one each):

- ``python -m bench.growth`` (or ``BENCH_GROWTH=1 make bench``): for each size of
  ``BENCH_GROWTH_SIZES`` (default 1000,10000,100000) the data set of :mod:`bench.run`
  is generated and these cycles are measured, each in its own process (bench/driver.py:
  wall, CPU of the cycle, Graph requests, peak RSS): ``first_sync``; ``quiet`` (after the
  echo of the first sync's own writes, so it settles, R17); ``edits_1pct`` (1 % of N job
  titles edited on each side); ``edits_fixed`` (100 more titles edited on each side,
  after a cycle that reads the 1 % cycle's echo back: the same changes at every size).
  The echo cycles run too, unmeasured in the table (their figures are kept in the JSON).
  Sizes measured earlier stay in ``results/growth.json``, so one size can be re-run alone.
- ``python -m bench.growth fleet [USERS]``: the quiet fleet cycle (bench/fleet.py) of the
  first USERS (default 10) users of the largest fleet cache on this machine, the other
  users disabled in a copy of its CRM (USERSECURITY.ENABLED, so they do not sync). The
  fleet's own runs (``results/fleet.json``, any user count) are taken in as they are.
- ``python -m bench.growth table``: the Markdown tables from ``results/growth.json``
  (and ``results/fleet.json``); ``python -m bench.growth readme`` puts them in
  bench/README.md between its growth markers (a full run does so too).

Machine load: each point keeps the load average before and after it. Walls under load do
not hold; CPU seconds and requests do, and the slopes of one run compare sizes measured
minutes apart under about the same load.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.harness import (
    LATENCY_MS,
    RESULTS,
    UNLIMITED,
    USER,
    Emulator,
    build,
    edit_one_percent,
    edit_pairs,
    log,
    machine,
    measured,
)

GROWTH_JSON = RESULTS / "growth.json"
#: the cycles of the table, in its order
CYCLES = ("first_sync", "quiet", "edits_1pct", "edits_fixed")
FIXED_EDITS = 100  # per side: edits_fixed's changes, the same at every size
#: (key in a measured cycle, label, digits)
METRICS = (("wall_s", "wall s", 2), ("cycle_cpu_s", "CPU s", 2), ("http_requests", "Graph requests", 0),
           ("peak_rss_mb", "peak RSS MB", 0))
FLEET_METRICS = (("process_wall_s", "wall s", 1), ("per_user_wall_s", "wall s per user", 2),
                 ("command_cpu_s", "command CPU s", 1), ("prefect_server_cpu_s", "Prefect server CPU s", 1),
                 ("emulator_requests", "Graph requests", 0))
CONSTANT_BELOW, LINEAR_FROM, SUPERLINEAR_FROM = 0.2, 0.7, 1.3
KEPT = ("status", "settled", "wall_s", "cycle_cpu_s", "http_requests", "inner_requests", "emulator_cpu_s",
        "peak_rss_mb", "sql_statements", "actions", "counts", "errors", "steps_s", "steps_cpu_s",
        "peak_rss_mb_after_step", "rss_mb_after_step", "end_state", "edits", "load_average")


# --- the fit ------------------------------------------------------------------------------------
def loglog_slope(sizes: list[float], costs: list[float]) -> float | None:
    """Least-squares slope of log(cost) on log(size): 0 constant, 1 linear, 2 quadratic.
    None with fewer than two sizes or a cost that is not positive (0 requests: constant)."""
    pts = [(math.log(x), math.log(y)) for x, y in zip(sizes, costs, strict=True) if x > 0 and y is not None]
    if len({x for x, _ in pts}) < 2 or any(math.isinf(y) for _, y in pts):
        return None
    mx, my = sum(x for x, _ in pts) / len(pts), sum(y for _, y in pts) / len(pts)
    return sum((x - mx) * (y - my) for x, y in pts) / sum((x - mx) ** 2 for x, _ in pts)


def linear_fit(sizes: list[float], costs: list[float]) -> tuple[float, float] | None:
    """cost = a + b * size by least squares on the relative error (weights 1/cost²), so that
    the largest size does not decide the fit alone; None with fewer than two sizes."""
    pts = [(x, y, 1.0 / (y * y)) for x, y in zip(sizes, costs, strict=True) if y]
    if len({x for x, _, _ in pts}) < 2:
        return None
    sw = sum(w for *_, w in pts)
    mx = sum(w * x for x, _, w in pts) / sw
    my = sum(w * y for _, y, w in pts) / sw
    b = sum(w * (x - mx) * (y - my) for x, y, w in pts) / sum(w * (x - mx) ** 2 for x, _, w in pts)
    return my - b * mx, b


def classify(slope: float | None, *, fixed_slope: float | None = None, unit: str = "size") -> str:
    """The name of a growth (module docstring). ``fixed_slope``: the slope of the same cost
    of the same cycle with a fixed number of changes, which tells "linear in changes"
    (it stays constant) from "linear in size" (it grows too) when the changes are a share
    of the size."""
    if slope is None:
        return "constant" if fixed_slope is None else "-"
    if slope <= -CONSTANT_BELOW:  # e.g. a fixed cost shared by more users
        return f"falls with {unit}"
    if slope < CONSTANT_BELOW:
        return "constant"
    if slope >= SUPERLINEAR_FROM:
        return f"superlinear in {unit}"
    if slope >= LINEAR_FROM:
        if fixed_slope is not None and fixed_slope < CONSTANT_BELOW:
            return "linear in changes"
        return f"linear in {unit}"
    return f"a + b·{unit}"


def growth_row(sizes: list[int], costs: list[float | None], *, fixed: list[float | None] | None = None,
               unit: str = "size") -> dict[str, Any]:
    """One row's fit: slope, a and b, the share of the cost b·size makes at the largest
    size, and the name of the growth."""
    have = [(x, y) for x, y in zip(sizes, costs, strict=True) if y is not None]
    xs, ys = [float(x) for x, _ in have], [float(y) for _, y in have]
    if len(set(xs)) < 2:  # one size tells nothing of growth
        return {"slope": None, "a": None, "b": None, "size_share_at_largest": None, "growth": "-"}
    zero = bool(ys) and all(y == 0 for y in ys)
    slope = 0.0 if zero else loglog_slope(xs, ys)
    fixed_slope = None
    if fixed is not None:
        fx = [(float(x), float(y)) for x, y in zip(sizes, fixed, strict=True) if y is not None]
        fixed_slope = 0.0 if fx and all(y == 0 for _, y in fx) else loglog_slope([x for x, _ in fx], [y for _, y in fx])
    fit = None if zero else linear_fit(xs, ys)
    share = None
    if fit is not None and xs:
        top = fit[0] + fit[1] * max(xs)
        share = round(fit[1] * max(xs) / top, 2) if top > 0 else None
    return {"slope": None if slope is None else round(slope, 2),
            "a": None if fit is None else fit[0], "b": None if fit is None else fit[1],
            "size_share_at_largest": share, "growth": classify(slope, fixed_slope=fixed_slope, unit=unit)}


# --- measuring ------------------------------------------------------------------------------------
def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _cycle(emu: Emulator, ds: Any, name: str, env: dict[str, str]) -> dict[str, Any]:
    before = _load()
    log(f"growth N={ds.n}: {name} ...")
    r = measured(emu, ds, ["_cycle", str(ds.config), USER], env)
    r["load_average"] = {"before": before, "after": _load()}
    log(f"  {r.get('wall_s')} s wall, {r.get('cycle_cpu_s')} s CPU, {r['http_requests']} HTTP, "
        f"{r.get('peak_rss_mb')} MB, {r.get('status')}, load {r['load_average']['after']}")
    if r.get("status") != "ok":
        raise RuntimeError(f"growth N={ds.n}: the {name} cycle ended {r.get('status')}: {r.get('first_errors')}")
    return {k: r[k] for k in KEPT if k in r}


def run_size(root: Path, emu: Emulator, n: int) -> dict[str, Any]:
    """The cycles of the module docstring at N = ``n``, in the order a user meets them."""
    log(f"growth N={n}: generating data")
    t0 = time.perf_counter()
    ds = build(root, emu, n, f"growth{n}")
    entry: dict[str, Any] = {"n": n, "generate_s": round(time.perf_counter() - t0, 1)}
    env = {"BENCH_CLIENT_WINDOW": f"{UNLIMITED}/600"}  # the window lifted: the sync's own cost
    emu.latency(LATENCY_MS)
    cycles: dict[str, Any] = {}
    cycles["first_sync"] = _cycle(emu, ds, "first_sync", env)
    cycles["echo"] = _cycle(emu, ds, "echo", env)
    cycles["quiet"] = _cycle(emu, ds, "quiet", env)
    edits = edit_one_percent(ds, emu)
    cycles["edits_1pct"] = {**_cycle(emu, ds, "edits_1pct", env), "edits": edits}
    cycles["echo_1pct"] = _cycle(emu, ds, "echo_1pct", env)
    fixed = edit_pairs(ds, emu, FIXED_EDITS, skip=edits["crm"], label="edit again")
    cycles["edits_fixed"] = {**_cycle(emu, ds, "edits_fixed", env), "edits": fixed}
    emu.latency(0)
    entry["cycles"] = cycles
    shutil.rmtree(ds.folder, ignore_errors=True)
    return entry


def _commit() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parent)
    return out.stdout.strip()


def read_results() -> dict[str, Any]:
    try:
        return json.loads(GROWTH_JSON.read_text())
    except (OSError, ValueError):
        return {"sizes": [], "fleet": []}


def write_results(report: dict[str, Any]) -> None:
    RESULTS.mkdir(exist_ok=True)
    GROWTH_JSON.write_text(json.dumps(report, indent=2) + "\n")


def main() -> int:
    sizes = [int(s) for s in os.environ.get("BENCH_GROWTH_SIZES", "1000,10000,100000").split(",") if s.strip()]
    root = Path(tempfile.mkdtemp(prefix="contactsync-growth-"))
    emu = Emulator(root / "graph.db")
    emu.limits(requests_per_window=UNLIMITED, window_s=600.0)
    try:
        for n in sizes:
            entry = run_size(root, emu, n)
            entry.update({"date": machine()["date"], "commit": _commit()})
            report = read_results()
            report["machine"] = machine()
            report["sizes"] = sorted([e for e in report.get("sizes", []) if e["n"] != n] + [entry],
                                     key=lambda e: e["n"])
            write_results(report)
    finally:
        emu.stop()
        shutil.rmtree(root, ignore_errors=True)
    write_readme()
    print(table())
    return 0


# --- the fleet ------------------------------------------------------------------------------------
def fleet_points() -> list[dict[str, Any]]:
    """Every quiet fleet run known, one per user count (the newest): those this module
    measured (growth.json) and the fleet bench's own (fleet.json, any user count)."""
    points = {p["users"]: p for p in read_results().get("fleet", [])}
    try:
        fleet = json.loads((RESULTS / "fleet.json").read_text())
    except (OSError, ValueError):
        fleet = None
    if fleet and fleet.get("prefect_on_sqlite"):
        users = int(fleet["params"]["users"])
        mine = points.get(users)
        if mine is None or mine.get("date", "") < fleet["machine"]["date"]:
            points[users] = {"users": users, "date": fleet["machine"]["date"], "source": "fleet.json",
                             "params": fleet["params"], **fleet["prefect_on_sqlite"]}
    return [points[u] for u in sorted(points)]


def fleet_subset(users: int) -> int:
    """The quiet fleet cycle of the first ``users`` users of the largest cached fleet."""
    from bench import fleet

    base = Path(os.environ.get("BENCH_FLEET_CACHE", Path.home() / ".cache" / "contact-sync-bench"))
    caches = [c for c in base.glob("fleet-*u-*") if (c / "manifest.json").exists()]
    if not caches:
        raise SystemExit("no fleet cache: run `python -m bench.fleet build` first (BENCH_FLEET_USERS=...)")
    cache = max(caches, key=lambda c: json.loads((c / "manifest.json").read_text()).get("params", {}).get(
        "users", int(c.name.split("-")[1].rstrip("u"))))
    manifest = json.loads((cache / "manifest.json").read_text())
    work = Path(tempfile.mkdtemp(prefix="contactsync-growth-fleet-"))
    emu = None
    try:
        fleet.copy_databases(cache, work)
        keep = [fleet.uid(u) for u in range(users)]
        with sqlite3.connect(work / "crm.db") as conn:  # the others stay in the CRM, disabled
            conn.execute(f"UPDATE USERSECURITY SET ENABLED = 'F' WHERE USERID NOT IN ({','.join('?' * users)})", keep)
        emu = Emulator(work / "graph.db", port=manifest["port"])
        cfg = fleet._config(work, emu.graph_url)
        emu.latency(LATENCY_MS)
        # A settled cycle's fingerprint covers the planning code (R17): after a code change
        # since the cache was built, each user's first cycle plans in full. One pass settles
        # them; the second is the quiet cycle measured.
        settling = fleet.timed(work, cfg, emu, users, "settle", None)
        before = _load()
        result = fleet.timed(work, cfg, emu, users, "sqlite", None)
        point = {"users": users, "date": machine()["date"], "source": f"bench.growth fleet from {cache.name}",
                 "commit": _commit(), "load_average_before": before,
                 "settling_pass": {k: settling.get(k) for k in ("process_wall_s", "statuses", "writes")}, **result}
        report = read_results()
        report["fleet"] = sorted([p for p in report.get("fleet", []) if p["users"] != users] + [point],
                                 key=lambda p: p["users"])
        write_results(report)
        write_readme()
        log(f"growth fleet: {users} users in {result['process_wall_s']} s, statuses {result['statuses']}")
    finally:
        if emu is not None:
            emu.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


# --- the table ------------------------------------------------------------------------------------
def _fmt(value: Any, digits: int) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}" if digits else f"{round(value):,}"


def _fit_text(row: dict[str, Any], per: int, unit: str) -> str:
    if row["a"] is None:
        return "-"
    return f"{row['a']:.3g} + {row['b'] * per:.3g} per {per:,} {unit}"


def table() -> str:
    """The growth tables as Markdown: contacts (per cycle and cost) and the fleet (per cost)."""
    report = read_results()
    entries = report.get("sizes", [])
    lines: list[str] = []
    if entries:
        sizes = [e["n"] for e in entries]
        lines += ["| cycle | cost | " + " | ".join(f"{n:,}" for n in sizes)
                  + " | log-log slope | fit a + b·N | growth |",
                  "|---|---|" + "---:|" * len(sizes) + "---:|---|---|"]
        for cycle in CYCLES:
            for key, label, digits in METRICS:
                costs = [e["cycles"].get(cycle, {}).get(key) for e in entries]
                if all(c is None for c in costs):
                    continue
                fixed = ([e["cycles"].get("edits_fixed", {}).get(key) for e in entries]
                         if cycle == "edits_1pct" else None)
                row = growth_row(sizes, costs, fixed=fixed)
                lines.append(f"| {cycle} | {label} | " + " | ".join(_fmt(c, digits) for c in costs)
                             + f" | {_fmt(row['slope'], 2)} | {_fit_text(row, 1000, 'contacts')} | {row['growth']} |")
        loads = [c["load_average"]["after"][0] for e in entries for c in e["cycles"].values() if "load_average" in c]
        lines += ["", "Measured " + "; ".join(f"N = {e['n']:,} at {e['date']} ({e.get('commit', '?')})" for e in entries)
                  + (f"; 1-minute load average {min(loads):.1f}-{max(loads):.1f} after the cycles." if loads else ".")]
    points = fleet_points()
    if points:
        users = [p["users"] for p in points]
        lines += ["", "| quiet fleet cycle | " + " | ".join(f"{u:,} users" for u in users)
                  + " | log-log slope | fit a + b·users | growth |",
                  "|---|" + "---:|" * len(users) + "---:|---|---|"]
        for key, label, digits in FLEET_METRICS:
            costs = [p.get(key) for p in points]
            if all(c is None for c in costs):
                continue
            row = growth_row(users, costs, unit="users")
            lines.append(f"| {label} | " + " | ".join(_fmt(c, digits) for c in costs)
                         + f" | {_fmt(row['slope'], 2)} | {_fit_text(row, 1, 'user')} | {row['growth']} |")
        lines += ["", "Fleet runs: " + "; ".join(
            f"{p['users']:,} users at {p['date']} ({p.get('source')}, load after "
            f"{(p.get('load_average_after') or ['?'])[0]})" for p in points) + "."]
    return "\n".join(lines)


README = Path(__file__).resolve().parent / "README.md"
BEGIN, END = "<!-- growth: generated by python -m bench.growth readme -->", "<!-- end of growth -->"


def write_readme() -> None:
    """Replace the growth tables in bench/README.md (between its markers; added at the end
    the first time)."""
    text = README.read_text()
    if BEGIN not in text:
        text += f"\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    tail = rest.split(END, 1)[1] if END in rest else ""
    README.write_text(f"{head}{BEGIN}\n{table()}\n{END}{tail}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "readme":
        write_readme()
        sys.exit(0)
    if len(sys.argv) > 1 and sys.argv[1] == "table":
        print(table())
        sys.exit(0)
    if len(sys.argv) > 1 and sys.argv[1] == "fleet":
        sys.exit(fleet_subset(int(sys.argv[2]) if len(sys.argv) > 2 else 10))
    sys.exit(main())
