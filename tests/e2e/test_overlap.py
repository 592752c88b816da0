"""The CRM side runs beside the Outlook side where the two are independent (issue 12:
a first sync within 15 % of the least time): the Outlook load does not wait for the CRM
load, and only the Outlook writes that name a CRM contact this cycle creates (R5c's tag,
R7a) wait for it. Everything is journaled before either load starts (R18)."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import requests

from contactsync.config import load_settings
from contactsync.cycle import load as load_step
from contactsync.cycle.run import PLAIN_STEPS, CycleOptions, run_cycle
from contactsync.emulator import start_in_thread
from tests.e2e.conftest import LEE, make_env
from tests.e2e.test_sync_rules import by_email, tag_of


def _batches(url: str) -> int:
    return int(requests.get(f"{url}/_emulator/stats", timeout=30).json()["batches"])


def test_outlook_writes_go_while_the_crm_load_runs_and_new_crm_tags_wait_for_it(tmp_path: Path) -> None:
    with start_in_thread(db_path=tmp_path / "graph.db") as emulator:
        env = make_env(tmp_path, f"sqlite:///{tmp_path / 'crm.db'}", emulator, 'tag_links = "at-link"')
        mb = env.graph(LEE)
        mb.make_folder("CRM Contacts")
        mb.create({"givenName": "Dana", "surname": "Reyes", "companyName": "Brightwater Analytics",
                   "emailAddresses": [{"address": "dana@brightwater.example"}]})  # R5c: made in the CRM
        seen: dict[str, int] = {}
        # Counted from before the cycle: the first batch may go out while the rest of the
        # plan is journaled, before the CRM load is even called (cycle/load.py::prepare).
        requests.post(f"{emulator.url}/_emulator/stats/reset", timeout=30).raise_for_status()

        def crm_load(prepared: load_step.Prepared, *, group_id: str):
            # Hold the CRM load until the Outlook load has sent a batch: it cannot, if it
            # waits for the CRM load (it would give up after 30 s and the test fails).
            deadline = time.monotonic() + 30
            while _batches(emulator.url) == 0 and time.monotonic() < deadline:
                time.sleep(0.05)
            seen["batches_before_crm"] = _batches(emulator.url)
            results = load_step.load_crm(prepared, group_id=group_id)
            seen["batches_after_crm"] = _batches(emulator.url)
            return results

        settings = load_settings(env.config)
        steps = dataclasses.replace(PLAIN_STEPS, load_crm=crm_load)
        outcome = run_cycle(settings, settings.user(LEE), CycleOptions(force=True), steps)
        assert outcome.status == "ok", outcome.errors
        assert seen["batches_before_crm"] >= 1  # Outlook creates (R4) went out beside the CRM load
        dana = env.crm_rows("SELECT CONTACTID FROM CONTACT WHERE EMAIL = 'dana@brightwater.example'")
        assert len(dana) == 1
        # her tag names the row the CRM load made, so it was written after it (R7a)
        assert _batches(emulator.url) > seen["batches_after_crm"]
        assert tag_of(by_email(mb.contacts(with_tags=True), "dana@brightwater.example")) == dana[0]["CONTACTID"]
        assert outcome.counts["outlook"]["create"] >= 1 and outcome.counts["crm"]["create"] == 1
