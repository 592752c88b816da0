"""Microsoft's own Python client (msgraph-sdk) works against the emulator unchanged.

Create, list, delta, ``$batch`` and extended properties, as a Graph user would write them
with the SDK: only the base URL points at the emulator (and a fixed token stands in for
Entra ID). If this breaks, the emulator drifted from what Graph accepts and sends.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from contactsync.emulator import EmulatorHandle

msgraph = pytest.importorskip("msgraph")

TAG = "String {5c0b8a3e-8d2c-4f55-9a51-3c2b8a6f0a11} Name CrmContactId"
UPN = "sdk.user@example.com"


def _client(emulator: EmulatorHandle) -> Any:
    from kiota_abstractions.authentication import (
        AccessTokenProvider,
        AllowedHostsValidator,
        BaseBearerTokenAuthenticationProvider,
    )
    from msgraph import GraphRequestAdapter, GraphServiceClient

    class FixedToken(AccessTokenProvider):
        async def get_authorization_token(self, uri: str, additional_authentication_context: Any = None) -> str:
            return "sdk-token"

        def get_allowed_hosts_validator(self) -> AllowedHostsValidator:
            return AllowedHostsValidator([])

    adapter = GraphRequestAdapter(BaseBearerTokenAuthenticationProvider(FixedToken()))
    adapter.base_url = emulator.graph_url
    return GraphServiceClient(request_adapter=adapter)


async def _scenario(emulator: EmulatorHandle) -> dict[str, Any]:
    from kiota_abstractions.base_request_configuration import RequestConfiguration
    from msgraph.generated.models.contact import Contact
    from msgraph.generated.models.contact_folder import ContactFolder
    from msgraph.generated.models.email_address import EmailAddress
    from msgraph.generated.models.single_value_legacy_extended_property import (
        SingleValueLegacyExtendedProperty,
    )
    from msgraph.generated.users.item.contact_folders.item.contacts.contacts_request_builder import (
        ContactsRequestBuilder,
    )
    from msgraph_core.requests.batch_request_content import BatchRequestContent
    from msgraph_core.requests.batch_request_item import BatchRequestItem

    client = _client(emulator)
    user = client.users.by_user_id(UPN)
    folder = await user.contact_folders.post(ContactFolder(display_name="CRM Contacts"))
    contacts = user.contact_folders.by_contact_folder_id(folder.id).contacts
    made = await contacts.post(Contact(
        given_name="Ada", surname="Lovelace", email_addresses=[EmailAddress(address="ada@example.com", name="Ada")],
        single_value_extended_properties=[SingleValueLegacyExtendedProperty(id=TAG, value="C0000001")],
    ))
    params = ContactsRequestBuilder.ContactsRequestBuilderGetQueryParameters(
        expand=[f"singleValueExtendedProperties($filter=id eq '{TAG}')"])
    listed = await contacts.get(request_configuration=RequestConfiguration(query_parameters=params))
    delta = await contacts.delta.get()
    batch = BatchRequestContent()
    batch.add_request("1", BatchRequestItem(request_information=contacts.to_get_request_information()))
    batch.add_request("2", BatchRequestItem(request_information=user.contacts.by_contact_id(made.id)
                                            .to_get_request_information()))
    answer = await client.batch.post(batch_request_content=batch)
    return {"folder": folder, "made": made, "listed": listed, "delta": delta,
            "batch": answer.get_response_status_codes()}


def test_msgraph_sdk_create_list_delta_batch_extended_properties(emulator: EmulatorHandle) -> None:
    out = asyncio.run(_scenario(emulator))
    assert out["folder"].display_name == "CRM Contacts" and out["folder"].id
    assert out["made"].id and out["made"].given_name == "Ada"
    listed = out["listed"].value
    assert [c.surname for c in listed] == ["Lovelace"]
    assert listed[0].email_addresses[0].address == "ada@example.com"
    assert [(p.id, p.value) for p in listed[0].single_value_extended_properties] == [(TAG, "C0000001")]
    assert [c.id for c in out["delta"].value] == [out["made"].id]
    assert out["delta"].odata_delta_link and "$deltatoken=" in out["delta"].odata_delta_link
    assert sorted(out["batch"].values()) == [200, 200]  # the SDK names its requests itself
