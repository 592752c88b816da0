"""The sync cycle of one user, written once (DESIGN.md "One cycle, as data").

lock -> resume the journal (R18) -> extract the CRM group (R1/R2) -> settled check (R17)
-> extract the Outlook folder (R3) -> look up -> plan -> quarantine (R19) -> validate
(GX) -> guard (R16) or dry run (R20) -> load (journaled, R18) -> record the run.

:func:`run_cycle` is that sequence over a table of named steps (:class:`CycleSteps`). Every
caller runs this one function: the Prefect flow passes the steps wrapped as its tasks
(``tasks/cycle.py``: retries on transient errors, GX validation, artifacts, the run
logger), the benchmark passes them wrapped in timers, and the crash tests pass the plain
functions. So what a contact goes through is the same whoever drives the cycle, and no
copy of the order can drift. Nothing here imports Prefect or Great Expectations: the
steps that need them are supplied by ``flows/``.
"""

from __future__ import annotations

import contextvars
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from contactsync.config import Settings, UserSettings
from contactsync.cycle import load as load_step
from contactsync.cycle import steps
from contactsync.cycle.memory import (
    RELEASE_MIN_ROWS,
    kept_through_the_loads,
    release,
    tune_allocator,
)
from contactsync.cycle.outcome import CycleOutcome
from contactsync.cycle.settled import SUMMARY_KEY, is_settled
from contactsync.cycle.sides import Sides, open_sides, plan_settings
from contactsync.errors import ContactSyncError, LockedError
from contactsync.plan import plan_cycle
from contactsync.plan.schema import PlanInputs, PlanResult


@dataclass(frozen=True)
class CycleOptions:
    """What this run asks of the cycle: the command's switches and the backfill's.

    ``full``/``relink``/``repair``/``since`` are the backfill's: re-read the whole folder,
    forget the links (re-match), or distrust the snapshots of pairs touched since a date.
    ``settle`` lets a quiet cycle stop early (contactsync.cycle.settled); the benchmark
    turns it off to measure a quiet cycle that plans in full. ``overlap`` reads and
    writes the CRM beside the Outlook folder where the two are independent (the extracts,
    the loads); the benchmark turns it off to measure the two ways side by side.
    """

    dry_run: bool = False
    force: bool = False
    policy: str | None = None
    direction: str | None = None
    full: bool = False
    relink: bool = False
    repair: bool = False
    since: str | None = None
    settle: bool = True
    overlap: bool = True

    @property
    def may_settle(self) -> bool:
        # A backfill and a dry run (which reports its whole plan) always plan in full.
        return self.settle and not (self.dry_run or self.full or self.relink or self.repair)

    def params(self) -> dict[str, Any]:
        """The run record's parameters (no secrets: switches only)."""
        out = asdict(self)
        del out["settle"], out["overlap"]
        return out


def _load_outlook(
    prepared: load_step.Prepared, crm_results: pd.DataFrame, *, folder_id: str | None, outlook_frame: pd.DataFrame
) -> pd.DataFrame:
    """The Outlook writes, reporting their progress to the command's bar (if one is shown)."""
    from contactsync import progress

    user = prepared.sides.user_id.strip()
    return load_step.load_outlook(
        prepared, crm_results, folder_id=folder_id, outlook_frame=outlook_frame,
        progress=lambda done, total: progress.report(user, done, total),
    )


def no_validation(inputs: PlanInputs, result: PlanResult, data_docs_dir: str | None) -> dict[str, Any]:
    """The validation step of a caller without Great Expectations (the crash tests, the
    benchmark): quarantine (R19) never depends on it, so the cycle is the same without."""
    return {"ran": False, "reason": "no GX validator in this process"}


def no_publish(outcome: CycleOutcome) -> None:
    """The artifacts step of a caller without an orchestrator: the run record is enough."""


def _default_logger() -> logging.Logger | logging.LoggerAdapter[Any]:
    return logging.getLogger("contactsync.cycle")


#: The names of the steps :func:`run_cycle` calls, in the order a cycle with writes calls
#: them (``CycleSteps.wrapped`` wraps exactly these).
STEP_NAMES = (
    "resume", "extract_crm", "extract_outlook", "gather_inputs", "plan", "quarantine",
    "validate", "prepare", "load_crm", "load_outlook", "record_state",
)


