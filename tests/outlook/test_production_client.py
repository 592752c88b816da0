"""The Outlook client through what production Graph does (spec/GRAPH_API.md), over real HTTP.

One test (or a few) per behaviour of issue 12, named after it, against the session
emulator set to that behaviour (tests/outlook/conftest.py resets it between tests).
"""

from __future__ import annotations

import threading
import time

import pytest
import requests

from contactsync.model import FIELDS
from contactsync.outlook.extract import ensure_folder, extract
from contactsync.outlook.load import OutlookWriter
from tests.outlook.conftest import actions, create_rows


def _control(emu, path: str, body: dict) -> None:
    requests.post(f"{emu.url}/_emulator/{path}", json=body, timeout=10).raise_for_status()


# -- 1. batches run in parallel inside -------------------------------------------------


def test_batch_parallel_inside_client_counts_inner_requests_no_429(emu, make_client) -> None:
    """200 creates as 10 batches of 20 with 50 ms a request: no inner request is throttled,
    and the load never runs faster than 4 places allow (200 x 50 ms / 4 = 2.5 s): it never
    had more than 4 inner requests running (the bench measures how close it comes)."""
    client = make_client()
    fid = ensure_folder(client, "CRM Contacts")
    _control(emu, "latency", {"ms": 50})
    emu.reset_stats()
    t0 = time.perf_counter()
    result = OutlookWriter(client, fid).apply(actions(create_rows(200)), None)
    wall = time.perf_counter() - t0
    stats = emu.stats()
    assert (result["status"] == "applied").all()
    assert stats["throttled"] == 0, stats
    assert stats["inner_requests"] == 200 and stats["batches"] == 10
    assert wall >= 2.5, wall


def test_batch_parallel_inside_pacer_places_of_a_batch(make_client) -> None:
    """A batch of 20 takes all 4 places, a batch of 3 three, a plain request one."""
    pacer = make_client().pacer
    assert [pacer.places_for(w) for w in (1, 3, 4, 20)] == [1, 3, 4, 4]


# -- 6. no lost updates: If-Match and 412 ----------------------------------------------


def _linked(client, emu, n: int = 2):
    """A folder with ``n`` contacts, read once as the cycle reads them (the Outlook frame)."""
    fid = ensure_folder(client, "CRM Contacts")
    OutlookWriter(client, fid).apply(actions(create_rows(n)), None)
    return fid, extract(client, fid, snapshot=None, delta_link=None).frame


def _update(frame, i: int, title: str) -> dict:
    row = frame.iloc[i]
    return {"action_id": f"u{i}", "op": "update", "rule": "R8", "outlook_id": row["outlook_id"],
            "crm_id": row["crm_tag"], "fields": "job_title", "job_title": title}


def test_if_match_person_edit_between_read_and_write_is_not_overwritten(emu, make_client) -> None:
    client = make_client()
    fid, frame = _linked(client, emu)
    person_edited = frame.iloc[0]["outlook_id"]
    emu.raw().patch(client.url(f"contacts/{person_edited}"), json={"jobTitle": "Edited by a person"}).raise_for_status()
    result = OutlookWriter(client, fid).apply(actions([_update(frame, 0, "From CRM"), _update(frame, 1, "From CRM")]), frame)
    status = dict(zip(result["action_id"], result["status"], strict=True))
    assert status == {"u0": "stale", "u1": "applied"}
    assert "changed in Outlook since this cycle read it" in result.set_index("action_id").loc["u0", "error"]
    now = emu.raw().get(client.url(f"contacts/{person_edited}")).json()
    assert now["jobTitle"] == "Edited by a person"


def test_if_match_412_race_without_newer_version_is_retried(emu, make_client) -> None:
    client = make_client()
    fid, frame = _linked(client, emu)
    emu.fault(status=412, count=1, methods=["PATCH"])
    result = OutlookWriter(client, fid).apply(actions([_update(frame, 0, "T0"), _update(frame, 1, "T1")]), frame)
    assert (result["status"] == "applied").all(), result.to_dict("records")
    titles = {emu.raw().get(client.url(f"contacts/{o}")).json()["jobTitle"] for o in frame["outlook_id"]}
    assert titles == {"T0", "T1"}


