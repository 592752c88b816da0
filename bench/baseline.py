"""The baseline: the straightforward sync script a user would write with O365 alone.

What it does, every cycle, with no state kept between cycles:
- reads the user's CRM sync group with one pandas query (CONTACT joined to its ADDRESS);
- lists the whole Outlook folder with O365 (``folder.get_contacts(limit=None)``, pages of
  O365's maximum ``$top`` of 999);
- matches by the first email (trimmed, lower case);
- CRM-only contact -> ``folder.new_contact()`` ... ``save()``: one POST per contact;
- Outlook-only contact -> a CRM row (account found by exact name, else made) and a group
  membership, inserted with one executemany per table;
- both sides present and different -> the newer side (CONTACT.MODIFYDATE against
  Outlook's lastModifiedDateTime) wins: one PATCH (``contact.save()``, O365 sends only
  the changed fields) or one UPDATE per contact.

Choices, so the comparison is honest:
- O365's ``Connection`` as it comes, with its default ``requests_delay`` of 200 ms between
  requests and its urllib3 retries: that is what a user who does not tune the library
  gets. ``requests_delay`` can be passed (``--requests-delay-ms``) to show the effect.
- One request at a time (no threads): the script a user writes first.
- O365 2.1's ``get_folder()`` returns the folder flagged as the root address book, so
  ``get_contacts()`` would list the mailbox's default folder: the flag is cleared.
- The folder-create bug of O365 2.1 (``ContactFolder.new_contact`` sets a name-mangled
  ``__folder_id`` the ``Contact`` never sees, so ``save()`` writes to the default folder):
  the project's answer is to write to ``contactFolders/{id}/contacts`` explicitly; here
  the same is done by giving the new contact its folder id before ``save()``.
- Only the fields the benchmark's data uses are compared and written (first/last name,
  email, job title, company, business phone, street, city), which flatters the baseline.
"""

# ruff: noqa: SIM300  (SQLAlchemy column comparisons read column == value)
from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import sqlalchemy as sa
from O365 import Account
from pydantic import SecretStr

from contactsync.crm.schema import crm_tables
from contactsync.outlook.connection import FixedTokenBackend, GraphProtocol

T = crm_tables(None)
FIELDS = ("first_name", "last_name", "email", "job_title", "company", "work_phone", "street", "city")


def _crm_frame(engine: sa.Engine, user_id: str, group_name: str) -> pd.DataFrame:
    sql = sa.text(
        'SELECT c."CONTACTID" AS crm_id, c."FIRSTNAME" AS first_name, c."LASTNAME" AS last_name, '
        'c."EMAIL" AS email, c."TITLE" AS job_title, c."ACCOUNT" AS company, '
        'c."WORKPHONE" AS work_phone, a."ADDRESS1" AS street, a."CITY" AS city, '
        'c."MODIFYDATE" AS modified '
        'FROM "ADHOCGROUP" g JOIN "PLUGIN" p ON p."PLUGINID" = g."GROUPID" '
        'JOIN "CONTACT" c ON c."CONTACTID" = g."ENTITYID" '
        'LEFT JOIN "ADDRESS" a ON a."ADDRESSID" = c."ADDRESSID" '
        'WHERE p."NAME" = :name AND p."USERID" = :user'
    )
    with engine.connect() as conn:
        frame = pd.read_sql(sql, conn, params={"name": group_name, "user": user_id})
    frame["key"] = frame["email"].fillna("").str.strip().str.lower()
    return frame


def _outlook_values(contact: Any) -> dict[str, Any]:
    address = contact.business_address or {}
    phones = contact.business_phones or []
    return {
        "first_name": contact.name or None,
        "last_name": contact.surname or None,
        "email": contact.main_email or None,
        "job_title": contact.job_title or None,
        "company": contact.company_name or None,
        "work_phone": phones[0] if phones else None,
        "street": address.get("street") or None,
        "city": address.get("city") or None,
    }


def _set_outlook(contact: Any, row: dict[str, Any], only: set[str] | None = None) -> None:
    def want(name: str) -> bool:
        return only is None or name in only

    if want("first_name"):
        contact.name = row["first_name"] or ""
    if want("last_name"):
        contact.surname = row["last_name"] or ""
    if want("email") and row["email"]:
        contact.emails.clear()
        contact.emails.add(row["email"])
    if want("job_title"):
        contact.job_title = row["job_title"] or ""
    if want("company"):
        contact.company_name = row["company"] or ""
    if want("work_phone"):
        contact.business_phones = [row["work_phone"]] if row["work_phone"] else []
    if want("street") or want("city"):
        contact.business_address = {"street": row["street"] or "", "city": row["city"] or ""}


def _norm(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and value != value):
        return None
    text = str(value).strip()
    return text or None


def _same(a: Any, b: Any) -> bool:
    return _norm(a) == _norm(b)


