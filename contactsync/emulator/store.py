"""The emulator's mailboxes in SQLite: folders, contacts, tombstones and the change sequence.

Delta is built on one number per mailbox, ``mailbox.seq``, raised on every change. A
contact row keeps the seq of its last change; a contact that leaves a folder (moved,
deleted) leaves a tombstone there with the seq of its leaving. A delta token is a folder
and a seq, so "what changed since" is one indexed range query on ``(folder_id, seq)``
whatever the folder's size. One connection serves every thread, under one lock. The
schema, ids, times and record shapes are in ``records.py`` (re-exported here).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from contactsync.emulator.props import EXTENDED
from contactsync.emulator.records import (
    CONTACT_COLS,
    SCHEMA,
    Contact,
    DistinguishedFolder,
    Folder,
    FolderExists,
    Mailbox,
    Removed,
    ext_json,
    iso,
    later_than,
    new_change_key,
    new_id,
    props_json,
)


class Store:
    """All mailboxes; every public method is one transaction under the store's lock."""

    def __init__(self, db_path: str | Path | None = None) -> None:
        self.path = str(db_path) if db_path else ":memory:"
        self._lock = threading.RLock()
        self._mailboxes: dict[str, Mailbox] = {}  # by lower-case UPN; mailboxes never change
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        if self.path != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        self._migrate()
        row = self._db.execute("SELECT value FROM meta WHERE key='secret'").fetchone()
        if row is None:
            self.secret = os.urandom(16).hex()
            self._db.execute("INSERT INTO meta VALUES ('secret', ?)", (self.secret,))
        else:
            self.secret = row[0]

    def _migrate(self) -> None:
        """Files written before ``props`` held the full shape: rewrite them once."""
        if self._db.execute("SELECT 1 FROM meta WHERE key = 'props'").fetchone():
            return
        with self.tx() as db:
            rows = db.execute("SELECT pk, props FROM contact").fetchall()
            db.executemany("UPDATE contact SET props = ? WHERE pk = ?",
                           [(props_json(json.loads(text)), pk) for pk, text in rows])
            db.execute("INSERT INTO meta VALUES ('props', 'full-shape')")

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """One transaction under the lock; rolled back if the block raises."""
        with self._lock:
            self._db.execute("BEGIN")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def wipe(self) -> None:
        """Forget every mailbox (the delta-token secret stays)."""
        with self.tx() as db:
            self._mailboxes.clear()
            for table in ("mailbox", "folder", "contact", "tombstone", "contact_change"):
                db.execute(f"DELETE FROM {table}")

    # -- mailboxes and folders -------------------------------------------------------

    def mailbox(self, upn: str) -> Mailbox:
        """The mailbox of ``upn``, created with its Contacts and Deleted Items on first use."""
        known = self._mailboxes.get(upn.lower())
        if known is not None:
            return known
        with self.tx() as db:
            row = db.execute(
                "SELECT mid, upn, root_id, contacts_id, deleted_id FROM mailbox WHERE upn = ?", (upn,)
            ).fetchone()
            if row:
                self._mailboxes[upn.lower()] = Mailbox(*row)
                return self._mailboxes[upn.lower()]
            root, contacts, deleted = new_id("folder"), new_id("folder"), new_id("folder")
            cur = db.execute(
                "INSERT INTO mailbox (upn, root_id, contacts_id, deleted_id) VALUES (?, ?, ?, ?)",
                (upn, root, contacts, deleted),
            )
            mid = int(cur.lastrowid or 0)
            db.executemany(
                "INSERT INTO folder VALUES (?, ?, ?, ?, ?)",
                [(contacts, mid, root, "Contacts", "contacts"), (deleted, mid, root, "Deleted Items", "deleteditems")],
            )
            self._mailboxes[upn.lower()] = Mailbox(mid, upn, root, contacts, deleted)
            return self._mailboxes[upn.lower()]

    def find_mailbox(self, upn: str) -> Mailbox | None:
        with self._lock:
            row = self._db.execute(
                "SELECT mid, upn, root_id, contacts_id, deleted_id FROM mailbox WHERE upn = ?", (upn,)
            ).fetchone()
        return Mailbox(*row) if row else None

    def folder(self, mbx: Mailbox, folder_id: str) -> Folder | None:
        if folder_id.lower() == "contacts":
            folder_id = mbx.contacts_id
        elif folder_id.lower() == "deleteditems":
            folder_id = mbx.deleted_id
        with self._lock:
            row = self._db.execute(
                "SELECT id, mid, parent_id, name, kind FROM folder WHERE id = ? AND mid = ?",
                (folder_id, mbx.mid),
            ).fetchone()
        return Folder(*row) if row else None

    def child_folders(self, mbx: Mailbox, parent_id: str) -> list[Folder]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, mid, parent_id, name, kind FROM folder WHERE mid = ? AND parent_id = ? "
                "AND kind = 'user' ORDER BY rowid",
                (mbx.mid, parent_id),
            ).fetchall()
        return [Folder(*r) for r in rows]

    def create_folder(self, mbx: Mailbox, parent_id: str, name: str) -> Folder:
        with self.tx() as db:
            clash = db.execute(
                "SELECT 1 FROM folder WHERE mid = ? AND parent_id = ? AND name = ? COLLATE NOCASE",
                (mbx.mid, parent_id, name),
            ).fetchone()
            if clash:
                raise FolderExists(name)
            folder = Folder(new_id("folder"), mbx.mid, parent_id, name, "user")
            db.execute("INSERT INTO folder VALUES (?, ?, ?, ?, ?)",
                       (folder.id, folder.mid, folder.parent_id, folder.name, folder.kind))
            return folder

    def rename_folder(self, folder: Folder, name: str) -> Folder:
        if folder.kind != "user":
            raise DistinguishedFolder(folder.name)
        with self.tx() as db:
            clash = db.execute(
                "SELECT 1 FROM folder WHERE mid = ? AND parent_id = ? AND name = ? COLLATE NOCASE AND id <> ?",
                (folder.mid, folder.parent_id, name, folder.id),
            ).fetchone()
            if clash:
                raise FolderExists(name)
            db.execute("UPDATE folder SET name = ? WHERE id = ?", (name, folder.id))
        return Folder(folder.id, folder.mid, folder.parent_id, name, folder.kind)

    def delete_folder(self, mbx: Mailbox, folder: Folder) -> None:
        """Delete a folder and its subfolders; their contacts go to Deleted Items."""
        if folder.kind != "user":
            raise DistinguishedFolder(folder.name)
        with self.tx() as db:
            doomed, todo = [], [folder.id]
            while todo:
                fid = todo.pop()
                doomed.append(fid)
                todo += [r[0] for r in db.execute("SELECT id FROM folder WHERE parent_id = ?", (fid,))]
            for fid in doomed:
                rows = db.execute(f"SELECT {CONTACT_COLS} FROM contact WHERE folder_id = ?", (fid,)).fetchall()
                for row in rows:
                    self._move(db, Contact.from_row(row), mbx.deleted_id, "deleted", new_rest_id=True)
                db.execute("DELETE FROM folder WHERE id = ?", (fid,))
                db.execute("DELETE FROM tombstone WHERE folder_id = ?", (fid,))

    # -- contacts ---------------------------------------------------------------------

    def _next_seq(self, db: sqlite3.Connection, mid: int) -> int:
        return int(db.execute("UPDATE mailbox SET seq = seq + 1 WHERE mid = ? RETURNING seq", (mid,)).fetchone()[0])

    def current_seq(self, mbx: Mailbox) -> int:
        with self._lock:
            return int(self._db.execute("SELECT seq FROM mailbox WHERE mid = ?", (mbx.mid,)).fetchone()[0])

    def create_contact(self, mbx: Mailbox, folder_id: str, props: dict[str, Any],
                       ext: dict[str, str | None]) -> Contact:
        with self.tx() as db:
            seq = self._next_seq(db, mbx.mid)
            now = iso(datetime.now(UTC))
            values = (new_id("contact"), new_id("immutable"), mbx.mid, folder_id, seq, now, now,
                      new_change_key(), props_json(props), ext_json(ext))
            cur = db.execute(
                "INSERT INTO contact (id, iid, mid, folder_id, seq, created, modified, change_key, props, ext) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                values,
            )
            pk = int(cur.lastrowid or 0)
            db.execute("INSERT OR REPLACE INTO contact_change VALUES (?, ?, '{}')", (pk, seq))
            return Contact(pk, *values)

    def create_contacts(self, mbx: Mailbox, folder_id: str, many: list[dict[str, Any]],
                        ext: dict[str, str | None] | list[dict[str, str | None]] | None = None) -> list[Contact]:
        """Many contacts in one transaction (seeding benchmarks: 100,000 in seconds)."""
        exts = ext if isinstance(ext, list) else [ext or {}] * len(many)
        out = []
        with self.tx() as db:
            first = int(db.execute("UPDATE mailbox SET seq = seq + ? WHERE mid = ? RETURNING seq",
                                   (len(many), mbx.mid)).fetchone()[0]) - len(many) + 1
            now = iso(datetime.now(UTC))
            rows = [(new_id("contact"), new_id("immutable"), mbx.mid, folder_id, first + i, now, now,
                     new_change_key(), props_json(props), ext_json(e))
                    for i, (props, e) in enumerate(zip(many, exts, strict=True))]
            db.executemany(
                "INSERT INTO contact (id, iid, mid, folder_id, seq, created, modified, change_key, props, ext) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            pks = db.execute("SELECT pk FROM contact WHERE folder_id = ? AND seq >= ? ORDER BY seq",
                             (folder_id, first)).fetchall()
            for (pk,), row in zip(pks, rows, strict=True):
                out.append(Contact(pk, *row))
            db.executemany("INSERT OR REPLACE INTO contact_change VALUES (?, ?, '{}')",
                           [(c.pk, c.seq) for c in out])
        return out

    def contact(self, mbx: Mailbox, contact_id: str) -> Contact | None:
        """A contact by its current id or its immutable id (Graph accepts both)."""
        with self._lock:
            row = self._db.execute(
                f"SELECT {CONTACT_COLS} FROM contact WHERE mid = ? AND (id = ? OR iid = ?)",
                (mbx.mid, contact_id, contact_id),
            ).fetchone()
        return Contact.from_row(row) if row else None

    def list_contacts(self, folder_id: str, skip: int, top: int) -> tuple[list[Contact], bool]:
        """One page of a folder in creation order, and whether more follow."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {CONTACT_COLS} FROM contact WHERE folder_id = ? ORDER BY pk LIMIT ? OFFSET ?",
                (folder_id, top + 1, skip),
            ).fetchall()
        return [Contact.from_row(r) for r in rows[:top]], len(rows) > top

    def update_contact(self, contact: Contact, props: dict[str, Any],
                       ext: dict[str, str | None]) -> Contact:
        """Store new values: new seq, new changeKey, lastModifiedDateTime moves."""
        texts = props_json(props), ext_json(ext)
        before, after = contact.props, json.loads(texts[0])
        changed = [k for k in after if before.get(k) != after.get(k)]
        if texts[1] != contact.ext_text:
            changed.append(EXTENDED)
        with self.tx() as db:
            seq = self._next_seq(db, contact.mid)
            modified, key = later_than(contact.modified), new_change_key()
            db.execute(
                "UPDATE contact SET seq = ?, modified = ?, change_key = ?, props = ?, ext = ? WHERE pk = ?",
                (seq, modified, key, *texts, contact.pk),
            )
            row = db.execute("SELECT arrived, props FROM contact_change WHERE pk = ?", (contact.pk,)).fetchone()
            arrived, seqs = (row[0], json.loads(row[1])) if row else (seq, {})
            seqs.update(dict.fromkeys(changed, seq))
            db.execute("INSERT OR REPLACE INTO contact_change VALUES (?, ?, ?)",
                       (contact.pk, arrived, json.dumps(seqs, separators=(",", ":"))))
        return Contact(contact.pk, contact.id, contact.iid, contact.mid, contact.folder_id, seq,
                       contact.created, modified, key, *texts)

    def _move(self, db: sqlite3.Connection, contact: Contact, dest_id: str, reason: str,
              *, new_rest_id: bool) -> Contact:
        seq = self._next_seq(db, contact.mid)
        db.execute("INSERT INTO tombstone VALUES (?, ?, ?, ?, ?)",
                   (contact.folder_id, seq, contact.id, contact.iid, reason))
        rest_id = new_id("contact") if new_rest_id else contact.id
        modified, key = later_than(contact.modified), new_change_key()
        db.execute(
            "UPDATE contact SET id = ?, folder_id = ?, seq = ?, modified = ?, change_key = ? WHERE pk = ?",
            (rest_id, dest_id, seq, modified, key, contact.pk),
        )
        db.execute("INSERT OR REPLACE INTO contact_change VALUES (?, ?, '{}')", (contact.pk, seq))
        return Contact(contact.pk, rest_id, contact.iid, contact.mid, dest_id, seq, contact.created,
                       modified, key, contact.props_text, contact.ext_text)

    def move_contact(self, contact: Contact, dest_id: str, reason: str = "changed") -> Contact:
        """Move to another folder: the current id changes (the immutable id never does)."""
        if dest_id == contact.folder_id:
            return contact
        with self.tx() as db:
            return self._move(db, contact, dest_id, reason, new_rest_id=True)

    def permanent_delete(self, contact: Contact) -> None:
        with self.tx() as db:
            seq = self._next_seq(db, contact.mid)
            db.execute("INSERT INTO tombstone VALUES (?, ?, ?, ?, ?)",
                       (contact.folder_id, seq, contact.id, contact.iid, "deleted"))
            db.execute("DELETE FROM contact WHERE pk = ?", (contact.pk,))

    def delta_page(self, mbx: Mailbox, folder_id: str, after: int, incremental: bool,
                   limit: int) -> tuple[list[Contact | Removed], bool, int]:
        """Changes in ``folder_id`` with seq > ``after``, oldest first.

        Returns (items, more pages follow, the mailbox's seq read in the same transaction):
        the last page's delta token is that seq, so nothing changed meanwhile is lost.
        """
        with self._lock:
            if incremental:
                rows = self._db.execute(
                    f"SELECT {CONTACT_COLS}, NULL FROM contact WHERE folder_id = :f AND seq > :a "
                    "UNION ALL SELECT NULL, id, iid, NULL, NULL, seq, NULL, NULL, NULL, NULL, NULL, reason "
                    "FROM tombstone WHERE folder_id = :f AND seq > :a ORDER BY 6 LIMIT :n",
                    {"f": folder_id, "a": after, "n": limit + 1},
                ).fetchall()
            else:
                rows = self._db.execute(
                    f"SELECT {CONTACT_COLS}, NULL FROM contact WHERE folder_id = ? AND seq > ? "
                    "ORDER BY seq LIMIT ?",
                    (folder_id, after, limit + 1),
                ).fetchall()
            seq = int(self._db.execute("SELECT seq FROM mailbox WHERE mid = ?", (mbx.mid,)).fetchone()[0])
        items: list[Contact | Removed] = [
            Removed(r[1], r[2], r[5], r[11]) if r[11] else Contact.from_row(r) for r in rows[:limit]
        ]
        return items, len(rows) > limit, seq

    def changes_since(self, contacts: list[Contact], after: int) -> dict[int, list[str] | None]:
        """Per contact pk: the properties changed after seq ``after``, or None when the
        contact arrived in its folder after it (then a delta item carries all of it)."""
        pks = [c.pk for c in contacts]
        if not pks:
            return {}
        with self._lock:
            rows = self._db.execute(
                f"SELECT pk, arrived, props FROM contact_change WHERE pk IN ({','.join('?' * len(pks))})", pks
            ).fetchall()
        out: dict[int, list[str] | None] = dict.fromkeys(pks)
        for pk, arrived, props in rows:
            if arrived <= after:
                out[pk] = [k for k, seq in json.loads(props).items() if seq > after]
        return out

    def folder_contacts(self, folder_id: str) -> list[Contact]:
        with self._lock:
            rows = self._db.execute(
                f"SELECT {CONTACT_COLS} FROM contact WHERE folder_id = ? ORDER BY pk", (folder_id,)
            ).fetchall()
        return [Contact.from_row(r) for r in rows]
