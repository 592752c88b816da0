"""`contact-sync report` and `contact-sync explain` as a user runs them (the Typer app)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from contactsync.cli import app
from contactsync.crm.setup import init_database

from .week import Cycle, Week, conflict, write_config

LEE, SAM = "UDEMOA000001", "UDEMOA000002"


@pytest.fixture()
def config(tmp_path: Path) -> Path:
    """A configuration whose report folder is relative to it, a demo CRM (for the names),
    and a state store with a day of Lee's cycles and Sam's failures."""
    init_database(f"sqlite:///{tmp_path / 'crm.db'}", demo=True)
    cfg = tmp_path / "conf" / "contact-sync.toml"
    store = write_config(cfg, tmp_path / "crm.db", 'out_dir = "reports/daily"\nhistory_days = 30')
    week = Week(store, now=pd.Timestamp.now(tz="UTC").to_pydatetime())
    for hours in range(24, 0, -2):
        week.add(LEE, Cycle(pd.Timedelta(hours=hours).to_pytimedelta()))
        week.add(SAM, Cycle(pd.Timedelta(hours=hours).to_pytimedelta(), status="failed",
                            message="the CRM cannot be reached"))
    week.add(LEE, Cycle(pd.Timedelta(hours=3).to_pytimedelta(), conflicts=[
        conflict("CDEMOA000002", "AAMk-2", "mobile_phone", "+1 555 0100", "+1 555 0199")]))
    week.write()
    store.record_history(
        "r1", LEE, crm=pd.DataFrame([{"crm_id": "CDEMOA000002", "mobile_phone": "+1 555 0100",
                                      "email1": "ben.carter@contoso.example"}]),
        outlook=None, conflicts=None, problems=None, applied=pd.DataFrame([{
            "action_id": "a", "side": "crm", "op": "update", "rule": "R9", "reason": "R9: Outlook wins",
            "crm_id": "CDEMOA000002", "outlook_id": "AAMk-2", "fields": "mobile_phone",
            "mobile_phone": "+1 555 0199"}]))
    store.save_pairs(LEE, pd.DataFrame([{"crm_id": "CDEMOA000009", "outlook_id": "AAMk-9", "status": "active",
                                         "email1": "quiet@example.com"}]))
    store.close()
    return cfg


def _run(*args: str) -> tuple[int, str, str]:
    res = CliRunner().invoke(app, list(args))
    if res.exception and not isinstance(res.exception, SystemExit):
        raise res.exception
    return res.exit_code, res.stdout, res.stderr


def test_report_writes_to_the_configured_folder_and_prints_the_health_table(config: Path) -> None:
    code, out, _ = _run("report", "--config", str(config), "--days", "2")
    assert code == 0, out
    folder = config.parent / "reports" / "daily"  # relative to the configuration file
    assert (folder / "report.html").is_file() and f"html: {folder / 'report.html'}" in out
    data = json.loads((folder / "report.json").read_text(encoding="utf-8"))
    assert data["days"] == 2
    assert [(u["user"], u["name"], u["health"]["level"]) for u in data["users"]] == [
        (SAM, "Sam Ortiz", "bad"), (LEE, "Lee Park", "ok")]  # names from USERINFO.USERNAME
    table = out[: out.index("json:")]
    assert table.index("Sam Ortiz") < table.index("Lee Park")  # worst first on the terminal too
    assert "needs attention" in table and "fine" in table
    assert "contact-sync explain --crm-id CDEMOA000002 --user UDEMOA000001" in (folder / "report.html").read_text(encoding="utf-8")


def test_report_rejects_a_period_below_one_day(config: Path) -> None:
    code, _, err = _run("report", "--config", str(config), "--days", "0")
    assert code == 2 and "--days must be at least 1" in err


def test_explain_tells_a_contacts_history(config: Path) -> None:
    code, out, _ = _run("explain", "--config", str(config), "--email", "Ben.Carter@contoso.example")
    assert code == 0, out
    assert "user UDEMOA000001: 1 event(s) in the last 30 days" in out
    assert "R9 crm update (CRM CDEMOA000002 / Outlook AAMk-2) mobile_phone: '+1 555 0100' -> '+1 555 0199'" in out
    code, out, _ = _run("explain", "--config", str(config), "--crm-id", "CDEMOA000002", "--json")
    assert code == 0
    (event,) = json.loads(out)["events"]
    assert event["before"] == {"mobile_phone": "+1 555 0100"} and event["user"] == LEE


def test_explain_exits_2_for_a_contact_never_synced(config: Path) -> None:
    code, _, err = _run("explain", "--config", str(config), "--outlook-id", "AAMk-unknown")
    assert code == 2 and "was ever synced" in err
    code, out, _ = _run("explain", "--config", str(config), "--email", "quiet@example.com")
    assert code == 0 and "no change recorded" in out  # linked, but quiet in the kept period
    code, _, err = _run("explain", "--config", str(config))
    assert code == 2 and "exactly one of" in err