@dataclass(frozen=True)
class CycleSteps:
    """The steps of a cycle by name; the defaults are the plain functions.

    A caller replaces some (``dataclasses.replace``) or wraps all (:meth:`wrapped`); the
    order they run in is :func:`run_cycle`'s alone.
    """

    resume: Callable[..., int] = load_step.resume
    extract_crm: Callable[..., steps.CrmSide] = steps.extract_crm
    extract_outlook: Callable[..., steps.OutlookSide] = steps.extract_outlook
    gather_inputs: Callable[..., PlanInputs] = steps.gather_inputs
    plan: Callable[..., PlanResult] = plan_cycle
    quarantine: Callable[..., tuple[PlanResult, pd.DataFrame]] = steps.quarantine
    validate: Callable[..., dict[str, Any]] = no_validation
    prepare: Callable[..., load_step.Prepared] = load_step.prepare
    load_crm: Callable[..., pd.DataFrame] = load_step.load_crm
    load_outlook: Callable[..., pd.DataFrame] = _load_outlook
    record_state: Callable[..., load_step.LoadOutcome] = load_step.finish
    #: not steps of the data: where the outcome is shown and where the cycle logs
    publish: Callable[[CycleOutcome], None] = no_publish
    logger: Callable[[], logging.Logger | logging.LoggerAdapter[Any]] = field(default=_default_logger)

    def wrapped(self, wrap: Callable[[str, Callable[..., Any]], Callable[..., Any]]) -> CycleSteps:
        """Every step of :data:`STEP_NAMES` passed through ``wrap(name, step)``."""
        return replace(self, **{name: wrap(name, getattr(self, name)) for name in STEP_NAMES})


PLAIN_STEPS = CycleSteps()


def data_docs_dir(settings: Settings, user: UserSettings) -> Path:
    """Where a user's GX Data Docs go: beside the state store (or the config file)."""
    url = settings.state_url()
    base = Path(url[len("sqlite:///"):]).parent if url.startswith("sqlite:///") else settings.base_dir
    return base / "gx-docs" / user.crm_user.strip()


def run_cycle(
    settings: Settings, user: UserSettings, options: CycleOptions | None = None,
    run: CycleSteps = PLAIN_STEPS,
) -> CycleOutcome:
    """One cycle for one user; never raises for a cycle's own failure (status 'failed').

    Takes the user's lock first: two cycles for one user never write at once (exit 4).
    """
    options = options or CycleOptions()
    logger = run.logger()
    started = time.monotonic()
    uid = user.crm_user
    tune_allocator()  # once per process: frames of 100,000 rows go back to the OS (issue 15)
    try:
        sides = open_sides(settings, user)
        with sides.store.lock(uid):
            outcome = _locked_cycle(sides, options, run)
    except LockedError as exc:
        logger.warning("user %s: %s", uid.strip(), exc.message)
        return CycleOutcome(user=uid, status="locked", dry_run=options.dry_run, message=exc.describe())
    except ContactSyncError as exc:
        logger.error("user %s: %s", uid.strip(), exc.describe())
        return CycleOutcome(user=uid, status="failed", dry_run=options.dry_run, message=exc.describe(),
                            errors=[exc.describe()])
    outcome.duration_s = round(time.monotonic() - started, 3)
    return outcome


