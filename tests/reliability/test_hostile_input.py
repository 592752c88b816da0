"""R19 with what real address books hold (tests/data/hostile_contacts.json): every record either
round-trips exactly - the CRM holds exactly Outlook's values, Outlook keeps them, and the next
cycle writes nothing - or is quarantined with a reason and written to neither side. A truncated
or mangled value is never written.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from contactsync import model
from contactsync.crm.extract import CrmReader
from contactsync.emulator import start_in_thread
from contactsync.model import pad_user
from contactsync.outlook.mapping import contact_to_row
from contactsync.state import StateStore
from tests.e2e.conftest import LEE, SyncEnv, make_env
from tests.reliability.world import outlook_contacts, writes

CORPUS = Path(__file__).resolve().parents[1] / "data" / "hostile_contacts.json"
RECORDS: list[dict[str, Any]] = json.loads(CORPUS.read_text(encoding="utf-8"))["records"]


def canonical(contact: dict[str, Any]) -> dict[str, Any]:
    row = contact_to_row(contact)
    return {f: row.get(f) for f in model.FIELDS}


@pytest.fixture(scope="module")
def synced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Lee's folder after one cycle over the whole corpus (and a second one)."""
    folder = tmp_path_factory.mktemp("hostile")
    with start_in_thread(db_path=folder / "graph.db") as emu:
        env = make_env(folder, f"sqlite:///{folder / 'crm.db'}", emu)
        assert env.sync("--user", LEE).exit_code == 0
        contacts_before = env.crm_rows("SELECT COUNT(*) AS n FROM CONTACT")[0]["n"]
        mb = env.graph(LEE)
        created = {r["id"]: mb.create(r["contact"]) for r in RECORDS}
        first = env.sync("--user", LEE)
        second = env.sync("--user", LEE)
        store = StateStore(f"sqlite:///{folder / 'state.db'}")
        try:
            links = store.load_links(pad_user(LEE))
            runs = store.recent_runs(pad_user(LEE), limit=1)
            quarantine = store.quarantine(runs["run_id"].iloc[0])
        finally:
            store.close()
        engine = sa.create_engine(env.crm_url)
        try:
            crm = CrmReader(engine, schema=None, user_id=LEE).extract_group("Outlook Sync")
        finally:
            engine.dispose()
        yield {
            "env": env, "created": created, "first": first, "second": second,
            "links": dict(zip(links["outlook_id"], links["crm_id"], strict=True)),
            "quarantine": quarantine, "crm": crm.set_index("crm_id"),
            "outlook": {c["id"]: c for c in outlook_contacts(env, LEE)},
            "new_contacts": env.crm_rows("SELECT COUNT(*) AS n FROM CONTACT")[0]["n"] - contacts_before,
        }


def test_r19_corpus_cycles_complete_and_settle(synced: dict[str, Any]) -> None:
    first = synced["first"].by_user()[LEE]
    second = synced["second"].by_user()[LEE]
    assert synced["first"].exit_code == 0, synced["first"].stdout
    expected = {r["id"] for r in RECORDS if r["expect"] == "quarantine"}
    expected_q = len(expected)
    held = {name for name, _, _ in quarantined_names(synced) if not name.startswith("acct:")}
    assert held == expected, (sorted(held - expected), sorted(expected - held))
    # The --json count is of contact records (accounts held back with them do not count).
    assert first["quarantined"] == expected_q and second["quarantined"] == first["quarantined"], (first, second)
    assert writes(second) == 0, second  # R17: nothing mangled that would ping-pong
    assert synced["new_contacts"] == len(RECORDS) - expected_q
    print(f"hostile corpus: {len(RECORDS)} records, {len(RECORDS) - expected_q} round-tripped, "
          f"{expected_q} quarantined")


