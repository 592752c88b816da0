"""Backfill: a full re-read of both sides, re-matching and repair, then a normal cycle.

The full re-read ignores the Outlook delta token and mirror (so anything the mirror missed
is seen again) and distrusts the snapshots of the pairs touched since ``since`` (all of
them without it): those pairs are merged as new matches (R7: an empty side takes the other
side's value, differences follow the conflict policy and are reported). With ``relink`` the
link table is set aside instead, so every pair is found again by tag (R7a) and email (R7),
repairing a damaged state store. The normal cycle afterwards confirms the state is quiet.
Users run through the same fan-out as the sync (flows/sync_all_users.py).
"""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.states import State

from contactsync.config import load_settings
from contactsync.cycle.run import CycleOptions
from contactsync.cycle.users import selected_users
from flows.sync_all_users import fan_out, fan_out_state


@flow(name="backfill")
def backfill(
    users: list[str] | None = None,
    since: str | None = None,
    relink: bool = False,
    config_path: str | None = None,
) -> State[Any]:
    """Full re-read + repair for each user, then a normal cycle; the data: both outcomes.

    The users are picked as the commands pick them (``selected_users``): a named user who
    does not sync, or nobody syncing at all, is the ConfigError that says so, not a run
    that repairs nobody."""
    settings = load_settings(config_path)
    ids = [u.crm_user for u in selected_users(settings, users or ())]
    repair = CycleOptions(full=True, relink=relink, repair=not relink, since=since)
    return fan_out_state(fan_out(settings, config_path, ids, [repair, CycleOptions()]))
