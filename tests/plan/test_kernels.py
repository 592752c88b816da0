"""The planning's fast kernels give exactly what the plain pandas formulation gives.

Planning was made faster (issue 15) by replacing pandas string accessors, a DataFrame
merge and per-part frames with hand-written vectorised kernels. Each property below
pits a kernel against the straightforward formulation it replaced, on inputs hypothesis
chooses (odd whitespace, CRLF, case, duplicates, missing values), so a kernel that
drifts from the rules' comparison semantics (STYLE.md: compare normalised values; R7:
trimmed, case-insensitive emails) fails here before it changes a plan.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from contactsync.model import FIELDS, PY_TEXT, normalise_series
from contactsync.plan.frames import (
    ACTION_COLUMNS,
    OP_ORDER,
    REPEATED_MIN,
    concat_actions,
    is_empty,
    make_actions,
    norm,
)
from contactsync.plan.match import _same_email

#: Text as users type it: letters of both cases, Unicode whitespace, line breaks.
ALPHABET = st.sampled_from(list("aAbBäÄß @.\t\r\n\x0b\x1c\u00a0\u2003İ"))
VALUES = st.one_of(st.none(), st.text(ALPHABET, max_size=6))


@settings(max_examples=300, deadline=None)
@given(st.lists(VALUES, max_size=30), st.booleans())
def test_norm_equals_the_pandas_string_formulation(values, email):
    """norm(): trimmed, "" -> None; text CRLF -> LF (model.normalise_series exactly);
    emails lower-cased, line breaks kept (a match key: one pass less, as before)."""
    got = norm(np.array(values, dtype=object), email=email).tolist()
    # Python's text rules (model.PY_TEXT), not Arrow's, which pandas uses for "str"
    # when pyarrow is installed ("İ".lower() differs)
    s = pd.Series([v for v in values if v is not None], dtype=PY_TEXT)
    s = s.str.strip().str.lower() if email else s.str.replace("\r\n", "\n", regex=False).str.strip()
    done = iter(s.tolist())
    want = [None if v is None else next(done) or None for v in values]
    assert got == want
    if not email:
        model = normalise_series(pd.Series(values, dtype=object)).to_numpy(dtype=object)
        assert got == [None if pd.isna(v) else v for v in model]
    # a long column with repeats takes the normalise-each-distinct-value-once path
    times = REPEATED_MIN // max(len(values), 1) + 1
    assert norm(np.array(values * times, dtype=object), email=email).tolist() == want * times
    assert is_empty(np.array(values, dtype=object)).tolist() == [v is None for v in want]


def _emails(values: list[str | None]) -> pd.DataFrame:
    n = len(values) // 3
    cols = {f"email{k + 1}": values[k * n:(k + 1) * n] for k in range(3)}
    return pd.DataFrame(cols, dtype=object)


EMAIL_VALUES = st.one_of(st.none(), st.sampled_from(["a@x", " A@x", "b@x", "B@X ", "c@x", ""]))


@settings(max_examples=300, deadline=None)
@given(st.lists(EMAIL_VALUES, min_size=3, max_size=30), st.lists(EMAIL_VALUES, min_size=3, max_size=30))
def test_email_join_finds_every_pair_sharing_a_key_as_a_merge_does(o_values, c_values):
    """R7 candidates: every (Outlook, CRM) row pair with a common email key, once per
    common key, as ``DataFrame.merge`` on the keys gives them."""
    outlook, crm = _emails(o_values), _emails(c_values)

    def long(frame: pd.DataFrame) -> pd.DataFrame:
        parts = [pd.DataFrame({"pos": np.arange(len(frame)),
                               "email": normalise_series(frame[f], email=True)}) for f in frame]
        return pd.concat(parts).dropna()

    want = long(outlook).merge(long(crm), on="email", suffixes=("_o", "_c"))
    got_o, got_c = _same_email(outlook, crm)
    assert sorted(zip(got_o.tolist(), got_c.tolist(), strict=True)) == sorted(
        zip(want["pos_o"].tolist(), want["pos_c"].tolist(), strict=True))


PARTS = st.lists(
    st.tuples(st.sampled_from(sorted(OP_ORDER)), st.integers(0, 4), st.booleans()), max_size=8)


@settings(max_examples=200, deadline=None)
@given(PARTS)
def test_actions_frame_equals_the_concatenation_of_one_frame_per_part(parts):
    """concat_actions: the rows of every part, parts in OP_ORDER (stable), each column
    as make_actions was given it, missing ones None, all object dtype."""
    made, frames = [], []
    for k, (kind, n, with_values) in enumerate(parts):
        side, op = kind.split(":")
        ids = np.array([f"C{k}-{i}" for i in range(n)], dtype=object)
        values = {"job_title": np.array([f"T{i}" for i in range(n)], dtype=object)} if with_values else None
        made.append(make_actions(side, op, "R8", "because " + ids, n, crm_id=ids, fields="job_title",
                                 values=values))
        frame = pd.DataFrame({c: [None] * n for c in ACTION_COLUMNS}, dtype=object)
        frame["action_id"] = f"{side}:{op}:" + ids + ":"
        frame["side"], frame["op"], frame["rule"] = side, op, "R8"
        frame["reason"], frame["crm_id"], frame["fields"] = "because " + ids, ids, "job_title"
        if with_values:
            frame["job_title"] = values["job_title"]
        frames.append((OP_ORDER[kind], k, frame))
    got = concat_actions(made)
    ordered = [f for _, _, f in sorted(frames, key=lambda t: (t[0], t[1])) if len(f)]
    if not ordered:
        assert got.empty and list(got.columns) == list(ACTION_COLUMNS)
        return
    want = pd.concat(ordered, ignore_index=True).astype(object)
    want = want.where(want.notna(), None)
    pd.testing.assert_frame_equal(got, want)
    assert set(got.dtypes) == {np.dtype(object)} and len(FIELDS) + 12 == got.shape[1]


IDS = st.sampled_from(["C1", "C2", "c1", "C1 ", "AAkALgAA-x=", "", None])


@settings(max_examples=300, deadline=None)
@given(st.lists(IDS, unique=True, max_size=6), st.lists(IDS, max_size=8), st.booleans())
def test_positions_and_member_equal_the_index_and_isin(ids, targets, same_column):
    """frames.positions / member (the links' rows in the cycle's frames, issue 15) say
    what ``pd.Index.get_indexer`` and ``Series.isin`` say, on the same column or not."""
    from contactsync.plan.frames import member, positions

    if same_column:
        targets = list(ids)
    a, b = np.array(ids, dtype=object), np.array(targets, dtype=object)
    # (ids are keys, never missing: the Index finds a missing target in [None] but not
    # in ["C1", None]; positions finds it nowhere)
    present = np.array([v for v in ids if v is not None], dtype=object)
    want = pd.Index(present, dtype=object).get_indexer(b)
    want[pd.isna(b)] = -1
    assert positions(present, b).tolist() == want.tolist()
    if same_column:
        assert positions(present, present).tolist() == list(range(len(present)))
    assert member(b, a).tolist() == pd.Series(b, dtype=object).isin(a).tolist()
    assert member(a, b).tolist() == pd.Series(a, dtype=object).isin(b).tolist()
