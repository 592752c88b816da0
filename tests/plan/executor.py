"""An in-memory world (CRM, Outlook folder, link table) and an executor of plans.

Written for the planning tests: it executes a PlanResult the way the loaders are meant
to (schema.py: what each operation means), so a property test can check what a user
sees after a cycle. It has no CRM delete at all (R15): only the test's "user" deletes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from contactsync.model import (
    ACCOUNT_COLUMNS,
    CRM_COLUMNS,
    FIELDS,
    OUTLOOK_COLUMNS,
    conform,
    normalise_series,
)
from contactsync.plan import (
    LINK_COLUMNS,
    PlanInputs,
    PlanResult,
    PlanSettings,
    candidate_company_names,
    candidate_emails,
    plan_cycle,
)
from contactsync.plan.frames import norm

T0 = pd.Timestamp("2026-01-01T00:00:00Z")


def same(a: Any, b: Any, email: bool = False) -> bool:
    """Normalised equality of two single values (model semantics)."""
    import numpy as np

    na, nb = norm(np.array([a, b], dtype=object), email=email)
    return na == nb


@dataclass
class World:
    """Both systems and the sync's state, as plain dicts."""

    crm: dict[str, dict[str, Any]] = field(default_factory=dict)  # crm_id -> row
    accounts: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> name, created
    outlook: dict[str, dict[str, Any]] = field(default_factory=dict)  # folder contacts
    links: dict[str, dict[str, Any]] = field(default_factory=dict)  # outlook_id -> link row
    clock: int = 0
    seq: int = 0

    def tick(self) -> pd.Timestamp:
        self.clock += 1
        return T0 + pd.Timedelta(minutes=self.clock)

    def new_id(self, prefix: str) -> str:
        self.seq += 1
        return f"{prefix}{self.seq:04}"

    # --- what the extractors would read --------------------------------------------
    def crm_row(self, crm_id: str) -> dict[str, Any]:
        row = dict(self.crm[crm_id])
        row["crm_id"] = crm_id
        row["company"] = self.accounts[row["account_id"]]["name"]
        return row

    def inputs(self) -> PlanInputs:
        members = [self.crm_row(c) for c, r in self.crm.items() if r["in_group"]]
        outlook = [{"outlook_id": o, **r} for o, r in self.outlook.items()]
        links = [{"outlook_id": o, **r} for o, r in self.links.items()]
        outlook_df = conform(pd.DataFrame(outlook, columns=list(OUTLOOK_COLUMNS)),
                             OUTLOOK_COLUMNS)
        links_df = conform(pd.DataFrame(links, columns=list(LINK_COLUMNS)), LINK_COLUMNS)
        emails = set(candidate_emails(outlook_df, links_df))
        outside = [
            self.crm_row(c) for c, r in self.crm.items()
            if not r["in_group"] and any(
                r.get(f) is not None and normalise_series(pd.Series([r[f]]), email=True)[0]
                in emails for f in ("email1", "email2", "email3"))
        ]
        names = set(candidate_company_names(outlook_df, links_df))
        accounts = [{"account_id": a, "account_name": r["name"], "account_created": r["created"]}
                    for a, r in self.accounts.items() if r["name"] in names]
        member_ids = {m["crm_id"] for m in members}
        gone = [{"crm_id": lk["crm_id"], "exists": lk["crm_id"] in self.crm}
                for lk in links if lk["crm_id"] not in member_ids]
        return PlanInputs(
            crm=conform(pd.DataFrame(members, columns=list(CRM_COLUMNS)), CRM_COLUMNS),
            outlook=outlook_df,
            links=links_df,
            crm_candidates=conform(pd.DataFrame(outside, columns=list(CRM_COLUMNS)),
                                   CRM_COLUMNS),
            crm_gone=pd.DataFrame(gone, columns=["crm_id", "exists"]),
            accounts=conform(pd.DataFrame(accounts, columns=list(ACCOUNT_COLUMNS)),
                             ACCOUNT_COLUMNS),
        )

    def plan(self, settings: PlanSettings) -> PlanResult:
        return plan_cycle(self.inputs(), settings)

    # --- the executor ------------------------------------------------------------------
    def apply(self, result: PlanResult) -> None:
        """Execute the plan in row order, then store the snapshots (R18 order)."""
        account_of_key: dict[str, str] = {}
        crm_of_key: dict[str, str] = {}
        outlook_of_crm: dict[str, str] = {}
        stopped = {
            (s["crm_id"], s["outlook_id"]) for s in result.snapshots.to_dict("records")
            if s["status"] == "stopped"
        }
        for a in result.actions.to_dict("records"):
            names = [f for f in a["fields"].split(",") if f]
            values = {f: a[f] for f in names}
            side, op = a["side"], a["op"]
            now = self.tick()
            if (side, op) == ("crm", "create_account"):
                acct = self.new_id("A")
                self.accounts[acct] = {"name": a["account_name"], "created": now}
                account_of_key[a["account_key"]] = acct
            elif (side, op) == ("crm", "create"):
                crm_id = self.new_id("C")
                acct = a["account_id"] or account_of_key[a["account_key"]]
                values.pop("company", None)
                self.crm[crm_id] = {**dict.fromkeys(FIELDS), **values, "account_id": acct,
                                    "in_group": True, "read_only": False,
                                    "crm_created": now, "crm_modified": now}
                self.crm[crm_id].pop("company")
                crm_of_key[a["new_key"]] = crm_id
            elif (side, op) == ("crm", "update"):
                assert "company" not in values, "R6: the company is never written to CRM"
                self.crm[a["crm_id"]].update(values, crm_modified=now)
            elif (side, op) == ("crm", "group_add"):
                self.crm[a["crm_id"]]["in_group"] = True
            elif (side, op) == ("crm", "group_remove"):
                self.crm[a["crm_id"]]["in_group"] = False
            elif (side, op) == ("crm", "unlink"):
                if (a["crm_id"], a["outlook_id"]) not in stopped:
                    self.links.pop(a["outlook_id"], None)
            elif (side, op) == ("outlook", "create"):
                oid = self.new_id("O")
                self.outlook[oid] = {**dict.fromkeys(FIELDS), **values, "crm_tag": a["crm_id"],
                                     "outlook_created": now, "outlook_modified": now}
                outlook_of_crm[a["crm_id"]] = oid
            elif (side, op) == ("outlook", "update"):
                tag = a["crm_id"] or crm_of_key[a["new_key"]]
                self.outlook[a["outlook_id"]].update(values, crm_tag=tag, outlook_modified=now)
            elif (side, op) == ("outlook", "delete"):
                self.outlook.pop(a["outlook_id"])
            else:
                assert op in ("link", "skip"), (side, op)
        for s in result.snapshots.to_dict("records"):
            crm_id = s["crm_id"] or crm_of_key[s["new_key"]]
            outlook_id = s["outlook_id"] or outlook_of_crm[crm_id]
            self.links[outlook_id] = {"crm_id": crm_id, "status": s["status"],
                                      **{f: s[f] for f in FIELDS}}
