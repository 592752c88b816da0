"""The planning benchmark still runs and its scenarios plan what they claim to."""

from __future__ import annotations

import json

from bench.plan_bench import main


def test_plan_bench_runs_small_and_reports_both_scenarios(tmp_path, capsys):
    out = tmp_path / "plan.json"
    assert main(["-n", "400", "--repeat", "1", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    steady, first = report["results"]
    assert (steady["scenario"], first["scenario"]) == ("steady", "first_sync")
    # 1 % changed on each side: 4 CRM-side and 4 Outlook-side edits, no links lost
    assert steady["counts"].get("crm update R8", 0) + steady["counts"].get("crm update R9", 0) > 0
    assert not any(" unlink " in k or " delete " in k for k in steady["counts"])
    # first sync: half match by email (R7), the other half is created on both sides
    assert first["counts"]["crm link R7"] == 200
    assert first["counts"]["outlook create R4"] == 200
    assert first["counts"]["crm create R5c"] == 200
