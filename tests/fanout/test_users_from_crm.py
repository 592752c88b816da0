"""Issue 16 item 4: users from the CRM (``[users_from_crm] enabled = true``) and
``contact-sync users`` (spec/INTERFACE.md).

Every enabled CRM user (USERSECURITY.ENABLED 'T') who owns a contact sync group (R2's
group name, PLUGIN TYPE 8, FAMILY 'Contact') syncs, with USERINFO.EMAIL as the mailbox; a
``[[users]]`` entry for the same user wins. The others are shown with the reason.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from contactsync.cli import app
from contactsync.crm import demo
from contactsync.emulator import start_in_thread
from contactsync.state import StateStore
from tests.e2e.conftest import LEE, SAM, Mailbox, SyncEnv, make_env
from tests.fanout.crm_users import add_crm_user

CARA, DAN, EVE = "UDEMOC000001", "UDEMOC000002", "UDEMOC000003"
EVERYONES = [demo.cid(n) for n in (1, 5, 9)]  # contacts owned by Everyone (R1: Cara sees them)
LEES_OWN = demo.cid(2)  # Ben Carter, owned by Lee: in Cara's group, but she cannot see him (R1)


@pytest.fixture()
def crm_env(tmp_path: Path) -> Iterator[SyncEnv]:
    with start_in_thread(db_path=tmp_path / "graph.db") as emu:
        env = make_env(tmp_path, f"sqlite:///{tmp_path / 'crm.db'}", emu,
                       extra="\n[users_from_crm]\nenabled = true\n")
        engine = env.crm()
        try:
            add_crm_user(engine, CARA, first="Cara", last="Nunez", email="cara@example.com",
                         group_members=[*EVERYONES, LEES_OWN])
            add_crm_user(engine, DAN, first="Dan", last="Otto", email="dan@example.com", enabled=False,
                         group_members=EVERYONES)
            add_crm_user(engine, EVE, first="Eve", last="Park", email=None, group_members=EVERYONES)
        finally:
            engine.dispose()
        # Lee's CRM address differs from the configured mailbox: the [[users]] entry wins.
        env.crm_exec("UPDATE USERINFO SET EMAIL = 'lee.crm@example.com' WHERE USERID = :u", u=LEE)
        yield env


def _users(env: SyncEnv, *args: str) -> tuple[int, str]:
    res = CliRunner().invoke(app, ["users", "--config", str(env.config), *args])
    return res.exit_code, res.stdout


def test_users_shows_who_syncs_and_why_the_others_do_not(crm_env: SyncEnv) -> None:
    code, out = _users(crm_env, "--json")
    assert code == 0, out
    rows = {r["crm_user"]: r for r in map(json.loads, out.splitlines())}
    assert set(rows) == {LEE, SAM, CARA, DAN, EVE, "ADMIN"}
    assert {u for u, r in rows.items() if r["syncs"]} == {LEE, SAM, CARA}
    assert rows[LEE] | {"reasons": None} == {"crm_user": LEE, "display_name": "Lee Park", "mailbox": "lee@example.com",
                                            "source": "config", "syncs": True, "reasons": None}
    assert rows[CARA]["mailbox"] == "cara@example.com" and rows[CARA]["source"] == "crm"
    assert rows[CARA]["display_name"] == "Cara Nunez"
    assert rows[DAN]["reasons"] == ["disabled in the CRM (USERSECURITY.ENABLED is not 'T')"]
    assert rows[EVE]["reasons"] == ["no mailbox address (USERINFO.EMAIL)"] and rows[EVE]["mailbox"] == ""
    assert rows["ADMIN"]["reasons"] == ["no contact sync group"]

    code, text = _users(crm_env)
    assert code == 0 and "3 of 6 user(s) will sync" in text
    assert "does not sync: disabled in the CRM" in text and "does not sync: no contact sync group" in text


def test_crm_users_with_a_group_sync_and_configured_users_keep_their_mailbox(crm_env: SyncEnv) -> None:
    res = crm_env.sync()
    assert res.exit_code == 0, res.stdout + res.stderr
    lines = res.by_user()
    assert set(lines) == {LEE, SAM, CARA}  # Dan (disabled), Eve (no mailbox), Admin (no group) do not
    assert lines[CARA]["counts"]["outlook"]["create"] == 3
    cara = Mailbox(crm_env.emulator, "cara@example.com")
    assert sorted(c["surname"] for c in cara.contacts()) == sorted(
        r["LASTNAME"] for r in crm_env.crm_rows("SELECT LASTNAME FROM CONTACT WHERE CONTACTID IN ('"
                                               + "','".join(EVERYONES) + "')"))
    # Lee synced into the configured mailbox, not into USERINFO.EMAIL's.
    assert len(crm_env.graph(LEE).contacts()) == 9
    assert Mailbox(crm_env.emulator, "lee.crm@example.com").folder_id() is None
    runs = StateStore(f"sqlite:///{crm_env.folder / 'state.db'}").recent_runs(CARA.ljust(12))
    assert runs.iloc[0]["status"] == "ok"


def test_a_crm_user_who_does_not_sync_is_refused_with_the_reason(crm_env: SyncEnv) -> None:
    res = crm_env.sync("--user", DAN)
    assert res.exit_code == 2 and "disabled in the CRM" in res.stderr, res.stdout + res.stderr
    assert crm_env.sync("--user", CARA).by_user()[CARA]["status"] == "ok"  # named alone, she syncs
    assert SAM not in crm_env.sync("--user", CARA).by_user()


@pytest.mark.slow  # make test in CI ran 17 min against its ~15 min budget
def test_the_report_and_the_quality_report_flow_include_the_crm_users_who_sync(crm_env: SyncEnv) -> None:
    """Issue 16 item 3: `contact-sync report` and the daily flow cover [users_from_crm]'s users
    (they used to read only the [[users]] entries, so Cara's cycles were never reported)."""
    from flows.quality_report import quality_report

    assert crm_env.sync().exit_code == 0
    res = CliRunner().invoke(app, ["report", "--config", str(crm_env.config), "--out", str(crm_env.folder / "r")])
    assert res.exit_code == 0, res.stdout + res.stderr
    data = json.loads((crm_env.folder / "r" / "report.json").read_text(encoding="utf-8"))
    reported = {u["user"]: u for u in data["users"]}
    assert set(reported) == {LEE, SAM, CARA}  # the roster's who sync; not Dan, Eve or Admin
    assert reported[CARA]["name"] == "Cara Nunez" and reported[CARA]["health"]["level"] == "ok"
    assert "Cara Nunez" in res.stdout

    paths = quality_report(out_dir=str(crm_env.folder / "daily"), config_path=str(crm_env.config))
    daily = json.loads(Path(paths["json"]).read_text(encoding="utf-8"))
    assert {u["user"] for u in daily["users"]} == {LEE, SAM, CARA}
