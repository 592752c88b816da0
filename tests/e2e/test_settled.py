"""Settled cycles (contactsync.cycle.settled, R17): once a cycle planned nothing, the next
quiet cycle stops after the CRM read and one delta request, and anything that changed on
either side since (even a CRM edit that leaves MODIFYDATE alone, or a change of who may see
a row, R1) makes the cycle plan in full again.
"""

from __future__ import annotations

from typing import Any

import pytest
import requests

from contactsync.state import StateStore
from tests.e2e.conftest import LEE, SyncEnv
from tests.e2e.test_sync_rules import by_email, cid, first_cycle, total_writes

QUIET = "nothing changed since the last cycle (R17)"


def last_run(env: SyncEnv) -> dict[str, Any]:
    return StateStore(f"sqlite:///{env.folder / 'state.db'}").recent_runs(LEE, limit=1).iloc[0].to_dict()


def graph_requests(env: SyncEnv, *args: str) -> tuple[dict[str, Any], int]:
    """One cycle for Lee and the Graph requests it made."""
    requests.post(f"{env.emulator.url}/_emulator/stats/reset", timeout=10)
    line = env.sync("--user", LEE, *args).by_user()[LEE]
    return line, requests.get(f"{env.emulator.url}/_emulator/stats", timeout=10).json()["requests"]


def settle(env: SyncEnv) -> None:
    """First cycle, then the cycle that reads its writes back (and plans nothing)."""
    first_cycle(env, LEE)
    echo = env.sync("--user", LEE).by_user()[LEE]
    assert echo["status"] == "ok" and total_writes(echo) == 0, echo
    assert last_run(env)["summary"].get("settled")
    assert last_run(env)["summary"]["message"] != QUIET  # that one planned in full


def test_a_quiet_cycle_after_a_settled_one_costs_two_graph_requests(env: SyncEnv) -> None:
    settle(env)
    line, graph = graph_requests(env)
    assert line["status"] == "ok" and total_writes(line) == 0, line
    assert last_run(env)["summary"]["message"] == QUIET
    assert graph == 2  # the folder lookup and one empty delta page
    again, graph = graph_requests(env)  # settled cycles chain
    assert last_run(env)["summary"]["message"] == QUIET and graph == 2, again


def test_a_crm_edit_that_leaves_modifydate_alone_still_flows(env: SyncEnv) -> None:
    settle(env)
    env.crm_exec("UPDATE CONTACT SET TITLE = 'Quiet Buyer' WHERE CONTACTID = :id", id=cid(1))
    line = env.sync("--user", LEE).by_user()[LEE]
    assert line["counts"]["outlook"]["update"] == 1, line
    assert by_email(env.graph(LEE).contacts(), "ana.lopez@contoso.example")["jobTitle"] == "Quiet Buyer"


def test_a_contact_the_user_can_no_longer_see_is_removed_r1_r12(env: SyncEnv) -> None:
    settle(env)
    before = len(env.graph(LEE).contacts())
    # Chloe Martin (Sales Team) goes to Sam's own owner: Lee loses sight of her (R1).
    env.crm_exec("UPDATE CONTACT SET SECCODEID = 'UDEMOA000002' WHERE CONTACTID = :id", id=cid(3))
    line = env.sync("--user", LEE).by_user()[LEE]
    assert line["counts"]["outlook"]["delete"] == 1, line
    assert len(env.graph(LEE).contacts()) == before - 1


@pytest.mark.slow  # make test in CI ran 17 min against its ~15 min budget
def test_an_outlook_edit_and_a_dry_run_and_other_rules_plan_in_full(env: SyncEnv) -> None:
    settle(env)
    mb = env.graph(LEE)
    ana = by_email(mb.contacts(), "ana.lopez@contoso.example")
    mb.patch(ana["id"], {"jobTitle": "Head of Buying"})
    line = env.sync("--user", LEE).by_user()[LEE]
    assert line["counts"]["crm"]["update"] == 1, line
    env.sync("--user", LEE)  # reads its own write back: settles again
    dry = env.sync("--user", LEE, "--dry-run").by_user()[LEE]
    assert dry["status"] == "dry-run" and last_run(env)["summary"]["message"] != QUIET
    env.sync("--user", LEE, "--policy", "crm")  # other rule switches: a full plan
    assert last_run(env)["summary"]["message"] != QUIET
    env.sync("--user", LEE)  # back to the configured rules: the last fingerprint differs
    assert last_run(env)["summary"]["message"] != QUIET
    env.sync("--user", LEE)
    assert last_run(env)["summary"]["message"] == QUIET