def test_if_match_committed_without_answer_is_applied_not_stale(emu, make_client) -> None:
    """A PATCH committed without an answer is re-sent with the old etag and gets 412: it
    reads back as written, so it counts as applied (R18), not as a person's edit."""
    client = make_client()
    fid, frame = _linked(client, emu, 1)
    emu.fault(status="commit-then-fail", rate=1.0, methods=["PATCH"], retry_after=0)
    timer = threading.Timer(0.3, emu.clear)
    timer.start()
    result = OutlookWriter(client, fid).apply(actions([_update(frame, 0, "Committed")]), frame)
    timer.join()
    assert result["status"].tolist() == ["applied"], result.to_dict("records")


# -- 2. partial delta items ------------------------------------------------------------



FULL_CONTACT = {
    "givenName": "Ada", "middleName": "King", "surname": "Lovelace", "title": "Lady", "generation": "II",
    "jobTitle": "Analyst", "department": "Engines", "companyName": "Babbage Ltd",
    "emailAddresses": [{"address": "ada@example.com", "name": "Ada"}, {"address": "ada2@example.com", "name": "A2"},
                       {"address": "ada3@example.com", "name": "A3"}],
    "businessPhones": ["+44 1", "+44 2"], "homePhones": ["+44 3"], "mobilePhone": "+44 4",
    "businessHomePage": "https://ada.example", "assistantName": "Charles", "spouseName": "William",
    "birthday": "1815-12-10T00:00:00Z",
    "businessAddress": {"street": "1 St James's Square\nFloor 2", "city": "London", "state": "Greater London",
                        "postalCode": "SW1Y 4JH", "countryOrRegion": "UK"},
    "categories": ["Math", "CRM"],
}
_EMAILS = FULL_CONTACT["emailAddresses"]
_ADDRESS = FULL_CONTACT["businessAddress"]
#: One Outlook edit per canonical field (FIELD_MAP.md): the Graph body, the value the field reads.
ONE_FIELD_EDITS: dict[str, tuple[dict, str | None]] = {
    "first_name": ({"givenName": "Augusta"}, "Augusta"),
    "middle_name": ({"middleName": None}, None),
    "last_name": ({"surname": "King"}, "King"),
    "prefix": ({"title": "Countess"}, "Countess"),
    "suffix": ({"generation": "III"}, "III"),
    "job_title": ({"jobTitle": "Programmer"}, "Programmer"),
    "department": ({"department": "R&D"}, "R&D"),
    "company": ({"companyName": "Analytical Engines"}, "Analytical Engines"),
    "email1": ({"emailAddresses": [{"address": "new1@example.com"}, *_EMAILS[1:]]}, "new1@example.com"),
    "email2": ({"emailAddresses": [_EMAILS[0], {"address": "new2@example.com"}, _EMAILS[2]]}, "new2@example.com"),
    "email3": ({"emailAddresses": _EMAILS[:2]}, None),
    "work_phone": ({"businessPhones": ["+44 9", "+44 2"]}, "+44 9"),
    "home_phone": ({"homePhones": []}, None),
    "mobile_phone": ({"mobilePhone": "+44 8"}, "+44 8"),
    "web_address": ({"businessHomePage": None}, None),
    "assistant": ({"assistantName": "Mary"}, "Mary"),
    "spouse": ({"spouseName": "Bill"}, "Bill"),
    "birthday": ({"birthday": "1815-12-11T00:00:00Z"}, "1815-12-11"),
    "street": ({"businessAddress": {**_ADDRESS, "street": "12 Marylebone"}}, "12 Marylebone"),
    "city": ({"businessAddress": {**_ADDRESS, "city": "Oxford"}}, "Oxford"),
    "state": ({"businessAddress": {**_ADDRESS, "state": None}}, None),
    "postal_code": ({"businessAddress": {**_ADDRESS, "postalCode": "OX1"}}, "OX1"),
    "country": ({"businessAddress": {**_ADDRESS, "countryOrRegion": "GB"}}, "GB"),
    "categories": ({"categories": ["Math"]}, "Math"),
}


