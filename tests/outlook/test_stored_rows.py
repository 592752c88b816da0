"""The mirror's rows of a delta round's ids, found on the id column alone (issue 15 goal 2):
the same answer ``drop_duplicates(keep="last").set_index`` gave, duplicates included."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from contactsync.outlook.extract import known_versions, stored_rows

IDS = st.sampled_from(["a", "b", "c", "d"])


@settings(max_examples=200, deadline=None)
@given(st.lists(IDS, max_size=8), st.lists(IDS | st.just("e"), max_size=6))
def test_stored_rows_is_the_last_row_of_each_id(stored: list[str], wanted: list[str]) -> None:
    snapshot = pd.DataFrame({"outlook_id": stored, "change_key": [f"k{n}" for n in range(len(stored))]},
                            dtype=object)
    got = stored_rows(snapshot, np.array(wanted, dtype=object))
    for oid, at in zip(wanted, got.tolist(), strict=True):
        rows = [n for n, s in enumerate(stored) if s == oid]
        assert at == (rows[-1] if rows else -1)


def test_known_versions_reads_the_key_of_the_last_stored_row() -> None:
    snapshot = pd.DataFrame({"outlook_id": ["a", "b", "a"], "change_key": ["old", "kb", "new"]}, dtype=object)
    items = [{"id": "a", "changeKey": "new"}, {"id": "a", "changeKey": "old"}, {"id": "b", "changeKey": "kb"},
             {"id": "z", "changeKey": "kb"}, {"id": "b"}]
    assert known_versions(items, snapshot).tolist() == [True, False, True, False, False]
