"""What "the same end state" means for the reliability tests, and how to reach one.

A cycle that was cut and then resumed must end where an uninterrupted cycle ends. Ids the
sync makes (``?SYNC...``: new contacts, accounts, addresses; Outlook's ids and change keys)
legitimately differ between two runs, so both sides are compared as *pictures*: every CRM
row of CONTACT, ACCOUNT, ADDRESS and ADHOCGROUP and every Outlook contact (with its
CrmContactId tag), sync-made ids replaced by a label drawn from the row's content, audit
dates dropped, as sorted lists, so a duplicate shows up as an extra entry.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from contactsync.emulator import EmulatorHandle, start_in_thread
from contactsync.outlook.mapping import CRM_TAG_EXPAND, CRM_TAG_PROPERTY_ID
from tests.e2e.conftest import MAILBOXES, SyncEnv, write_config

ROOT = Path(__file__).resolve().parents[2]

SYNC_ID = re.compile(r"^[A-Za-z]SYNC[0-9A-Za-z]+$")
AUDIT = {"CREATEDATE", "MODIFYDATE"}
OUTLOOK_VOLATILE = {"@odata.etag", "id", "changeKey", "createdDateTime", "lastModifiedDateTime", "parentFolderId"}


# --- running a cycle in a child process -------------------------------------------------
@dataclass
class Child:
    returncode: int
    stdout: str
    stderr: str

    @property
    def killed(self) -> bool:
        return self.returncode == -9

    def outcome(self) -> dict[str, Any]:
        lines = [line for line in self.stdout.splitlines() if line.startswith("{")]
        return json.loads(lines[-1]) if lines else {}


def child_cycle(config: Path, user: str, *, crash_after: int | None = None, side: str | None = None,
                force: bool = False, timeout: float = 120) -> Child:
    """One cycle in a fresh process (tests/reliability/cycle_child.py), optionally SIGKILLed
    after the ``crash_after``-th committed write (of ``side`` only, when given)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONTACT_SYNC_CRASH")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    if crash_after is not None:
        env["CONTACT_SYNC_CRASH_AFTER_WRITES"] = str(crash_after)
        if side:
            env["CONTACT_SYNC_CRASH_SIDE"] = side
    cmd = [sys.executable, "-m", "tests.reliability.cycle_child", str(config), user]
    if force:
        cmd.append("--force")
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=timeout)
    return Child(res.returncode, res.stdout, res.stderr)


def start_child(config: Path, user: str) -> subprocess.Popen[str]:
    """A child cycle running in the background (concurrency tests)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONTACT_SYNC_CRASH")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.Popen(
        [sys.executable, "-m", "tests.reliability.cycle_child", str(config), user],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT,
    )


# --- copies of a prepared world ------------------------------------------------------------
def clone(base: Path, dest: Path, extra: str = "") -> tuple[SyncEnv, EmulatorHandle]:
    """Copy a stopped world (crm.db, graph.db, state.db) to ``dest`` and start its emulator.

    The caller stops the returned emulator. The configuration is rewritten for the new
    emulator's port and the copied CRM file.
    """
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("crm.db", "graph.db", "state.db"):
        for suffix in ("", "-wal", "-shm"):
            src = base / f"{name}{suffix}"
            if src.exists():
                shutil.copy2(src, dest / f"{name}{suffix}")
    emu = start_in_thread(db_path=dest / "graph.db")
    crm_url = f"sqlite:///{dest / 'crm.db'}"
    old = re.search(r'graph_url = "([^"]+)"', (base / "contact-sync.toml").read_text())
    if old and (dest / "state.db").exists():
        # The stored delta links are absolute URLs of the base's emulator (another port).
        with sqlite3.connect(dest / "state.db") as db:
            db.execute("UPDATE outlook_delta SET delta_link = replace(delta_link, ?, ?)",
                       (old.group(1), emu.graph_url))
        db.close()
    cfg = write_config(dest, crm_url, emu.graph_url, extra)
    return SyncEnv(dest, cfg, crm_url, emu), emu


# --- pictures ----------------------------------------------------------------------------
def _rows(engine: sa.Engine, table: str) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.text(f"SELECT * FROM {table}"))]


def _norm(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else value


def crm_picture(crm_url: str) -> dict[str, list[str]]:
    """CONTACT, ACCOUNT, ADDRESS, ADHOCGROUP as sorted JSON rows, sync-made ids labelled."""
    engine = sa.create_engine(crm_url)
    try:
        tables = {t: _rows(engine, t) for t in ("CONTACT", "ACCOUNT", "ADDRESS", "ADHOCGROUP")}
    finally:
        engine.dispose()
    return picture_of(tables)


def id_labels(tables: dict[str, list[dict[str, Any]]]) -> dict[str, str]:
    """Sync-made ids -> a label from content (account name, contact name + email, owner)."""
    labels: dict[str, str] = {}
    for a in tables["ACCOUNT"]:
        if SYNC_ID.match(a["ACCOUNTID"] or ""):
            labels[a["ACCOUNTID"]] = f"<account {a['ACCOUNT']}>"
    for c in tables["CONTACT"]:
        if SYNC_ID.match(c["CONTACTID"] or ""):
            labels[c["CONTACTID"]] = f"<contact {c['FIRSTNAME']} {c['LASTNAME']} {c['EMAIL']}>"
    for a in tables["ADDRESS"]:
        if SYNC_ID.match(a["ADDRESSID"] or ""):
            owner = labels.get(a["ENTITYID"], a["ENTITYID"])
            labels[a["ADDRESSID"]] = f"<address {a['TYPE']} of {owner}>"
    for g in tables["ADHOCGROUP"]:
        if SYNC_ID.match(g["GROUPID"] or ""):
            labels[g["GROUPID"]] = "<group>"
    return labels


def picture_of(tables: dict[str, list[dict[str, Any]]]) -> dict[str, list[str]]:
    labels = id_labels(tables)
    out: dict[str, list[str]] = {}
    for name, rows in tables.items():
        out[name] = sorted(
            json.dumps({k: labels.get(v, _norm(v)) if isinstance(v, str) else _norm(v)
                        for k, v in row.items() if k not in AUDIT}, sort_keys=True, default=str)
            for row in rows
        )
    out["_labels"] = sorted(labels.values())
    return out


def outlook_contacts(env: SyncEnv, user: str, folder: str = "CRM Contacts") -> list[dict[str, Any]]:
    """Every contact of the user's sync folder, with its CrmContactId tag expanded."""
    mb = env.graph(user)
    folder_id = mb.folder_id(folder)
    if folder_id is None:
        return []
    out: list[dict[str, Any]] = []
    url: str | None = f"{mb.base}/contactFolders/{folder_id}/contacts"
    params: dict[str, str] | None = {"$top": "500", "$expand": CRM_TAG_EXPAND}
    while url:
        r = mb.http.get(url, params=params)
        r.raise_for_status()
        out += r.json()["value"]
        url, params = r.json().get("@odata.nextLink"), None
    return out