def test_partial_delta_items_every_field_edit_changes_exactly_that_column(emu, make_client) -> None:
    assert set(ONE_FIELD_EDITS) == set(FIELDS)
    client = make_client()
    fid = ensure_folder(client, "CRM Contacts")
    http = emu.raw()
    http.headers["Prefer"] = 'IdType="ImmutableId"'
    made = {f: http.post(client.url(f"contactFolders/{fid}/contacts"), json=FULL_CONTACT).json()["id"]
            for f in ONE_FIELD_EDITS}
    first = extract(client, fid, snapshot=None, delta_link=None)
    requests.post(f"{emu.url}/_emulator/delta", json={"updated_items": "changed"}, timeout=10).raise_for_status()
    try:
        for field, (body, _) in ONE_FIELD_EDITS.items():
            http.patch(client.url(f"contacts/{made[field]}"), json=body).raise_for_status()
        second = extract(client, fid, snapshot=first.frame, delta_link=first.delta_link)
    finally:
        requests.post(f"{emu.url}/_emulator/delta", json={"updated_items": "full"}, timeout=10)
    before = first.frame.set_index("outlook_id")
    after = second.frame.set_index("outlook_id")
    for field, (_, value) in ONE_FIELD_EDITS.items():
        old, new = before.loc[made[field]], after.loc[made[field]]
        assert new[field] == value, field
        differ = {c for c in FIELDS if (old[c] or None) != (new[c] or None)}
        assert differ == {field}, (field, differ)
        assert new["change_key"] != old["change_key"] and new["crm_tag"] == old["crm_tag"]


@pytest.mark.parametrize("updated_items", ["full", "changed"])
def test_partial_delta_items_absent_keeps_null_clears(emu, make_client, updated_items: str) -> None:
    client = make_client()
    fid = ensure_folder(client, "CRM Contacts")
    _seed_frame = OutlookWriter(client, fid).apply(actions(create_rows(2)), None)
    assert (_seed_frame["status"] == "applied").all()
    first = extract(client, fid, snapshot=None, delta_link=None)
    requests.post(f"{emu.url}/_emulator/delta", json={"updated_items": updated_items}, timeout=10).raise_for_status()
    try:
        oid = first.frame.iloc[0]["outlook_id"]
        emu.raw().patch(client.url(f"contacts/{oid}"), json={"jobTitle": "New", "givenName": None}).raise_for_status()
        second = extract(client, fid, snapshot=first.frame, delta_link=first.delta_link)
    finally:
        requests.post(f"{emu.url}/_emulator/delta", json={"updated_items": "full"}, timeout=10)
    row = second.frame.set_index("outlook_id").loc[oid]
    old = first.frame.set_index("outlook_id").loc[oid]
    assert row["job_title"] == "New" and row["first_name"] is None
    assert row["last_name"] == old["last_name"] and row["email1"] == old["email1"] and row["city"] == "Springfield"
    assert row["crm_tag"] == old["crm_tag"] and row["outlook_modified"] >= old["outlook_modified"]


# -- 3. no $expand inside delta ------------------------------------------------------------


