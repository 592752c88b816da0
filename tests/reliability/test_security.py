"""R1 with two users whose rights overlap (Everyone, Sales, Emma in both groups) and differ
(each one's own owner code, Marketing read-only for Lee, Support read-only for Sam).

A cycle for one user never reads, writes, links or reports a row that user cannot see - not
when such a row is put into the user's group, not when an Outlook contact shares its email,
not when an Outlook contact carries its id as a tag - and never writes a read-only row.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from contactsync.crm.demo import cid
from contactsync.emulator import start_in_thread
from tests.e2e.conftest import LEE, SAM, SyncEnv, make_env
from tests.reliability.world import outlook_contacts, tag

#: Contacts each user cannot see (R1): the other user's own owner code (crm/demo.py).
HIDDEN = {
    LEE: (10, 28, 15, 23),  # Jonas Weber (in Lee's group), Aaron Wells, Olivia Brown, Victor Nguyen
    SAM: (19, 2, 22),  # Stefan Horvat (in Sam's group), Ben Carter, Uma Patel
}


def add_to_group(env: SyncEnv, group: str, n: int, user: str) -> None:
    env.crm_exec(
        "INSERT INTO ADHOCGROUP (GROUPID, ENTITYID, CREATEDATE, CREATEUSER, MODIFYDATE, MODIFYUSER) "
        "VALUES (:g, :id, '2026-01-02', :u, '2026-01-02', :u)", g=group, id=cid(n), u=user)


def crm_row(env: SyncEnv, n: int) -> dict[str, Any]:
    row = env.crm_rows("SELECT * FROM CONTACT WHERE CONTACTID = :id", id=cid(n))[0]
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row.items()}


def state_text(env: SyncEnv) -> str:
    """Everything the state store holds (links, runs and their reports, conflicts, quarantine)."""
    engine = sa.create_engine(f"sqlite:///{env.folder / 'state.db'}")
    try:
        with engine.connect() as conn:
            names = [r[0] for r in conn.execute(sa.text("SELECT name FROM sqlite_master WHERE type='table'"))]
            return json.dumps({n: [list(map(str, r)) for r in conn.execute(sa.text(f'SELECT * FROM "{n}"'))]
                               for n in names})
    finally:
        engine.dispose()


@pytest.fixture()
def world(tmp_path: Path) -> Any:
    with start_in_thread(db_path=tmp_path / "graph.db") as emu:
        env = make_env(tmp_path, f"sqlite:///{tmp_path / 'crm.db'}", emu)
        assert env.sync().exit_code == 0
        yield env


def test_r1_rows_a_user_cannot_see_never_reach_their_outlook_reports_or_links(world: SyncEnv) -> None:
    env = world
    hidden_before = {n: crm_row(env, n) for u in HIDDEN for n in HIDDEN[u]}
    # Put every hidden row into the other user's group, and make Outlook contacts that share
    # their emails or carry their ids as CrmContactId tags.
    for user, group in ((LEE, "pDEMOA000001"), (SAM, "pDEMOA000002")):
        mb = env.graph(user)
        for n in HIDDEN[user]:
            if not env.crm_rows("SELECT 1 FROM ADHOCGROUP WHERE GROUPID = :g AND ENTITYID = :id", g=group, id=cid(n)):
                add_to_group(env, group, n, user)
            row = hidden_before[n]
            mb.create({"givenName": row["FIRSTNAME"], "surname": row["LASTNAME"], "jobTitle": "Spoofed",
                       "emailAddresses": [{"address": row["EMAIL"].upper()}]})
        # A tag naming a hidden row (R7a must not re-link it).
        spoof = HIDDEN[user][0]
        mb.create({"givenName": "Tag", "surname": f"Spoof{spoof}", "singleValueExtendedProperties": [
            {"id": "String {4f6b1a52-8d3e-4c1b-9a7e-2c5d0e6f7a18} Name CrmContactId", "value": cid(spoof)}]})
    res = env.sync()
    assert res.exit_code == 0, res.stdout + res.stderr
    assert env.sync().by_user()[LEE]["counts"]["crm"]["create"] == 0  # settled
    for user in (LEE, SAM):
        contacts = outlook_contacts(env, user)
        tags = {tag(c) for c in contacts}
        for n in HIDDEN[user]:
            assert cid(n) not in tags, f"{user}: an Outlook contact is linked to hidden {cid(n)}"
            assert crm_row(env, n) == hidden_before[n], f"{user}'s cycle wrote hidden {cid(n)}"
            # Only the contact the user made themselves carries the hidden row's name.
            same_name = [c for c in contacts if c.get("surname") == hidden_before[n]["LASTNAME"]
                         and c.get("givenName") == hidden_before[n]["FIRSTNAME"]]
            assert all(c.get("jobTitle") == "Spoofed" for c in same_name), (user, n, same_name)
        report = res.stdout + env.sync("--user", user).stdout
        for n in HIDDEN[user]:
            assert cid(n) not in report
    # The state store (links, run reports, conflicts, quarantine) of each user: no hidden id.
    store = json.loads(state_text(env))
    for user in (LEE, SAM):
        mine = [r for rows in store.values() for r in rows if user in r]
        blob = json.dumps(mine)
        for n in HIDDEN[user]:
            assert cid(n) not in blob, f"{user}'s state mentions hidden {cid(n)}"


def test_r1_read_only_row_is_never_written_whatever_outlook_does(world: SyncEnv) -> None:
    """Hugo Berg (Marketing) is read-only for Lee: edits, a conflict, a new email, a second
    email, a move out of the folder: CRM's row stays byte for byte."""
    env = world
    before = crm_row(env, 8)
    mb = env.graph(LEE)
    hugo = next(c for c in outlook_contacts(env, LEE) if c.get("surname") == "Berg")
    mb.patch(hugo["id"], {"jobTitle": "Changed", "mobilePhone": "+1 555 0100",
                          "emailAddresses": [{"address": "hugo@new.example"}, {"address": "h2@new.example"}],
                          "businessAddress": {"street": "1 New St", "city": "Elsewhere"}})
    env.crm_exec("UPDATE CONTACT SET WORKPHONE = '999', MODIFYDATE = '2020-01-01' WHERE CONTACTID = :id", id=cid(8))
    before = crm_row(env, 8)
    line = env.sync("--user", LEE, "--policy", "outlook").by_user()[LEE]
    assert line["counts"]["crm"]["update"] == 0
    assert crm_row(env, 8) == before
    # Sam's cycle (full rights through Marketing) is unaffected and still syncs Hugo? Hugo is
    # not in Sam's group: nothing. Lee's next cycle still writes nothing to the row.
    env.sync("--user", LEE)
    assert crm_row(env, 8) == before
    addr = env.crm_rows("SELECT * FROM ADDRESS WHERE ENTITYID = :id", id=cid(8))
    assert all(a["CITY"] != "Elsewhere" for a in addr)


@pytest.mark.slow
def test_r1_overlapping_rights_a_shared_contact_flows_between_the_two_users(world: SyncEnv) -> None:
    """Emma Novak (Everyone) is in both groups: Lee's Outlook edit reaches CRM, then Sam's Outlook."""
    env = world
    mb = env.graph(LEE)
    emma = next(c for c in outlook_contacts(env, LEE) if c.get("surname") == "Novak")
    mb.patch(emma["id"], {"jobTitle": "COO"})
    assert env.sync("--user", LEE).exit_code == 0
    assert env.sync("--user", SAM).exit_code == 0
    sams = next(c for c in outlook_contacts(env, SAM) if c.get("surname") == "Novak")
    assert sams["jobTitle"] == "COO"
    assert env.crm_rows("SELECT TITLE FROM CONTACT WHERE CONTACTID = :id", id=cid(5))[0]["TITLE"] == "COO"
