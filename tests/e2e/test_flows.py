"""The Prefect flows users deploy: fan-out over users on Dask, backfill, the quality report."""

from __future__ import annotations

from pathlib import Path

import pytest

from contactsync.cycle.outcome import CycleOutcome
from tests.e2e.conftest import LEE, SAM, SyncEnv


def test_sync_all_users_fans_out_over_dask_and_each_user_gets_their_own_cycle(env: SyncEnv) -> None:
    from flows.sync_all_users import sync_all_users

    results = [CycleOutcome.from_dict(r) for r in sync_all_users(config_path=str(env.config))]
    assert {r.user.strip() for r in results} == {LEE, SAM}
    assert all(r.status == "ok" and r.counts["outlook"]["create"] == 9 for r in results)
    # Emma Novak (contact 5) is in both groups: each mailbox gets its own copy.
    for user in (LEE, SAM):
        assert [c for c in env.graph(user).contacts() if c.get("surname") == "Novak"]


def test_backfill_relink_repairs_lost_links_without_duplicates(env: SyncEnv) -> None:
    assert env.sync().exit_code == 0
    from contactsync.state import StateStore

    store = StateStore(f"sqlite:///{env.folder / 'state.db'}")
    links = store.load_links(LEE.ljust(12))
    store.remove_links(LEE.ljust(12), links["crm_id"].tolist())
    res = env.run("backfill", "--user", LEE, "--relink")
    assert res.exit_code == 0, res.stdout + res.stderr
    assert len(env.graph(LEE).contacts()) == 9
    assert len(store.load_links(LEE.ljust(12))) == 9


def test_quality_report_flow_writes_html(env: SyncEnv, tmp_path: Path) -> None:
    from flows.quality_report import quality_report

    assert env.sync("--user", LEE).exit_code == 0
    paths = quality_report(out_dir=str(tmp_path / "rep"), config_path=str(env.config))
    assert Path(paths["html"]).read_text().count("UDEMOA000001") >= 1


@pytest.mark.slow
def test_demo_runs_through_and_explains_every_scripted_edit(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from contactsync.cli import app

    res = CliRunner().invoke(app, ["demo", "--dir", str(tmp_path / "demo")])
    assert res.exit_code == 0, res.stdout
    for rule in ("R4", "R8", "R9", "R5c", "R13", "R11", "R17"):
        assert rule in res.stdout
    assert "report.html" in res.stdout


def test_gx_suites_validate_each_cycle_with_changes_and_write_data_docs(tmp_path: Path) -> None:
    from contactsync.emulator import start_in_thread
    from tests.e2e.conftest import make_env

    with start_in_thread(db_path=tmp_path / "g.db") as emu:
        env = make_env(tmp_path, f"sqlite:///{tmp_path / 'crm.db'}", emu, extra="gx_validation = true\n")
        assert env.sync("--user", LEE).exit_code == 0
        docs = list((tmp_path / "gx-docs" / LEE).rglob("index.html"))
        assert docs, "GX Data Docs were not written"
        from contactsync.state import StateStore

        runs = StateStore(f"sqlite:///{tmp_path / 'state.db'}").recent_runs(LEE.ljust(12))
        gx = runs.iloc[0]["summary"]["gx"]
        assert gx["ran"] and gx["suites"]["crm_contacts"]["success"] is True