@pytest.mark.parametrize("mode", ["honour", "ignore", "reject"])
def test_no_expand_in_delta_tags_come_from_a_plain_read(emu, make_client, mode: str) -> None:
    client = make_client()
    fid = ensure_folder(client, "CRM Contacts")
    OutlookWriter(client, fid).apply(actions(create_rows(5)), None)
    requests.post(f"{emu.url}/_emulator/delta", json={"expand": mode}, timeout=10).raise_for_status()
    try:
        emu.reset_stats()
        first = extract(client, fid, snapshot=None, delta_link=None)  # a full read (lost state store)
        assert emu.stats()["requests"] == 2  # one delta page + one plain read carrying the $expand
        assert sorted(first.frame["crm_tag"]) == [f"C{i:011d}" for i in range(5)]
        # someone copies a tagged contact into the folder: the delta round finds its tag
        OutlookWriter(client, fid).apply(actions(create_rows(1, "X")), None)
        second = extract(client, fid, snapshot=first.frame, delta_link=first.delta_link)
        assert set(second.frame["crm_tag"]) == {f"C{i:011d}" for i in range(5)} | {"X00000000000"}
    finally:
        requests.post(f"{emu.url}/_emulator/delta", json={"expand": "honour"}, timeout=10)


# -- 4. sync state expires -------------------------------------------------------------------


def _expire(emu, client) -> None:
    requests.post(f"{emu.url}/_emulator/users/{client.mailbox}/expire-sync-state", timeout=10).raise_for_status()


def test_sync_state_expires_delta_round_becomes_a_full_read(emu, make_client) -> None:
    client = make_client()
    fid = ensure_folder(client, "CRM Contacts")
    OutlookWriter(client, fid).apply(actions(create_rows(6)), None)
    first = extract(client, fid, snapshot=None, delta_link=None)
    gone = first.frame.iloc[0]["outlook_id"]
    emu.raw().delete(client.url(f"contacts/{gone}")).raise_for_status()
    OutlookWriter(client, fid).apply(actions(create_rows(1, "N")), None)
    _expire(emu, client)
    again = extract(client, fid, snapshot=first.frame, delta_link=first.delta_link)
    assert again.full
    assert gone not in set(again.frame["outlook_id"]) and len(again.frame) == 6
    assert "N00000000000" in set(again.frame["crm_tag"])
    assert extract(client, fid, snapshot=again.frame, delta_link=again.delta_link).changed.empty


def test_sync_state_expires_half_way_through_a_full_read_it_starts_over(emu, make_client) -> None:
    client = make_client()
    fid = ensure_folder(client, "CRM Contacts")
    OutlookWriter(client, fid).apply(actions(create_rows(30)), None)
    real_get, calls = client.get_json, []

    def get_json(url: str, **kwargs):
        calls.append(url)
        if len(calls) == 2:  # after the first page: Graph forgets the sync state
            _expire(emu, client)
        return real_get(url, **kwargs)

    client.get_json = get_json  # type: ignore[method-assign]
    read = extract(client, fid, snapshot=None, delta_link=None, page_size=7)
    assert read.full and len(read.frame) == 30 and read.frame["crm_tag"].notna().all()
    assert sum("$skiptoken" in u for u in calls) >= 4  # the chain was followed again


# -- 5. tokens expire mid-run ------------------------------------------------------------------


def test_token_expires_mid_load_fresh_token_and_no_duplicate(emu, make_client) -> None:
    client = make_client()
    fid = ensure_folder(client, "CRM Contacts")
    emu.fault(status=401, count=1, skip=2, methods=["POST"])  # the third write gets 401
    result = OutlookWriter(client, fid).apply(actions(create_rows(100)), None)
    assert (result["status"] == "applied").all()
    folder = extract(client, fid, snapshot=None, delta_link=None).frame
    assert len(folder) == 100 and folder["crm_tag"].is_unique


def test_token_expires_persistent_401_is_a_credentials_error(emu, make_client) -> None:
    from contactsync.outlook.client import CredentialsRefused

    client = make_client()
    emu.fault(status=401, count=10, methods=["GET"])
    with pytest.raises(CredentialsRefused) as info:
        client.get_json("contactFolders")
    assert "credentials" in (info.value.hint or "") and "401" in str(info.value)


