"""A lost state store (deleted between cycles): R7a (the CrmContactId tag) and R7 matching
re-link every pair; nothing is created twice on either side, edits made meanwhile still flow.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from contactsync.cycle.sides import state_store
from tests.e2e.conftest import LEE, SyncEnv
from tests.reliability import scenario
from tests.reliability.world import (
    child_cycle,
    clone,
    diff,
    link_count,
    outlook_contacts,
    tag,
    world_picture,
    writes,
)


def lose_state(env: SyncEnv) -> None:
    state_store.cache_clear()
    for suffix in ("", "-wal", "-shm"):
        (env.folder / f"state.db{suffix}").unlink(missing_ok=True)


def synced(base: Path, folder: Path) -> SyncEnv:
    env, _ = clone(base, folder, scenario.EXTRA)
    run = child_cycle(env.config, LEE)
    assert run.returncode == 0, run.stdout + run.stderr
    return env


def test_r7a_lost_state_after_a_busy_cycle_relinks_everything_without_writes(
    base: Path, reference: dict[str, Any], tmp_path: Path
) -> None:
    env = synced(base, tmp_path / "w")
    try:
        links_before = link_count(env, LEE)
        lose_state(env)
        line = env.sync("--user", LEE).by_user()[LEE]  # the real command
        assert line["status"] == "ok", line
        assert line["counts"]["crm"]["create"] == 0 and line["counts"]["outlook"]["create"] == 0, line
        assert writes(line) == 0, line
        assert link_count(env, LEE) == links_before
        delta = diff(world_picture(env), reference["picture"])
        assert not delta, delta
    finally:
        env.emulator.stop()


def test_r7_lost_state_and_lost_tags_match_by_email_and_edits_still_flow(
    base: Path, reference: dict[str, Any], tmp_path: Path
) -> None:
    """Tags gone too (e.g. a contact re-imported): contacts with an email re-link by R7; an
    edit made while the state was lost is a conflict settled by policy, never a new record."""
    env = synced(base, tmp_path / "w")
    try:
        mb = env.graph(LEE)
        contacts = outlook_contacts(env, LEE)
        untagged = [c for c in contacts if c.get("emailAddresses")][:4]
        for c in untagged:
            mb.patch(c["id"], {"singleValueExtendedProperties": [
                {"id": next(p["id"] for p in c["singleValueExtendedProperties"]), "value": None}]})
        ana = next(c for c in contacts if c.get("surname") == "Lopez")
        mb.patch(ana["id"], {"jobTitle": "Chief Procurement Officer"})
        lose_state(env)
        first = child_cycle(env.config, LEE)
        out = first.outcome()
        assert first.returncode == 0 and out["status"] == "ok", first.stdout + first.stderr
        assert out["counts"]["crm"]["create"] == 0 and out["counts"]["outlook"]["create"] == 0, out
        again = child_cycle(env.config, LEE).outcome()
        assert writes(again) == 0, again
        after = outlook_contacts(env, LEE)
        assert len(after) == len(contacts)
        # R7a (tag_links = with-write): contacts only a tag could find again are tagged
        assert all(tag(c) for c in after if not c.get("emailAddresses"))
        title = env.crm_rows("SELECT TITLE FROM CONTACT WHERE CONTACTID = 'CDEMOA000001'")[0]["TITLE"]
        assert title == "Chief Procurement Officer"
        crm = world_picture(env)["crm"]
        assert crm["_labels"] == reference["picture"]["crm"]["_labels"]  # no new CRM rows
        assert len(crm["CONTACT"]) == len(reference["picture"]["crm"]["CONTACT"])
    finally:
        env.emulator.stop()