def baseline_cycle(
    crm_url: str,
    graph_url: str,
    mailbox: str,
    user_id: str,
    *,
    folder_name: str = "CRM Contacts",
    group_name: str = "Outlook Sync",
    requests_delay_ms: int | None = None,
) -> dict[str, Any]:
    """One baseline cycle; returns what it did and how long it took."""
    started = time.perf_counter()
    kwargs: dict[str, Any] = {}
    if requests_delay_ms is not None:
        kwargs["requests_delay"] = requests_delay_ms
    account = Account(
        ("baseline", ""),
        protocol=GraphProtocol(graph_url),
        main_resource=f"users/{mailbox}",
        auth_flow_type="credentials",
        tenant_id="baseline",
        token_backend=FixedTokenBackend(SecretStr("baseline")),
        **kwargs,
    )
    engine = sa.create_engine(crm_url)
    crm = _crm_frame(engine, user_id, group_name)
    folder = account.address_book().get_folder(folder_name=folder_name)
    folder.root = False  # O365 bug: get_folder() marks the folder as the root (module docstring)
    contacts = list(folder.get_contacts(limit=None))
    by_key = {(c.main_email or "").strip().lower(): c for c in contacts}
    crm_keys = set(crm["key"])
    done = {"outlook_create": 0, "outlook_update": 0, "crm_create": 0, "crm_update": 0}
    crm_updates: list[dict[str, Any]] = []

    for row in crm.to_dict("records"):
        contact = by_key.get(row["key"])
        if contact is None:
            new = folder.new_contact()
            new._Contact__folder_id = folder.folder_id  # O365's folder bug (module docstring)
            _set_outlook(new, row)
            new.save()
            done["outlook_create"] += 1
            continue
        theirs = _outlook_values(contact)
        differ = {f for f in FIELDS if not _same(row[f], theirs[f])}
        if not differ:
            continue
        crm_time = pd.Timestamp(row["modified"]).tz_localize("UTC") if row["modified"] is not None else None
        out_time = pd.Timestamp(contact.modified) if contact.modified else None
        if out_time is not None and (crm_time is None or out_time > crm_time):
            crm_updates.append({"crm_id": row["crm_id"], **{f: theirs[f] for f in differ}})
        else:
            _set_outlook(contact, row, differ)
            contact.save()
            done["outlook_update"] += 1

    now = datetime.now(UTC).replace(tzinfo=None)
    with engine.begin() as conn:
        for upd in crm_updates:
            values = {
                {"first_name": "FIRSTNAME", "last_name": "LASTNAME", "email": "EMAIL", "job_title": "TITLE",
                 "company": "ACCOUNT", "work_phone": "WORKPHONE"}[f]: v
                for f, v in upd.items() if f not in ("crm_id", "street", "city")
            }
            conn.execute(sa.update(T.contact).where(T.contact.c.CONTACTID == upd["crm_id"]).values(MODIFYDATE=now, **values))
            done["crm_update"] += 1
        new_rows = [c for k, c in by_key.items() if k and k not in crm_keys]
        if new_rows:
            _crm_create(conn, user_id, group_name, new_rows, now)
            done["crm_create"] = len(new_rows)
    engine.dispose()
    return {"wall_s": round(time.perf_counter() - started, 3), "crm_rows": len(crm),
            "outlook_contacts": len(contacts), **done}


def _crm_create(conn: sa.Connection, user_id: str, group_name: str, contacts: list[Any], now: datetime) -> None:
    group = conn.execute(
        sa.select(T.plugin.c.PLUGINID).where(T.plugin.c.NAME == group_name, T.plugin.c.USERID == user_id)
    ).scalar_one()
    accounts = dict(conn.execute(sa.select(T.account.c.ACCOUNT, T.account.c.ACCOUNTID)).all())
    start = conn.execute(sa.select(sa.func.count()).select_from(T.contact)).scalar_one()
    new_accounts, rows, addresses, members = [], [], [], []
    for n, c in enumerate(contacts, start=start + 1):
        v = _outlook_values(c)
        company = v["company"]
        if company and company not in accounts:
            accounts[company] = f"ABASE{len(accounts):07d}"
            new_accounts.append({"ACCOUNTID": accounts[company], "ACCOUNT": company,
                                 "ACCOUNT_UC": company.upper(), "SECCODEID": "SYST00000001",
                                 "CREATEDATE": now, "MODIFYDATE": now})
        cid, aid = f"CBASE{n:07d}", f"aBASE{n:07d}"
        rows.append({"CONTACTID": cid, "ACCOUNTID": accounts.get(company), "ACCOUNT": company,
                     "FIRSTNAME": v["first_name"], "LASTNAME": v["last_name"],
                     "LASTNAME_UC": (v["last_name"] or "").upper(), "EMAIL": v["email"],
                     "TITLE": v["job_title"], "WORKPHONE": v["work_phone"], "ADDRESSID": aid,
                     "SECCODEID": "SYST00000001", "CREATEDATE": now, "MODIFYDATE": now})
        addresses.append({"ADDRESSID": aid, "ENTITYID": cid, "ADDRESS1": v["street"], "CITY": v["city"],
                          "CREATEDATE": now, "MODIFYDATE": now})
        members.append({"GROUPID": group, "ENTITYID": cid})
    if new_accounts:
        conn.execute(sa.insert(T.account), new_accounts)
    conn.execute(sa.insert(T.contact), rows)
    conn.execute(sa.insert(T.address), addresses)
    conn.execute(sa.insert(T.adhocgroup), members)
