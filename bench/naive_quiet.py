"""The naive check a user would write: list the Outlook folder, compare it with the CRM.

No state, no delta: every run reads the whole folder (pages of 999, the largest ``$top``
Graph's contact lists take) and the user's CRM sync group (one query), matches them by
email (trimmed, lower case) and counts what differs in the compared fields. It writes
nothing: in a quiet world it is the least a correct sync could do without keeping state.
The other half of :mod:`bench.command_bench`.

``python -m bench.naive_quiet CRM_URL GRAPH_URL MAILBOX CRM_USER``; prints one JSON line.
"""

from __future__ import annotations

import json
import sys

import pandas as pd
import requests
import sqlalchemy as sa

FOLDER = "CRM Contacts"
GROUP = "Outlook Sync"
SELECT = "givenName,surname,emailAddresses,jobTitle,companyName"


def outlook_frame(graph_url: str, mailbox: str) -> pd.DataFrame:
    http = requests.Session()
    http.headers["Authorization"] = "Bearer naive"
    base = f"{graph_url}/users/{mailbox}"
    folders = http.get(f"{base}/contactFolders", params={"$filter": f"displayName eq '{FOLDER}'"}, timeout=60)
    folders.raise_for_status()
    url: str | None = f"{base}/contactFolders/{folders.json()['value'][0]['id']}/contacts?$top=999&$select={SELECT}"
    rows = []
    while url:
        page = http.get(url, timeout=60)
        page.raise_for_status()
        body = page.json()
        for c in body["value"]:
            emails = c.get("emailAddresses") or [{}]
            rows.append({"email": (emails[0].get("address") or "").strip().lower(), "first_name": c.get("givenName"),
                         "last_name": c.get("surname"), "job_title": c.get("jobTitle"), "company": c.get("companyName")})
        url = body.get("@odata.nextLink")
    return pd.DataFrame(rows)


def crm_frame(crm_url: str, user: str) -> pd.DataFrame:
    sql = sa.text(
        'SELECT c."EMAIL" AS email, c."FIRSTNAME" AS first_name, c."LASTNAME" AS last_name, '
        'c."TITLE" AS job_title, c."ACCOUNT" AS company FROM "ADHOCGROUP" g '
        'JOIN "PLUGIN" p ON p."PLUGINID" = g."GROUPID" JOIN "CONTACT" c ON c."CONTACTID" = g."ENTITYID" '
        'WHERE p."NAME" = :name AND p."USERID" = :user'
    )
    engine = sa.create_engine(crm_url)
    with engine.connect() as conn:
        frame = pd.read_sql(sql, conn, params={"name": GROUP, "user": user})
    engine.dispose()
    frame["email"] = frame["email"].fillna("").str.strip().str.lower()
    return frame


def main(crm_url: str, graph_url: str, mailbox: str, user: str) -> dict[str, int]:
    out, crm = outlook_frame(graph_url, mailbox), crm_frame(crm_url, user)
    both = crm.merge(out, on="email", how="outer", suffixes=("_crm", "_outlook"), indicator=True)
    paired = both[both["_merge"] == "both"]
    fields = ["first_name", "last_name", "job_title", "company"]
    differ = pd.concat(
        [paired[f"{f}_crm"].fillna("") != paired[f"{f}_outlook"].fillna("") for f in fields], axis=1
    ).any(axis=1)
    return {"outlook": len(out), "crm": len(crm), "paired": len(paired), "differ": int(differ.sum()),
            "only_crm": int((both["_merge"] == "left_only").sum()),
            "only_outlook": int((both["_merge"] == "right_only").sum())}


if __name__ == "__main__":
    print(json.dumps(main(*sys.argv[1:5])))
