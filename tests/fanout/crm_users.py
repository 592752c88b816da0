"""More CRM users for the fan-out's tests and bench: a USERINFO/USERSECURITY pair who sees
the demo's "Everyone" records (SECRIGHTS), optionally with a contact sync group (R2)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa

from contactsync.crm import demo
from contactsync.crm.schema import crm_tables
from contactsync.model import pad_user


def add_crm_user(
    engine: sa.Engine, user_id: str, *, first: str, last: str, email: str | None, enabled: bool = True,
    group_members: Sequence[str] | None = None, group_name: str = demo.GROUP_NAME,
) -> None:
    """Add one CRM user; ``group_members`` (CONTACTIDs) makes their sync group (None: no group)."""
    t, uid = crm_tables(None), pad_user(user_id)
    key = user_id.strip()[-6:]
    audit = {"CREATEDATE": datetime(2025, 1, 6), "CREATEUSER": demo.ADMIN,
             "MODIFYDATE": datetime(2025, 1, 6), "MODIFYUSER": demo.ADMIN}
    with engine.begin() as conn:
        conn.execute(sa.insert(t.userinfo).values(USERID=uid, USERNAME=f"{first} {last}", FIRSTNAME=first,
                                                  LASTNAME=last, EMAIL=email, **audit))
        conn.execute(sa.insert(t.usersecurity).values(USERID=uid, USERCODE=first.lower(), TYPE="N",
                                                      DEFAULTSECCODEID=demo.EVERYONE,
                                                      ENABLED="T" if enabled else "F", **audit))
        conn.execute(sa.insert(t.secrights).values(SECRIGHTSID=f"QTEST{key:>7}", SECCODEID=demo.EVERYONE,
                                                   ACCESSID=uid, PROFILEID="QDEMOA0PROF1", RECORDACCESS=None,
                                                   **audit))
        if group_members is None:
            return
        gid = f"pTEST{key:>7}"
        conn.execute(sa.insert(t.plugin).values(PLUGINID=gid, NAME=group_name, FAMILY="Contact", TYPE=8,
                                                USERID=uid, ISPUBLIC="F", BASEDON="CONTACT", DATA=None, **audit))
        if group_members:
            conn.execute(sa.insert(t.adhocgroup), [{"GROUPID": gid, "ENTITYID": c, **audit} for c in group_members])
