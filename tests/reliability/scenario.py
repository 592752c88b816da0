"""A cycle with every kind of write on both sides, for the crash (R18) and fault tests.

After a first cycle for Lee (9 contacts in Outlook), both sides change:

CRM: two edits (-> Outlook updates), one contact out of the group (R12: Outlook delete +
unlink), one contact deleted (R13), two contacts added to the group (R4: Outlook creates),
one field changed on both sides (R9 conflict).
Outlook: three new contacts (R5b existing account, R5c new account, R5a no company and no
email: only the journal can re-link it after a crash), one matching a CRM contact outside
the group by email (R7: group add + tag), one edit (R8 -> CRM update), one moved out of
the folder (R11: group remove + unlink), one deleted.
"""

from __future__ import annotations

from pathlib import Path

from contactsync.crm.demo import cid
from contactsync.emulator import start_in_thread
from tests.e2e.conftest import LEE, SyncEnv, make_env
from tests.reliability.world import child_cycle, outlook_contacts

#: the guard is not what these tests are about (see test_mass_change.py).
EXTRA = "mass_change_min = 1000\n"


def by_surname(env: SyncEnv, surname: str) -> dict:
    return next(c for c in outlook_contacts(env, LEE) if c.get("surname") == surname)


def build(folder: Path) -> Path:
    """Make the world in ``folder`` (crm.db, graph.db, state.db, config); emulator stopped."""
    folder.mkdir(parents=True, exist_ok=True)
    emu = start_in_thread(db_path=folder / "graph.db")
    try:
        env = make_env(folder, f"sqlite:///{folder / 'crm.db'}", emu, extra=EXTRA)
        first = child_cycle(env.config, LEE)
        assert first.returncode == 0, first.stdout + first.stderr
        mutate(env)
    finally:
        emu.stop()
    return folder


def mutate(env: SyncEnv) -> None:
    stamp = "MODIFYDATE = '2026-01-02 10:00:00'"
    env.crm_exec(f"UPDATE CONTACT SET TITLE = 'Head of Purchasing', {stamp} WHERE CONTACTID = :id", id=cid(1))
    env.crm_exec(f"UPDATE CONTACT SET WORKPHONE = '+1 206 555 0199', {stamp} WHERE CONTACTID = :id", id=cid(2))
    env.crm_exec("DELETE FROM ADHOCGROUP WHERE ENTITYID = :id AND GROUPID = 'pDEMOA000001'", id=cid(9))
    env.crm_exec("DELETE FROM ADHOCGROUP WHERE ENTITYID = :id", id=cid(7))
    env.crm_exec("DELETE FROM CONTACT WHERE CONTACTID = :id", id=cid(7))
    for n in (22, 25):
        env.crm_exec(
            "INSERT INTO ADHOCGROUP (GROUPID, ENTITYID, CREATEDATE, CREATEUSER, MODIFYDATE, MODIFYUSER) "
            "VALUES ('pDEMOA000001', :id, '2026-01-02 10:00:00', :u, '2026-01-02 10:00:00', :u)",
            id=cid(n), u=LEE,
        )
    # R9: both sides change Farid's work phone; Outlook's edit is later (now).
    env.crm_exec(f"UPDATE CONTACT SET WORKPHONE = '111', {stamp} WHERE CONTACTID = :id", id=cid(6))

    mb = env.graph(LEE)
    mb.patch(by_surname(env, "Haddad")["id"], {"businessPhones": ["222"]})
    mb.patch(by_surname(env, "Martin")["id"], {"mobilePhone": "+33 6 12 34 56 78"})
    mb.create({"givenName": "Eli", "surname": "Stone", "companyName": "Contoso Ltd",
               "emailAddresses": [{"address": "eli@contoso.example"}]})
    mb.create({"givenName": "Dana", "surname": "Reyes", "companyName": "Brightwater Analytics",
               "emailAddresses": [{"address": "dana@brightwater.example"}], "jobTitle": "Analyst"})
    mb.create({"givenName": "Nomail", "surname": "Person", "mobilePhone": "+44 7700 900123"})
    mb.create({"givenName": "Zoe", "surname": "Fischer",
               "emailAddresses": [{"address": "zoe.fischer@contoso.example"}]})
    other = mb.make_folder("Personal")
    mb.move(by_surname(env, "Novak")["id"], other)
    mb.delete(by_surname(env, "Kim")["id"])
