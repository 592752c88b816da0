"""One contact's history across cycles: what `contact-sync explain` answers.

"Why did this contact change?" is the question a sales person asks an admin, and no
single cycle's rows answer it. Each cycle that writes keeps, per contact: every write to
either side (time, rule, fields, the values before and after), every conflict with both
values and the winner (R9), every quarantine with its reason (R19). Rows are kept for
``keep_days`` (``[report] history_days``, default 90) and dropped after, per user.

The table (``contact_history``, schema.py, migration 3) lives in the state store, so a
shared PostgreSQL store shares the history too. Dry runs (R20) and guard-stopped
cycles (R16) wrote nothing and keep no history; their plans are in the run rows.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from contactsync.model import EMAIL_FIELDS, FIELDS, email_key
from contactsync.state.base import Store
from contactsync.state.rows import bulk_insert
from contactsync.state.schema import history_table

DEFAULT_KEEP_DAYS = 90
HISTORY_COLUMNS: tuple[str, ...] = (
    "at", "run_id", "kind", "side", "op", "rule", "crm_id", "outlook_id", "fields",
    "before", "after", "winner", "reason",
)
KINDS = ("write", "conflict", "quarantine")

def _now() -> datetime:
    return datetime.now(UTC)


def _text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and value != value) or value is pd.NaT:
        return None
    return str(value)


def _emails_of(frame: pd.DataFrame | None, key: str, ids: set[str] | None = None) -> dict[str, tuple[str, ...]]:
    """Per id in ``key`` (only ``ids`` when given), the lower-cased addresses of its
    email columns. Built from each column's list: the cost is the rows named, not a
    pandas call per row (issue 15)."""
    if frame is None or frame.empty or key not in frame or ids == set():
        return {}
    if ids is not None:
        frame = frame[_named(frame[key], ids)]
    out: dict[str, tuple[str, ...]] = {}
    keys = frame[key].to_numpy(dtype=object)
    present = pd.notna(keys)
    for col in (c for c in EMAIL_FIELDS if c in frame):
        addrs = email_key(frame[col]).to_numpy(dtype=object)
        keep = present & pd.notna(addrs)
        for ident, addr in zip(keys[keep].tolist(), addrs[keep].tolist(), strict=True):
            if addr:
                ident = str(ident)
                out[ident] = (*out.get(ident, ()), addr)
    return out


def _named(ids: pd.Series, wanted: set[str]) -> np.ndarray:
    """The rows whose id (as text) is one of ``wanted``."""
    return ids.astype(str).isin(wanted).to_numpy() & ids.notna().to_numpy()


def _listed(values: pd.Series) -> list[Any]:
    """A column's values as Python objects, None for every missing one (NaN, NaT, NA)."""
    objects = values.to_numpy(dtype=object)
    return np.where(pd.isna(objects), None, objects).tolist()


def _values(frame: pd.DataFrame | None, key: str, ids: set[str] | None = None) -> dict[str, dict[str, Any]]:
    """Per id in ``key`` (only ``ids`` when given), the row's field values (for a write's
    "before"; the first row of an id). Built from each column's list, as
    ``to_dict("index")`` boxes them, without its per-cell pandas calls (1 s for 2,000
    rows at 1 % edits of 100,000, issue 15)."""
    if frame is None or frame.empty or key not in frame or ids == set():
        return {}
    if ids is not None:
        frame = frame[_named(frame[key], ids)]
    cols = [c for c in FIELDS if c in frame]
    sub = frame.drop_duplicates(key)
    keys = [str(k) for k in sub[key].tolist()]
    columns = [_listed(sub[c]) for c in cols]
    return {k: dict(zip(cols, values, strict=True)) for k, *values in zip(keys, *columns, strict=True)}


def _ids(frames: Sequence[pd.DataFrame | None], column: str) -> set[str]:
    return {str(v) for f in frames if f is not None and column in f for v in f[column].dropna()}


#: History rows are built and inserted this many at a time: a first sync's 100,000
#: writes as dicts at once cost ~200 MB of its peak (issue 15).
CHUNK = 5000
#: The columns a history row is inserted with, in the order its tuple holds them (one
#: executemany through the driver, state.rows.bulk_insert: Core's per-row parameter
#: processing was a fifth of the history's cost, issue 12).
_INSERTED = ("crm_user", "run_id", "at", "kind", "side", "op", "rule", "crm_id", "outlook_id", "emails",
             "fields", "before", "after", "winner", "reason")


