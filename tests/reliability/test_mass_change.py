"""R16: deleting most of the Outlook folder or emptying the CRM group stops the cycle before
any write (exit code 3, nothing changed on either side); --force goes ahead.

The default guard settings (more than 20 % and more than 10 contacts): Lee's group is
grown to 18 members first, so the defaults - not a test-only threshold - are exercised.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from contactsync.crm.demo import cid
from contactsync.emulator import start_in_thread
from tests.e2e.conftest import LEE, SyncEnv, make_env
from tests.reliability.world import outlook_contacts, world_picture, writes

EXTRA_MEMBERS = (20, 21, 22, 24, 25, 27, 29, 30, 26)  # visible to Lee


def grown(folder: Path) -> SyncEnv:
    emu = start_in_thread(db_path=folder / "graph.db")
    env = make_env(folder, f"sqlite:///{folder / 'crm.db'}", emu)
    for n in EXTRA_MEMBERS:
        env.crm_exec(
            "INSERT INTO ADHOCGROUP (GROUPID, ENTITYID, CREATEDATE, CREATEUSER, MODIFYDATE, MODIFYUSER) "
            "VALUES ('pDEMOA000001', :id, '2025-03-01', :u, '2025-03-01', :u)", id=cid(n), u=LEE)
    res = env.sync("--user", LEE)
    assert res.exit_code == 0, res.stdout
    assert len(outlook_contacts(env, LEE)) == 18
    return env


def test_r16_deleting_most_of_the_outlook_folder_stops_before_any_write(tmp_path: Path) -> None:
    env = grown(tmp_path)
    try:
        mb = env.graph(LEE)
        for c in outlook_contacts(env, LEE)[:14]:
            mb.delete(c["id"])
        before = world_picture(env, (LEE,))
        res = env.sync("--user", LEE)
        line = res.by_user()[LEE]
        assert res.exit_code == 3 and line["status"] == "guard-stopped", res.stdout
        assert writes(line) == 0
        assert world_picture(env, (LEE,)) == before  # not one write on either side
        forced = env.sync("--user", LEE, "--force")
        assert forced.exit_code == 0, forced.stdout
        assert forced.by_user()[LEE]["counts"]["crm"]["group_remove"] == 14
        n = env.crm_rows("SELECT COUNT(*) AS n FROM ADHOCGROUP WHERE GROUPID = 'pDEMOA000001'")[0]["n"]
        assert n == 5  # 4 left in Outlook + Jonas (invisible to Lee, never touched: R1)
        assert env.crm_rows("SELECT COUNT(*) AS n FROM CONTACT")[0]["n"] == 30  # R15
    finally:
        env.emulator.stop()


def test_r16_emptying_the_crm_group_stops_before_any_write_and_force_goes_ahead(tmp_path: Path) -> None:
    env = grown(tmp_path)
    try:
        env.crm_exec("DELETE FROM ADHOCGROUP WHERE GROUPID = 'pDEMOA000001'")
        before = world_picture(env, (LEE,))
        res = env.sync("--user", LEE)
        assert res.exit_code == 3 and res.by_user()[LEE]["status"] == "guard-stopped", res.stdout
        assert world_picture(env, (LEE,)) == before
        assert len(outlook_contacts(env, LEE)) == 18
        forced = env.sync("--user", LEE, "--force")
        assert forced.exit_code == 0 and forced.by_user()[LEE]["counts"]["outlook"]["delete"] == 18
        assert outlook_contacts(env, LEE) == []
        assert len(env.graph(LEE).deleted()) == 18  # R12: recoverable in Deleted Items
    finally:
        env.emulator.stop()


@pytest.mark.slow
def test_r16_a_few_deletes_under_the_threshold_go_ahead(tmp_path: Path) -> None:
    env = grown(tmp_path)
    try:
        mb = env.graph(LEE)
        for c in outlook_contacts(env, LEE)[:3]:
            mb.delete(c["id"])
        res = env.sync("--user", LEE)
        assert res.exit_code == 0 and res.by_user()[LEE]["counts"]["crm"]["group_remove"] == 3
    finally:
        env.emulator.stop()