class _RefreshingMsal:
    """MSAL's client stand-in: a token cache, and a new token each time it is asked."""

    def __init__(self) -> None:
        import msal

        self.token_cache = msal.TokenCache()
        self.calls = 0

    def acquire_token_for_client(self, scopes: list[str]) -> dict:
        self.calls += 1
        return {"access_token": f"token-{self.calls}", "expires_in": 3600}


def test_token_expires_msal_client_fetches_a_fresh_token(emu) -> None:
    from contactsync.config import OutlookSettings
    from contactsync.outlook.client import GraphClient

    client = GraphClient(OutlookSettings(graph_url=emu.graph_url, tenant_id="contoso.onmicrosoft.com",
                                         client_id="app", client_secret="s"), "msal-401@example.com")
    fake = _RefreshingMsal()
    client.con._msal_client = fake
    emu.fault(status=401, count=1, methods=["GET"])
    assert client.get_json("contactFolders")["value"] == []
    assert fake.calls == 2  # one token, the 401, one fresh token


# -- the side's retry budget is a deadline ------------------------------------------------------


def test_deadline_a_graph_that_never_answers_fails_within_the_budget() -> None:
    """Graph accepts connections and never answers: the side fails after its budget, read
    timeouts included, and a retried task with the same client meets the same deadline."""
    import socket

    from contactsync.config import OutlookSettings
    from contactsync.errors import SideUnreachable
    from contactsync.outlook.client import GraphClient

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    try:
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/v1.0"
        client = GraphClient(OutlookSettings(graph_url=url, token="t"), "hang@example.com",
                             max_wait_s=3.0, request_timeout=60.0, backoff_base_s=0.2)
        t0 = time.monotonic()
        with pytest.raises(SideUnreachable):
            client.get_json("contactFolders")
        first = time.monotonic() - t0
        assert 2.5 <= first < 6.0, first  # not 60 s of read timeout, not budget + timeout
        t1 = time.monotonic()
        with pytest.raises(SideUnreachable):  # the task retried: same client, same deadline
            client.get_json("contactFolders")
        assert time.monotonic() - t1 < 2.5
    finally:
        silent.close()


# -- 7. whole-second times ---------------------------------------------------------------------


def test_whole_second_times_every_precision_is_parsed() -> None:
    """Graph's whole seconds beside fractions (another server, older data): none goes missing."""
    from contactsync.outlook.mapping import contacts_to_frame

    times = ["2026-11-29T08:15:02Z", "2026-11-29T08:15:02.1234567Z", "2026-11-29T08:15:02.5+00:00",
             "2026-11-29T09:15:02+01:00"]
    frame = contacts_to_frame([{"id": f"c{i}", "createdDateTime": t, "lastModifiedDateTime": t}
                               for i, t in enumerate(times)])
    assert frame["outlook_modified"].notna().all() and frame["outlook_created"].notna().all()
    assert frame["outlook_modified"].iloc[0] == frame["outlook_modified"].iloc[3]  # same instant


def test_whole_second_times_a_tie_under_latest_goes_to_the_crm() -> None:
    """The one documented tie rule (plan/merge.py crm_wins_conflicts): equal modification
    times (Graph's whole second against a CRM time of the same second) -> CRM wins."""
    import numpy as np
    import pandas as pd

    from contactsync.plan.merge import crm_wins_conflicts
    from contactsync.plan.schema import PlanSettings

    outlook = pd.to_datetime(["2026-11-29T08:15:02Z"] * 2, utc=True).tz_convert(None).to_numpy()
    crm = pd.to_datetime(["2026-11-29T08:15:02Z", "2026-11-29T08:15:01.999Z"], utc=True, format="ISO8601").tz_convert(None).to_numpy()
    wins = crm_wins_conflicts({"crm_id": np.array(["a", "b"]), "crm_modified": crm, "outlook_modified": outlook},
                              PlanSettings(conflict_policy="latest"))
    assert wins.tolist() == [True, False]
