"""End-to-end fixtures: a real CRM database, the Graph emulator over HTTP, the real command.

Every test drives `contact-sync` as a user would (the Typer app in-process, so the Prefect
test harness's one temporary API serves all of them), against a CRM made by
`contact-sync crm init --demo` and an emulator on 127.0.0.1.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa
from typer.testing import CliRunner

from contactsync.cli import app
from contactsync.emulator import EmulatorHandle, start_in_thread
from contactsync.outlook.mapping import CRM_TAG_EXPAND

LEE, SAM = "UDEMOA000001", "UDEMOA000002"
MAILBOXES = {LEE: "lee@example.com", SAM: "sam@example.com"}


@pytest.fixture(scope="session", autouse=True)
def prefect_harness() -> Iterator[None]:
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stdout.splitlines() if line.startswith("{")]

    def by_user(self) -> dict[str, dict[str, Any]]:
        return {line["user"]: line for line in self.lines()}


@dataclass
class SyncEnv:
    folder: Path
    config: Path
    crm_url: str
    emulator: EmulatorHandle

    def run(self, *args: str) -> Result:
        res = CliRunner().invoke(app, [*args, "--config", str(self.config)] if args[0] in ("sync", "backfill", "report") else list(args))
        if res.exception and not isinstance(res.exception, SystemExit):
            raise res.exception
        return Result(res.exit_code, res.stdout, res.stderr)

    def sync(self, *args: str) -> Result:
        return self.run("sync", "--json", *args)

    # --- the CRM, as a CRM user would change it -------------------------------------
    def crm(self) -> sa.Engine:
        return sa.create_engine(self.crm_url)

    def crm_rows(self, sql: str, **params: Any) -> list[dict[str, Any]]:
        engine = self.crm()
        try:
            with engine.connect() as conn:
                return [dict(r._mapping) for r in conn.execute(sa.text(sql), params)]
        finally:
            engine.dispose()

    def crm_exec(self, sql: str, **params: Any) -> None:
        engine = self.crm()
        try:
            with engine.begin() as conn:
                conn.execute(sa.text(sql), params)
        finally:
            engine.dispose()

    # --- Outlook, as an Outlook user would change it ---------------------------------
    def graph(self, user: str = LEE) -> Mailbox:
        return Mailbox(self.emulator, MAILBOXES[user])


class Mailbox:
    def __init__(self, emulator: EmulatorHandle, upn: str) -> None:
        self.emulator = emulator
        self.base = f"{emulator.graph_url}/users/{upn}"
        self.upn = upn
        self.http = requests.Session()
        self.http.headers["Authorization"] = "Bearer test"
        self.http.headers["Prefer"] = 'IdType="ImmutableId"'  # the ids the sync stores

    def folder_id(self, name: str = "CRM Contacts") -> str | None:
        r = self.http.get(f"{self.base}/contactFolders", params={"$filter": f"displayName eq '{name}'"})
        r.raise_for_status()
        value = r.json()["value"]
        return value[0]["id"] if value else None

    def contacts(self, folder: str | None = None, *, with_tags: bool = False) -> list[dict[str, Any]]:
        folder = folder or self.folder_id()
        out: list[dict[str, Any]] = []
        url: str | None = f"{self.base}/contactFolders/{folder}/contacts?$top=500"
        if with_tags:
            url += f"&$expand={CRM_TAG_EXPAND}"
        while url:
            r = self.http.get(url)
            r.raise_for_status()
            out += r.json()["value"]
            url = r.json().get("@odata.nextLink")
        return out

    def create(self, body: dict[str, Any], folder: str | None = None) -> dict[str, Any]:
        folder = folder or self.folder_id()
        r = self.http.post(f"{self.base}/contactFolders/{folder}/contacts", json=body)
        r.raise_for_status()
        return r.json()

    def patch(self, contact_id: str, body: dict[str, Any]) -> None:
        self.http.patch(f"{self.base}/contacts/{contact_id}", json=body).raise_for_status()

    def delete(self, contact_id: str) -> None:
        self.http.delete(f"{self.base}/contacts/{contact_id}").raise_for_status()

    def move(self, contact_id: str, destination: str) -> None:
        r = self.http.post(
            f"{self.emulator.url}/_emulator/users/{self.upn}/contacts/{contact_id}/move",
            json={"destinationId": destination},
        )
        r.raise_for_status()

    def make_folder(self, name: str) -> str:
        r = self.http.post(f"{self.base}/contactFolders", json={"displayName": name})
        r.raise_for_status()
        return r.json()["id"]

    def deleted(self) -> list[dict[str, Any]]:
        r = self.http.get(f"{self.emulator.url}/_emulator/users/{self.upn}/deleted")
        r.raise_for_status()
        return r.json()["value"]


def write_config(folder: Path, crm_url: str, graph_url: str, extra: str = "") -> Path:
    cfg = folder / "contact-sync.toml"
    cfg.write_text(
        f'[crm]\nurl = "{crm_url}"\n\n[outlook]\ngraph_url = "{graph_url}"\ntoken = "t"\n\n'
        '[state]\nurl = "sqlite:///state.db"\n\n'
        # GX's start-up costs seconds a cycle; its own test turns it on (test_flows.py).
        "[sync]\n" + ("" if "gx_validation" in extra else "gx_validation = false\n") + f"{extra}\n"
        + "".join(f'[[users]]\ncrm_user = "{u}"\nmailbox = "{m}"\n\n' for u, m in MAILBOXES.items())
    )
    return cfg


def make_env(folder: Path, crm_url: str, emulator: EmulatorHandle, extra: str = "") -> SyncEnv:
    res = CliRunner().invoke(app, ["crm", "init", "--url", crm_url, "--demo"])
    assert res.exit_code == 0, res.output
    return SyncEnv(folder, write_config(folder, crm_url, emulator.graph_url, extra), crm_url, emulator)


@pytest.fixture()
def env(tmp_path: Path) -> Iterator[SyncEnv]:
    """A fresh demo CRM on SQLite and a fresh emulator."""
    with start_in_thread(db_path=tmp_path / "graph.db") as emulator:
        yield make_env(tmp_path, f"sqlite:///{tmp_path / 'crm.db'}", emulator)
