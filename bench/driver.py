"""One measured sync cycle without Prefect, run in a child process of :mod:`bench.run`.

The cycle is ``contactsync.cycle.run.run_cycle`` itself, the one every caller runs, with
its plain steps wrapped in timers; minus Great Expectations and the Prefect artifacts
(the plain steps' defaults): the benchmark measures the sync, not the orchestrator. SQL
statements are counted with a ``before_cursor_execute`` listener on the very engines the
cycle uses (``crm_engine`` / ``state_store`` are cached per URL).
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from contactsync.config import load_settings
from contactsync.cycle.run import PLAIN_STEPS, CycleOptions, run_cycle
from contactsync.cycle.sides import crm_engine, state_store


class StatementCounter:
    """Counts the statements sent to the database (an executemany counts once)."""

    def __init__(self, *engines: sa.Engine) -> None:
        self.count = 0
        for engine in engines:
            sa.event.listen(engine, "before_cursor_execute", self._on_execute)

    def _on_execute(self, *_args: Any) -> None:
        self.count += 1


def _status_mb(key: str) -> float | None:
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(key):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def peak_rss_mb() -> float:
    """This process's own peak resident set: VmHWM, where Linux has it. Not ru_maxrss:
    Linux keeps that across exec, so a child started by a parent of 340 MB (bench.run
    after generating 100,000 people) reported at least 340 MB whatever it used itself."""
    peak = _status_mb("VmHWM:")
    return peak if peak is not None else round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def rss_mb() -> float | None:
    """The resident set now (VmRSS): what a step left behind, where the peak says only
    the most any step reached."""
    return _status_mb("VmRSS:")


def timed_cycle(config_path: str, user_id: str, *, force: bool = True) -> dict[str, Any]:
    """One cycle for ``user_id``; returns wall time per step, SQL statements, counts, errors, RSS.

    ``force`` passes the mass-change guard (R16): a benchmark's first sync is a bulk load.
    ``BENCH_SETTLED=0`` makes a quiet cycle plan in full (no settled stop, R17);
    ``BENCH_OVERLAP=0`` reads and writes the CRM first, then the Outlook folder (no overlap).
    """
    settings = load_settings(config_path)
    user = settings.user(user_id)
    counter = StatementCounter(crm_engine(settings.crm_url()), state_store(settings.state_url()).engine)
    timings: dict[str, float] = {}
    cpu: dict[str, float] = {}
    rss: dict[str, float] = {}
    rss_now: dict[str, float | None] = {}
    # What the report needs of the steps' results, not the results: holding every step's
    # frames to the end of the cycle would make the measured peak the bench's, not the sync's.
    seen: dict[str, Any] = {"settled": False, "requests": None, "actions": 0}

    def timer(name: str, step: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            t0, c0 = time.perf_counter(), time.process_time()
            value = step(*args, **kwargs)
            timings[name] = round(time.perf_counter() - t0, 3)
            cpu[name] = round(time.process_time() - c0, 3)  # the load of other processes aside
            rss[name] = peak_rss_mb()  # the process's peak so far, at the step's end
            rss_now[name] = rss_mb()
            if name == "extract_outlook":
                seen["settled"] = bool(value.settled)
                seen["requests"] = None if value.extract is None else value.extract.requests
            elif name == "quarantine":
                seen["actions"] = int(len(value[0].actions))
            return value
        return timed

    counter.count = 0  # the state store's migration check at open is set-up, not the cycle
    started, cpu_started = time.perf_counter(), time.process_time()
    rss_start = rss_mb()
    options = CycleOptions(force=force, settle=os.environ.get("BENCH_SETTLED", "1") != "0",
                           overlap=os.environ.get("BENCH_OVERLAP", "1") != "0")
    outcome = run_cycle(settings, user, options, PLAIN_STEPS.wrapped(timer))
    return {
        "status": outcome.status,
        "settled": seen["settled"],
        "wall_s": round(time.perf_counter() - started, 3),
        "cycle_cpu_s": round(time.process_time() - cpu_started, 3),
        "steps_s": timings,
        "steps_cpu_s": cpu,
        "peak_rss_mb_after_step": rss,
        "rss_mb_at_start": rss_start,
        "rss_mb_after_step": rss_now,
        "sql_statements": counter.count,
        "actions": seen["actions"],
        "counts": outcome.counts,
        "conflicts": outcome.conflicts,
        "quarantined": outcome.quarantined,
        "errors": len(outcome.errors),
        "first_errors": outcome.errors[:3],
        "graph_requests_seen_by_client": seen["requests"],
        "peak_rss_mb": peak_rss_mb(),
    }
