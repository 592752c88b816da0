"""Runs, conflicts (R9) and quarantine (R19) as the report reads them."""

from __future__ import annotations

import time

import pandas as pd
import pytest

from contactsync.plan.schema import CONFLICT_COLUMNS
from contactsync.report import run_summary
from contactsync.state import StateStore

from .conftest import OTHER, USER


def test_runs_start_finish_and_recent_newest_first(store: StateStore) -> None:
    r1 = store.start_run(USER, dry_run=True, params={"policy": "crm"})
    store.finish_run(r1, "dry-run", {"counts": {"outlook": {"create": 2}}})
    time.sleep(0.01)
    r2 = store.start_run(USER, dry_run=False, params={})
    store.start_run(OTHER, dry_run=False, params={})
    runs = store.recent_runs(USER)
    assert runs["run_id"].tolist() == [r2, r1]
    assert len(r1) == 32 and int(r1, 16) >= 0
    first = runs.set_index("run_id").loc[r1]
    assert first["status"] == "dry-run" and bool(first["dry_run"]) is True
    assert first["summary"] == {"counts": {"outlook": {"create": 2}}}
    assert first["params"] == {"policy": "crm"}
    assert first["finished_at"] >= first["started_at"]
    assert runs.set_index("run_id").loc[r2, "status"] == "running"
    assert len(store.recent_runs()) == 3
    assert store.recent_runs(USER, limit=1)["run_id"].tolist() == [r2]


def test_runs_never_keep_secrets(store: StateStore) -> None:
    run = store.start_run(USER, dry_run=False, params={
        "client_secret": "hunter2", "outlook": {"token": "abc"}, "force": True})
    params = store.recent_runs(USER).iloc[0]["params"]
    assert params["force"] is True
    assert "hunter2" not in str(params) and "abc" not in str(params)
    with pytest.raises(ValueError):
        store.finish_run(run, "great", {})
    with pytest.raises(KeyError):
        store.finish_run("0" * 32, "ok", {})


def test_r9_conflicts_round_trip_per_run(store: StateStore) -> None:
    run = store.start_run(USER, dry_run=False, params={})
    conflicts = pd.DataFrame([{
        "crm_id": "CSYNC0000001", "outlook_id": "AAMk-1", "field": "mobile_phone",
        "snapshot_value": None, "crm_value": "+33 1", "outlook_value": "+33 2",
        "winner": "outlook", "policy": "latest", "rule": "R9"}])
    assert store.record_conflicts(run, USER, conflicts) == 1
    got = store.conflicts(run)
    assert list(got.columns) == ["user", *CONFLICT_COLUMNS]
    rec = got.iloc[0].to_dict()
    assert rec["user"] == USER and rec["winner"] == "outlook" and rec["snapshot_value"] is None
    assert store.conflicts("other-run").empty


def test_r19_quarantine_keeps_reason_and_a_short_preview(store: StateStore) -> None:
    run = store.start_run(USER, dry_run=False, params={})
    rows = pd.DataFrame([
        {"side": "outlook", "record_id": "AAMk-2", "field": "email1", "rule": "R19",
         "reason": "invalid email", "value": "x" * 500},
        {"side": "crm", "record_id": "CSYNC0000003", "field": None, "rule": "R19",
         "reason": "no name at all", "value": None},
    ])
    assert store.record_quarantine(run, USER, rows) == 2
    got = store.quarantine(run)
    assert got["reason"].tolist() == ["invalid email", "no name at all"]
    assert len(got.iloc[0]["value"]) == 60 and got.iloc[0]["value"].endswith("…")
    assert got.iloc[1]["value"] is None


def test_run_summary_shape_zero_fills_interface_counts() -> None:
    by_rule = pd.DataFrame({"side": ["outlook", "outlook", "crm"], "op": ["create", "create", "link"],
                            "rule": ["R4", "R7", "R7"], "count": [3, 1, 1]})
    summary = run_summary(by_rule, conflicts=2, quarantined=1, durations={"plan": 0.5})
    assert summary["counts"]["outlook"] == {"create": 4, "update": 0, "delete": 0}
    assert summary["counts"]["crm"]["link"] == 1 and summary["counts"]["crm"]["unlink"] == 0
    assert summary["by_rule"][0] == {"side": "outlook", "op": "create", "rule": "R4", "count": 3}
    assert (summary["conflicts"], summary["quarantined"]) == (2, 1)
