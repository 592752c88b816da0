"""Quarantine of whole pairs (R19: none of a record's changes are written).

A problem names a record or an action; every action of that pair goes, with the account
made only for it, and a create goes with its faulty account. Pure pandas over the plan.
"""

from __future__ import annotations

import pandas as pd


def quarantine_ids(problems: pd.DataFrame) -> set[str]:
    """The record ids with at least one problem (for reports and filters)."""
    return {str(v) for v in problems["record_id"].dropna().unique()}


def quarantine_actions(
    actions: pd.DataFrame, problems: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split the plan into (kept, quarantined) actions (R19: none of a record's changes).

    ``problems`` may mix record problems (side ``crm``/``outlook``: record_id is a
    crm_id/outlook_id) and plan problems (``action_id`` set). Every action of a
    quarantined pair goes: the same crm_id, outlook_id or new_key. A ``create_account``
    goes with its last remaining create, and a create goes with its faulty account.
    """
    if actions.empty or problems.empty:
        return actions, actions.iloc[0:0]
    crm_ids: set = set()
    outlook_ids: set = set()
    action_ids: set = set()
    has_action = problems["action_id"].notna() if "action_id" in problems else None
    rec = problems if has_action is None else problems[~has_action]
    crm_ids |= set(rec.loc[rec["side"] == "crm", "record_id"].dropna())
    outlook_ids |= set(rec.loc[rec["side"] == "outlook", "record_id"].dropna())
    if has_action is not None:
        action_ids |= set(problems.loc[has_action, "action_id"])

    drop = actions["action_id"].isin(action_ids).to_numpy()
    for _ in range(4):  # pair -> account -> pairs of that account: converges quickly
        hit = actions[drop]
        crm_ids |= set(hit["crm_id"].dropna())
        outlook_ids |= set(hit["outlook_id"].dropna())
        new_keys = set(hit["new_key"].dropna())
        bad_accounts = set(hit.loc[hit["op"] == "create_account", "account_key"].dropna())
        new_drop = (
            drop
            | actions["crm_id"].isin(crm_ids).to_numpy()
            | actions["outlook_id"].isin(outlook_ids).to_numpy()
            | actions["new_key"].isin(new_keys).to_numpy()
            | (
                (actions["op"] != "create_account") & actions["account_key"].isin(bad_accounts)
            ).to_numpy()
        )
        # an account to create that no remaining create refers to is not made
        is_acct = (actions["op"] == "create_account").to_numpy()
        users = set(actions.loc[~new_drop & ~is_acct, "account_key"].dropna())
        new_drop |= is_acct & ~actions["account_key"].isin(users).to_numpy()
        if (new_drop == drop).all():
            break
        drop = new_drop
    return actions[~drop], actions[drop]