@pytest.mark.parametrize("record", RECORDS, ids=[r["id"] for r in RECORDS])
def test_r19_record_round_trips_exactly_or_is_quarantined_with_a_reason(
    synced: dict[str, Any], record: dict[str, Any]
) -> None:
    outlook_id = synced["created"][record["id"]]["id"]
    before = canonical(synced["created"][record["id"]])
    after_contact = synced["outlook"].get(outlook_id)
    assert after_contact is not None, "the Outlook contact was lost"
    after = canonical(after_contact)
    q = synced["quarantine"]
    reasons = q.loc[q["record_id"].astype(str).str.removeprefix("new:") == outlook_id, "reason"].tolist()
    if record["expect"] == "quarantine":
        assert outlook_id not in synced["links"], f"quarantined record was linked ({record['why']})"
        assert reasons and all(reasons), f"no quarantine reason for {record['id']}: {q.to_dict('records')}"
        assert after == before, "a quarantined record's Outlook contact was changed"
        return
    assert not reasons, f"{record['id']} ({record['why']}) was quarantined: {reasons}"
    crm_id = synced["links"].get(outlook_id)
    assert crm_id is not None, f"{record['id']} was neither linked nor quarantined"
    crm = synced["crm"].loc[crm_id]
    crm_values = {f: (None if pd_isna(crm[f]) else crm[f]) for f in model.FIELDS}
    # Outlook keeps what it had (only the company follows the CRM account name, R5a/R6) ...
    changed = {f: (before[f], after[f]) for f in model.FIELDS if before[f] != after[f]}
    if before["company"] is None:
        changed.pop("company", None)
    assert not changed, f"Outlook values changed: {changed}"
    # ... and the CRM holds exactly the same values.
    differ = {f: (after[f], crm_values[f]) for f in model.FIELDS if after[f] != crm_values[f]}
    assert not differ, f"CRM differs from Outlook (outlook, crm): {differ}"


