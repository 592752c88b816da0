"""One sync cycle in a child process, without Prefect: the crash tests' victim.

``python -m tests.reliability.cycle_child CONFIG USER [--force]`` runs the steps of
``flows.sync_contacts.run_cycle`` in the same order (lock, resume, extract, look up, plan,
quarantine, guard, load, finish) through the same plain functions the Prefect tasks wrap
(``contactsync.cycle``), so ``CONTACT_SYNC_CRASH_AFTER_WRITES`` can SIGKILL it in the middle
of the load. Importing Prefect would cost seconds per child for no added honesty: the
recovery cycles after the crash run through the real command and flow.

Prints one JSON line (status, counts, errors) and exits with the command's exit codes.
"""

from __future__ import annotations

import json
import sys

from contactsync.config import load_settings
from contactsync.cycle import load as load_step
from contactsync.cycle import steps
from contactsync.cycle.outcome import EXIT_CODES
from contactsync.cycle.sides import open_sides, plan_settings
from contactsync.errors import ContactSyncError, LockedError
from contactsync.plan import plan_cycle


def run(config: str, user_id: str, *, force: bool = False) -> dict:
    """The cycle of ``run_cycle`` minus Prefect; returns the outcome as a dict."""
    settings = load_settings(config)
    user = settings.user(user_id)
    sides = open_sides(settings, user)
    store = sides.store
    try:
        lock = store.lock(user.crm_user)
        lock.__enter__()
    except LockedError as exc:
        return {"status": "locked", "message": exc.describe(), "errors": []}
    run_id = store.start_run(user.crm_user, dry_run=False, params={"force": force})
    out: dict = {"status": "failed", "errors": [], "run_id": run_id}
    try:
        load_step.resume(sides)
        crm = steps.extract_crm(sides, create_group=True)
        outlook = steps.extract_outlook(sides, create_folder=True)
        inputs = steps.gather_inputs(sides, crm, outlook)
        planned = plan_cycle(inputs, plan_settings(settings))
        planned, problems = steps.quarantine(planned, inputs)
        out["planned"] = steps.counts(planned.actions)
        out["quarantined"] = len(problems)
        out["actions"] = steps.describe_actions(planned.actions, limit=1000)
        if planned.guard.stopped and not force:
            out["status"] = "guard-stopped"
        else:
            loaded = load_step.load(
                sides, planned, run_id=run_id, group_id=crm.group_id,
                folder_id=outlook.folder_id, outlook_frame=outlook.frame,
            )
            out["counts"] = steps.counts(loaded.applied)
            out["errors"] = loaded.errors
            out["status"] = "ok" if not loaded.errors else "failed"
        store.finish_run(run_id, out["status"], {"errors": out["errors"][:100]})
    except ContactSyncError as exc:
        out["errors"].append(exc.describe())
        store.finish_run(run_id, "failed", {"errors": out["errors"]})
    finally:
        lock.__exit__(None, None, None)
    return out


def main(argv: list[str]) -> int:
    config, user = argv[0], argv[1]
    result = run(config, user, force="--force" in argv[2:])
    print(json.dumps(result, default=str), flush=True)
    return EXIT_CODES.get(result["status"], 1)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
