"""`contact-sync sync` end to end, one test per rule (SYNC_RULES.md), as a user would see it.

The CRM is the demo data set of contactsync/crm/demo.py (Lee = UDEMOA000001 sees 9 of the
10 members of their sync group; contact 10 belongs to an owner Lee cannot see).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from contactsync.emulator import start_in_thread
from tests.e2e.conftest import LEE, SAM, SyncEnv, make_env


def cid(n: int) -> str:
    return f"CDEMOA{n:06d}"


def total_writes(line: dict) -> int:
    return sum(sum(side.values()) for side in line["counts"].values())


def tag_of(contact: dict) -> str | None:
    for prop in contact.get("singleValueExtendedProperties") or []:
        if prop["id"].endswith("Name CrmContactId"):
            return prop["value"]
    return None


def by_email(contacts: list[dict], email: str) -> dict:
    for c in contacts:
        if any(e.get("address", "").strip().lower() == email for e in c.get("emailAddresses") or []):
            return c
    raise AssertionError(f"no Outlook contact with {email}")


def first_cycle(env: SyncEnv, *users: str) -> dict:
    args = [a for u in users for a in ("--user", u)]
    res = env.sync(*args)
    assert res.exit_code == 0, res.stdout + res.stderr
    return res.by_user()


def test_r4_first_cycle_creates_visible_members_and_r17_second_cycle_writes_nothing(env: SyncEnv) -> None:
    out = first_cycle(env)
    assert out[LEE]["status"] == "ok" and out[LEE]["counts"]["outlook"]["create"] == 9
    assert out[SAM]["counts"]["outlook"]["create"] == 9
    names = {(c.get("givenName"), c.get("surname")) for c in env.graph(LEE).contacts()}
    assert ("Ana", "Lopez") in names
    # R1: contact 10 (Jonas Weber) is in Lee's group but owned by Sam's own code.
    assert ("Jonas", "Weber") not in names
    again = env.sync().by_user()
    assert all(total_writes(line) == 0 and line["status"] == "ok" for line in again.values())


def test_r8_crm_edit_is_copied_to_outlook(env: SyncEnv) -> None:
    first_cycle(env, LEE)
    env.crm_exec(
        "UPDATE CONTACT SET TITLE = 'Chief Buyer', MODIFYDATE = CURRENT_TIMESTAMP WHERE CONTACTID = :id", id=cid(1)
    )
    line = env.sync("--user", LEE).by_user()[LEE]
    assert line["counts"]["outlook"]["update"] == 1 and line["counts"]["crm"]["update"] == 0
    ana = by_email(env.graph(LEE).contacts(), "ana.lopez@contoso.example")
    assert ana["jobTitle"] == "Chief Buyer"


def test_r8_outlook_edit_is_copied_to_crm(env: SyncEnv) -> None:
    first_cycle(env, LEE)
    mb = env.graph(LEE)
    ben = by_email(mb.contacts(), "ben.carter@contoso.example")
    mb.patch(ben["id"], {"mobilePhone": "+44 20 7946 0000"})
    line = env.sync("--user", LEE).by_user()[LEE]
    assert line["counts"]["crm"]["update"] == 1
    row = env.crm_rows("SELECT MOBILE, MODIFYUSER FROM CONTACT WHERE CONTACTID = :id", id=cid(2))[0]
    assert row["MOBILE"] == "+44 20 7946 0000" and row["MODIFYUSER"] == LEE


@pytest.mark.parametrize("policy,winner", [("latest", "outlook"), ("crm", "crm")])
def test_r9_conflict_is_settled_by_policy_and_reported_with_both_values(env: SyncEnv, policy: str, winner: str) -> None:
    first_cycle(env, LEE)
    env.crm_exec(
        "UPDATE CONTACT SET WORKPHONE = '111', MODIFYDATE = '2025-06-01 00:00:00' WHERE CONTACTID = :id", id=cid(4)
    )
    mb = env.graph(LEE)
    david = by_email(mb.contacts(), "david.kim@fabrikam.example")
    mb.patch(david["id"], {"businessPhones": ["222"]})  # Outlook's edit is the later one
    line = env.sync("--user", LEE, "--policy", policy).by_user()[LEE]
    assert line["conflicts"] == 1
    expected = "222" if winner == "outlook" else "111"
    crm_phone = env.crm_rows("SELECT WORKPHONE FROM CONTACT WHERE CONTACTID = :id", id=cid(4))[0]["WORKPHONE"]
    out_phone = by_email(mb.contacts(), "david.kim@fabrikam.example")["businessPhones"][0]
    assert crm_phone == out_phone == expected
    assert total_writes(env.sync("--user", LEE).by_user()[LEE]) == 0


def test_r1_read_only_row_is_never_written_from_outlook(env: SyncEnv) -> None:
    first_cycle(env, LEE)
    mb = env.graph(LEE)
    hugo = next(c for c in mb.contacts() if c.get("surname") == "Berg")  # contact 8, read-only for Lee
    before = env.crm_rows("SELECT TITLE, MODIFYDATE FROM CONTACT WHERE CONTACTID = :id", id=cid(8))[0]
    mb.patch(hugo["id"], {"jobTitle": "Changed in Outlook"})
    line = env.sync("--user", LEE).by_user()[LEE]
    assert line["counts"]["crm"]["update"] == 0
    assert env.crm_rows("SELECT TITLE, MODIFYDATE FROM CONTACT WHERE CONTACTID = :id", id=cid(8))[0] == before


def test_r5c_outlook_contact_with_unknown_company_creates_account_and_contact(env: SyncEnv) -> None:
    first_cycle(env, LEE)
    env.graph(LEE).create({
        "givenName": "Dana", "surname": "Reyes", "companyName": "Brightwater Analytics",
        "emailAddresses": [{"address": "dana@brightwater.example", "name": "Dana Reyes"}],
    })
    line = env.sync("--user", LEE).by_user()[LEE]
    assert line["counts"]["crm"]["create"] == 1
    acct = env.crm_rows("SELECT * FROM ACCOUNT WHERE ACCOUNT = 'Brightwater Analytics'")
    assert len(acct) == 1
    a = acct[0]
    assert (a["TYPE"], a["STATUS"], a["SECCODEID"], a["ACCOUNTMANAGERID"]) == ("Prospect", "Active", "SYST00000001", LEE)
    contact = env.crm_rows("SELECT * FROM CONTACT WHERE EMAIL = 'dana@brightwater.example'")[0]
    assert contact["ACCOUNTID"] == a["ACCOUNTID"] and contact["ACCOUNT"] == "Brightwater Analytics"
    assert contact["SECCODEID"] == LEE and contact["CREATEUSER"] == LEE  # R5: user's default owner
    assert contact["CONTACTID"].startswith("CSYNC") and len(contact["CONTACTID"]) == 12
    members = env.crm_rows("SELECT * FROM ADHOCGROUP WHERE ENTITYID = :id", id=contact["CONTACTID"])
    assert len(members) == 1
    assert total_writes(env.sync("--user", LEE).by_user()[LEE]) == 0


def test_r5b_exact_company_name_links_to_existing_account(env: SyncEnv) -> None:
    first_cycle(env, LEE)
    env.graph(LEE).create({"givenName": "Eli", "surname": "Stone", "companyName": "Contoso Ltd",
                           "emailAddresses": [{"address": "eli@contoso.example"}]})
    env.graph(LEE).create({"givenName": "Fay", "surname": "Moss", "companyName": "contoso ltd",
                           "emailAddresses": [{"address": "fay@contoso.example"}]})
    env.sync("--user", LEE)
    eli = env.crm_rows("SELECT ACCOUNTID FROM CONTACT WHERE EMAIL = 'eli@contoso.example'")[0]
    fay = env.crm_rows("SELECT ACCOUNTID FROM CONTACT WHERE EMAIL = 'fay@contoso.example'")[0]
    assert eli["ACCOUNTID"] == "ADEMOA000001"
    assert fay["ACCOUNTID"] != "ADEMOA000001"  # exact, case-sensitive (R5b) else new (R5c)


def test_r5a_no_company_makes_an_account_named_after_the_contact(env: SyncEnv) -> None:
    first_cycle(env, LEE)
    env.graph(LEE).create({"givenName": "Gil", "surname": "Ward", "emailAddresses": [{"address": "gil@ward.example"}]})
    env.sync("--user", LEE)
    row = env.crm_rows(
        "SELECT a.ACCOUNT FROM CONTACT c JOIN ACCOUNT a ON a.ACCOUNTID = c.ACCOUNTID WHERE c.EMAIL = 'gil@ward.example'"
    )[0]
    assert row["ACCOUNT"] == "Gil Ward"
    gil = by_email(env.graph(LEE).contacts(), "gil@ward.example")
    assert gil.get("companyName") == "Gil Ward"  # R6: the account name flows to Outlook


def test_r7_outlook_contact_matching_a_crm_contact_outside_the_group_is_linked_and_added(env: SyncEnv) -> None:
    first_cycle(env, LEE)
    before = env.crm_rows("SELECT COUNT(*) AS n FROM CONTACT")[0]["n"]
    env.graph(LEE).create({"givenName": "Uma", "surname": "Patel",
                           "emailAddresses": [{"address": " UMA.PATEL@Northwind.example "}]})
    line = env.sync("--user", LEE).by_user()[LEE]
    assert line["counts"]["crm"]["create"] == 0 and line["counts"]["crm"]["group_add"] == 1
    assert env.crm_rows("SELECT COUNT(*) AS n FROM CONTACT")[0]["n"] == before
    assert env.crm_rows("SELECT * FROM ADHOCGROUP WHERE ENTITYID = :id AND GROUPID = 'pDEMOA000001'", id=cid(22))
    # R7's merge: a field empty on one side takes the other side's value; nothing is blanked.
    crm = env.crm_rows("SELECT TITLE, WORKPHONE FROM CONTACT WHERE CONTACTID = :id", id=cid(22))[0]
    assert crm["TITLE"] and crm["WORKPHONE"]
    uma = by_email(env.graph(LEE).contacts(), "uma.patel@northwind.example")
    assert uma["jobTitle"] == crm["TITLE"] and uma["businessPhones"][0] == crm["WORKPHONE"]
    assert line["conflicts"] == 0


def test_r11_contact_moved_out_of_the_folder_leaves_the_group_but_stays_in_crm(env: SyncEnv) -> None:
    first_cycle(env, LEE)
    mb = env.graph(LEE)
    other = mb.make_folder("Personal")
    emma = next(c for c in mb.contacts() if c.get("surname") == "Novak")
    mb.move(emma["id"], other)
    line = env.sync("--user", LEE).by_user()[LEE]
    assert line["counts"]["crm"]["group_remove"] == 1 and line["counts"]["crm"]["unlink"] == 1
    assert env.crm_rows("SELECT CONTACTID FROM CONTACT WHERE CONTACTID = :id", id=cid(5))  # R15
    assert not env.crm_rows("SELECT * FROM ADHOCGROUP WHERE ENTITYID = :id AND GROUPID = 'pDEMOA000001'", id=cid(5))
    assert total_writes(env.sync("--user", LEE).by_user()[LEE]) == 0


def test_r12_group_removal_moves_the_outlook_copy_to_deleted_items(env: SyncEnv) -> None:
    first_cycle(env, LEE)
    env.crm_exec("DELETE FROM ADHOCGROUP WHERE ENTITYID = :id AND GROUPID = 'pDEMOA000001'", id=cid(9))
    line = env.sync("--user", LEE).by_user()[LEE]
    assert line["counts"]["outlook"]["delete"] == 1 and line["counts"]["crm"]["unlink"] == 1
    mb = env.graph(LEE)
    assert not [c for c in mb.contacts() if c.get("surname") == "Costa"]
    assert [c for c in mb.deleted() if c.get("surname") == "Costa"]
    assert env.crm_rows("SELECT CONTACTID FROM CONTACT WHERE CONTACTID = :id", id=cid(9))


def test_r13_contact_deleted_in_crm_is_deleted_in_outlook(env: SyncEnv) -> None:
    first_cycle(env, LEE)
    env.crm_exec("DELETE FROM ADHOCGROUP WHERE ENTITYID = :id", id=cid(7))
    env.crm_exec("DELETE FROM CONTACT WHERE CONTACTID = :id", id=cid(7))
    line = env.sync("--user", LEE).by_user()[LEE]
    assert line["counts"]["outlook"]["delete"] == 1
    assert [c for c in env.graph(LEE).deleted() if c.get("surname") == "Liu"]


def test_r20_dry_run_writes_nothing_and_reports_the_plan(env: SyncEnv) -> None:
    res = env.sync("--dry-run", "--user", LEE)
    line = res.by_user()[LEE]
    assert res.exit_code == 0 and line["status"] == "dry-run" and line["dry_run"] is True
    assert line["counts"]["outlook"]["create"] == 9
    assert env.graph(LEE).folder_id() is None  # not even the folder was made
    assert not env.crm_rows("SELECT * FROM CONTACT WHERE CONTACTID LIKE 'CSYNC%'")


def test_r16_guard_stops_mass_deletes_with_exit_3_and_force_goes_ahead(tmp_path: Path) -> None:
    with start_in_thread(db_path=tmp_path / "g.db") as emu:
        env = make_env(tmp_path, f"sqlite:///{tmp_path / 'crm.db'}", emu, extra="mass_change_min = 2\nmass_change_share = 0.2\n")
        first_cycle(env, LEE)
        env.crm_exec("DELETE FROM ADHOCGROUP WHERE GROUPID = 'pDEMOA000001'")
        res = env.sync("--user", LEE)
        assert res.exit_code == 3 and res.by_user()[LEE]["status"] == "guard-stopped"
        assert len(env.graph(LEE).contacts()) == 9  # nothing written
        dry = env.sync("--user", LEE, "--dry-run")
        assert dry.exit_code == 0 and dry.by_user()[LEE]["counts"]["outlook"]["delete"] == 9
        forced = env.sync("--user", LEE, "--force")
        assert forced.exit_code == 0 and len(env.graph(LEE).contacts()) == 0


def test_r7a_lost_state_store_relinks_by_tag_without_duplicates(env: SyncEnv) -> None:
    first_cycle(env)
    from contactsync.cycle.sides import state_store

    state_store.cache_clear()
    (env.folder / "state.db").unlink()
    for suffix in ("-wal", "-shm"):
        (env.folder / f"state.db{suffix}").unlink(missing_ok=True)
    out = env.sync().by_user()
    assert all(line["counts"]["outlook"]["create"] == 0 and line["counts"]["crm"]["create"] == 0 for line in out.values()), out
    assert len(env.graph(LEE).contacts()) == 9
    assert all(tag_of(c) for c in env.graph(LEE).contacts(with_tags=True))


def test_r7a_tags_ride_on_writes_and_a_lost_state_store_still_duplicates_nothing(env: SyncEnv) -> None:
    """tag_links = with-write (default): a new link costs no Graph request of its own unless
    only the tag could find the pair again (no email); its next Outlook write tags it."""
    first_cycle(env, LEE)
    mb = env.graph(LEE)
    mb.create({"givenName": "Nina", "surname": "Mail", "companyName": "Contoso Ltd",
               "emailAddresses": [{"address": "nina@contoso.example"}]})
    mb.create({"givenName": "Noah", "surname": "Nomail", "companyName": "Contoso Ltd"})
    line = env.sync("--user", LEE).by_user()[LEE]
    assert line["counts"]["crm"]["create"] == 2, line
    assert line["counts"]["outlook"]["update"] == 0, line  # a tag alone is not an edit
    ids = {r["LASTNAME"]: r["CONTACTID"] for r in env.crm_rows(
        "SELECT LASTNAME, CONTACTID FROM CONTACT WHERE LASTNAME IN ('Mail', 'Nomail')")}
    tags = {c["surname"]: tag_of(c) for c in mb.contacts(with_tags=True)}
    assert tags["Nomail"] == ids["Nomail"] and tags["Mail"] is None
    env.crm_exec("UPDATE CONTACT SET TITLE = 'Buyer', MODIFYDATE = CURRENT_TIMESTAMP WHERE CONTACTID = :id",
                 id=ids["Mail"])
    line = env.sync("--user", LEE).by_user()[LEE]
    assert line["counts"]["outlook"]["update"] == 1, line
    tags = {c["surname"]: tag_of(c) for c in mb.contacts(with_tags=True)}
    assert tags["Mail"] == ids["Mail"]  # the title's write carried the tag

    from contactsync.cycle.sides import state_store

    state_store.cache_clear()
    for suffix in ("", "-wal", "-shm"):
        (env.folder / f"state.db{suffix}").unlink(missing_ok=True)
    line = env.sync("--user", LEE).by_user()[LEE]
    assert line["counts"]["crm"]["create"] == 0 and line["counts"]["outlook"]["create"] == 0, line
    assert len(mb.contacts()) == 11
    assert env.crm_rows("SELECT COUNT(*) AS n FROM CONTACT WHERE LASTNAME IN ('Mail', 'Nomail')")[0]["n"] == 2


def test_r19_invalid_record_is_quarantined_and_the_rest_goes_on(env: SyncEnv) -> None:
    first_cycle(env, LEE)
    mb = env.graph(LEE)
    mb.create({"givenName": "Long", "surname": "Title", "jobTitle": "x" * 70,
               "emailAddresses": [{"address": "long@title.example"}]})
    mb.create({"givenName": "Fine", "surname": "Person", "emailAddresses": [{"address": "fine@person.example"}]})
    res = env.sync("--user", LEE)
    line = res.by_user()[LEE]
    assert line["quarantined"] == 1 and line["counts"]["crm"]["create"] == 1
    assert not env.crm_rows("SELECT * FROM CONTACT WHERE EMAIL = 'long@title.example'")
    assert env.crm_rows("SELECT * FROM CONTACT WHERE EMAIL = 'fine@person.example'")


def test_exit_4_when_another_cycle_holds_the_users_lock(env: SyncEnv) -> None:
    from contactsync.state import StateStore

    store = StateStore(f"sqlite:///{env.folder / 'state.db'}")
    with store.lock(LEE.ljust(12)):
        res = env.sync("--user", LEE)
    assert res.exit_code == 4 and res.by_user()[LEE]["status"] == "locked"


def test_exit_2_on_a_bad_configuration(env: SyncEnv) -> None:
    env.config.write_text(env.config.read_text().replace('conflict_policy', 'x') + '\n[sync2]\n')
    res = env.sync()
    assert res.exit_code == 2 and "sync2" in res.stderr
    assert env.sync("--policy", "newest").exit_code == 2


def test_report_writes_html_and_json(env: SyncEnv) -> None:
    first_cycle(env, LEE)
    out = env.folder / "rep"
    res = env.run("report", "--out", str(out))
    assert res.exit_code == 0
    html = (out / "report.html").read_text()
    assert "UDEMOA000001" in html and (out / "report.json").is_file()


@pytest.mark.postgres
def test_core_cycle_on_postgresql(tmp_path: Path, postgres_url: str) -> None:
    with start_in_thread(db_path=tmp_path / "g.db") as emu:
        env = make_env(tmp_path, postgres_url, emu)
        out = first_cycle(env, LEE)
        assert out[LEE]["counts"]["outlook"]["create"] == 9
        env.crm_exec(
            'UPDATE "CONTACT" SET "TITLE" = \'Buyer\', "MODIFYDATE" = CURRENT_TIMESTAMP WHERE "CONTACTID" = :id', id=cid(1)
        )
        env.graph(LEE).create({"givenName": "Pg", "surname": "User", "emailAddresses": [{"address": "pg@user.example"}]})
        line = env.sync("--user", LEE).by_user()[LEE]
        # R8 (the title) and R5a/R6 (the new account "Pg User" flows to Outlook's company)
        assert line["counts"]["outlook"]["update"] == 2 and line["counts"]["crm"]["create"] == 1
        assert total_writes(env.sync("--user", LEE).by_user()[LEE]) == 0


def test_r10_one_way_crm_to_outlook_overwrites_outlook_edits_and_never_writes_crm(env: SyncEnv) -> None:
    first_cycle(env, LEE)
    mb = env.graph(LEE)
    ana = by_email(mb.contacts(), "ana.lopez@contoso.example")
    mb.patch(ana["id"], {"jobTitle": "Edited in Outlook"})
    before = env.crm_rows("SELECT TITLE FROM CONTACT WHERE CONTACTID = :id", id=cid(1))[0]["TITLE"]
    line = env.sync("--user", LEE, "--direction", "crm-to-outlook").by_user()[LEE]
    assert line["counts"]["crm"]["update"] == 0 and line["counts"]["outlook"]["update"] == 1
    assert env.crm_rows("SELECT TITLE FROM CONTACT WHERE CONTACTID = :id", id=cid(1))[0]["TITLE"] == before
    assert by_email(mb.contacts(), "ana.lopez@contoso.example")["jobTitle"] == before


def test_r10a_without_create_in_crm_new_outlook_contacts_stay_outlook_only(tmp_path: Path) -> None:
    with start_in_thread(db_path=tmp_path / "g.db") as emu:
        env = make_env(tmp_path, f"sqlite:///{tmp_path / 'crm.db'}", emu, extra="create_in_crm = false\n")
        first_cycle(env, LEE)
        env.graph(LEE).create({"givenName": "Only", "surname": "Outlook", "emailAddresses": [{"address": "only@outlook.example"}]})
        for _ in range(2):  # reported as skipped every cycle, never written
            line = env.sync("--user", LEE).by_user()[LEE]
            assert total_writes(line) == 0
        assert not env.crm_rows("SELECT * FROM CONTACT WHERE EMAIL = 'only@outlook.example'")


def test_r12_keep_copy_leaves_the_outlook_contact_and_relinks_when_back_in_the_group(tmp_path: Path) -> None:
    with start_in_thread(db_path=tmp_path / "g.db") as emu:
        env = make_env(
            tmp_path, f"sqlite:///{tmp_path / 'crm.db'}", emu, extra="keep_outlook_copy_on_group_removal = true\n"
        )
        first_cycle(env, LEE)
        env.crm_exec("DELETE FROM ADHOCGROUP WHERE ENTITYID = :id AND GROUPID = 'pDEMOA000001'", id=cid(9))
        line = env.sync("--user", LEE).by_user()[LEE]
        assert line["counts"]["outlook"]["delete"] == 0 and line["counts"]["crm"]["unlink"] == 1
        mb = env.graph(LEE)
        costa = next(c for c in mb.contacts() if c.get("surname") == "Costa")
        mb.patch(costa["id"], {"jobTitle": "Goes nowhere"})
        assert env.sync("--user", LEE).by_user()[LEE]["counts"]["crm"]["update"] == 0  # stopped: no match
        env.crm_exec(
            "INSERT INTO ADHOCGROUP (GROUPID, ENTITYID, CREATEDATE, CREATEUSER, MODIFYDATE, MODIFYUSER) "
            "VALUES ('pDEMOA000001', :id, CURRENT_TIMESTAMP, 'ADMIN       ', CURRENT_TIMESTAMP, 'ADMIN       ')",
            id=cid(9),
        )
        line = env.sync("--user", LEE).by_user()[LEE]
        assert line["counts"]["outlook"]["create"] == 0 and line["counts"]["crm"]["create"] == 0
        assert len([c for c in mb.contacts() if c.get("surname") == "Costa"]) == 1
        assert total_writes(env.sync("--user", LEE).by_user()[LEE]) == 0


def test_r2_r3_the_sync_group_and_folder_are_created_when_missing(env: SyncEnv) -> None:
    env.crm_exec("DELETE FROM ADHOCGROUP WHERE GROUPID = 'pDEMOA000001'")
    env.crm_exec("DELETE FROM PLUGIN WHERE PLUGINID = 'pDEMOA000001'")
    line = env.sync("--user", LEE).by_user()[LEE]
    assert line["status"] == "ok" and total_writes(line) == 0
    group = env.crm_rows("SELECT * FROM PLUGIN WHERE USERID = :u AND NAME = 'Outlook Sync'", u=LEE)
    assert len(group) == 1 and group[0]["TYPE"] == 8 and group[0]["FAMILY"] == "Contact"
    assert env.graph(LEE).folder_id("CRM Contacts") is not None


def test_r6_company_edits_in_outlook_never_reach_crm_and_the_account_name_wins(env: SyncEnv) -> None:
    first_cycle(env, LEE)
    mb = env.graph(LEE)
    ana = by_email(mb.contacts(), "ana.lopez@contoso.example")
    mb.patch(ana["id"], {"companyName": "Renamed In Outlook"})
    line = env.sync("--user", LEE).by_user()[LEE]
    assert line["counts"]["crm"]["update"] == 0
    assert env.crm_rows("SELECT ACCOUNT FROM ACCOUNT WHERE ACCOUNTID = 'ADEMOA000001'")[0]["ACCOUNT"] == "Contoso Ltd"
    assert by_email(mb.contacts(), "ana.lopez@contoso.example")["companyName"] == "Contoso Ltd"


def test_r14_deleting_in_crm_after_the_contact_stopped_syncing_leaves_outlook_alone(env: SyncEnv) -> None:
    first_cycle(env, LEE)
    mb = env.graph(LEE)
    personal = mb.make_folder("Personal")
    ines = next(c for c in mb.contacts() if c.get("surname") == "Costa")
    mb.move(ines["id"], personal)
    env.sync("--user", LEE)  # R11: out of the group, unlinked
    env.crm_exec("DELETE FROM CONTACT WHERE CONTACTID = :id", id=cid(9))
    line = env.sync("--user", LEE).by_user()[LEE]
    assert total_writes(line) == 0
    assert [c for c in mb.contacts(personal) if c.get("surname") == "Costa"]
    assert not [c for c in mb.deleted() if c.get("surname") == "Costa"]
