"""The CrmContactId tags (R7a) of the sync folder's contacts, read beside the delta.

Contact delta documents ``$select`` only (learn.microsoft.com/graph/api/contact-delta), so
the single-value extended property that carries a contact's CRM id comes from plain reads
that carry the ``$expand`` (``outlook/extract.py`` says when it reads them).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from contactsync.outlook.client import GraphClient
from contactsync.outlook.mapping import CRM_TAG_EXPAND, CRM_TAG_PROPERTY_ID, crm_tag_of

#: Contacts per page of the plain folder read that carries the tags.
TAG_PAGE = 1000


def read_tags(client: GraphClient, folder_id: str, ids: list[str] | None, folder_size: int = 0) -> dict[str, str | None]:
    """The CrmContactId tags (R7a) of ``ids`` (None: of the whole folder), without delta.

    Contact delta documents ``$select`` only (learn.microsoft.com/graph/api/contact-delta),
    so the tags come from a plain read that carries the ``$expand``: the folder's pages of
    1,000 (the most $top allows) when that is fewer requests, else the contacts one by one, 20 to a ``$batch``.
    """
    folder = client.path(f"contactFolders/{quote(folder_id, safe='')}/contacts")
    if ids is not None and len(ids) == 0:
        return {}
    if ids is None or -(-folder_size // TAG_PAGE) <= -(-len(ids) // 20):
        out: dict[str, str | None] = {}
        params = {"$select": "id", "$expand": CRM_TAG_EXPAND, "$top": str(TAG_PAGE)}
        for page in client.iter_pages(client.base_url + folder, params=params):
            out.update({c["id"]: crm_tag_of(c) for c in page.get("value", []) if c.get("id")})
        return out if ids is None else {i: out.get(i) for i in ids if i in out}
    gets = [{"id": str(n), "method": "GET",
             "url": client.path(f"contacts/{quote(i, safe='')}?$select=id&$expand={CRM_TAG_EXPAND}")}
            for n, i in enumerate(ids)]
    found: dict[str, str | None] = {}
    for start in range(0, len(gets), 20):
        for answer in client.batch(gets[start : start + 20]):
            if 200 <= int(answer.get("status", 0)) < 300 and isinstance(answer.get("body"), dict):
                found[ids[int(answer["id"])]] = crm_tag_of(answer["body"])
    return found


def with_tags(items: dict[str, Any], tags: dict[str, str | None]) -> None:
    """Put the tags read beside the delta into its items (as a ``$expand`` would)."""
    for cid, tag in tags.items():
        item = items.get(cid)
        if item is not None:
            item["singleValueExtendedProperties"] = [{"id": CRM_TAG_PROPERTY_ID, "value": tag}] if tag else []
