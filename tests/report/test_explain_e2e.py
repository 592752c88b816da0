"""`contact-sync explain` after real cycles: the sync's own writes and conflicts, told back."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from contactsync.emulator import start_in_thread
from tests.e2e.conftest import LEE, SyncEnv, make_env


@pytest.fixture()
def env(prefect_api: None, tmp_path: Path) -> Iterator[SyncEnv]:
    with start_in_thread(db_path=tmp_path / "graph.db") as emulator:
        yield make_env(tmp_path, f"sqlite:///{tmp_path / 'crm.db'}", emulator)


def test_explain_tells_the_conflict_and_the_write_of_a_real_cycle(env: SyncEnv) -> None:
    assert env.sync("--user", LEE).exit_code == 0  # first cycle: R4 creates in Outlook
    crm_id = "CDEMOA000002"
    box = env.graph(LEE)
    contact = next(c for c in box.contacts() if c["emailAddresses"] and
                   c["emailAddresses"][0]["address"] == "ben.carter@contoso.example")
    env.crm_exec("UPDATE CONTACT SET MOBILE = :m, MODIFYDATE = CURRENT_TIMESTAMP WHERE CONTACTID = :id",
                 m="+1 555 0100", id=crm_id)
    time.sleep(1.1)  # the Outlook edit is the later one (R9 latest)
    box.patch(contact["id"], {"mobilePhone": "+1 555 0199"})
    second = env.sync("--user", LEE)
    assert second.exit_code == 0 and second.by_user()[LEE.strip()]["conflicts"] == 1

    res = env.run("explain", "--config", str(env.config), "--crm-id", crm_id, "--json")
    assert res.exit_code == 0, res.stderr
    events = json.loads(res.stdout)["events"]
    kinds = [(e["kind"], e["rule"], e["side"], e["op"]) for e in events]
    assert kinds[0] == ("write", "R4", "outlook", "create")  # the first cycle made it in Outlook
    conflict = next(e for e in events if e["kind"] == "conflict")
    assert conflict["after"] == {"crm": "+1 555 0100", "outlook": "+1 555 0199"}
    assert conflict["winner"] == "outlook" and conflict["fields"] == "mobile_phone"
    write = next(e for e in events if e["kind"] == "write" and e["side"] == "crm")
    assert write["before"] == {"mobile_phone": "+1 555 0100"} and write["after"] == {"mobile_phone": "+1 555 0199"}
    assert {e["outlook_id"] for e in events} == {contact["id"]}

    by_mail = env.run("explain", "--config", str(env.config), "--email", "BEN.CARTER@contoso.example")
    assert by_mail.exit_code == 0 and "R9 conflict on mobile_phone" in by_mail.stdout
    assert env.run("explain", "--config", str(env.config), "--email", "nobody@nowhere.example").exit_code == 2
