"""`contact-sync explain`'s memory: a contact's writes, conflicts and quarantine across cycles."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd

from contactsync.state import StateStore

from .week import NOW

LEE, KIM = "ULEEP0000001", "UKIMF0000003"


def _crm() -> pd.DataFrame:
    return pd.DataFrame([{"crm_id": "CLEEP0000042", "first_name": "Bob", "last_name": "O'Brien",
                          "email1": "Bob@Example.com", "mobile_phone": "+1 555 0100"}])


def _outlook() -> pd.DataFrame:
    return pd.DataFrame([{"outlook_id": "AAMk-42", "first_name": "Bob", "last_name": "Brien",
                          "email1": "bob@example.com", "mobile_phone": "+1 555 0199"}])


def _write(side: str, fields: str, **values: str) -> dict:
    return {"action_id": f"a-{side}-{fields}", "side": side, "op": "update", "rule": "R9" if side == "crm" else "R8",
            "reason": f"{side} write of {fields}", "crm_id": "CLEEP0000042", "outlook_id": "AAMk-42",
            "fields": fields, **values}


def _cycle(history: StateStore, run: str, *, now=NOW, user: str = LEE) -> int:
    applied = pd.DataFrame([_write("crm", "mobile_phone", mobile_phone="+1 555 0199")])
    conflicts = pd.DataFrame([{"crm_id": "CLEEP0000042", "outlook_id": "AAMk-42", "field": "mobile_phone",
                               "snapshot_value": "+1 555 0000", "crm_value": "+1 555 0100",
                               "outlook_value": "+1 555 0199", "winner": "outlook", "policy": "latest", "rule": "R9"}])
    problems = pd.DataFrame([{"side": "outlook", "record_id": "AAMk-42", "field": "email2", "rule": "R19",
                              "reason": "invalid email address", "value": "not@an@email"}])
    return history.record_history(run, user, crm=_crm(), outlook=_outlook(), applied=applied,
                                conflicts=conflicts, problems=problems, now=now)


def test_a_write_keeps_time_rule_fields_and_the_values_before_and_after(store: StateStore) -> None:
    history = store
    assert _cycle(history, "run1") == 3
    rows = history.contact_history([LEE], crm_id="CLEEP0000042")
    assert list(rows["kind"]) == ["write", "conflict", "quarantine"]
    write, conflict, quarantine = rows.to_dict("records")
    assert (write["side"], write["op"], write["rule"], write["fields"]) == ("crm", "update", "R9", "mobile_phone")
    assert write["before"] == {"mobile_phone": "+1 555 0100"} and write["after"] == {"mobile_phone": "+1 555 0199"}
    assert write["at"].startswith("2026-11-30T12:00") and write["run_id"] == "run1"
    assert conflict["after"] == {"crm": "+1 555 0100", "outlook": "+1 555 0199"} and conflict["winner"] == "outlook"
    assert conflict["before"] == {"last synced": "+1 555 0000"}
    assert quarantine["reason"] == "invalid email address" and quarantine["after"] == {"value": "not@an@email"}


def test_found_by_any_email_or_the_other_id(store: StateStore) -> None:
    history = store
    _cycle(history, "run1")
    by_email = history.contact_history([LEE], email="  BOB@example.COM ")
    assert len(by_email) == 3  # the quarantine row knows only the Outlook id: the pair brings it in
    assert len(history.contact_history([LEE], outlook_id="AAMk-42")) == 3
    assert history.contact_history([LEE], email="nobody@example.com").empty
    assert history.contact_history([KIM], crm_id="CLEEP0000042").empty  # another user's contacts (R1)


def test_rows_older_than_the_kept_period_are_dropped(store: StateStore) -> None:
    history = store
    _cycle(history, "old", now=NOW - timedelta(days=100))
    _cycle(history, "mid", now=NOW - timedelta(days=80))
    assert set(history.contact_history([LEE], crm_id="CLEEP0000042")["run_id"]) == {"old", "mid"}
    _cycle(history, "new", now=NOW)  # keep_days 90: 'old' goes, 'mid' stays
    assert set(history.contact_history([LEE], crm_id="CLEEP0000042")["run_id"]) == {"mid", "new"}


def test_a_create_keeps_what_the_record_got_and_the_new_outlook_id(store: StateStore) -> None:
    history = store
    applied = pd.DataFrame([{"action_id": "c1", "side": "outlook", "op": "create", "rule": "R4", "reason": "R4: new",
                             "crm_id": "CLEEP0000050", "outlook_id": None, "fields": "first_name,last_name,email1",
                             "first_name": "Ann", "last_name": None, "email1": "ann@example.com"}])
    results = pd.DataFrame([{"action_id": "c1", "status": "applied", "outlook_id": "AAMk-NEW"}])
    history.record_history("r", LEE, crm=None, outlook=None, applied=applied, conflicts=None,
                         problems=None, results=results, now=NOW)
    (row,) = history.contact_history([LEE], email="ann@example.com").to_dict("records")
    assert row["outlook_id"] == "AAMk-NEW" and row["fields"] == "first_name,email1"
    assert row["before"] == {} and row["after"] == {"first_name": "Ann", "email1": "ann@example.com"}
