"""Creating records that exist on one side only (R4, R5, R5a-c, R10a).

R5's account choice, per new CRM contact, from its Outlook company name (trimmed):
- R5a empty: a new account named "First Last" (only the part that exists);
- R5b exactly (case-sensitive) the name of a visible account: that account, the first
  found = oldest account_created, then lowest account_id;
- R5c otherwise: a new account with that name.
New accounts are one ``create_account`` row per distinct name (``account_key`` =
``"acct:" + name``) that all CRM creates of this cycle with that name share.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from contactsync.model import FIELDS
from contactsync.plan.frames import (
    as_objects,
    either,
    equal_values,
    filled,
    make_actions,
    norm,
    text,
)
from contactsync.plan.merge import tag_needed
from contactsync.plan.schema import LINK_STATUS_ACTIVE, PlanSettings

#: Account name of an R5a contact with no name at all (R19 quarantines such a record;
#: the plan still names the account so that it stays well-formed).
NO_NAME_ACCOUNT = "(no name)"


@dataclass
class CreateResult:
    actions: list[pd.DataFrame]
    snapshots: pd.DataFrame


def _values(frame: pd.DataFrame, settings: PlanSettings) -> dict[str, np.ndarray]:
    return {f: as_objects(frame[f]) for f in settings.fields}


def _all_fields(settings: PlanSettings) -> str:
    """A create writes every synced field (an empty one sets nothing)."""
    return ",".join(settings.fields)


def _snapshot(
    crm_id: np.ndarray | None,
    outlook_id: np.ndarray | None,
    new_key: np.ndarray | None,
    values: dict[str, np.ndarray],
    n: int,
) -> pd.DataFrame:
    none = np.full(n, None, dtype=object)
    data = {
        "crm_id": none if crm_id is None else crm_id,
        "outlook_id": none if outlook_id is None else outlook_id,
        "new_key": none if new_key is None else new_key,
        "status": filled(n, LINK_STATUS_ACTIVE),
    }
    for f in FIELDS:
        data[f] = values.get(f, none)
    return pd.DataFrame(data)


def r4_create_in_outlook(crm: pd.DataFrame, settings: PlanSettings) -> CreateResult:
    """R4: group members with no link and no match are created in the sync folder."""
    n = len(crm)
    if n == 0 or settings.direction == "outlook-to-crm":
        return CreateResult([], _snapshot(None, None, None, {}, 0))
    crm_id = as_objects(crm["crm_id"])
    values = _values(crm, settings)
    reason = ("R4: CRM contact " + text(crm_id)
              + " is in the sync group with no Outlook match: created in the sync folder")
    act = make_actions(
        "outlook", "create", "R4", reason, n,
        crm_id=crm_id, fields=_all_fields(settings), values=values,
    )
    return CreateResult([act], _snapshot(crm_id, None, None, values, n))


def r5_account_for_new_contacts(
    outlook: pd.DataFrame, accounts: pd.DataFrame | None
) -> pd.DataFrame:
    """R5a/R5b/R5c per Outlook contact: rule, account_id or account_key, account_name."""
    n = len(outlook)
    company = norm(as_objects(outlook["company"]))
    no_company = pd.isna(company)
    rule = either(no_company, "R5a", "R5c")
    name = company.copy()
    if no_company.any():
        first = text(norm(as_objects(outlook["first_name"])[no_company]))
        last = text(norm(as_objects(outlook["last_name"])[no_company]))
        person = first + np.where((first != "") & (last != ""), " ", "") + last
        person[person == ""] = NO_NAME_ACCOUNT
        name[no_company] = person
    account_id = np.full(n, None, dtype=object)
    if accounts is not None and len(accounts) and (~no_company).any():
        first_found = accounts.sort_values(
            ["account_created", "account_id"], na_position="last", kind="stable"
        ).drop_duplicates("account_name", keep="first")
        pos = pd.Index(as_objects(first_found["account_name"])).get_indexer(company)
        hit = (pos >= 0) & ~no_company
        account_id[hit] = as_objects(first_found["account_id"])[pos[hit]]
        rule[hit] = "R5b"
    codes, names = pd.factorize(name)  # a key per distinct name, shared by its contacts
    account_key = np.where(rule == "R5b", None, ("acct:" + text(np.asarray(names, dtype=object)))[codes])
    return pd.DataFrame(
        {"rule": rule, "account_id": account_id, "account_key": account_key, "account_name": name}
    )


def r5_create_in_crm(
    outlook: pd.DataFrame, accounts: pd.DataFrame | None, settings: PlanSettings
) -> CreateResult:
    """R5 (+R10a): sync-folder contacts with no link and no match are created in CRM."""
    n = len(outlook)
    if n == 0 or settings.direction == "crm-to-outlook":
        return CreateResult([], _snapshot(None, None, None, {}, 0))
    outlook_id = as_objects(outlook["outlook_id"])
    oid = text(outlook_id)
    if not settings.create_in_crm:
        reason = ("R10a: Outlook contact " + oid
                  + " matches no CRM contact and create_in_crm is off: stays Outlook-only")
        act = make_actions("crm", "skip", "R10a", reason, n,
                           outlook_id=outlook_id)
        return CreateResult([act], _snapshot(None, None, None, {}, 0))

    acct = r5_account_for_new_contacts(outlook, accounts)
    rule = acct["rule"].to_numpy(dtype=object)
    new_key = ("new:" + oid)
    values = _values(outlook, settings)
    original_company = values.get("company", as_objects(outlook["company"]))
    if "company" in settings.fields:
        values["company"] = acct["account_name"].to_numpy(dtype=object)  # R6: account name
    actions: list[pd.DataFrame] = []

    new_accounts = acct[acct["rule"] != "R5b"]
    if len(new_accounts):
        # One account per distinct name; R5c wins the rule id when both need the name.
        per_name = new_accounts.sort_values("rule", ascending=False, kind="stable")
        per_name = per_name.drop_duplicates("account_key").sort_index()
        m = len(per_name)
        reason = ("R5: new account '" + per_name["account_name"].to_numpy(dtype=object)
                  + "' (Prospect, Active, Everyone) for new CRM contacts")  # numpy adds: no Series ops
        actions.append(make_actions(
            "crm", "create_account", per_name["rule"].to_numpy(dtype=object),
            reason, m,
            account_key=per_name["account_key"].to_numpy(dtype=object),
            account_name=per_name["account_name"].to_numpy(dtype=object),
        ))
    reason = (text(rule) + ": Outlook contact " + oid
              + " matches no CRM contact: created in CRM, added to the sync group, linked;"
              + " account '" + acct["account_name"].to_numpy(dtype=object) + "'")
    actions.append(make_actions(
        "crm", "create", rule, reason, n,
        outlook_id=outlook_id, new_key=new_key,
        account_id=acct["account_id"].to_numpy(dtype=object),
        account_key=acct["account_key"].to_numpy(dtype=object),
        account_name=acct["account_name"].to_numpy(dtype=object),
        fields=_all_fields(settings), values=values,
    ))
    if settings.direction != "outlook-to-crm":
        # R6: the account name flows to the Outlook company (R5a), and that write carries
        # the new CRM id tag (R7a); a contact that R7 could not find again by email after a
        # lost state store is tagged even with nothing else to write (merge.tag_needed).
        company_new = (
            ~equal_values(values["company"], original_company)
            if "company" in settings.fields else np.zeros(n, dtype=bool)
        )
        email1 = values["email1"] if "email1" in values else as_objects(outlook["email1"])
        tag_now = tag_needed(np.full(n, None, dtype=object), as_objects(outlook["crm_tag"]), email1, settings)
        rows = np.flatnonzero(company_new | tag_now)
        company_new = company_new[rows]
        fields = either(company_new, "company", "")
        reason = (text(rule[rows]) + ": tag Outlook contact " + oid[rows]
                  + " with its new CRM id" + np.where(company_new, " and set its company", ""))
        actions.append(make_actions(
            "outlook", "update", rule[rows], reason, rows.size,
            outlook_id=outlook_id[rows], new_key=new_key[rows], fields=fields,
            values={"company": np.where(company_new, values.get("company")[rows], None)}
            if "company" in values else None,
        ))
    return CreateResult(actions, _snapshot(None, outlook_id, new_key, values, n))
