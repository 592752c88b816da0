"""How long the report takes for a fleet, and how large its page is (issue 14).

``python -m bench.run report`` (or ``python -m bench.report_bench``): a SQLite state store
with ``BENCH_REPORT_USERS`` users (default 200) x ``BENCH_REPORT_DAYS`` days (default 7)
of 15-minute cycles (96 a day: 134,400 runs at the defaults). Most cycles are quiet; one
in 12 writes on each side, each user has a conflict a day, one in 20 users fails its last
8 cycles, one in 25 is stopped by the guard twice, one in 10 has a record quarantined.

Measured: the whole report (read the period, compute health and charts, render the
Jinja2 page, write report.html and report.json) and its parts, and the size of both
files. Side by side, on the same 2 users: the report's bulk reads of the period against
the naive way (the store's per-run API: recent runs, then conflicts and quarantine of
each run), as a ratio. The machine is shared: the load average is recorded with the
figures. Results: ``bench/results/report.json``.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"


def _fill(store: Any, users: list[str], days: int, now: datetime) -> int:
    from tests.report.week import Cycle, Week, conflict, problem

    week = Week(store, now)
    n = 0
    per_day = 96
    for k, user in enumerate(users):
        failing, guarded, quarantined = k % 20 == 3, k % 25 == 7, k % 10 == 5
        for i in range(days * per_day, 0, -1):
            ago = timedelta(minutes=15 * i - 4)
            status, message, actions = "ok", "", []
            if failing and i <= 8:
                status, message = "failed", "Outlook cannot be reached after 5 attempts: 503"
            elif guarded and i <= 2:
                status, message = "guard-stopped", "stopped before writing anything (R16)"
                actions = [{"side": "outlook", "op": "delete", "rule": "R13"}] * 40
            writes = {"update": 1 + i % 3} if i % 12 == 0 and status == "ok" else {}
            conflicts = [conflict(f"C{k:05d}{i:06d}", f"AAMk-{k}-{i}", "mobile_phone", "+1 555 0100",
                                  "+1 555 0199")] if i % per_day == 17 else []
            q = [problem(f"C{k:05d}BAD", "invalid email address", "x@")] if quarantined else []
            week.add(user, Cycle(ago, status=status, outlook=writes, crm=writes, conflicts=conflicts,
                                 quarantine=q, message=message, actions=actions))
            n += 1
        if k % 20 == 19:
            week.write()
    week.write()
    return n


def _naive(store: Any, users: list[str], days: int, now: datetime) -> int:
    """The period read through the store's per-run API: what the report did before."""
    import pandas as pd

    since = pd.Timestamp(now) - pd.Timedelta(days=days)
    rows = 0
    for user in users:
        runs = store.recent_runs(user, limit=days * 96 + 10)
        for run_id in runs.loc[runs["started_at"] >= since, "run_id"]:
            rows += len(store.conflicts(run_id)) + len(store.quarantine(run_id))
    return rows


def _load() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def main() -> int:
    sys.path.insert(0, str(ROOT.parent))  # tests.report.week scripts the cycles
    import pandas as pd

    from contactsync.report.data import read_period
    from contactsync.report.facts import collect
    from contactsync.report.render import render_html, write_files
    from contactsync.state import StateStore

    n_users = int(os.environ.get("BENCH_REPORT_USERS", "200"))
    days = int(os.environ.get("BENCH_REPORT_DAYS", "7"))
    now = datetime.now(UTC).replace(microsecond=0)
    folder = Path(tempfile.mkdtemp(prefix="contactsync-report-bench-"))
    store = StateStore(f"sqlite:///{folder / 'state.db'}")
    users = [f"UBENCH{k:06d}" for k in range(n_users)]
    people = {u: {"name": f"Bench User {k:03d}", "mailbox": f"user{k}@example.com"} for k, u in enumerate(users)}
    t0 = time.perf_counter()
    runs = _fill(store, users, days, now)
    fill_s = time.perf_counter() - t0
    print(f"[report bench] {runs} runs of {n_users} users written in {fill_s:.1f} s", file=sys.stderr)

    load_before = _load()
    t0 = time.perf_counter()
    data = collect(store, users, days=days, people=people, now=now)
    collect_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    page = render_html(data)
    render_s = time.perf_counter() - t0
    t0 = time.perf_counter()  # the whole report as the command makes it: read, render, write
    paths = write_files(collect(store, users, days=days, people=people, now=now), folder / "out")
    whole_s = time.perf_counter() - t0
    sample = users[:2]  # the per-run way takes minutes for more
    t0 = time.perf_counter()
    read_period(store, sample, pd.Timestamp(now) - pd.Timedelta(days=days))
    bulk_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    _naive(store, sample, days, now)
    naive_s = time.perf_counter() - t0
    store.close()
    result = {
        "machine": {"date": now.isoformat(), "python": platform.python_version(), "cpus": os.cpu_count(),
                    "load_avg_before": load_before, "load_avg_after": _load()},
        "users": n_users, "days": days, "cycles_per_day": 96, "runs": runs,
        "seconds": {"collect": round(collect_s, 2), "render_html": round(render_s, 2),
                    "whole_report": round(whole_s, 2)},
        "html_bytes": paths["html"].stat().st_size, "json_bytes": paths["json"].stat().st_size,
        "html_bytes_in_memory": len(page.encode("utf-8")),
        "period_read_2_users": {"bulk_s": round(bulk_s, 3), "per_run_api_s": round(naive_s, 3),
                                 "ratio_per_run_to_bulk": round(naive_s / bulk_s, 1) if bulk_s else None},
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "report.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
