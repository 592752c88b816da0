"""Graph JSON <-> canonical values (spec/FIELD_MAP.md): what the pipeline reads and writes."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contactsync.model import FIELDS, OUTLOOK_COLUMNS
from contactsync.outlook.mapping import (
    CRM_TAG_PROPERTY_ID,
    contact_to_row,
    contacts_to_frame,
    row_to_payload,
)

FULL_CONTACT = {
    "id": "AAMk-1",
    "changeKey": "ck1",
    "createdDateTime": "2024-01-02T03:04:05Z",
    "lastModifiedDateTime": "2024-02-03T04:05:06Z",
    "givenName": "Ada",
    "middleName": "K",
    "surname": "Lovelace",
    "title": "Dr.",
    "generation": "Jr.",
    "jobTitle": "Analyst",
    "department": "Engines",
    "companyName": "Babbage Ltd",
    "emailAddresses": [
        {"address": "ada@example.com", "name": "Ada Lovelace"},
        {"address": "ada2@example.com", "name": "Ada (home)"},
        {"address": "ada3@example.com", "name": "ada3"},
    ],
    "businessPhones": ["+44 1", "+44 2", "+44 3"],
    "homePhones": ["+44 9"],
    "mobilePhone": "+44 7",
    "businessHomePage": "https://ada.example.com",
    "assistantName": "Charles",
    "spouseName": "William",
    "birthday": "1815-12-10T00:00:00Z",
    "businessAddress": {
        "street": "1 Engine Way\r\nFloor 2",
        "city": "London",
        "state": "LDN",
        "postalCode": "W1",
        "countryOrRegion": "UK",
    },
    "categories": ["VIP", "Math"],
    "singleValueExtendedProperties": [{"id": CRM_TAG_PROPERTY_ID, "value": "CSYNC0000001"}],
}

EXPECTED = {
    "first_name": "Ada",
    "middle_name": "K",
    "last_name": "Lovelace",
    "prefix": "Dr.",
    "suffix": "Jr.",
    "job_title": "Analyst",
    "department": "Engines",
    "company": "Babbage Ltd",
    "email1": "ada@example.com",
    "email2": "ada2@example.com",
    "email3": "ada3@example.com",
    "work_phone": "+44 1",
    "home_phone": "+44 9",
    "mobile_phone": "+44 7",
    "web_address": "https://ada.example.com",
    "assistant": "Charles",
    "spouse": "William",
    "birthday": "1815-12-10",
    "street": "1 Engine Way\nFloor 2",
    "city": "London",
    "state": "LDN",
    "postal_code": "W1",
    "country": "UK",
    "categories": "VIP, Math",
}


def test_contact_to_row_maps_every_canonical_field_and_meta() -> None:
    row = contact_to_row(FULL_CONTACT)
    assert {f: row[f] for f in FIELDS} == EXPECTED
    assert row["outlook_id"] == "AAMk-1"
    assert row["change_key"] == "ck1"
    assert row["crm_tag"] == "CSYNC0000001"  # R7a
    assert json.loads(row["business_phones_rest"]) == ["+44 2", "+44 3"]


@pytest.mark.parametrize("birthday", ["1815-12-10T00:00:00Z", "1815-12-10T00:00:00+00:00", "1815-12-10"])
def test_birthday_is_date_only_whatever_the_offset_form(birthday: str) -> None:
    assert contact_to_row({**FULL_CONTACT, "birthday": birthday})["birthday"] == "1815-12-10"


def test_empty_contact_gives_missing_values_not_empty_strings() -> None:
    row = contact_to_row({"id": "x", "givenName": "", "emailAddresses": [], "businessPhones": []})
    assert all(row[f] is None for f in FIELDS)
    assert row["business_phones_rest"] is None
    assert row["crm_tag"] is None


def test_contacts_to_frame_is_conformed() -> None:
    frame = contacts_to_frame([FULL_CONTACT, {"id": "b", "surname": "Two"}])
    assert list(frame.columns) == list(OUTLOOK_COLUMNS)
    assert str(frame["outlook_modified"].dtype).startswith("datetime64")
    assert frame.loc[1, "first_name"] is None
    assert frame.loc[1, "last_name"] == "Two"


def test_full_payload_round_trips_every_field() -> None:
    body = row_to_payload(EXPECTED, FIELDS, None, "CSYNC0000001")
    back = contact_to_row({"id": "n", **body})
    assert {f: back[f] for f in FIELDS} == EXPECTED
    assert body["birthday"] == "1815-12-10T00:00:00Z"
    assert body["categories"] == ["VIP", "Math"]
    assert body["singleValueExtendedProperties"] == [{"id": CRM_TAG_PROPERTY_ID, "value": "CSYNC0000001"}]
    assert back["crm_tag"] == "CSYNC0000001"


def test_payload_writes_only_the_given_fields() -> None:
    body = row_to_payload({**EXPECTED, "job_title": "Countess"}, ["job_title"], contact_to_row(FULL_CONTACT), None)
    assert body == {"jobTitle": "Countess"}


def test_work_phone_update_keeps_the_other_business_phones() -> None:
    current = contact_to_row(FULL_CONTACT)  # canonical row: rest kept as JSON
    body = row_to_payload({"work_phone": "+1 555"}, ["work_phone"], current, None)
    assert body == {"businessPhones": ["+1 555", "+44 2", "+44 3"]}
    raw = row_to_payload({"work_phone": None}, ["work_phone"], FULL_CONTACT, None)
    assert raw == {"businessPhones": ["+44 2", "+44 3"]}


def test_email_update_keeps_other_entries_and_their_names() -> None:
    body = row_to_payload({"email2": "new@example.com"}, ["email2"], FULL_CONTACT, None)
    assert body["emailAddresses"] == [
        {"address": "ada@example.com", "name": "Ada Lovelace"},
        {"address": "new@example.com", "name": "new@example.com"},
        {"address": "ada3@example.com", "name": "ada3"},
    ]


def test_email_rewritten_to_same_address_keeps_its_name() -> None:
    body = row_to_payload({"email1": "ada@example.com"}, ["email1"], FULL_CONTACT, None)
    assert body["emailAddresses"][0] == {"address": "ada@example.com", "name": "Ada Lovelace"}


def test_address_part_update_keeps_the_other_parts() -> None:
    current = contact_to_row(FULL_CONTACT)
    body = row_to_payload({"city": "Leeds"}, ["city"], current, None)
    assert body == {
        "businessAddress": {
            "street": "1 Engine Way\nFloor 2",
            "city": "Leeds",
            "state": "LDN",
            "postalCode": "W1",
            "countryOrRegion": "UK",
        }
    }


def test_street_lines_survive_a_round_trip() -> None:
    body = row_to_payload({"street": "a\nb\nc"}, ["street"], None, None)
    assert contact_to_row({"id": "s", **body})["street"] == "a\nb\nc"


def test_clearing_fields_sends_null_or_empty() -> None:
    body = row_to_payload({"categories": None, "birthday": None, "job_title": ""}, ["categories", "birthday", "job_title"], None, None)
    assert body == {"categories": [], "birthday": None, "jobTitle": None}


def test_unknown_field_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown canonical field"):
        row_to_payload({}, ["fax"], None, None)


_word = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9 .@'-]{0,14}[A-Za-z0-9]", fullmatch=True)
_value = st.one_of(st.none(), _word)


@settings(max_examples=60, deadline=None)
@given(
    values=st.fixed_dictionaries(
        {f: _value for f in FIELDS if f not in ("birthday", "street", "categories")}
        | {
            "birthday": st.one_of(st.none(), st.dates().map(lambda d: d.isoformat())),
            "street": st.one_of(st.none(), st.lists(_word, min_size=1, max_size=4).map("\n".join)),
            "categories": st.one_of(st.none(), st.lists(_word, min_size=1, max_size=3).map(", ".join)),
        }
    )
)
def test_any_canonical_values_survive_write_then_read(values: dict) -> None:
    body = row_to_payload(values, FIELDS, None, None)
    back = contact_to_row({"id": "h", **body})
    expected = dict(values)
    # emails are positional in Graph: a missing email1 moves email2 up (FIELD_MAP.md)
    present = [values[f] for f in ("email1", "email2", "email3") if values[f] is not None]
    for i, f in enumerate(("email1", "email2", "email3")):
        expected[f] = present[i] if i < len(present) else None
    assert {f: back[f] for f in FIELDS} == expected
