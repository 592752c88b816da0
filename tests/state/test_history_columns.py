"""The history's look-ups (``state.history._values`` and ``_emails_of``) are built from
each column's list (issue 15: ``to_dict("index")`` cost 1 s for the 2,000 rows of a 1 %
cycle at 100,000); they must give what the per-row forms gave, for every kind of column
a side frame holds (text with None, datetimes with NaT, flags, Arrow-stored text)."""

from __future__ import annotations

import pandas as pd
import pytest

from contactsync import model
from contactsync.model import EMAIL_FIELDS, FIELDS, email_key
from contactsync.state.history import _emails_of, _text, _values


def _frame(arrow_text: bool) -> pd.DataFrame:
    rows = []
    for i in range(12):
        row = {f: (f"{f}-{i}" if i % 3 else None) for f in FIELDS}
        row.update(crm_id=f"C{i % 10:03d}" if i != 11 else None, email1=f"  Mail{i}@X.org " if i % 4 else None,
                   email2="" if i == 2 else (f"second{i}@x.org" if i % 2 else None), email3="ALL@x.org",
                   crm_modified=pd.Timestamp("2026-01-01", tz="UTC") if i % 2 else None)
        rows.append(row)
    frame = model.conform(pd.DataFrame(rows), model.CRM_COLUMNS)
    if arrow_text:
        pytest.importorskip("pyarrow")
        for c in ("email1", "email2", "first_name"):
            frame[c] = frame[c].astype("string[pyarrow]")
    return frame


def _values_per_row(frame: pd.DataFrame, key: str, ids: set[str] | None) -> dict:
    """The reference: the rows of ``ids`` by ``to_dict("index")``, as before issue 15."""
    if ids is not None:
        frame = frame[frame[key].astype(str).isin(ids).to_numpy()]
    cols = [c for c in FIELDS if c in frame]
    sub = frame.drop_duplicates(key).set_index(key)[cols]
    return {str(k): v for k, v in sub.to_dict("index").items()}


def _emails_per_row(frame: pd.DataFrame, key: str, ids: set[str] | None) -> dict:
    if ids is not None:
        frame = frame[frame[key].astype(str).isin(ids).to_numpy()]
    out: dict[str, tuple[str, ...]] = {}
    for col in [c for c in EMAIL_FIELDS if c in frame]:
        sub = frame[[key, col]].dropna()
        for ident, addr in zip(sub[key].astype(str), email_key(sub[col]).fillna(""), strict=True):
            if addr:
                out[ident] = (*out.get(ident, ()), addr)
    return out




@pytest.mark.parametrize("arrow_text", [False, True], ids=["python-text", "arrow-text"])
@pytest.mark.parametrize("ids", [None, {"C001", "C002", "C005", "C009", "nope"}], ids=["all", "some"])
def test_values_by_column_are_the_per_row_values(arrow_text: bool, ids: set[str] | None) -> None:
    frame = _frame(arrow_text)
    got, want = _values(frame, "crm_id", ids), _values_per_row(frame, "crm_id", ids)
    assert got.keys() == want.keys() and got  # the first row of each id, duplicates dropped
    for k in want:
        assert got[k].keys() == want[k].keys()
        for f in want[k]:
            # the history keeps a value as its text (None when missing): the same text
            assert _text(got[k][f]) == _text(want[k][f]), (k, f, got[k][f], want[k][f])
    assert _values(frame, "crm_id", set()) == {}


@pytest.mark.parametrize("arrow_text", [False, True], ids=["python-text", "arrow-text"])
@pytest.mark.parametrize("ids", [None, {"C001", "C002", "C004", "nope"}], ids=["all", "some"])
def test_emails_by_column_are_the_per_row_emails(arrow_text: bool, ids: set[str] | None) -> None:
    frame = _frame(arrow_text)
    got = _emails_of(frame, "crm_id", ids)
    assert got == _emails_per_row(frame, "crm_id", ids)
    assert any(len(v) == 3 for v in got.values())  # all three columns, in their order
    assert "" not in {a for v in got.values() for a in v}
