"""The sync cycle for one user, as a Prefect flow (DESIGN.md "One cycle, as data").

extract both sides -> look up -> plan -> quarantine (R19) -> validate (GX) ->
guard (R16) / dry run (R20) -> load (journaled, R18) -> record the run and publish
artifacts. The per-user lock makes sure two cycles for one user never write at once.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import flow, get_run_logger

from contactsync.config import Settings, UserSettings, load_settings
from contactsync.cycle import steps
from contactsync.cycle.outcome import CycleOutcome
from contactsync.cycle.settled import SUMMARY_KEY, is_settled
from contactsync.cycle.sides import Sides, open_sides, plan_settings
from contactsync.errors import ContactSyncError, LockedError
from flows.artifacts import publish
from tasks import cycle as t
from tasks.validate import validate


def data_docs_dir(settings: Settings, user: UserSettings) -> Path:
    """Where a user's GX Data Docs go: beside the state store (or the config file)."""
    url = settings.state_url()
    base = Path(url[len("sqlite:///"):]).parent if url.startswith("sqlite:///") else settings.base_dir
    return base / "gx-docs" / user.crm_user.strip()


def run_cycle(
    settings: Settings,
    user: UserSettings,
    *,
    dry_run: bool = False,
    force: bool = False,
    policy: str | None = None,
    direction: str | None = None,
    full: bool = False,
    relink: bool = False,
    repair: bool = False,
    since: str | None = None,
) -> CycleOutcome:
    """One cycle for one user; never raises for a cycle's own failure (status 'failed').

    ``full``/``relink``/``repair``/``since`` are the backfill's: re-read the whole folder,
    forget the links (re-match), or distrust the snapshots of pairs touched since a date.
    """
    logger = get_run_logger()
    started = time.monotonic()
    uid = user.crm_user
    try:
        sides = open_sides(settings, user)
        with sides.store.lock(uid):
            outcome = _locked_cycle(
                sides, dry_run=dry_run, force=force, policy=policy, direction=direction,
                full=full, relink=relink, repair=repair, since=since,
            )
    except LockedError as exc:
        logger.warning("user %s: %s", uid.strip(), exc.message)
        return CycleOutcome(user=uid, status="locked", dry_run=dry_run, message=exc.describe())
    except ContactSyncError as exc:
        logger.error("user %s: %s", uid.strip(), exc.describe())
        return CycleOutcome(user=uid, status="failed", dry_run=dry_run, message=exc.describe(), errors=[exc.describe()])
    outcome.duration_s = round(time.monotonic() - started, 3)
    return outcome