def _locked_cycle(sides: Sides, options: CycleOptions, run: CycleSteps) -> CycleOutcome:
    """The cycle proper, under the user's lock; a failure is recorded, not raised."""
    logger = run.logger()
    started = time.monotonic()
    store, uid, dry_run = sides.store, sides.user_id, options.dry_run
    run_id = store.start_run(uid, dry_run=dry_run, params=options.params())
    outcome = CycleOutcome(user=uid, status="failed", dry_run=dry_run, run_id=run_id)
    gx: dict[str, Any] = {}
    try:
        if not dry_run:
            relinked = run.resume(sides)
            if relinked:
                logger.info("resumed a cut cycle: %d pair(s) re-linked from the journal (R18)", relinked)
        rules = plan_settings(sides.settings, policy=options.policy, direction=options.direction)
        check = steps.SettledCheck(sides, run_id, steps.CrmSide(None, pd.DataFrame()), rules)
        if not options.overlap or (options.may_settle and check.previous is not None):
            # The previous run settled: an unchanged CRM group lets a quiet delta end the
            # cycle (R17), so the CRM is read first and the Outlook extract is told (and
            # without ``overlap``, the order before it, for the benchmark).
            check.crm = crm = run.extract_crm(sides, create_group=not dry_run)
            out = run.extract_outlook(sides, create_folder=not dry_run, full=options.full,
                                      settled_if_quiet=check.unchanged if options.may_settle else False)
        else:
            crm, out = _extract_both(run, sides, options)
            check.crm = crm
        if out.settled:
            logger.info("user %s: settled: the CRM group reads back unchanged and the folder's delta is "
                        "empty (R17)", uid.strip())
            outcome.status, outcome.message = "ok", "nothing changed since the last cycle (R17)"
            gx = {"ran": False, "reason": "settled: nothing to validate"}
            return _finish(sides, outcome, gx, started, run, settled=check.fingerprint)
        since = pd.Timestamp(options.since, tz="UTC") if options.since else None
        inputs = run.gather_inputs(sides, crm, out, relink=options.relink, repair=options.repair, since=since)
        planned = run.plan(inputs, rules)
        planned, problems = run.quarantine(planned, inputs)
        # The plan's own working frames and the unfiltered plan: freed and given back
        # (cycle.memory). Both grow with the plan (only the pairs that changed are merged):
        # a small plan's are not worth a full collection (0.05-0.1 s at any size).
        planned_rows = len(planned.actions) + len(planned.snapshots)
        release(len(inputs.crm) + len(inputs.outlook), collect=planned_rows >= RELEASE_MIN_ROWS)
        gx = (
            run.validate(inputs, planned, str(data_docs_dir(sides.settings, sides.user)))
            if sides.settings.sync.gx_validation
            else {"ran": False}
        )
        _record_plan(sides, outcome, planned, problems, logger)
        plan_settles = is_settled(inputs, planned, problems)
        if dry_run:
            outcome.status = "dry-run"
            outcome.counts = steps.counts(planned.actions)
            outcome.message = "dry run: nothing written (R20). " + (
                f"The guard would stop this cycle (R16): {planned.guard.reason}" if planned.guard.stopped else ""
            )
        elif planned.guard.stopped and not options.force:
            outcome.status = "guard-stopped"
            outcome.message = (
                f"stopped before writing anything (R16): {planned.guard.reason}. "
                "Check the folder and the group; run with --force if this is intended."
            )
        else:
            prepared = run.prepare(sides, planned, run_id=run_id)
            # The actions as journaled (new CRM ids allocated) stand for the plan's own from
            # here on: one copy of a first sync's 160,000 actions through the loads, not two.
            planned = prepared.plan = replace(planned, actions=prepared.actions)
            group_id, folder_id = crm.group_id, out.folder_id
            rows_read = len(inputs.crm) + len(inputs.outlook)
            if plan_settles:  # nothing to write: the CRM frame stays for the settled fingerprint
                history_crm, outlook_rows = inputs.crm, inputs.outlook
            else:
                # Of the two side frames, only what the loads and the history read is kept
                # through the loads (cycle.memory); the whole frames are freed here, not after.
                history_crm, outlook_rows = kept_through_the_loads(
                    inputs.crm, inputs.outlook, prepared.actions, planned.conflicts, problems)
                check.crm = steps.CrmSide(group_id, history_crm.iloc[:0])  # never fingerprinted: no settling
            prepared.read = (history_crm, outlook_rows)  # history kept as the writes commit (cycle.record)
            del inputs, crm, out
            # (freed by their references going, given back; with a full collection only where
            # the loads ahead are big enough to raise the peak: a first sync's)
            release(rows_read, collect=len(prepared.actions) >= RELEASE_MIN_ROWS)
            if options.overlap:
                crm_results, out_results = _load_both(run, prepared, group_id, folder_id, outlook_rows)
            else:
                crm_results = run.load_crm(prepared, group_id=group_id)
                out_results = run.load_outlook(prepared, crm_results, folder_id=folder_id,
                                               outlook_frame=outlook_rows)
            loaded = run.record_state(prepared, crm_results, out_results)
            store.record_history(  # `contact-sync explain` (issue 14)
                run_id, uid, crm=history_crm, outlook=outlook_rows,
                applied=loaded.applied if loaded.history_due is None else loaded.history_due,
                conflicts=planned.conflicts, problems=problems, results=loaded.results,
                keep_days=sides.settings.report.history_days)
            outcome.counts = steps.counts(loaded.applied)
            outcome.errors = loaded.errors
            outcome.status = "ok" if not loaded.errors else "failed"
            if loaded.errors:
                outcome.message = f"{len(loaded.errors)} write(s) failed; the next cycle retries them"
        settles = outcome.status == "ok" and plan_settles
        # The next quiet cycle can stop early only after a cycle that settled.
        return _finish(sides, outcome, gx, started, run, settled=check.fingerprint if settles else None)
    except ContactSyncError as exc:
        return _failed(sides, outcome, exc.describe(), started, logger.error)
    except Exception as exc:  # an unexpected error fails this user's cycle, not the others
        logger.exception("user %s: cycle failed", uid.strip())
        return _failed(sides, outcome, f"{type(exc).__name__}: {exc}", started, None)


