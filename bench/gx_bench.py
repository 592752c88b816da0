"""GX cost per cycle (issue 16 item 5): `python -m bench.gx_bench` -> bench/results/gx.json.

A cycle with changes at 1,000 contacts: the CRM and Outlook rows that have actions (1,000
each, 14 of 24 fields set, 2 % with an R19 problem) and a plan of 1,000 updates (two
fields each), validated by the three suites
with the user's Data Docs, three cycles in a row in one process (as a worker runs them).
Side by side in one run, as a ratio:

- ``before``: what the cycle did until now: each suite with COMPLETE results, the Data
  Docs site rebuilt after every suite from every result the process's context holds;
- ``after``: ``expectations.runner.validate_many``: summarised results (BASIC), only the
  checks that can fail on the frames (columns holding a value, and the presence checks),
  the Data Docs built once per cycle, incrementally, from the user's own results, and
  the regex-like checks of one column merged into one expectation;
- ``unmerged``: ``after`` with one expectation per check (CPU only), what the merge saves.

GX's import and the context's set-up are measured apart (once per process, before the
cycles). Goal: ``after`` at most 1.5 s per cycle. The machine is shared: the 1-minute
load average is recorded with the figures.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from contactsync import model
from contactsync.plan.schema import ACTION_COLUMNS

RESULTS = Path(__file__).parent / "results" / "gx.json"
N = 1000
CYCLES = 3
GOAL_S = 1.5


def frames(n: int = N, seed: int = 7) -> list[tuple[pd.DataFrame, str, str]]:
    """The three validations of a cycle with changes: (frame, suite, id column)."""
    rng = np.random.default_rng(seed)
    i = np.arange(n)
    people = pd.DataFrame({
        "first_name": [f"First{k}" for k in i], "last_name": [f"Last{k}" for k in i],
        "email1": [f"person{k}@example.com" for k in i], "email2": [f"p{k}@home.example" for k in i],
        "job_title": "Engineer", "department": "R&D", "company": [f"Company {k % 50}" for k in i],
        "work_phone": "+49 30 1234567", "mobile_phone": "+49 170 1234567",
        "street": "Main St 1\nBack house", "city": "Berlin", "postal_code": "10115",
        "country": "Germany", "birthday": "1980-05-04",
    })  # 14 of the 24 fields set, as in a well-kept address book
    bad = rng.choice(n, size=n // 50, replace=False)
    people.loc[bad, "job_title"] = "x" * 70  # longer than CONTACT.TITLE (R19)
    crm = model.conform(people.assign(crm_id=[f"CBENCH{k:06d}" for k in i]), model.CRM_COLUMNS)
    outlook = model.conform(people.assign(outlook_id=[f"AAMk-{k}" for k in i]), model.OUTLOOK_COLUMNS)
    plan = model.conform(people.assign(
        action_id=[f"a{k}" for k in i], side=np.where(i % 2 == 0, "crm", "outlook"), op="update",
        rule="R8", reason="bench", crm_id=crm["crm_id"], outlook_id=outlook["outlook_id"],
        fields="job_title,city",
    ), ACTION_COLUMNS)
    return [(outlook, "outlook_contacts", "outlook_id"), (crm, "crm_contacts", "crm_id"),
            (plan, "plan", "action_id")]


def before(jobs: list[tuple[pd.DataFrame, str, str]], docs: Path) -> None:
    """The cycle as it was: COMPLETE results, the whole docs site rebuilt after each suite
    from every result the context holds (results were kept while a docs site existed)."""
    from expectations import runner

    state = runner._gx()
    site = state.site(docs)
    for frame, suite, id_column in jobs:
        state.definition(suite).run(
            batch_parameters={"dataframe": runner.prepare(frame, suite)},
            result_format={"result_format": "COMPLETE", "unexpected_index_column_names": [id_column],
                           "return_unexpected_index_query": False},
        )
        state.context.build_data_docs(site_names=[site])


def after(jobs: list[tuple[pd.DataFrame, str, str]], docs: Path) -> None:
    from expectations import runner

    runner.validate_many(jobs, data_docs_dir=docs)


def unmerged(jobs: list[tuple[pd.DataFrame, str, str]], docs: Path) -> None:
    """``after`` with one expectation per check (the cycle of the previous session, 2.3 s
    CPU at load 10): what merging a column's regex-like checks saves."""
    from expectations import runner

    merge = runner.merged_checks
    runner.merged_checks = lambda checks: checks
    try:
        runner.validate_many(jobs, data_docs_dir=docs)
    finally:
        runner.merged_checks = merge


def _cycles(fn: Any, jobs: list[tuple[pd.DataFrame, str, str]], docs: Path) -> tuple[list[float], list[float]]:
    """Wall and CPU seconds of each cycle (CPU time says more on a loaded machine)."""
    wall, cpu = [], []
    for _ in range(CYCLES):
        t0, c0 = time.perf_counter(), time.process_time()
        fn(jobs, docs)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return wall, cpu


def main() -> int:
    jobs = frames()
    t0 = time.perf_counter()
    from expectations import runner

    state = runner._gx()
    for _, suite, _ in jobs:
        state.definition(suite)
    setup_s = time.perf_counter() - t0
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        old, old_cpu = _cycles(before, jobs, Path(tmp) / "before")
        runner._forget_results(state)  # the 'before' results must not reach the 'after' docs
        new, new_cpu = _cycles(after, jobs, Path(tmp) / "after")
        _, unmerged_cpu = _cycles(unmerged, jobs, Path(tmp) / "unmerged")
    load_after = os.getloadavg()[0]
    med_old, med_new = statistics.median(old), statistics.median(new)
    cpu_old, cpu_new = statistics.median(old_cpu), statistics.median(new_cpu)
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": {"cores": os.cpu_count(), "python": platform.python_version(),
                    "loadavg_1m_before": round(load_before, 2), "loadavg_1m_after": round(load_after, 2)},
        "contacts": N, "cycles": CYCLES, "goal_s_per_cycle": GOAL_S,
        "gx_import_and_setup_s": round(setup_s, 2),
        "before_s_per_cycle": [round(t, 2) for t in old],
        "after_s_per_cycle": [round(t, 2) for t in new],
        "before_median_s": round(med_old, 2), "after_median_s": round(med_new, 2),
        "ratio_before_over_after": round(med_old / med_new, 1) if med_new else None,
        "before_cpu_s_per_cycle": [round(t, 2) for t in old_cpu],
        "after_cpu_s_per_cycle": [round(t, 2) for t in new_cpu],
        "cpu_ratio_before_over_after": round(cpu_old / cpu_new, 1) if cpu_new else None,
        "unmerged_cpu_s_per_cycle": [round(t, 2) for t in unmerged_cpu],
        "cpu_ratio_unmerged_over_after": round(statistics.median(unmerged_cpu) / cpu_new, 2) if cpu_new else None,
        "goal_met_wall": med_new <= GOAL_S, "goal_met_cpu": cpu_new <= GOAL_S,
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