def tag(contact: dict[str, Any]) -> str | None:
    for prop in contact.get("singleValueExtendedProperties") or []:
        if prop["id"] == CRM_TAG_PROPERTY_ID or prop["id"].endswith("Name CrmContactId"):
            return prop["value"]
    return None


def outlook_picture(env: SyncEnv, user: str, labels: dict[str, str]) -> dict[str, list[str]]:
    """The sync folder's contacts and the Deleted Items, ids dropped, tags labelled."""
    def clean(c: dict[str, Any]) -> str:
        body = {k: v for k, v in c.items() if k not in OUTLOOK_VOLATILE and k != "singleValueExtendedProperties"}
        t = tag(c)
        body["_tag"] = labels.get(t, t) if t else None
        return json.dumps(body, sort_keys=True, default=str)

    folder = sorted(clean(c) for c in outlook_contacts(env, user))
    deleted = sorted(clean(c) for c in env.graph(user).deleted())
    return {"folder": folder, "deleted": deleted}


def world_picture(env: SyncEnv, users: tuple[str, ...] = tuple(MAILBOXES)) -> dict[str, Any]:
    """Both sides of a world, comparable across runs."""
    engine = sa.create_engine(env.crm_url)
    try:
        tables = {t: _rows(engine, t) for t in ("CONTACT", "ACCOUNT", "ADDRESS", "ADHOCGROUP")}
    finally:
        engine.dispose()
    labels = id_labels(tables)
    pic: dict[str, Any] = {"crm": picture_of(tables)}
    for u in users:
        pic[u] = outlook_picture(env, u, labels)
    return pic


def journal_pending(env: SyncEnv, user: str) -> int:
    """Rows left in the user's journal (R18: none once a cycle completed)."""
    from contactsync.model import pad_user
    from contactsync.state import StateStore

    store = StateStore(f"sqlite:///{env.folder / 'state.db'}")
    try:
        return len(store.journal_pending(pad_user(user)))
    finally:
        store.close()


def link_count(env: SyncEnv, user: str) -> int:
    from contactsync.model import pad_user
    from contactsync.state import StateStore

    store = StateStore(f"sqlite:///{env.folder / 'state.db'}")
    try:
        return len(store.load_links(pad_user(user)))
    finally:
        store.close()


def diff(a: dict[str, Any], b: dict[str, Any]) -> str:
    """A readable difference of two pictures (for assertion messages)."""
    lines: list[str] = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            sub = diff(va, vb)
            if sub:
                lines.append(f"[{key}] {sub}")
        elif va != vb:
            ca, cb = Counter(va or []), Counter(vb or [])
            lines.append(
                f"{key}: extra {sorted((ca - cb).elements())[:5]} / missing {sorted((cb - ca).elements())[:5]}"
                f" (counts {len(va or [])} vs {len(vb or [])})"
            )
    return "\n".join(lines)


def writes(line: dict[str, Any]) -> int:
    """All writes a --json line (or a child's outcome) reports."""
    return sum(sum(side.values()) for side in (line.get("counts") or {}).values())
