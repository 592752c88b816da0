"""`contact-sync sync` end to end through what production Graph does (issue 12), one cycle
per behaviour, against the emulator set to it (spec/INTERFACE.md "The Graph emulator").

Each must end with nothing lost, no duplicate and exit 0 (SYNC_RULES.md rule ids cited).
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import requests

from contactsync.emulator import start_in_thread
from tests.e2e.conftest import LEE, MAILBOXES, SyncEnv
from tests.e2e.test_sync_rules import by_email, cid, first_cycle, tag_of, total_writes


def control(env: SyncEnv, path: str, body: dict | None = None) -> dict:
    r = requests.post(f"{env.emulator.url}/_emulator/{path}", json=body or {}, timeout=30)
    r.raise_for_status()
    return r.json() if r.content else {}


def stats(env: SyncEnv) -> dict:
    return requests.get(f"{env.emulator.url}/_emulator/stats", timeout=30).json()


def crm_contact(env: SyncEnv, n: int) -> dict:
    return env.crm_rows("SELECT * FROM CONTACT WHERE CONTACTID = :id", id=cid(n))[0]


def lose_state_store(env: SyncEnv) -> None:
    from contactsync.cycle.sides import state_store

    state_store.cache_clear()
    for suffix in ("", "-wal", "-shm"):
        (env.folder / f"state.db{suffix}").unlink(missing_ok=True)


def test_batch_parallel_inside_first_sync_no_inner_429(env: SyncEnv) -> None:
    """1: the writes' batches run 4 at a time inside; the client counts places in inner
    requests, so a first cycle with latency gets no MailboxConcurrency 429."""
    control(env, "latency", {"ms": 30})
    control(env, "stats/reset")
    res = env.sync()
    assert res.exit_code == 0, res.stdout + res.stderr
    assert all(line["counts"]["outlook"]["create"] == 9 for line in res.by_user().values())
    s = stats(env)
    assert s["throttled"] == 0 and s["inner_requests"] >= 18, s


def test_partial_delta_items_one_outlook_field_changes_exactly_that_crm_column(env: SyncEnv) -> None:
    """2: Graph sends an updated contact as its id and the changed properties only (R8)."""
    first_cycle(env, LEE)
    control(env, "delta", {"updated_items": "changed"})
    before = crm_contact(env, 2)
    mb = env.graph(LEE)
    ben = by_email(mb.contacts(), "ben.carter@contoso.example")
    mb.patch(ben["id"], {"jobTitle": "Head of Buying"})
    res = env.sync("--user", LEE)
    assert res.exit_code == 0 and res.by_user()[LEE]["counts"]["crm"]["update"] == 1, res.stdout
    after = crm_contact(env, 2)
    changed = {k for k in before if before[k] != after[k]} - {"MODIFYDATE", "MODIFYUSER"}
    assert changed == {"TITLE"} and after["TITLE"] == "Head of Buying"
    assert total_writes(env.sync("--user", LEE).by_user()[LEE]) == 0


def _lost_state_with_edits(env: SyncEnv, mode: str) -> None:
    first_cycle(env, LEE)
    control(env, "delta", {"expand": mode})
    mb = env.graph(LEE)
    ana = by_email(mb.contacts(), "ana.lopez@contoso.example")
    mb.patch(ana["id"], {"emailAddresses": [{"address": "ana.new@contoso.example"}], "surname": "Lopez-Diaz"})
    env.crm_exec("UPDATE CONTACT SET EMAIL = 'ben.new@contoso.example', LASTNAME = 'Carter-Lee', "
                 "MODIFYDATE = CURRENT_TIMESTAMP WHERE CONTACTID = :id", id=cid(2))
    crm_count = env.crm_rows("SELECT COUNT(*) AS n FROM CONTACT")[0]["n"]
    lose_state_store(env)
    res = env.sync("--user", LEE)
    assert res.exit_code == 0, res.stdout + res.stderr
    line = res.by_user()[LEE]
    assert line["counts"]["outlook"]["create"] == 0 and line["counts"]["crm"]["create"] == 0, line
    assert len(mb.contacts()) == 9
    assert env.crm_rows("SELECT COUNT(*) AS n FROM CONTACT")[0]["n"] == crm_count
    assert all(tag_of(c) for c in mb.contacts(with_tags=True))  # R7a found every pair


def test_no_expand_in_delta_ignored_lost_state_store_creates_nothing(env: SyncEnv) -> None:
    """3: delta drops $expand; the tags come from a plain read of the folder (R7a)."""
    _lost_state_with_edits(env, "ignore")


def test_no_expand_in_delta_rejected_lost_state_store_creates_nothing(env: SyncEnv) -> None:
    """3: delta answers $expand with 400; every cycle still works (R7a)."""
    _lost_state_with_edits(env, "reject")
    assert total_writes(env.sync("--user", LEE).by_user()[LEE]) == 0


def test_sync_state_expires_full_read_ends_as_an_uninterrupted_cycle(env: SyncEnv) -> None:
    """4: 410 SyncStateNotFound -> a full read; Outlook's create (R5), update (R8) and
    move out of the folder (R11) made meanwhile are all handled."""
    first_cycle(env, LEE)
    mb = env.graph(LEE)
    mb.create({"givenName": "Iris", "surname": "New", "companyName": "Contoso Ltd",
               "emailAddresses": [{"address": "iris@contoso.example"}]})
    ben = by_email(mb.contacts(), "ben.carter@contoso.example")
    mb.patch(ben["id"], {"mobilePhone": "+44 20 7946 0001"})
    emma = next(c for c in mb.contacts() if c.get("surname") == "Novak")
    mb.move(emma["id"], mb.make_folder("Personal"))
    control(env, f"users/{MAILBOXES[LEE]}/expire-sync-state")
    res = env.sync("--user", LEE)
    assert res.exit_code == 0, res.stdout + res.stderr
    line = res.by_user()[LEE]
    assert line["counts"]["crm"]["create"] == 1 and line["counts"]["crm"]["update"] == 1, line
    assert line["counts"]["crm"]["group_remove"] == 1, line
    assert crm_contact(env, 2)["MOBILE"] == "+44 20 7946 0001"
    assert env.crm_rows("SELECT * FROM CONTACT WHERE EMAIL = 'iris@contoso.example'")
    assert not env.crm_rows("SELECT * FROM ADHOCGROUP WHERE ENTITYID = :id AND GROUPID = 'pDEMOA000001'", id=cid(5))
    assert total_writes(env.sync("--user", LEE).by_user()[LEE]) == 0


def _hundred_members(tmp_path: Path, graph_url: str) -> SyncEnv:
    from bench.run import build

    ds = build(tmp_path, SimpleNamespace(graph_url=graph_url), 100, "tok", crm_only=True)
    return SyncEnv(ds.folder, ds.config, ds.crm_url, None)  # type: ignore[arg-type]


def test_token_expires_mid_load_100_creates_no_duplicate(tmp_path: Path) -> None:
    """5: 401 InvalidAuthenticationToken on the third write: a fresh token, sent again."""
    with start_in_thread(db_path=tmp_path / "g.db") as emu:
        env = _hundred_members(tmp_path, emu.graph_url)
        env.emulator = emu
        requests.post(f"{emu.url}/_emulator/faults", json={"status": 401, "count": 1, "skip": 2,
                                                           "methods": ["POST"]}, timeout=10).raise_for_status()
        res = env.run("sync", "--json", "--force")
        assert res.exit_code == 0, res.stdout + res.stderr
        assert res.by_user()[LEE]["counts"]["outlook"]["create"] == 100
        listed = requests.get(f"{emu.url}/_emulator/stats", timeout=10).json()
        assert listed["requests"] > 5
        contacts = env_contacts(emu, "tok@bench.example")
        assert len(contacts) == 100 and len({tag_of(c) for c in contacts}) == 100


def env_contacts(emu, upn: str) -> list[dict]:
    from tests.e2e.conftest import Mailbox

    return Mailbox(emu, upn).contacts(with_tags=True)


def test_token_expires_persistently_fails_with_a_credentials_message(env: SyncEnv) -> None:
    control(env, "faults", {"status": 401, "count": 1000})
    res = env.run("sync", "--user", LEE)  # as a person reads it (the message is not in --json)
    assert res.exit_code == 1
    assert f"{LEE}: failed" in res.stdout
    text = (res.stdout + res.stderr).lower()
    assert "refused the access token" in text and "check the credentials" in text


def test_if_match_person_edit_between_read_and_write_is_not_overwritten(env: SyncEnv) -> None:
    """6: the person's Outlook edit lands between the sync's read and its write: the
    write gets 412 and is left out; the next cycle merges and reports the conflict (R8/R9)."""
    first_cycle(env, LEE)
    mb = env.graph(LEE)
    david = by_email(mb.contacts(), "david.kim@fabrikam.example")
    env.crm_exec("UPDATE CONTACT SET TITLE = 'CRM title', MODIFYDATE = '2025-06-01 00:00:00' "
                 "WHERE CONTACTID = :id", id=cid(4))

    from contactsync.outlook import extract as outlook_extract

    real = outlook_extract.apply_changes

    def read_then_person_edits(*args, **kwargs):
        result = real(*args, **kwargs)
        mb.patch(david["id"], {"jobTitle": "Person's title"})  # after the read, before the write
        return result

    outlook_extract.apply_changes = read_then_person_edits
    try:
        res = env.sync("--user", LEE)
    finally:
        outlook_extract.apply_changes = real
    assert res.exit_code == 0, res.stdout + res.stderr
    assert by_email(mb.contacts(), "david.kim@fabrikam.example")["jobTitle"] == "Person's title"
    line = env.sync("--user", LEE).by_user()[LEE]  # latest: the person's later edit wins
    assert line["conflicts"] == 1, line
    assert crm_contact(env, 4)["TITLE"] == "Person's title"
    assert by_email(mb.contacts(), "david.kim@fabrikam.example")["jobTitle"] == "Person's title"


def test_if_match_412_race_is_retried_not_reported(env: SyncEnv) -> None:
    first_cycle(env, LEE)
    env.crm_exec("UPDATE CONTACT SET TITLE = 'Raced', MODIFYDATE = CURRENT_TIMESTAMP WHERE CONTACTID = :id", id=cid(1))
    control(env, "faults", {"status": 412, "count": 1, "methods": ["PATCH"]})
    res = env.sync("--user", LEE)
    assert res.exit_code == 0, res.stdout + res.stderr
    assert res.by_user()[LEE]["counts"]["outlook"]["update"] == 1
    assert by_email(env.graph(LEE).contacts(), "ana.lopez@contoso.example")["jobTitle"] == "Raced"


def test_whole_second_times_a_cycle_reads_every_time(env: SyncEnv) -> None:
    """7: Graph's whole-second times are read (none missing): an Outlook edit later than the
    CRM's under `latest` wins, and a tie goes to the CRM (the documented rule, R9)."""
    first_cycle(env, LEE)
    mb = env.graph(LEE)
    ana = by_email(mb.contacts(), "ana.lopez@contoso.example")
    mb.patch(ana["id"], {"jobTitle": "Outlook later"})
    env.crm_exec("UPDATE CONTACT SET TITLE = 'CRM earlier', MODIFYDATE = '2025-06-01 00:00:00' "
                 "WHERE CONTACTID = :id", id=cid(1))
    now = by_email(mb.contacts(), "ben.carter@contoso.example")
    mb.patch(now["id"], {"jobTitle": "Outlook tie"})
    stamp = by_email(mb.contacts(), "ben.carter@contoso.example")["lastModifiedDateTime"]
    assert stamp.endswith("Z") and "." not in stamp
    env.crm_exec("UPDATE CONTACT SET TITLE = 'CRM tie', MODIFYDATE = :t WHERE CONTACTID = :id",
                 t=stamp.replace("T", " ").rstrip("Z"), id=cid(2))
    res = env.sync("--user", LEE)
    assert res.exit_code == 0 and res.by_user()[LEE]["conflicts"] == 2, res.stdout
    assert crm_contact(env, 1)["TITLE"] == "Outlook later"
    assert by_email(mb.contacts(), "ben.carter@contoso.example")["jobTitle"] == "CRM tie"


