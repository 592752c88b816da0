"""The one field registry (model.FIELD_REGISTRY) says what spec/FIELD_MAP.md says, and the
CRM schema, the CRM load and the Outlook mapping follow it."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from contactsync import model
from contactsync.crm.columns import address_columns, contact_columns
from contactsync.crm.schema import crm_tables
from contactsync.errors import RecordError
from contactsync.outlook.mapping import contact_to_row, row_to_payload

#: spec/FIELD_MAP.md's table, copied as the spec states it (an independent oracle):
#: canonical -> (Graph property path, CRM columns, CRM length).
SPEC_FIELD_MAP = {
    "first_name": ("givenName", "CONTACT.FIRSTNAME", 32),
    "middle_name": ("middleName", "CONTACT.MIDDLENAME", 32),
    "last_name": ("surname", "CONTACT.LASTNAME", 32),
    "prefix": ("title", "CONTACT.PREFIX", 16),
    "suffix": ("generation", "CONTACT.SUFFIX", 16),
    "job_title": ("jobTitle", "CONTACT.TITLE", 64),
    "department": ("department", "CONTACT.DEPARTMENT", 32),
    "company": ("companyName", "ACCOUNT.ACCOUNT", 128),
    "email1": ("emailAddresses[0].address", "CONTACT.EMAIL", 128),
    "email2": ("emailAddresses[1].address", "CONTACT.SECONDARYEMAIL", 128),
    "email3": ("emailAddresses[2].address", "CONTACT.EMAIL3", 128),
    "work_phone": ("businessPhones[0]", "CONTACT.WORKPHONE", 32),
    "home_phone": ("homePhones[0]", "CONTACT.HOMEPHONE", 32),
    "mobile_phone": ("mobilePhone", "CONTACT.MOBILE", 32),
    "web_address": ("businessHomePage", "CONTACT.WEBADDRESS", 128),
    "assistant": ("assistantName", "CONTACT.ASSISTANT", 64),
    "spouse": ("spouseName", "CONTACT.SPOUSE", 64),
    "birthday": ("birthday", "CONTACT.BIRTHDAY", None),
    "street": ("businessAddress.street", "ADDRESS.ADDRESS1..ADDRESS4", 64),
    "city": ("businessAddress.city", "ADDRESS.CITY", 32),
    "state": ("businessAddress.state", "ADDRESS.STATE", 32),
    "postal_code": ("businessAddress.postalCode", "ADDRESS.POSTALCODE", 24),
    "country": ("businessAddress.countryOrRegion", "ADDRESS.COUNTRY", 32),
    "categories": ("categories", "CONTACT.CATEGORIES", 255),
}


def test_the_registry_is_the_spec_field_map_in_its_order() -> None:
    assert tuple(SPEC_FIELD_MAP) == model.FIELDS
    for f in model.FIELD_REGISTRY:
        assert (f.graph, f.crm_name, f.length) == SPEC_FIELD_MAP[f.name], f.name


def test_r19_the_crm_schema_columns_have_the_registry_lengths() -> None:
    tables = crm_tables(None)
    by_name = {"CONTACT": tables.contact, "ADDRESS": tables.address, "ACCOUNT": tables.account}
    for f in model.FIELD_REGISTRY:
        for col in f.crm_columns:
            column = by_name[f.crm_table].c[col]
            if f.kind == "date":
                assert isinstance(column.type, sa.DateTime), f.name
            else:
                assert column.type.length == f.length, (f.name, col)


@pytest.mark.parametrize("field", [f for f in model.FIELDS if f not in ("company", "street", "birthday")])
def test_r19_the_load_refuses_one_character_over_the_registry_length(field: str) -> None:
    limit = model.FIELD[field].length
    assert limit is not None
    row = {field: "x" * limit}
    written = {**contact_columns(row, [field], "C1"), **address_columns(row, [field], "C1")}
    assert written[model.FIELD[field].crm_column] == "x" * limit
    with pytest.raises(RecordError, match=f"{model.FIELD[field].crm_column}.*{limit}"):
        row = {field: "x" * (limit + 1)}
        contact_columns(row, [field], "C1")
        address_columns(row, [field], "C1")


def test_every_registry_field_goes_to_its_graph_property_and_back() -> None:
    values = {f: f"v-{f}" for f in model.FIELDS}
    values["birthday"] = "1980-05-04"
    values["email1"], values["email2"], values["email3"] = "a@x.org", "b@x.org", "c@x.org"
    payload = row_to_payload(values, model.FIELDS, None, None)
    for f in model.FIELD_REGISTRY:
        assert f.graph_property in payload, f.name
    back = contact_to_row(payload)
    assert {f: back[f] for f in model.FIELDS} == values