def _extract_both(run: CycleSteps, sides: Sides, options: CycleOptions) -> tuple[steps.CrmSide, steps.OutlookSide]:
    """The CRM group read in a thread beside the Outlook folder's delta chain (whose pages
    come one after another, each with the next one's link): the two sides are independent
    until the plan. Both have ended when this returns; the first error is raised."""
    create = not options.dry_run
    with ThreadPoolExecutor(1, thread_name_prefix="crm-extract") as pool:
        crm_future = pool.submit(contextvars.copy_context().run, run.extract_crm, sides, create_group=create)
        try:
            out = run.extract_outlook(sides, create_folder=create, full=options.full, settled_if_quiet=False)
        except BaseException:
            wait([crm_future])
            raise
        return crm_future.result(), out


def _load_both(
    run: CycleSteps, prepared: load_step.Prepared, group_id: str, folder_id: str | None,
    outlook_rows: pd.DataFrame,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The CRM load in a thread beside the Outlook load (everything is journaled already,
    R18): the Outlook writes that need no CRM result do not wait for the CRM ones
    (``load.load_outlook``). The thread runs in this context, so a Prefect flow's task
    runs keep their parent; both loads have ended, one way or the other, when this returns.
    """
    with ThreadPoolExecutor(1, thread_name_prefix="crm-load") as pool:
        crm_future = pool.submit(contextvars.copy_context().run, run.load_crm, prepared, group_id=group_id)
        try:
            out_results = run.load_outlook(prepared, crm_future, folder_id=folder_id, outlook_frame=outlook_rows)
        except BaseException:
            wait([crm_future])  # the CRM writes finish and are journaled before the error is raised
            raise
        return crm_future.result(), out_results


def _record_plan(
    sides: Sides, outcome: CycleOutcome, planned: PlanResult, problems: pd.DataFrame,
    logger: logging.Logger | logging.LoggerAdapter[Any],
) -> None:
    """The plan's conflicts (R9) and quarantined records (R19), in the run and the outcome."""
    uid = sides.user_id
    sides.store.record_conflicts(outcome.run_id, uid, planned.conflicts)
    sides.store.record_quarantine(outcome.run_id, uid, problems)
    outcome.conflicts = int(len(planned.conflicts))
    outcome.quarantined = quarantined_records(problems)
    outcome.conflict_rows = steps.records(planned.conflicts)
    outcome.problems = steps.records(problems)
    outcome.actions = steps.describe_actions(planned.actions, limit=200)
    logger.info(
        "user %s: plan of %d action(s), %d conflict(s), %d quarantined; guard: %s",
        uid.strip(), len(planned.actions), outcome.conflicts, outcome.quarantined, planned.guard.reason,
    )


def _finish(
    sides: Sides, outcome: CycleOutcome, gx: dict[str, Any], started: float, run: CycleSteps,
    *, settled: str | None,
) -> CycleOutcome:
    """Close the run record (with the settled fingerprint, if any) and publish the outcome."""
    outcome.duration_s = round(time.monotonic() - started, 3)
    summary = _summary(outcome, gx)
    if settled:
        summary[SUMMARY_KEY] = settled
    sides.store.finish_run(outcome.run_id, outcome.status, summary)
    run.publish(outcome)
    return outcome


def _failed(
    sides: Sides, outcome: CycleOutcome, message: str, started: float, log: Callable[..., None] | None,
) -> CycleOutcome:
    outcome.status = "failed"
    outcome.message = message
    outcome.errors.append(message)
    if log is not None:
        log("user %s: %s", outcome.user.strip(), message)
    outcome.duration_s = round(time.monotonic() - started, 3)
    sides.store.finish_run(outcome.run_id, "failed", _summary(outcome, {}))
    return outcome


def quarantined_records(problems: Any) -> int:
    """How many contact records were held back: a record found both on its side and in the
    plan (as the ``new:`` key of the CRM row it would have made) counts once, and an
    account that would have been made for it (``acct:`` key) is not a record of its own."""
    if problems is None or problems.empty:
        return 0
    ids = problems["record_id"].dropna().astype(str)
    return int(ids[~ids.str.startswith("acct:")].str.removeprefix("new:").nunique())


def _summary(outcome: CycleOutcome, gx: dict[str, Any]) -> dict[str, Any]:
    return {
        "counts": outcome.counts,
        "conflicts": outcome.conflicts,
        "quarantined": outcome.quarantined,
        "errors": outcome.errors[:100],
        "message": outcome.message,
        "duration_s": outcome.duration_s,
        "actions": outcome.actions[:200],
        "gx": gx,
    }
