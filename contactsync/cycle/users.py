"""Who syncs: the configured ``[[users]]`` and, with ``[users_from_crm] enabled``, the CRM's.

A CRM user opts in by creating their contact sync group (R2's ``group_name``, PLUGIN
TYPE 8, FAMILY 'Contact', owned by them); they sync when they are also enabled
(USERSECURITY.ENABLED 'T') and have a mailbox address (USERINFO.EMAIL). A ``[[users]]``
entry for the same user wins (its mailbox, and it syncs whatever the CRM says), so an admin
can always name a user by hand. ``contact-sync users`` shows this roster with the reasons
of those who will not sync (spec/INTERFACE.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import sqlalchemy as sa

from contactsync.config import Settings, UserSettings
from contactsync.errors import ConfigError, SideUnreachable
from contactsync.model import pad_user, unpad_user

NO_MAILBOX = "no mailbox address (USERINFO.EMAIL)"
DISABLED = "disabled in the CRM (USERSECURITY.ENABLED is not 'T')"
NO_GROUP = "no contact sync group"


@dataclass(frozen=True)
class RosterEntry:
    """One user the sync knows of, and whether (and as whom) they sync."""

    crm_user: str
    display_name: str
    mailbox: str
    source: str  # "config" (a [[users]] entry) or "crm" ([users_from_crm])
    reasons: list[str] = field(default_factory=list)  # why not; empty: syncs

    @property
    def syncs(self) -> bool:
        return not self.reasons

    def json_line(self) -> dict[str, Any]:
        out = asdict(self)
        out["crm_user"] = unpad_user(self.crm_user)
        out["syncs"] = self.syncs
        return out


def crm_users(settings: Settings) -> list[dict[str, Any]]:
    """Every CRM user with their name, email, enabled flag and whether they own a group
    called ``group_name`` (one query; USERINFO joined to USERSECURITY and PLUGIN)."""
    from contactsync.crm.extract import GROUP_FAMILY, GROUP_TYPE
    from contactsync.crm.schema import crm_tables
    from contactsync.cycle.sides import crm_engine

    t = crm_tables(settings.crm.schema_name or None)
    ui, us, p = t.userinfo, t.usersecurity, t.plugin
    owns_group = sa.exists().where(
        p.c.USERID == ui.c.USERID, p.c.NAME == settings.sync.group_name,  # noqa: SIM300 (SQL column first)
        p.c.TYPE == GROUP_TYPE, p.c.FAMILY == GROUP_FAMILY,
    )
    stmt = (
        sa.select(ui.c.USERID, ui.c.USERNAME, ui.c.FIRSTNAME, ui.c.LASTNAME, ui.c.EMAIL,
                  us.c.ENABLED, owns_group.label("owns_group"))
        .select_from(ui.outerjoin(us, us.c.USERID == ui.c.USERID))
        .order_by(ui.c.USERID)
    )
    try:
        with crm_engine(settings.crm_url()).connect() as conn:
            return [dict(r._mapping) for r in conn.execute(stmt)]
    except sa.exc.SQLAlchemyError as exc:
        raise SideUnreachable(
            f"the CRM's users could not be read (USERINFO, USERSECURITY, PLUGIN): {type(exc).__name__}",
            hint="check [crm] url and that the database is reachable; or set [users_from_crm] enabled = false",
        ) from exc


def _display_name(row: dict[str, Any]) -> str:
    full = " ".join(str(v).strip() for v in (row.get("FIRSTNAME"), row.get("LASTNAME")) if v and str(v).strip())
    return full or str(row.get("USERNAME") or "").strip()


def _mailbox(email: Any) -> str:
    value = str(email or "").strip()
    return value if "@" in value else ""


def roster(settings: Settings, *, with_crm: bool | None = None) -> list[RosterEntry]:
    """Every configured user (they sync) and, when the CRM is read, every CRM user.

    ``with_crm`` defaults to ``[users_from_crm] enabled``; the ``users`` command reads the
    CRM also without it, for the display names of the configured users.
    """
    read_crm = settings.users_from_crm.enabled if with_crm is None else with_crm
    rows = {pad_user(str(r["USERID"])): r for r in crm_users(settings)} if read_crm else {}
    entries = [
        RosterEntry(u.crm_user, _display_name(rows.get(u.crm_user, {})), u.mailbox, "config")
        for u in settings.users
    ]
    if not settings.users_from_crm.enabled:
        return entries
    configured = {u.crm_user for u in settings.users}
    for uid, row in rows.items():
        if uid in configured:
            continue  # the [[users]] entry wins
        mailbox = _mailbox(row["EMAIL"])
        reasons = [reason for reason, missing in (
            (NO_MAILBOX, not mailbox),
            (DISABLED, str(row["ENABLED"] or "").strip().upper() != "T"),
            (NO_GROUP, not row["owns_group"]),
        ) if missing]
        entries.append(RosterEntry(uid, _display_name(row), mailbox, "crm", reasons))
    return entries


def syncing_users(settings: Settings) -> list[UserSettings]:
    """The users a cycle runs for when none is named: the roster's who sync, in its order."""
    if not settings.users_from_crm.enabled:
        return list(settings.users)
    return [UserSettings(crm_user=e.crm_user, mailbox=e.mailbox) for e in roster(settings) if e.syncs]


def selected_users(settings: Settings, crm_users: Sequence[str] = ()) -> list[UserSettings]:
    """The users a command or flow acts for: those named (each as :func:`resolve_user`
    finds them), else every user who syncs, the CRM's with ``[users_from_crm]`` included.

    The reports and ``explain`` use this too, so a user found in the CRM is reported like a
    configured one; raises ConfigError when nobody syncs."""
    if crm_users:
        return [resolve_user(settings, u) for u in crm_users]
    everyone = syncing_users(settings)
    if not everyone:
        raise ConfigError(
            "no users are configured" + (" and no CRM user syncs" if settings.users_from_crm.enabled else ""),
            hint="add a [[users]] entry (crm_user, mailbox) to the configuration file, or set "
            "[users_from_crm] enabled = true (see `contact-sync users`)",
        )
    return everyone


def resolve_user(settings: Settings, crm_user: str) -> UserSettings:
    """The user ``crm_user`` as they sync: their [[users]] entry, else the CRM's roster."""
    padded = pad_user(crm_user)
    for u in settings.users:
        if u.crm_user == padded:
            return u
    if not settings.users_from_crm.enabled:
        return settings.user(crm_user)  # raises the ConfigError that names the known users
    for entry in roster(settings):
        if entry.crm_user == padded:
            if entry.syncs:
                return UserSettings(crm_user=entry.crm_user, mailbox=entry.mailbox)
            raise ConfigError(
                f"CRM user {unpad_user(padded)!r} does not sync: {'; '.join(entry.reasons)}",
                hint="see `contact-sync users`; or add a [[users]] entry for them",
            )
    raise ConfigError(
        f"user {unpad_user(padded)!r} is neither in the configuration nor a CRM user",
        hint="see `contact-sync users` for who syncs",
    )
