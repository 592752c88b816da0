"""The first Outlook ``$batch`` goes out while the rest of the plan is being journaled
(issue 12: a first sync within 15 % of the least time), and still no write goes out
before its journal entry (R18).

A first sync of 200 people (``bench.harness``'s mix: 50 only in the CRM, created in
Outlook in 3 batches); the second journal write is held for 1 s, so a first batch that
waited for the whole journal would be seen after it.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from bench.driver import timed_cycle
from bench.harness import USER, Emulator, build
from contactsync.outlook import transport
from contactsync.state import StateStore


def test_first_batch_goes_out_before_the_whole_plan_is_journaled_and_no_write_before_its_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    lock = threading.Lock()
    journaled: set[str] = set()  # CRM ids of journaled Outlook creates (their tag, R7a)
    adds: list[dict[str, Any]] = []
    sent: list[dict[str, Any]] = []
    real_add, real_request = StateStore.journal_add, transport.GraphSession.request

    def journal_add(self: StateStore, user: str, run_id: str, actions: pd.DataFrame) -> int:
        started = time.monotonic()
        if adds:
            time.sleep(1.0)  # the rest of the plan: slow to journal
        n = real_add(self, user, run_id, actions)
        creates = actions[(actions["side"] == "outlook") & (actions["op"] == "create")]
        with lock:
            journaled.update(creates["crm_id"].dropna().astype(str))
            adds.append({"rows": len(actions), "started": started, "ended": time.monotonic()})
        return n

    def request(self: transport.GraphSession, method: str, url: str, *, data: Any = None, **kw: Any) -> Any:
        if url == self.batch_url and isinstance(data, dict):
            tags = [ep["value"] for r in data["requests"] if r["method"] == "POST"
                    for ep in (r.get("body") or {}).get("singleValueExtendedProperties", [])]
            with lock:
                sent.append({"at": time.monotonic(), "tags": tags, "unjournaled": set(tags) - journaled})
        return real_request(self, method, url, data=data, **kw)

    monkeypatch.setattr(StateStore, "journal_add", journal_add)
    monkeypatch.setattr(transport.GraphSession, "request", request)
    emu = Emulator(tmp_path / "graph.db")
    try:
        ds = build(tmp_path, emu, 200, "pipeline")
        cycle = timed_cycle(str(ds.config), USER)
    finally:
        emu.stop()
    assert cycle["status"] == "ok" and cycle["errors"] == 0, cycle["first_errors"]
    assert cycle["counts"]["outlook"]["create"] == 50
    creates = [b for b in sent if b["tags"]]
    assert [len(b["tags"]) for b in creates] == [20, 20, 10]
    assert all(not b["unjournaled"] for b in sent)  # R18: every create journaled before it is sent
    assert [a["rows"] for a in adds][0] == 20  # the first batch's rows first, alone
    assert len(adds) == 2 and sum(a["rows"] for a in adds) == cycle["actions"]
    # the first batch left while the rest was being journaled, the second after it
    assert adds[1]["started"] < creates[0]["at"] < adds[1]["ended"] <= creates[1]["at"]
