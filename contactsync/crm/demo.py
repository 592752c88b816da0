"""A small, believable Infor CRM data set for the demo and the tests (site code ``DEMO``).

Users (USERINFO/USERSECURITY; ids padded to 12 characters as the CRM stores them):

==============  ===========  =================  ======================================
USERID          name         mailbox            default owner (DEFAULTSECCODEID)
==============  ===========  =================  ======================================
UDEMOA000001    Lee Park     lee@example.com    UDEMOA000001 (Lee's own owner code)
UDEMOA000002    Sam Ortiz    sam@example.com    UDEMOA000002 (Sam's own owner code)
ADMIN           Admin        admin@example.com  SYST00000001 (Everyone)
==============  ===========  =================  ======================================

Owners (SECCODE) and who sees them (SECRIGHTS; RECORDACCESS 'R' = read-only, R1):

- ``SYST00000001`` Everyone: Lee, Sam, Admin (full).
- ``UDEMOA000001`` Lee's own: Lee, Admin.   ``UDEMOA000002`` Sam's own: Sam, Admin.
- ``GDEMOA000001`` Sales Team: Lee, Sam, Admin (full).
- ``GDEMOA000002`` Marketing: Lee **read-only**, Sam and Admin full.
- ``GDEMOA000003`` Support: Sam **read-only**; Lee has two rows, one 'R' and one full (the
  most permissive wins, so Lee has full access); Admin full.
- ``ADMIN`` Admin's own: Admin.

Accounts ``ADEMOA000001``..``ADEMOA000008`` (each with an ADDRESS row): Contoso Ltd,
Fabrikam Inc, Northwind Traders, Adventure Works, Tailspin Toys, Wide World Importers,
Litware Inc (all owned by Everyone) and Proseware Inc (owned by Sam: Lee cannot see it,
so for Lee an Outlook company "Proseware Inc" makes a new account, R5b/R5c).

Contacts ``CDEMOA000001``..``CDEMOA000030`` (number: name, owner):

- Lee's sync group ``pDEMOA000001`` "Outlook Sync" (10 members): 1 Ana Lopez (Everyone),
  2 Ben Carter (Lee), 3 Chloe Martin (Sales), 4 David Kim (Lee), 5 Emma Novak (Everyone),
  6 Farid Haddad (Sales), 7 Grace Liu (Lee, no address), 8 Hugo Berg (Marketing:
  **read-only for Lee**), 9 Ines Costa (Everyone), 10 Jonas Weber (Sam: **Lee cannot see
  it**, R1 - it never appears in Lee's extract).
- Sam's sync group ``pDEMOA000002`` "Outlook Sync" (10 members): 11 Kara Singh (Sam),
  12 Liam O'Brien (Sam), 13 Mia Rossi (Sales), 14 Noah Fischer (Everyone), 15 Olivia Brown
  (Sam), 16 Pablo Ruiz (Marketing), 17 Quinn Taylor (Support: **read-only for Sam**),
  18 Rosa Diaz (Sam, no address), 19 Stefan Horvat (Lee: **Sam cannot see it**), and
  5 Emma Novak (in both groups).
- In no group (R7 material: matches outside the group): 20 Tom Becker and 21 Tina Becker
  (Fabrikam, both with EMAIL ``info@fabrikam.example``: the pair sharing an email),
  22 Uma Patel (Lee), 23 Victor Nguyen (Sam), 24 Wendy Clark (Sales), 25 Xavier Dubois
  (Everyone), 26 Yara Haddad (Support), 27 Zoe Fischer (Everyone), 28 Aaron Wells (Sam),
  29 Bella Moreau (Marketing), 30 Carl Jensen (Everyone).

Emails are ``first.last@<company>.example`` (e.g. ``ana.lopez@contoso.example``); contacts
1, 6, 13 and 20 also have a SECONDARYEMAIL, 3 and 14 an EMAIL3. CREATEDATE/MODIFYDATE are
fixed dates in 2025 (UTC), so later edits are always newer.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from contactsync.crm.schema import crm_tables
from contactsync.model import pad_user

LEE = "UDEMOA000001"
SAM = "UDEMOA000002"
ADMIN = pad_user("ADMIN")
EVERYONE = "SYST00000001"
SALES, MARKETING, SUPPORT = "GDEMOA000001", "GDEMOA000002", "GDEMOA000003"
LEE_GROUP, SAM_GROUP = "pDEMOA000001", "pDEMOA000002"
GROUP_NAME = "Outlook Sync"
BASE = datetime(2025, 1, 6, 9, 0, 0)


def cid(n: int) -> str:
    """CONTACTID of demo contact number ``n``."""
    return f"CDEMOA{n:06d}"


def aid(n: int) -> str:
    """ACCOUNTID of demo account number ``n``."""
    return f"ADEMOA{n:06d}"


ACCOUNTS: list[tuple[str, str, str, str, str, str]] = [
    # name, owner, street, city, state, postal code
    ("Contoso Ltd", EVERYONE, "1 Microsoft Way", "Redmond", "WA", "98052"),
    ("Fabrikam Inc", EVERYONE, "500 Pine St\nSuite 1200", "Seattle", "WA", "98101"),
    ("Northwind Traders", EVERYONE, "14 Harbour Rd", "Portland", "OR", "97201"),
    ("Adventure Works", EVERYONE, "2200 Trail Ave", "Bend", "OR", "97701"),
    ("Tailspin Toys", EVERYONE, "77 Runway Blvd", "Spokane", "WA", "99201"),
    ("Wide World Importers", EVERYONE, "9 Dockside\nPier 4", "Tacoma", "WA", "98402"),
    ("Litware Inc", EVERYONE, "310 Market St", "San Francisco", "CA", "94105"),
    ("Proseware Inc", SAM, "48 Quiet Lane", "Boise", "ID", "83702"),
]
_DOMAINS = ["contoso", "fabrikam", "northwind", "adventure-works", "tailspin", "wideworld",
            "litware", "proseware"]

# first, last, account number, owner, title, has address
CONTACTS: list[tuple[str, str, int, str, str, bool]] = [
    ("Ana", "Lopez", 1, EVERYONE, "Purchasing Manager", True),
    ("Ben", "Carter", 1, LEE, "IT Director", True),
    ("Chloe", "Martin", 2, SALES, "Account Executive", True),
    ("David", "Kim", 2, LEE, "CFO", True),
    ("Emma", "Novak", 3, EVERYONE, "Operations Lead", True),
    ("Farid", "Haddad", 4, SALES, "Buyer", True),
    ("Grace", "Liu", 5, LEE, "Product Manager", False),
    ("Hugo", "Berg", 6, MARKETING, "Marketing Director", True),
    ("Ines", "Costa", 7, EVERYONE, "Engineer", True),
    ("Jonas", "Weber", 8, SAM, "CEO", True),
    ("Kara", "Singh", 1, SAM, "Office Manager", True),
    ("Liam", "O'Brien", 2, SAM, "Sales Rep", True),
    ("Mia", "Rossi", 3, SALES, "Logistics", True),
    ("Noah", "Fischer", 4, EVERYONE, "Guide", True),
    ("Olivia", "Brown", 8, SAM, "CTO", True),
    ("Pablo", "Ruiz", 5, MARKETING, "Designer", True),
    ("Quinn", "Taylor", 6, SUPPORT, "Support Lead", True),
    ("Rosa", "Diaz", 7, SAM, "Analyst", False),
    ("Stefan", "Horvat", 1, LEE, "Consultant", True),
    ("Tom", "Becker", 2, EVERYONE, "Receptionist", True),
    ("Tina", "Becker", 2, EVERYONE, "Receptionist", True),
    ("Uma", "Patel", 3, LEE, "Controller", True),
    ("Victor", "Nguyen", 4, SAM, "Ranger", True),
    ("Wendy", "Clark", 5, SALES, "QA Lead", True),
    ("Xavier", "Dubois", 6, EVERYONE, "Importer", True),
    ("Yara", "Haddad", 7, SUPPORT, "Developer", True),
    ("Zoe", "Fischer", 1, EVERYONE, "Paralegal", True),
    ("Aaron", "Wells", 2, SAM, "Architect", True),
    ("Bella", "Moreau", 3, MARKETING, "Copywriter", True),
    ("Carl", "Jensen", 1, EVERYONE, "Intern", True),
]
LEE_MEMBERS = list(range(1, 11))
SAM_MEMBERS = [*range(11, 20), 5]
SECONDARY = {1: "ana.lopez@gmail.example", 6: "farid@haddad.example",
             13: "mia.rossi@mail.example", 20: "tom.becker@fabrikam.example"}
EMAIL3 = {3: "chloe@martin.example", 14: "noah.f@adventure-works.example"}
SHARED_EMAIL = {20: "info@fabrikam.example", 21: "info@fabrikam.example"}
BIRTHDAYS = {1: datetime(1985, 4, 12), 4: datetime(1979, 11, 3), 13: datetime(1990, 2, 28)}


def seed_demo(engine: sa.Engine, schema: str | None = None) -> dict[str, int]:
    """Insert the demo data set (module docstring) into empty CRM tables; return counts."""
    t = crm_tables(schema)

    def audit(day: int, user: str = ADMIN) -> dict[str, Any]:
        created = BASE + timedelta(days=day)
        return {"CREATEDATE": created, "CREATEUSER": user,
                "MODIFYDATE": created + timedelta(days=30, hours=day % 7), "MODIFYUSER": user}

    users = [(LEE, "Lee Park", "Lee", "Park", "lee@example.com", "lee", LEE),
             (SAM, "Sam Ortiz", "Sam", "Ortiz", "sam@example.com", "sam", SAM),
             (ADMIN, "Admin", "", "Administrator", "admin@example.com", "admin", EVERYONE)]
    userinfo = [{"USERID": u, "USERNAME": n, "FIRSTNAME": f or None, "LASTNAME": last,
                 "EMAIL": e, **audit(0)} for u, n, f, last, e, _, _ in users]
    usersecurity = [{"USERID": u, "USERCODE": code, "TYPE": "N" if u != ADMIN else "A",
                     "DEFAULTSECCODEID": owner, "ENABLED": "T", **audit(0)}
                    for u, _, _, _, _, code, owner in users]
    seccodes = [(EVERYONE, "Everyone", "S"), (LEE, "Lee Park", "U"), (SAM, "Sam Ortiz", "U"),
                (ADMIN, "Admin", "U"), (SALES, "Sales Team", "G"), (MARKETING, "Marketing", "G"),
                (SUPPORT, "Support", "G")]
    seccode = [{"SECCODEID": s, "SECCODEDESC": d, "SECCODETYPE": ty, **audit(0)}
               for s, d, ty in seccodes]
    # (owner, user, RECORDACCESS): None = full access.
    grants: list[tuple[str, str, str | None]] = [
        (EVERYONE, LEE, None), (EVERYONE, SAM, None), (LEE, LEE, None), (SAM, SAM, None),
        (SALES, LEE, None), (SALES, SAM, None), (MARKETING, LEE, "R"), (MARKETING, SAM, None),
        (SUPPORT, SAM, "R"), (SUPPORT, LEE, "R"), (SUPPORT, LEE, None),
    ] + [(s, ADMIN, None) for s, _, _ in seccodes]
    secrights = [{"SECRIGHTSID": f"QDEMOA{i:06d}", "SECCODEID": s, "ACCESSID": u,
                  "PROFILEID": "QDEMOA0PROF1" if ra is None else "QDEMOA0PROF2",
                  "RECORDACCESS": ra, **audit(0)}
                 for i, (s, u, ra) in enumerate(grants, start=1)]

    addresses: list[dict[str, Any]] = []

    def add_address(entity: str, street: str, city: str, state: str, zip_: str, day: int) -> str:
        address_id = f"aDEMOA{len(addresses) + 1:06d}"
        lines = street.split("\n") + [None] * 4
        addresses.append({
            "ADDRESSID": address_id, "ENTITYID": entity, "TYPE": "Business",
            "DESCRIPTION": "Business", "ADDRESS1": lines[0], "ADDRESS2": lines[1],
            "ADDRESS3": lines[2], "ADDRESS4": lines[3], "CITY": city, "STATE": state,
            "POSTALCODE": zip_, "COUNTY": None, "COUNTRY": "USA", "ISPRIMARY": "T",
            "ISMAILING": "T", **audit(day),
        })
        return address_id

    accounts = []
    for n, (name, owner, street, city, state, zip_) in enumerate(ACCOUNTS, start=1):
        accounts.append({
            "ACCOUNTID": aid(n), "ACCOUNT": name, "ACCOUNT_UC": name.upper(), "TYPE": "Customer",
            "STATUS": "Active", "SUBTYPE": None,
            "ADDRESSID": add_address(aid(n), street, city, state, zip_, n), "SHIPPINGID": None,
            "MAINPHONE": f"+1 206 555 01{n:02d}", "FAX": None,
            "EMAIL": f"hello@{_DOMAINS[n - 1]}.example", "WEBADDRESS": f"https://{_DOMAINS[n - 1]}.example",
            "SECCODEID": owner, "ACCOUNTMANAGERID": LEE if n % 2 else SAM, **audit(n),
        })
    contacts = []
    for n, (first, last, acct, owner, title, has_address) in enumerate(CONTACTS, start=1):
        _, _, street, city, state, zip_ = ACCOUNTS[acct - 1]
        address_id = add_address(cid(n), street, city, state, zip_, 10 + n) if has_address else None
        email = SHARED_EMAIL.get(n) or f"{first}.{last}@{_DOMAINS[acct - 1]}.example".lower().replace("'", "")
        contacts.append({
            "CONTACTID": cid(n), "ACCOUNTID": aid(acct), "ACCOUNT": ACCOUNTS[acct - 1][0],
            "LASTNAME": last, "FIRSTNAME": first, "MIDDLENAME": None, "LASTNAME_UC": last.upper(),
            "PREFIX": None, "SUFFIX": None, "TITLE": title, "DEPARTMENT": None,
            "EMAIL": email, "SECONDARYEMAIL": SECONDARY.get(n), "EMAIL3": EMAIL3.get(n),
            "WORKPHONE": f"+1 206 555 1{n:03d}", "HOMEPHONE": None,
            "MOBILE": f"+1 425 555 2{n:03d}" if n % 3 else None, "FAX": None, "OTHERPHONE": None,
            "WEBADDRESS": None, "ASSISTANT": None, "SPOUSE": None, "BIRTHDAY": BIRTHDAYS.get(n),
            "ADDRESSID": address_id, "SHIPPINGID": None, "TYPE": "Customer", "STATUS": "Active",
            "ISPRIMARY": "F", "DESCRIPTION": None, "CATEGORIES": None, "SECCODEID": owner,
            "ACCOUNTMANAGERID": LEE if owner == LEE else SAM if owner == SAM else ADMIN,
            **audit(10 + n),
        })
    plugins = [{"PLUGINID": gid, "NAME": GROUP_NAME, "FAMILY": "Contact", "TYPE": 8,
                "USERID": user, "ISPUBLIC": "F", "BASEDON": "CONTACT", "DATA": None, **audit(5, user)}
               for gid, user in ((LEE_GROUP, LEE), (SAM_GROUP, SAM))]
    members = [{"GROUPID": gid, "ENTITYID": cid(n), **audit(6, user)}
               for gid, user, nums in ((LEE_GROUP, LEE, LEE_MEMBERS), (SAM_GROUP, SAM, SAM_MEMBERS))
               for n in nums]

    with engine.begin() as conn:
        for table, rows in ((t.userinfo, userinfo), (t.usersecurity, usersecurity),
                            (t.seccode, seccode), (t.secrights, secrights), (t.address, addresses),
                            (t.account, accounts), (t.contact, contacts), (t.plugin, plugins),
                            (t.adhocgroup, members)):
            conn.execute(sa.insert(table), rows)
    return {"users": len(userinfo), "owners": len(seccode), "rights": len(secrights),
            "accounts": len(accounts), "addresses": len(addresses), "contacts": len(contacts),
            "groups": len(plugins), "group members": len(members)}