def quarantined_names(synced: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(corpus id, field, reason) of each quarantine row, for failure messages."""
    by_outlook = {c["id"]: rid for rid, c in synced["created"].items()}
    return [(by_outlook.get(str(r.record_id).removeprefix("new:"), str(r.record_id)), r.field, r.reason)
            for r in synced["quarantine"].itertuples()]


def pd_isna(value: Any) -> bool:
    try:
        return bool(value != value) or value is None
    except (TypeError, ValueError):
        return False


def test_r19_corpus_has_both_outcomes_and_the_kinds_the_issue_names() -> None:
    ids = {r["id"] for r in RECORDS}
    for kind in ("emoji", "combining", "rtl-hebrew", "sql", "html", "street-4-lines", "only-email",
                 "dup-email-a", "birthday-far-past", "birthday-far-future", "long-first-name",
                 "invalid-email-no-at", "control-bell", "categories-huge", "street-5-lines"):
        assert kind in ids
    assert {r["expect"] for r in RECORDS} == {"roundtrip", "quarantine"}


_ = SyncEnv  # re-exported type for readers of the fixture


# --- CRM -> Outlook -------------------------------------------------------------------------
CRM_RECORDS: list[dict[str, Any]] = json.loads(CORPUS.read_text(encoding="utf-8"))["crm_records"]


def hostile_id(i: int, prefix: str = "C") -> str:
    return f"{prefix}HOSTL{i:06d}"


@pytest.fixture(scope="module")
def crm_synced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Lee's group with the CRM corpus added, after two cycles."""
    folder = tmp_path_factory.mktemp("hostile-crm")
    with start_in_thread(db_path=folder / "graph.db") as emu:
        env = make_env(folder, f"sqlite:///{folder / 'crm.db'}", emu)
        assert env.sync("--user", LEE).exit_code == 0
        stamp = "2026-01-02 10:00:00"
        for i, rec in enumerate(CRM_RECORDS, start=1):
            cid_, aid_ = hostile_id(i), hostile_id(i, "a")
            env.crm_exec(
                "INSERT INTO ADDRESS (ADDRESSID, ENTITYID, TYPE, DESCRIPTION, ISPRIMARY, ISMAILING, "
                + "".join(f"{k}, " for k in rec["address"])
                + "CREATEDATE, CREATEUSER, MODIFYDATE, MODIFYUSER) VALUES (:id, :e, 'Business', 'Business', 'T', 'T', "
                + "".join(f":{k}, " for k in rec["address"]) + ":d, :u, :d, :u)",
                id=aid_, e=cid_, d=stamp, u=LEE, **rec["address"])
            cols = rec["contact"]
            env.crm_exec(
                "INSERT INTO CONTACT (CONTACTID, ACCOUNTID, ACCOUNT, ADDRESSID, SECCODEID, ACCOUNTMANAGERID, "
                + "".join(f"{k}, " for k in cols)
                + "CREATEDATE, CREATEUSER, MODIFYDATE, MODIFYUSER) VALUES (:id, 'ADEMOA000001', 'Contoso Ltd', :a, :u, :u, "
                + "".join(f":{k}, " for k in cols) + ":d, :u, :d, :u)",
                id=cid_, a=aid_, d=stamp, u=LEE, **cols)
            env.crm_exec(
                "INSERT INTO ADHOCGROUP (GROUPID, ENTITYID, CREATEDATE, CREATEUSER, MODIFYDATE, MODIFYUSER) "
                "VALUES ('pDEMOA000001', :id, :d, :u, :d, :u)", id=cid_, d=stamp, u=LEE)
        first = env.sync("--user", LEE)
        second = env.sync("--user", LEE)
        store = StateStore(f"sqlite:///{folder / 'state.db'}")
        try:
            runs = store.recent_runs(pad_user(LEE), limit=1)
            quarantine = store.quarantine(runs["run_id"].iloc[0])
        finally:
            store.close()
        engine = sa.create_engine(env.crm_url)
        try:
            crm = CrmReader(engine, schema=None, user_id=LEE).extract_group("Outlook Sync")
        finally:
            engine.dispose()
        contacts = outlook_contacts(env, LEE)
        yield {
            "first": first, "second": second, "quarantine": quarantine,
            "crm": crm.set_index("crm_id"),
            "by_tag": {contact_to_row(c)["crm_tag"]: c for c in contacts},
            "outlook_count": len(contacts),
        }


@pytest.mark.slow
def test_r19_crm_corpus_cycles_complete_and_settle(crm_synced: dict[str, Any]) -> None:
    first = crm_synced["first"].by_user()[LEE]
    second = crm_synced["second"].by_user()[LEE]
    assert crm_synced["first"].exit_code == 0, crm_synced["first"].stdout
    expected = {hostile_id(i) for i, r in enumerate(CRM_RECORDS, start=1) if r["expect"] == "quarantine"}
    held = set(crm_synced["quarantine"]["record_id"].astype(str)) & {hostile_id(i) for i in range(1, 100)}
    assert held == expected, (sorted(held - expected), sorted(expected - held))
    assert writes(second) == 0, second
    assert first["counts"]["outlook"]["create"] == len(CRM_RECORDS) - len(expected)
    assert first["counts"]["crm"]["update"] == 0, first  # the CRM rows are read, never "fixed"
    print(f"hostile CRM corpus: {len(CRM_RECORDS)} records, {len(CRM_RECORDS) - len(expected)} "
          f"round-tripped, {len(expected)} quarantined")


@pytest.mark.slow
@pytest.mark.parametrize("index", range(1, len(CRM_RECORDS) + 1), ids=[r["id"] for r in CRM_RECORDS])
def test_r19_crm_record_reaches_outlook_exactly_or_is_quarantined(crm_synced: dict[str, Any], index: int) -> None:
    record, crm_id = CRM_RECORDS[index - 1], hostile_id(index)
    q = crm_synced["quarantine"]
    reasons = q.loc[q["record_id"].astype(str) == crm_id, "reason"].tolist()
    contact = crm_synced["by_tag"].get(crm_id)
    if record["expect"] == "quarantine":
        assert contact is None, f"quarantined {crm_id} reached Outlook"
        assert reasons and all(reasons)
        return
    assert not reasons, f"{record['id']} ({record['why']}) was quarantined: {reasons}"
    assert contact is not None, f"{record['id']} did not reach Outlook"
    crm = crm_synced["crm"].loc[crm_id]
    crm_values = {f: (None if pd_isna(crm[f]) else crm[f]) for f in model.FIELDS}
    out = canonical(contact)
    differ = {f: (crm_values[f], out[f]) for f in model.FIELDS if crm_values[f] != out[f]}
    assert not differ, f"Outlook differs from CRM (crm, outlook): {differ}"
