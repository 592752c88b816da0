"""`outlook.client_secret_block`: the Outlook client secret from a Prefect Secret block
(issue 16 item 6). The secret reaches the identity platform and nowhere else: not a flow
run's parameters, a log, an artifact, the command's output, the report or the state store."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from contactsync.cli import app
from contactsync.config import load_settings
from contactsync.emulator import start_in_thread
from contactsync.errors import ConfigError
from tests.conftest import prefect_harness
from tests.e2e.conftest import LEE, MAILBOXES

SECRET = "blk-s3cr3t-Zq9-value"
BLOCK = "contact-sync-outlook-test"


@pytest.fixture(scope="module", autouse=True)
def prefect_api() -> Iterator[None]:
    with prefect_harness():
        yield


class FakeMsal:
    """Stands in for MSAL's ConfidentialClientApplication: records the credential it was
    given (the identity platform is not reachable from the tests) and issues a token."""

    credentials: list[str] = []

    def __init__(self, client_id: str, client_credential: str | None = None, **_: Any) -> None:
        FakeMsal.credentials.append(str(client_credential))

    def acquire_token_for_client(self, scopes: list[str]) -> dict[str, Any]:
        return {"access_token": "issued-for-the-test", "expires_in": 3600, "token_type": "Bearer"}


@pytest.fixture()
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    import O365.connection
    from prefect.blocks.system import Secret

    Secret(value=SECRET).save(BLOCK, overwrite=True)
    monkeypatch.setattr(O365.connection, "ConfidentialClientApplication", FakeMsal)
    monkeypatch.delenv("CONTACT_SYNC_OUTLOOK__CLIENT_SECRET", raising=False)
    FakeMsal.credentials = []
    crm_url = f"sqlite:///{tmp_path / 'crm.db'}"
    assert CliRunner().invoke(app, ["crm", "init", "--url", crm_url, "--demo"]).exit_code == 0
    with start_in_thread(db_path=tmp_path / "graph.db") as emulator:
        cfg = tmp_path / "contact-sync.toml"
        cfg.write_text(
            f'[crm]\nurl = "{crm_url}"\n\n'
            f'[outlook]\ngraph_url = "{emulator.graph_url}"\ntenant_id = "contoso.onmicrosoft.com"\n'
            f'client_id = "11111111-1111-1111-1111-111111111111"\nclient_secret_block = "{BLOCK}"\n\n'
            '[state]\nurl = "sqlite:///state.db"\n\n[sync]\ngx_validation = false\n\n'
            f'[[users]]\ncrm_user = "{LEE}"\nmailbox = "{MAILBOXES[LEE]}"\n',
            encoding="utf-8",
        )
        yield cfg


def _everything_prefect_recorded() -> str:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs()
        logs = client.read_logs()
        artifacts = client.read_artifacts()
        tasks = client.read_task_runs()
    assert runs, "the flow run is recorded in Prefect"
    return json.dumps(
        [r.model_dump(mode="json") for r in runs] + [x.model_dump(mode="json") for x in logs]
        + [a.model_dump(mode="json") for a in artifacts] + [t.model_dump(mode="json") for t in tasks]
    )


def _state_tables(db: Path) -> str:
    with sqlite3.connect(db) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return json.dumps({t: [list(map(str, row)) for row in conn.execute(f'SELECT * FROM "{t}"')] for t in tables})


def test_the_block_secret_signs_in_and_appears_nowhere(world: Path, tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["sync", "--json", "--config", str(world)])
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout.splitlines()[-1])["status"] == "ok"
    assert FakeMsal.credentials and set(FakeMsal.credentials) == {SECRET}  # the block's value signed in

    report = CliRunner().invoke(app, ["report", "--config", str(world), "--out", str(tmp_path / "report")])
    assert report.exit_code == 0, report.output
    written = [p for p in (tmp_path / "report").rglob("*") if p.is_file()]
    assert written
    assert SECRET not in res.output and SECRET not in report.output
    for path in written:
        assert SECRET.encode() not in path.read_bytes(), path
    assert SECRET not in _everything_prefect_recorded()
    assert SECRET not in _state_tables(tmp_path / "state.db")
    for path in tmp_path.glob("state.db*"):
        assert SECRET.encode() not in path.read_bytes()


def test_the_environment_variable_still_wins_over_the_block(world: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONTACT_SYNC_OUTLOOK__CLIENT_SECRET", "from-the-environment")
    res = CliRunner().invoke(app, ["sync", "--json", "--config", str(world)])
    assert res.exit_code == 0, res.output
    assert set(FakeMsal.credentials) == {"from-the-environment"}


def test_a_missing_block_is_a_configuration_error_naming_it(world: Path) -> None:
    import tasks  # noqa: F401  (the orchestration layer registers the resolver)

    text = world.read_text(encoding="utf-8").replace(BLOCK, "no-such-block")
    world.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_settings(world)
    assert "no-such-block" in info.value.describe() and info.value.exit_code == 2
    assert "CONTACT_SYNC_OUTLOOK__CLIENT_SECRET" in info.value.describe()