def _locked_cycle(
    sides: Sides, *, dry_run: bool, force: bool, policy: str | None, direction: str | None,
    full: bool, relink: bool, repair: bool, since: str | None,
) -> CycleOutcome:
    """The cycle proper, under the user's lock; a failure is recorded, not raised."""
    logger = get_run_logger()
    started = time.monotonic()
    settings, user, store = sides.settings, sides.user, sides.store
    uid = user.crm_user
    params = {
        "dry_run": dry_run, "force": force, "policy": policy, "direction": direction,
        "full": full, "relink": relink, "repair": repair, "since": since,
    }
    run_id = store.start_run(uid, dry_run=dry_run, params=params)
    outcome = CycleOutcome(user=uid, status="failed", dry_run=dry_run, run_id=run_id)
    try:
        if not dry_run:
            relinked = t.resume(sides)
            if relinked:
                logger.info("resumed a cut cycle: %d pair(s) re-linked from the journal (R18)", relinked)
        crm = t.extract_crm(sides, create_group=not dry_run)
        rules = plan_settings(settings, policy=policy, direction=direction)
        check = steps.SettledCheck(sides, run_id, crm, rules)
        # A backfill and a dry run (which reports its whole plan) always plan in full.
        quiet_settles = not (dry_run or full or relink or repair) and check.unchanged()
        out = t.extract_outlook(sides, create_folder=not dry_run, full=full, settled_if_quiet=quiet_settles)
        if out.settled:
            return _settled_cycle(sides, outcome, check.fingerprint, started)
        since_ts = pd.Timestamp(since, tz="UTC") if since else None
        inputs = t.gather_inputs(sides, crm, out, relink=relink, repair=repair, since=since_ts)
        planned = t.plan(inputs, rules)
        planned, problems = t.quarantine(planned, inputs)
        gx = (
            validate(inputs, planned, str(data_docs_dir(settings, user)))
            if settings.sync.gx_validation
            else {"ran": False}
        )
        store.record_conflicts(run_id, uid, planned.conflicts)
        store.record_quarantine(run_id, uid, problems)
        outcome.conflicts = int(len(planned.conflicts))
        outcome.quarantined = quarantined_records(problems)
        outcome.conflict_rows = steps.records(planned.conflicts)
        outcome.problems = steps.records(problems)
        outcome.actions = steps.describe_actions(planned.actions, limit=200)
        logger.info(
            "user %s: plan of %d action(s), %d conflict(s), %d quarantined; guard: %s",
            uid.strip(), len(planned.actions), outcome.conflicts, outcome.quarantined, planned.guard.reason,
        )
        if dry_run:
            outcome.status = "dry-run"
            outcome.counts = steps.counts(planned.actions)
            outcome.message = "dry run: nothing written (R20). " + (
                f"The guard would stop this cycle (R16): {planned.guard.reason}" if planned.guard.stopped else ""
            )
        elif planned.guard.stopped and not force:
            outcome.status = "guard-stopped"
            outcome.message = (
                f"stopped before writing anything (R16): {planned.guard.reason}. "
                "Check the folder and the group; run with --force if this is intended."
            )
        else:
            prepared = t.prepare(sides, planned, run_id)
            crm_results = t.load_crm(prepared, crm.group_id)
            out_results = t.load_outlook(prepared, crm_results, out.folder_id, out.frame)
            loaded = t.record_state(prepared, crm_results, out_results)
            store.record_history(  # `contact-sync explain` (issue 14)
                run_id, uid, crm=inputs.crm, outlook=inputs.outlook, applied=loaded.applied,
                conflicts=planned.conflicts, problems=problems, results=loaded.results,
                keep_days=settings.report.history_days)
            outcome.counts = steps.counts(loaded.applied)
            outcome.errors = loaded.errors
            outcome.status = "ok" if not loaded.errors else "failed"
            if loaded.errors:
                outcome.message = f"{len(loaded.errors)} write(s) failed; the next cycle retries them"
        outcome.duration_s = round(time.monotonic() - started, 3)
        summary = _summary(outcome, gx)
        if outcome.status == "ok" and is_settled(inputs, planned, problems):
            summary[SUMMARY_KEY] = check.fingerprint  # the next quiet cycle can stop early
        store.finish_run(run_id, outcome.status, summary)
        publish(outcome)
    except ContactSyncError as exc:
        outcome.status = "failed"
        outcome.message = exc.describe()
        outcome.errors.append(exc.describe())
        logger.error("user %s: %s", uid.strip(), exc.describe())
        store.finish_run(run_id, "failed", _summary(outcome, {}))
    except Exception as exc:  # an unexpected error fails this user's cycle, not the others
        outcome.status = "failed"
        outcome.message = f"{type(exc).__name__}: {exc}"
        outcome.errors.append(outcome.message)
        logger.exception("user %s: cycle failed", uid.strip())
        store.finish_run(run_id, "failed", _summary(outcome, {}))
    return outcome


def _settled_cycle(sides: Sides, outcome: CycleOutcome, fingerprint: str, started: float) -> CycleOutcome:
    """Nothing changed since a cycle that planned nothing: this one plans nothing either
    (contactsync.cycle.settled), and says so without reading the mirror or the links."""
    get_run_logger().info(
        "user %s: settled: the CRM group reads back unchanged and the folder's delta is empty (R17)",
        outcome.user.strip(),
    )
    outcome.status = "ok"
    outcome.message = "nothing changed since the last cycle (R17)"
    outcome.duration_s = round(time.monotonic() - started, 3)
    summary = _summary(outcome, {"ran": False, "reason": "settled: nothing to validate"})
    summary[SUMMARY_KEY] = fingerprint
    sides.store.finish_run(outcome.run_id, "ok", summary)
    publish(outcome)
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


@flow(name="sync_contacts", flow_run_name="sync-{user}", log_prints=False)
def sync_contacts(
    user: str,
    dry_run: bool = False,
    force: bool = False,
    policy: str | None = None,
    direction: str | None = None,
    config_path: str | None = None,
    full: bool = False,
    relink: bool = False,
) -> dict[str, Any]:
    """One sync cycle for one CRM user (spec/INTERFACE.md ``contact-sync sync --user``)."""
    settings = load_settings(config_path)
    outcome = run_cycle(
        settings, settings.user(user), dry_run=dry_run, force=force,
        policy=policy, direction=direction, full=full, relink=relink,
    )
    return outcome.to_dict()
