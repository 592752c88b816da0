"""One sync cycle in a child process, without Prefect: the crash tests' victim.

``python -m tests.reliability.cycle_child CONFIG USER [--force]`` runs
``contactsync.cycle.run.run_cycle``, the very cycle of the Prefect flow (lock, resume,
extract, settled check, plan, quarantine, guard, load, state, run record), with its plain
steps, so ``CONTACT_SYNC_CRASH_AFTER_WRITES`` can SIGKILL it in the middle of the load.
Importing Prefect would cost seconds per child for no added honesty: the flow passes the
same steps wrapped as tasks, and the recovery cycles after the crash run through the real
command and flow.

Prints one JSON line (the cycle's outcome) and exits with the command's exit codes.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from contactsync.config import load_settings
from contactsync.cycle.run import CycleOptions, run_cycle


def run(config: str, user_id: str, *, force: bool = False) -> dict[str, Any]:
    """The flow's cycle with plain steps; returns the outcome as a dict."""
    settings = load_settings(config)
    return run_cycle(settings, settings.user(user_id), CycleOptions(force=force)).to_dict()


def main(argv: list[str]) -> int:
    from contactsync.cycle.outcome import EXIT_CODES

    config, user = argv[0], argv[1]
    result = run(config, user, force="--force" in argv[2:])
    print(json.dumps(result, default=str), flush=True)
    return EXIT_CODES.get(result["status"], 1)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
