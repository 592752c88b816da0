"""The history rows of a cycle's writes built per column (``state.history_writes``, issue
12) are the rows the former one-action-at-a-time builder made, value for value: held
equal by hypothesis over mixed plans (creates, updates, deletes, skips; missing, empty,
non-ASCII and quoted values; ids the sides do not know; emails in any case)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contactsync.model import EMAIL_FIELDS, FIELDS
from contactsync.state.history_writes import history_writes, sources


def _text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and value != value) or value is pd.NaT:
        return None
    return str(value)


def reference_rows(applied: pd.DataFrame, new_out: dict[str, str], crm: pd.DataFrame, outlook: pd.DataFrame,
                   emails: dict[str, tuple[str, ...]]) -> list[dict[str, Any]]:
    """The former builder (state/history.py before issue 12's change), row by row."""
    updates = applied[~applied["op"].isin(["create", "create_account", "skip"]).to_numpy()
                      & applied["fields"].fillna("").astype(str).ne("").to_numpy()]

    def values(frame: pd.DataFrame, key: str) -> dict[str, dict[str, Any]]:
        ids = {str(v) for v in updates[key].dropna()}
        if frame.empty or not ids:
            return {}
        frame = frame[frame[key].astype(str).isin(ids).to_numpy()]
        cols = [c for c in FIELDS if c in frame]
        return {str(k): v for k, v in frame.drop_duplicates(key).set_index(key)[cols].to_dict("index").items()}

    crm_vals, out_vals = values(crm, "crm_id"), values(outlook, "outlook_id")

    def mails(crm_id: str | None, outlook_id: str | None, extra: Sequence[Any]) -> str | None:
        found = set(emails.get(crm_id or "", ())) | set(emails.get(outlook_id or "", ()))
        found |= {str(e).strip().lower() for e in extra if _text(e)}
        return f" {' '.join(sorted(found))} " if found else None

    out = []
    for act in applied.to_dict("records"):
        if act.get("op") == "skip":
            continue
        crm_id, outlook_id = _text(act.get("crm_id")), _text(act.get("outlook_id"))
        outlook_id = outlook_id or new_out.get(str(act.get("action_id")))
        fields = [f for f in str(act.get("fields") or "").split(",") if f]
        source = out_vals.get(outlook_id or "", {}) if act["side"] == "outlook" else crm_vals.get(crm_id or "", {})
        if act["op"] in ("create", "create_account"):
            before: dict[str, Any] = {}
            fields = [f for f in fields if _text(act.get(f))]
        else:
            before = {f: _text(source.get(f)) for f in fields} if fields else {}
        after = {f: _text(act.get(f)) for f in fields}
        out.append({"kind": "write", "side": act["side"], "op": act["op"], "rule": _text(act.get("rule")),
                    "crm_id": crm_id, "outlook_id": outlook_id, "fields": ",".join(fields),
                    "before": json.dumps(before, ensure_ascii=False), "after": json.dumps(after, ensure_ascii=False),
                    "winner": None, "reason": _text(act.get("reason")),
                    "emails": mails(crm_id, outlook_id, [act.get(f) for f in EMAIL_FIELDS])})
    return out


SOME_FIELDS = ["first_name", "last_name", "job_title", "email1", "email2", "mobile_phone", "birthday", "categories"]
value = st.one_of(st.none(), st.just(float("nan")), st.sampled_from(["", " ", "Zoë", 'say "hi"', "a\\b", "x\ny"]),
                  st.sampled_from(["Bob@Example.COM ", "bob@example.com", " ann@b.example"]))
ids = st.sampled_from(["C1", "C2", "C3", "O1", "O2", None])
action = st.fixed_dictionaries({
    "side": st.sampled_from(["crm", "outlook"]),
    "op": st.sampled_from(["create", "create_account", "update", "delete", "skip", "unlink"]),
    "crm_id": ids, "outlook_id": ids,
    "fields": st.one_of(st.none(), st.just(float("nan")), st.lists(st.sampled_from(SOME_FIELDS + ["bogus", ""]),
                                                                  max_size=5).map(",".join)),
    "rule": st.sampled_from(["R4", "R8", None]), "reason": st.sampled_from(["why", None]),
    **{f: value for f in SOME_FIELDS},
})
side_row = st.fixed_dictionaries({f: value for f in SOME_FIELDS})


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(acts=st.lists(action, min_size=1, max_size=12), crm_rows=st.lists(side_row, max_size=3),
       out_rows=st.lists(side_row, max_size=3))
def test_history_writes_equal_the_former_row_by_row_builder(acts: list[dict], crm_rows: list[dict],
                                                            out_rows: list[dict]) -> None:
    applied = pd.DataFrame([{"action_id": f"a{i}", **a} for i, a in enumerate(acts)])
    crm = pd.DataFrame([{"crm_id": f"C{i + 1}", **r} for i, r in enumerate(crm_rows)])
    outlook = pd.DataFrame([{"outlook_id": f"O{i + 1}", **r} for i, r in enumerate(out_rows)])
    new_out = {"a0": "NEW0", "a2": "NEW2"}
    emails = {"C1": ("c1@x.example",), "O1": ("o1@x.example", "c1@x.example"), "NEW0": ("n@x.example",)}
    updates = applied[~applied["op"].isin(["create", "create_account", "skip"]).to_numpy()
                      & applied["fields"].fillna("").astype(str).ne("").to_numpy()]
    src = (sources(crm, "crm_id", {str(v) for v in updates["crm_id"].dropna()}),
           sources(outlook, "outlook_id", {str(v) for v in updates["outlook_id"].dropna()}))
    got = history_writes(applied, new_out, src, emails).to_dict("records")
    assert got == reference_rows(applied, new_out, crm, outlook, emails)
