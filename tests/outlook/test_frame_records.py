"""The writer turns its plan rows into dicts with ``mapping.frame_records``: what it relies
on is that every value is the one ``DataFrame.to_dict("records")`` gives (None, NaN, NaT,
Python ints and bools, UTC Timestamps, Arrow-backed text), so no payload changes."""

from __future__ import annotations

import numpy as np
import pandas as pd

from contactsync.outlook.mapping import frame_records


def test_frame_records_equal_to_dict_records_value_for_value() -> None:
    frame = pd.DataFrame({
        "i": [1, 2, 3], "f": [1.5, np.nan, 0.0], "o": pd.Series(["a", None, "c"], dtype=object),
        "s": ["x", None, "z"], "b": [True, False, True],
        "t": pd.to_datetime(["2026-01-01", None, "2026-02-01T10:00:00Z"], utc=True, format="ISO8601"),
        "n": pd.array([1, None, 3], dtype="Int64"), "k": pd.array([True, None, False], dtype="boolean"),
    })
    want, got = frame.to_dict("records"), frame_records(frame)
    assert len(got) == len(want)
    for w, g in zip(want, got, strict=True):
        assert list(g) == list(w)
        for key in w:
            assert type(g[key]) is type(w[key]), key
            assert (pd.isna(g[key]) and pd.isna(w[key])) or g[key] == w[key], key
    assert frame_records(frame.iloc[0:0]) == []
