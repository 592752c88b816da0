"""One measured sync cycle without Prefect, run in a child process of :mod:`bench.run`.

The steps are called exactly as ``flows/sync_contacts.py::run_cycle`` calls them (lock,
run record, journal resume, extract both sides, lookups, plan, quarantine, load, finish),
minus Great Expectations and the Prefect artifacts: the benchmark measures the sync, not
the orchestrator. SQL statements are counted with a ``before_cursor_execute`` listener on
the very engines the cycle uses (``crm_engine`` / ``state_store`` are cached per URL).
"""

from __future__ import annotations

import os
import resource
import time
from typing import Any

import pandas as pd
import sqlalchemy as sa

from contactsync.config import load_settings
from contactsync.cycle import load as load_step
from contactsync.cycle import steps
from contactsync.cycle.settled import SUMMARY_KEY, is_settled
from contactsync.cycle.sides import crm_engine, open_sides, plan_settings, state_store
from contactsync.plan import plan_cycle


class StatementCounter:
    """Counts the statements sent to the database (an executemany counts once)."""

    def __init__(self, *engines: sa.Engine) -> None:
        self.count = 0
        for engine in engines:
            sa.event.listen(engine, "before_cursor_execute", self._on_execute)

    def _on_execute(self, *_args: Any) -> None:
        self.count += 1


def peak_rss_mb() -> float:
    """This process's peak resident set (Linux reports ru_maxrss in KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def run_cycle(config_path: str, user_id: str, *, force: bool = True) -> dict[str, Any]:
    """One cycle for ``user_id``; returns wall time, SQL statements, counts, errors, RSS.

    ``force`` passes the mass-change guard (R16): a benchmark's first sync is a bulk load.
    """
    settings = load_settings(config_path)
    user = settings.user(user_id)
    counter = StatementCounter(crm_engine(settings.crm_url()), state_store(settings.state_url()).engine)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    mark = started

    def lap(name: str) -> None:
        nonlocal mark
        now = time.perf_counter()
        timings[name] = round(now - mark, 3)
        mark = now

    counter.count = 0  # the state store's migration check at open is set-up, not the cycle
    sides = open_sides(settings, user)
    store = sides.store
    with store.lock(user.crm_user):
        run_id = store.start_run(user.crm_user, dry_run=False, params={"bench": True})
        load_step.resume(sides)
        crm = steps.extract_crm(sides, create_group=True)
        lap("extract_crm")
        rules = plan_settings(settings)
        check = steps.SettledCheck(sides, run_id, crm, rules)
        quiet_settles = os.environ.get("BENCH_SETTLED", "1") != "0" and check.unchanged()
        out = steps.extract_outlook(sides, create_folder=True, settled_if_quiet=quiet_settles)
        lap("extract_outlook")
        status, counts, errors = "ok", steps.counts(pd.DataFrame()), []
        if out.settled:  # as flows/sync_contacts.py::_settled_cycle
            store.finish_run(run_id, status, {"counts": counts, "errors": [], SUMMARY_KEY: check.fingerprint})
            return _result(status, started, timings, counter, 0, counts, 0, 0, errors, out)
        inputs = steps.gather_inputs(sides, crm, out)
        lap("lookups")
        planned = plan_cycle(inputs, rules)
        planned, problems = steps.quarantine(planned, inputs)
        store.record_conflicts(run_id, user.crm_user, planned.conflicts)
        store.record_quarantine(run_id, user.crm_user, problems)
        lap("plan")
        if planned.guard.stopped and not force:
            status = "guard-stopped"
        elif not planned.actions.empty:
            loaded = load_step.load(
                sides, planned, run_id=run_id, group_id=crm.group_id, folder_id=out.folder_id,
                outlook_frame=out.frame,
            )
            counts, errors = steps.counts(loaded.applied), loaded.errors
            status = "ok" if not errors else "failed"
        lap("load")
        summary: dict[str, Any] = {"counts": counts, "errors": errors[:20]}
        if status == "ok" and is_settled(inputs, planned, problems):
            summary[SUMMARY_KEY] = check.fingerprint
        store.finish_run(run_id, status, summary)
    return _result(status, started, timings, counter, len(planned.actions), counts,
                   len(planned.conflicts), len(problems), errors, out)


def _result(
    status: str, started: float, timings: dict[str, float], counter: StatementCounter, actions: int,
    counts: dict[str, Any], conflicts: int, quarantined: int, errors: list[Any], out: steps.OutlookSide,
) -> dict[str, Any]:
    return {
        "status": status,
        "settled": out.settled,
        "wall_s": round(time.perf_counter() - started, 3),
        "steps_s": timings,
        "sql_statements": counter.count,
        "actions": int(actions),
        "counts": counts,
        "conflicts": int(conflicts),
        "quarantined": int(quarantined),
        "errors": len(errors),
        "first_errors": errors[:3],
        "graph_requests_seen_by_client": None if out.extract is None else out.extract.requests,
        "peak_rss_mb": peak_rss_mb(),
    }
