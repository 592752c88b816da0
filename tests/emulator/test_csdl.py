"""Every property the emulator answers exists in Graph's v1.0 CSDL with that type (GRAPH_API.md)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from contactsync.emulator import EmulatorHandle
from contactsync.emulator.props import WRITABLE

from .conftest import TAG_ID, control, make_folder

# The extract lives in ../shared/graph beside the repository (the source of truth); a copy
# is kept here so that the check runs wherever the repository is cloned alone.
_HERE = Path(__file__).resolve().parent
CSDL = next(
    (p for p in (_HERE.parents[2] / "shared" / "graph" / "contacts-csdl.xml", _HERE / "contacts-csdl.xml") if p.exists()),
    _HERE / "contacts-csdl.xml",
)
EDM = "{http://docs.oasis-open.org/odata/ns/edm}"


def load_types() -> dict[str, dict[str, tuple[str, bool]]]:
    """Type name -> {property: (type, nullable)}, base types' properties included."""
    schema = ET.parse(CSDL).getroot().find(f".//{EDM}Schema")
    assert schema is not None
    raw: dict[str, tuple[str | None, dict[str, tuple[str, bool]]]] = {}
    for kind in ("EntityType", "ComplexType"):
        for node in schema.findall(f"{EDM}{kind}"):
            props = {
                p.get("Name", ""): (p.get("Type", ""), p.get("Nullable", "true") != "false")
                for tag in ("Property", "NavigationProperty") for p in node.findall(f"{EDM}{tag}")
            }
            raw[node.get("Name", "")] = (node.get("BaseType"), props)

    def resolve(name: str) -> dict[str, tuple[str, bool]]:
        base, props = raw[name]
        inherited = resolve(base.split(".")[-1]) if base else {}
        return {**inherited, **props}

    return {name: resolve(name) for name in raw}


TYPES = load_types() if CSDL.exists() else {}


def check(value: Any, type_name: str, where: str, nullable: bool = True) -> None:
    if value is None:
        assert nullable, f"{where} is null but not nullable"
        return
    if type_name.startswith("Collection("):
        assert isinstance(value, list), f"{where}: expected a collection"
        for i, item in enumerate(value):
            check(item, type_name[len("Collection("):-1], f"{where}[{i}]", nullable=False)
        return
    if type_name == "Edm.String":
        assert isinstance(value, str), f"{where}: expected Edm.String, got {value!r}"
    elif type_name == "Edm.DateTimeOffset":
        assert isinstance(value, str), f"{where}: expected Edm.DateTimeOffset"
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    elif type_name.startswith("graph."):
        check_object(value, type_name[len("graph."):], where)
    else:
        raise AssertionError(f"{where}: type {type_name} not handled by this test")


def check_object(obj: Any, type_name: str, where: str) -> None:
    assert isinstance(obj, dict), f"{where}: expected an object of {type_name}"
    props = TYPES[type_name]
    for key, value in obj.items():
        if key.startswith("@"):  # annotations (@odata.etag, @odata.type, @removed) are not properties
            continue
        assert key in props, f"{where}.{key} is not a property of microsoft.graph.{type_name}"
        prop_type, nullable = props[key]
        check(value, prop_type, f"{where}.{key}", nullable)


def full_contact() -> dict[str, Any]:
    body: dict[str, Any] = {}
    for name, kind in WRITABLE.items():
        body[name] = {
            "string": f"v-{name}",
            "strings": [f"{name}-1", f"{name}-2"],
            "datetime": "1990-05-06T00:00:00+00:00",
            "address": {"street": "1 Way\r\n2nd floor", "city": "C", "state": "S", "postalCode": "P",
                        "countryOrRegion": "X"},
            "emails": [{"address": "a@example.com", "name": "A"}, {"address": "b@example.com"}],
        }[kind]
    body["singleValueExtendedProperties"] = [{"id": TAG_ID, "value": "C1"}]
    return body


@pytest.mark.skipif(not CSDL.exists(), reason="the Graph CSDL extract is not available")
def test_every_returned_property_is_in_the_csdl(emulator: EmulatorHandle, graph: requests.Session,
                                                 user: str) -> None:
    fid = make_folder(graph, user)
    expand = {"$expand": f"singleValueExtendedProperties($filter=id eq '{TAG_ID}')"}
    created = graph.post(f"{user}/contactFolders/{fid}/contacts", json=full_contact())
    assert created.status_code == 201, created.text
    cid = created.json()["id"]
    contacts = [
        created.json(),
        graph.get(f"{user}/contacts/{cid}", params=expand).json(),
        graph.patch(f"{user}/contacts/{cid}", json={"jobTitle": None, "homeAddress": None}).json(),
        *graph.get(f"{user}/contactFolders/{fid}/contacts", params=expand).json()["value"],
        *graph.get(f"{user}/contactFolders/{fid}/contacts/delta", params=expand).json()["value"],
    ]
    assert any("singleValueExtendedProperties" in c for c in contacts)
    moved = control(emulator, "POST", f"users/lee@example.com/contacts/{cid}/move", {"destinationId": "contacts"})
    contacts.append(moved.json())
    contacts += control(emulator, "GET", "users/lee@example.com/deleted").json()["value"]
    for i, contact in enumerate(contacts):
        check_object(contact, "contact", f"contact#{i}")
    folders = [graph.get(f"{user}/contactFolders/{fid}").json(),
               *graph.get(f"{user}/contactFolders").json()["value"],
               graph.post(f"{user}/contactFolders/{fid}/childFolders", json={"displayName": "k"}).json()]
    for i, folder in enumerate(folders):
        check_object(folder, "contactFolder", f"folder#{i}")


def test_the_checker_catches_a_foreign_property() -> None:
    if not TYPES:
        pytest.skip("the Graph CSDL extract is not available")
    with pytest.raises(AssertionError):
        check_object({"id": "x", "favouriteColour": "red"}, "contact", "c")
    with pytest.raises(AssertionError):
        check_object({"id": "x", "businessAddress": {"street": 1}}, "contact", "c")
    with pytest.raises(AssertionError):
        check_object({"id": None}, "contact", "c")


def test_the_kept_csdl_copy_matches_the_shared_extract() -> None:
    shared = _HERE.parents[2] / "shared" / "graph" / "contacts-csdl.xml"
    if not shared.exists():
        pytest.skip("../shared is not beside this checkout")
    assert (_HERE / "contacts-csdl.xml").read_bytes() == shared.read_bytes()