class HistoryStore(Store):
    """The history rows of the state database (``StateStore.record_history`` and
    ``StateStore.contact_history``)."""

    def record_history(
        self, run_id: str, user: str, *, crm: pd.DataFrame | None, outlook: pd.DataFrame | None,
        applied: pd.DataFrame | None, conflicts: pd.DataFrame | None, problems: pd.DataFrame | None,
        results: pd.DataFrame | None = None, keep_days: int | None = DEFAULT_KEEP_DAYS, now: datetime | None = None,
    ) -> int:
        """Keep one writing cycle's history (``applied`` = the committed action rows,
        ``crm``/``outlook`` = the sides as read before the writes); drop rows older than
        ``keep_days`` (None: none dropped, as by the writes a cycle keeps while its load
        still runs, cycle.record). Returns the number of rows added."""
        at = (now or _now()).isoformat(timespec="microseconds")
        # Only the records this cycle's rows name: the values for a write's "before" of
        # updates (a create has none), the emails of every row's contact.
        parts = [applied, conflicts]
        records = _ids([problems], "record_id")
        crm_ids = _ids(parts, "crm_id") | records
        out_ids = _ids(parts, "outlook_id") | {r.removeprefix("new:") for r in records}
        updates = None
        if applied is not None and not applied.empty:
            updates = applied[~applied["op"].isin(["create", "create_account", "skip"]).to_numpy()
                              & applied["fields"].fillna("").astype(str).ne("").to_numpy()]
        crm_vals = _values(crm, "crm_id", _ids([updates], "crm_id"))
        out_vals = _values(outlook, "outlook_id", _ids([updates], "outlook_id"))
        new_out: dict[str, str] = {}
        if results is not None and not results.empty and "outlook_id" in results:
            sub = results.dropna(subset=["outlook_id"])
            new_out = dict(zip(sub["action_id"].astype(str), sub["outlook_id"].astype(str), strict=True))
        emails = _emails_of(crm, "crm_id", crm_ids)
        for ident, found in _emails_of(outlook, "outlook_id", out_ids | set(new_out.values())).items():
            emails[ident] = (*emails.get(ident, ()), *found)

        def mails(crm_id: str | None, outlook_id: str | None, extra: Sequence[Any] = ()) -> str | None:
            found = set(emails.get(crm_id or "", ())) | set(emails.get(outlook_id or "", ()))
            found |= {str(e).strip().lower() for e in extra if _text(e)}
            return f" {' '.join(sorted(found))} " if found else None

        def records_of(frame: pd.DataFrame | None) -> Iterator[dict[str, Any]]:
            """The rows as dicts, built from each column's list: ``to_dict("records")``
            boxed every cell on its own, half of the history's cost (issue 12)."""
            if frame is None or frame.empty:
                return
            cols = [str(c) for c in frame.columns]
            for start in range(0, len(frame), CHUNK):
                part = frame.iloc[start : start + CHUNK]
                for values in zip(*(part.iloc[:, k].tolist() for k in range(len(cols))), strict=True):
                    yield dict(zip(cols, values, strict=True))

        def write_rows() -> Iterator[dict[str, Any]]:
            for act in records_of(applied):
                if act.get("op") == "skip":
                    continue
                crm_id, outlook_id = _text(act.get("crm_id")), _text(act.get("outlook_id"))
                outlook_id = outlook_id or new_out.get(str(act.get("action_id")))
                fields = [f for f in str(act.get("fields") or "").split(",") if f]
                source = out_vals.get(outlook_id or "", {}) if act["side"] == "outlook" else crm_vals.get(crm_id or "", {})
                if act["op"] in ("create", "create_account"):
                    before: dict[str, Any] = {}
                    fields = [f for f in fields if _text(act.get(f))]  # a new record: what it got
                else:
                    before = {f: _text(source.get(f)) for f in fields} if fields else {}
                after = {f: _text(act.get(f)) for f in fields}
                yield {"kind": "write", "side": act["side"], "op": act["op"], "rule": _text(act.get("rule")),
                       "crm_id": crm_id, "outlook_id": outlook_id, "fields": ",".join(fields),
                       "before": before, "after": after, "winner": None, "reason": _text(act.get("reason")),
                       "emails": mails(crm_id, outlook_id, [act.get(f) for f in EMAIL_FIELDS])}
            for c in records_of(conflicts):
                crm_id, outlook_id = _text(c.get("crm_id")), _text(c.get("outlook_id"))
                yield {"kind": "conflict", "side": None, "op": None, "rule": _text(c.get("rule")) or "R9",
                       "crm_id": crm_id, "outlook_id": outlook_id, "fields": _text(c.get("field")),
                       "before": {"last synced": _text(c.get("snapshot_value"))},
                       "after": {"crm": _text(c.get("crm_value")), "outlook": _text(c.get("outlook_value"))},
                       "winner": _text(c.get("winner")), "reason": f"policy {_text(c.get('policy'))}",
                       "emails": mails(crm_id, outlook_id)}
            for p in records_of(problems):
                record = _text(p.get("record_id")) or ""
                on_crm = p.get("side") == "crm" and not record.startswith(("new:", "acct:"))
                crm_id = record if on_crm else None
                outlook_id = record.removeprefix("new:") if not on_crm else None
                yield {"kind": "quarantine", "side": _text(p.get("side")), "op": None,
                       "rule": _text(p.get("rule")) or "R19", "crm_id": crm_id, "outlook_id": outlook_id,
                       "fields": _text(p.get("field")), "before": {}, "after": {"value": _text(p.get("value"))},
                       "winner": None, "reason": _text(p.get("reason")), "emails": mails(crm_id, outlook_id)}

        h = history_table
        added = 0
        with self._write() as conn:
            chunk: list[tuple[Any, ...]] = []
            for row in write_rows():
                chunk.append((user, run_id, at, row["kind"], row["side"], row["op"], row["rule"], row["crm_id"],
                              row["outlook_id"], row["emails"], row["fields"],
                              json.dumps(row["before"], ensure_ascii=False),
                              json.dumps(row["after"], ensure_ascii=False), row["winner"], row["reason"]))
                if len(chunk) == CHUNK:
                    bulk_insert(conn, h, _INSERTED, chunk)
                    added, chunk = added + len(chunk), []
            if chunk:
                bulk_insert(conn, h, _INSERTED, chunk)
                added += len(chunk)
            if keep_days is not None:
                cutoff = ((now or _now()) - timedelta(days=keep_days)).isoformat(timespec="microseconds")
                conn.execute(sa.delete(h).where(h.c.crm_user == user, h.c.at < cutoff))
        return added

    def contact_history(
        self, users: Sequence[str], *, email: str | None = None, crm_id: str | None = None,
        outlook_id: str | None = None,
    ) -> pd.DataFrame:
        """Every kept row of one contact (oldest first), found by any of its ids or emails.

        Rows found by the given key also bring in the contact's other id (a CRM id found
        by email brings the Outlook id of the same pair), so the story is whole.
        """
        h = history_table
        if sum(x is not None for x in (email, crm_id, outlook_id)) != 1:
            raise ValueError("give exactly one of email, crm_id, outlook_id")
        if email is not None:
            cond = h.c.emails.like(f"% {email.strip().lower()} %")
        elif crm_id is not None:
            cond = sa.func.trim(h.c.crm_id) == crm_id.strip()
        else:
            cond = h.c.outlook_id == outlook_id
        scope = h.c.crm_user.in_(list(users)) if users else sa.true()
        with self.engine.connect() as conn:
            first = conn.execute(sa.select(h.c.crm_id, h.c.outlook_id).where(scope, cond)).all()
            crm_ids = {r[0] for r in first if r[0]}
            out_ids = {r[1] for r in first if r[1]}
            if not first:
                return pd.DataFrame({c: pd.Series(dtype=object) for c in ("user", *HISTORY_COLUMNS)})
            wider = sa.or_(cond, h.c.crm_id.in_(crm_ids), h.c.outlook_id.in_(out_ids))
            rows = conn.execute(
                sa.select(h.c.crm_user.label("user"), *[h.c[c] for c in HISTORY_COLUMNS])
                .where(scope, wider).order_by(h.c.at, h.c.id)).mappings().all()
        frame = pd.DataFrame([dict(r) for r in rows])
        frame["before"] = frame["before"].map(lambda t: json.loads(t) if t else {})
        frame["after"] = frame["after"].map(lambda t: json.loads(t) if t else {})
        return frame
