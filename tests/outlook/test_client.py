"""The Graph client itself: configuration, URLs, secrets, pacing."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from contactsync.config import OutlookSettings
from contactsync.errors import ConfigError, FatalError
from contactsync.outlook.client import (
    GraphClient,
    GraphRequestError,
    Pacer,
    RetryPolicy,
    split_graph_url,
)
from contactsync.outlook.extract import ensure_folder

SECRET = "s3cr3t-Value-never-logged"
TOKEN = "tok-Value-never-logged"


def test_graph_url_may_carry_the_mailbox_in_users_form() -> None:
    assert split_graph_url("https://graph.microsoft.com/v1.0/users/lee%40example.com") == (
        "https://graph.microsoft.com/v1.0",
        "lee@example.com",
    )
    assert split_graph_url("http://127.0.0.1:8765/v1.0/") == ("http://127.0.0.1:8765/v1.0", None)


def test_client_from_users_url_talks_to_the_mailbox_percent_encoded(emu) -> None:
    settings = OutlookSettings(graph_url=f"{emu.graph_url}/users/lee.users-form%40example.com", token="t")
    client = GraphClient(settings)
    assert client.mailbox == "lee.users-form@example.com"
    assert client.url("contactFolders").endswith("/v1.0/users/lee.users-form%40example.com/contactFolders")
    fid = ensure_folder(client, "CRM Contacts")
    assert fid and ensure_folder(client, "CRM Contacts") == fid


def test_missing_credentials_are_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match="outlook.tenant_id"):
        GraphClient(OutlookSettings(client_id="c", client_secret=SECRET), "a@b.c")
    with pytest.raises(ConfigError, match="mailbox"):
        GraphClient(OutlookSettings(token="t"))


def test_secret_never_in_repr(emu) -> None:
    real = GraphClient(
        OutlookSettings(tenant_id="contoso.onmicrosoft.com", client_id="app-id", client_secret=SECRET),
        "lee@example.com",
    )
    fixed = GraphClient(OutlookSettings(graph_url=emu.graph_url, token=TOKEN), "lee@example.com")
    for obj in (real, real.con, real.account, real.con.token_backend, fixed, fixed.con, fixed.account, fixed.con.token_backend):
        text = repr(obj) + str(obj)
        assert SECRET not in text and TOKEN not in text


def test_secret_and_token_never_logged(emu, make_client, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    client = GraphClient(OutlookSettings(graph_url=emu.graph_url, token=TOKEN), "logs@example.com", backoff_base_s=0.01)
    emu.fault(status=500, rate=0.5, retry_after=0, seed=1)
    ensure_folder(client, "CRM Contacts")
    with pytest.raises(GraphRequestError):
        client.get_json("contactFolders/does-not-exist")
    assert caplog.records  # something was logged at DEBUG
    assert TOKEN not in caplog.text


def test_4xx_is_fatal_and_names_the_request(emu, make_client) -> None:
    client = make_client()
    with pytest.raises(GraphRequestError) as info:
        client.get_json("contacts/nope")
    assert info.value.status == 404 and "ErrorItemNotFound" in str(info.value)


def test_pacer_never_lets_more_than_4_in_flight() -> None:
    pacer = Pacer(4)
    inside, peak, lock = [0], [0], threading.Lock()

    def work() -> None:
        with pacer.slot():
            with lock:
                inside[0] += 1
                peak[0] = max(peak[0], inside[0])
            time.sleep(0.02)
            with lock:
                inside[0] -= 1

    threads = [threading.Thread(target=work) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak[0] == 4


def test_pacer_holds_everyone_after_a_429() -> None:
    pacer = Pacer(4)
    pacer.throttled(0.2)
    start = time.monotonic()
    with pacer.slot():
        pass
    assert time.monotonic() - start >= 0.19


def test_backoff_is_bounded_and_jittered() -> None:
    policy = RetryPolicy(backoff_base_s=0.5, backoff_cap_s=30)
    waits = [policy.backoff(n) for n in range(1, 12)]
    assert all(0 < w <= 30 for w in waits)
    assert waits[-1] >= 15  # grows to the cap


def test_o365_quirks_are_switched_off(make_client) -> None:
    client = make_client()
    assert client.con.requests_delay == 0  # no 200 ms sleep per request
    assert client.con.request_retries == 0  # urllib3 must not retry behind our budget
    assert client.con.default_headers["Prefer"] == 'IdType="ImmutableId"'


class _FakeMsal:
    """Stands in for MSAL's ConfidentialClientApplication (no identity platform here)."""

    def __init__(self, result: dict) -> None:
        self.result = result
        self.scopes: list[list[str]] = []

    def acquire_token_for_client(self, scopes: list[str]) -> dict:
        self.scopes.append(scopes)
        return self.result


def test_client_credentials_token_comes_from_msal_with_the_graph_scope(emu) -> None:
    settings = OutlookSettings(
        graph_url=emu.graph_url, tenant_id="contoso.onmicrosoft.com", client_id="app", client_secret=SECRET
    )
    client = GraphClient(settings, "msal@example.com")
    fake = _FakeMsal({"access_token": "from-msal", "expires_in": 3600})
    client.con._msal_client = fake
    assert ensure_folder(client, "CRM Contacts")
    assert fake.scopes and all(s == ["https://graph.microsoft.com/.default"] for s in fake.scopes)


def test_refused_credentials_are_fatal_and_do_not_show_the_secret(emu) -> None:
    settings = OutlookSettings(
        graph_url=emu.graph_url, tenant_id="contoso.onmicrosoft.com", client_id="app", client_secret=SECRET
    )
    client = GraphClient(settings, "msal@example.com")
    client.con._msal_client = _FakeMsal({"error": "invalid_client", "error_description": "bad secret"})
    with pytest.raises(FatalError) as info:
        client.get_json("contactFolders")
    assert "invalid_client" in str(info.value) and SECRET not in info.value.describe()
    assert "client_secret" in (info.value.hint or "")


def test_iter_pages_asks_for_the_next_page_before_the_caller_is_done_with_this_one(emu, make_client) -> None:
    """A delta chain's pages come one after another (each brings the next one's link): the
    next one is asked for while the caller still works through this one (issue 12), and a
    page that fails is raised where the caller asks for it, after the pages before it."""
    client = make_client()
    folder = client.post_json("contactFolders", {"displayName": "Pages"})["id"]
    client.batch([{"id": str(i), "method": "POST", "url": client.path(f"contactFolders/{folder}/contacts"),
                   "body": {"givenName": f"P{i}"}} for i in range(5)])
    url = client.url(f"contactFolders/{folder}/contacts")
    emu.reset_stats()
    seen = []
    for page in client.iter_pages(url, params={"$top": "2"}):
        seen.append(len(page["value"]))
        if page.get("@odata.nextLink"):
            deadline = time.monotonic() + 20
            while emu.stats()["requests"] < len(seen) + 1 and time.monotonic() < deadline:
                time.sleep(0.02)  # the caller "parses" this page; the next one is asked for meanwhile
            assert emu.stats()["requests"] == len(seen) + 1
    assert seen == [2, 2, 1] and emu.stats()["requests"] == 3
    emu.fault(status=412, count=1, skip=1, methods=["GET"])  # the second page fails
    pages = client.iter_pages(url, params={"$top": "2"})
    assert len(next(pages)["value"]) == 2
    with pytest.raises(GraphRequestError):
        next(pages)
