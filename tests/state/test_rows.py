"""Times reach the state database as sortable ISO text (state.rows.iso_series): the text a
reader parses back must be the one ``strftime`` gave, missing values None, whatever the
precision and zone the frame holds."""

from __future__ import annotations

import pandas as pd

from contactsync.state.rows import iso_series


def test_iso_series_is_the_strftime_text_and_none_for_missing() -> None:
    values = pd.Series(pd.to_datetime(
        ["2026-01-01T10:00:00.123456789Z", None, "2026-06-01T00:00:00+02:00", "1999-12-31T23:59:59Z"],
        utc=True, format="ISO8601"), index=[5, 6, 7, 8])
    want = values.dt.strftime("%Y-%m-%dT%H:%M:%S.%f+00:00").astype(object)
    got = iso_series(values)
    assert got.tolist() == [want[5], None, want[7], want[8]]
    assert got.tolist()[0] == "2026-01-01T10:00:00.123456+00:00"
    assert got.index.tolist() == [5, 6, 7, 8] and got.dtype == object
    assert iso_series(values.iloc[:0]).tolist() == []
    back = pd.to_datetime(got.dropna(), utc=True, format="ISO8601")
    assert (back == values.dropna().dt.floor("us")).all()
