"""Shared helpers for the emulator's tests: a Bearer session and a mailbox URL."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from contactsync.emulator import EmulatorHandle
from tests.fixtures.emulator import graph_session

UPN = "lee@example.com"
TAG_ID = "String {5c0b8a3e-8d2c-4f55-9a51-3c2b8a6f0a11} Name CrmContactId"


@pytest.fixture()
def graph(emulator: EmulatorHandle) -> requests.Session:
    return graph_session(emulator)


@pytest.fixture()
def user(emulator: EmulatorHandle) -> str:
    """The mailbox URL, UPN percent-encoded as Microsoft's SDK sends it."""
    return f"{emulator.graph_url}/users/lee%40example.com"


def make_folder(graph: requests.Session, user: str, name: str = "CRM Contacts") -> str:
    r = graph.post(f"{user}/contactFolders", json={"displayName": name})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def make_contact(graph: requests.Session, user: str, folder: str | None = None, **props: Any) -> dict:
    body = {"givenName": "Ada", "surname": "Lovelace",
            "emailAddresses": [{"address": "ada@example.com", "name": "Ada"}], **props}
    url = f"{user}/contactFolders/{folder}/contacts" if folder else f"{user}/contacts"
    r = graph.post(url, json=body)
    assert r.status_code == 201, r.text
    return r.json()


def control(emulator: EmulatorHandle, method: str, path: str, body: Any = None) -> requests.Response:
    return requests.request(method, f"{emulator.url}/_emulator/{path}", json=body, timeout=10)
