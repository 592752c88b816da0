"""The data-quality report: the numbers of the last cycle, escaped, no secrets."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from contactsync.report import write_report
from contactsync.state import StateStore

from .conftest import OTHER, USER

EVIL = "<script>alert('x')</script>"


@pytest.fixture()
def filled(store: StateStore) -> StateStore:
    old = store.start_run(USER, dry_run=True, params={})
    store.finish_run(old, "dry-run", {"counts": {"outlook": {"create": 7}}, "conflicts": 0,
                                      "quarantined": 0})
    run = store.start_run(USER, dry_run=False, params={"client_secret": "s3cr3t-value", "force": False})
    by_rule = [{"side": "outlook", "op": "create", "rule": "R4", "count": 42},
               {"side": "crm", "op": "create", "rule": "R5c", "count": 3},
               {"side": "crm", "op": "update", "rule": "R8", "count": 5}]
    store.finish_run(run, "ok", {
        "counts": {"outlook": {"create": 42, "update": 0, "delete": 0},
                   "crm": {"create": 3, "update": 5, "unlink": 0, "group_add": 0, "group_remove": 0}},
        "by_rule": by_rule, "conflicts": 1, "quarantined": 1, "durations": {"total": 1.5}})
    store.record_conflicts(run, USER, pd.DataFrame([{
        "crm_id": "CSYNC0000001", "outlook_id": "AAMk-1", "field": "job_title",
        "snapshot_value": "Engineer", "crm_value": EVIL, "outlook_value": "Chief & Co",
        "winner": "crm", "policy": "latest", "rule": "R9"}]))
    store.record_quarantine(run, USER, pd.DataFrame([{
        "side": "outlook", "record_id": "AAMk-9", "field": "email1", "rule": "R19",
        "reason": "invalid email address", "value": f"{EVIL}@nowhere"}]))
    return store


def test_report_html_escapes_every_value_and_holds_the_numbers(filled: StateStore, tmp_path: Path) -> None:
    paths = write_report(filled, [USER, OTHER], tmp_path / "out")
    page = paths["html"].read_text(encoding="utf-8")
    assert "<script>" not in page
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in page  # Jinja2 (markupsafe) escaping
    assert "Chief &amp; Co" in page
    for text in (">42<", ">R4<", ">R5c<", ">R8<", "invalid email address", "job_title",
                 "Engineer", "R19", "ULEE00000001".strip(), "No cycle has run"):
        assert text in page, text
    assert page.count("<tr>") >= 2 + 3 + 1 + 1  # trend rows + rule rows + conflict + quarantine
    assert "s3cr3t" not in page


def test_report_json_counts_conflicts_quarantine_and_trend(filled: StateStore, tmp_path: Path) -> None:
    paths = write_report(filled, [USER], tmp_path)
    data = json.loads(paths["json"].read_text(encoding="utf-8"))
    assert "s3cr3t" not in paths["json"].read_text(encoding="utf-8")
    (user,) = data["users"]
    assert user["user"] == "ULEE00000001"
    last = user["last_run"]
    assert last["status"] == "ok" and last["counts"]["outlook"]["create"] == 42
    assert {r["rule"]: r["count"] for r in last["by_rule"]} == {"R4": 42, "R5c": 3, "R8": 5}
    assert user["conflicts"][0]["crm_value"] == EVIL and user["conflicts"][0]["winner"] == "crm"
    assert user["quarantine"][0]["reason"] == "invalid email address"
    assert [r["status"] for r in user["trend"]] == ["ok", "dry-run"]
    assert user["trend"][1]["counts"]["outlook"]["create"] == 7
    assert data["gx_docs"] is None


def test_report_links_gx_data_docs_when_present(store: StateStore, tmp_path: Path) -> None:
    (tmp_path / "gx").mkdir()
    (tmp_path / "gx" / "index.html").write_text("<html></html>")
    paths = write_report(store, [USER], tmp_path, runs=5)
    assert 'href="gx/index.html"' in paths["html"].read_text(encoding="utf-8")


def test_report_reads_the_flow_summary_shape(store: StateStore, tmp_path: Path) -> None:
    """The sync flow keeps ``actions`` (not ``by_rule``), ``duration_s``, ``message`` and
    ``errors``; the report counts rules from the actions and shows the errors escaped."""
    run = store.start_run(USER, dry_run=False, params={})
    actions = [{"side": "outlook", "op": "update", "rule": "R8", "reason": "changed in CRM"}] * 4
    actions += [{"side": "crm", "op": "unlink", "rule": "R11", "reason": "left the folder"}]
    store.finish_run(run, "failed", {
        "counts": {"outlook": {"update": 4}}, "conflicts": 0, "quarantined": 0,
        "actions": actions, "duration_s": 12.5, "message": "1 write(s) failed",
        "errors": [f"CRM write failed: {EVIL}"]})
    (tmp_path / "gx" / "ULEE00000001" / "local_site").mkdir(parents=True)
    (tmp_path / "gx" / "ULEE00000001" / "local_site" / "index.html").write_text("<html></html>")
    paths = write_report(store, [USER], tmp_path)
    data = json.loads(paths["json"].read_text(encoding="utf-8"))
    last = data["users"][0]["last_run"]
    assert {(r["rule"], r["count"]) for r in last["by_rule"]} == {("R8", 4), ("R11", 1)}
    assert last["seconds"] == 12.5 and last["errors"] == [f"CRM write failed: {EVIL}"]
    page = paths["html"].read_text(encoding="utf-8")
    assert "<script>" not in page and "1 write(s) failed" in page and ">R11<" in page
    assert 'href="gx/ULEE00000001/local_site/index.html"' in page