def test_quarantined_counts_a_five_line_street_once(env: SyncEnv) -> None:
    """Also found: a linked contact whose Outlook street has five lines is one record (R19)."""
    first_cycle(env, LEE)
    mb = env.graph(LEE)
    ana = by_email(mb.contacts(), "ana.lopez@contoso.example")
    mb.patch(ana["id"], {"businessAddress": {"street": "1\n2\n3\n4\n5"}})
    res = env.sync("--user", LEE)
    line = res.by_user()[LEE]
    assert line["quarantined"] == 1, line
    assert env.crm_rows("SELECT ADDRESS1 FROM ADDRESS WHERE ENTITYID = :id", id=cid(1))[0]["ADDRESS1"] != "1"


def test_r7a_a_tag_changed_outside_the_sync_waits_for_the_next_full_read_which_rewrites_it(env: SyncEnv) -> None:
    """3 (decision, README "R7a"): delta carries no extended properties, so a CrmContactId
    tag changed by another app on a linked contact is not looked for on delta rounds (no
    request per changed contact); the link decides the pair meanwhile. The next full read
    (here a backfill) reads every tag and writes the linked CRM id back, creating nothing."""
    from contactsync.outlook.mapping import CRM_TAG_PROPERTY_ID

    first_cycle(env, LEE)
    first_cycle(env, LEE)  # the delta round that brings the contacts the first one created
    mb = env.graph(LEE)
    ben = by_email(mb.contacts(with_tags=True), "ben.carter@contoso.example")
    assert tag_of(ben) == cid(2)
    mb.patch(ben["id"], {"singleValueExtendedProperties": [{"id": CRM_TAG_PROPERTY_ID, "value": cid(3)}]})
    crm_before = env.crm_rows("SELECT CONTACTID, LASTNAME, EMAIL FROM CONTACT ORDER BY CONTACTID")
    control(env, "stats/reset")
    res = env.sync("--user", LEE)  # a delta round: Ben comes back changed, without his tag
    assert res.exit_code == 0 and total_writes(res.by_user()[LEE]) == 0, res.stdout + res.stderr
    assert stats(env)["batches"] == 0  # no tag read for a contact whose tag the mirror knows
    assert tag_of(by_email(mb.contacts(with_tags=True), "ben.carter@contoso.example")) == cid(3)
    count = len(mb.contacts())
    res = env.run("backfill", "--user", LEE)  # a full read: every tag is read
    assert res.exit_code == 0, res.stdout + res.stderr
    after = mb.contacts(with_tags=True)
    assert tag_of(by_email(after, "ben.carter@contoso.example")) == cid(2)
    assert len(after) == count  # nothing created in Outlook (R7a never followed the wrong tag)
    assert env.crm_rows("SELECT CONTACTID, LASTNAME, EMAIL FROM CONTACT ORDER BY CONTACTID") == crm_before
