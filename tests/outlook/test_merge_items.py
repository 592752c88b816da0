"""The column-wise merge of delta items over the mirror (issue 15 goal 2) equals the
row-by-row merge it replaced, for full and partial items, known and new contacts
(hypothesis): an absent property keeps the stored value, one sent as null is cleared."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from contactsync.model import OUTLOOK_COLUMNS
from contactsync.outlook.extract import _PROPERTY_COLUMNS, merge_items
from contactsync.outlook.mapping import contact_to_row, contacts_to_frame, rows_to_frame


def _row_by_row(items: list[dict], snapshot: pd.DataFrame) -> pd.DataFrame:
    """merge_items before issue 15: each stored row as a dict, merged property by property."""
    ids = [str(i.get("id")) for i in items]
    stored = snapshot[snapshot["outlook_id"].isin(ids)].drop_duplicates("outlook_id").set_index("outlook_id")
    known = stored.astype(object).where(stored.notna(), None).to_dict("index")
    rows = []
    for item, cid in zip(items, ids, strict=True):
        new = contact_to_row(item)
        old = known.get(cid)
        if old is None:
            rows.append(new)
            continue
        merged = {"outlook_id": cid, **old}
        for prop in item:
            for col in _PROPERTY_COLUMNS.get(prop, ()):
                merged[col] = new[col]
        rows.append(merged)
    return rows_to_frame(rows)


TEXT = st.one_of(st.none(), st.sampled_from(["", "Ann", "Bob", "x y"]))
PROPS = {
    "changeKey": st.sampled_from(["k1", "k2", "k3"]),
    "givenName": TEXT,
    "surname": TEXT,
    "jobTitle": TEXT,
    "lastModifiedDateTime": st.sampled_from(["2026-11-29T08:15:02Z", "2026-11-30T09:00:00.5Z", None]),
    "emailAddresses": st.lists(st.fixed_dictionaries({"address": TEXT}), max_size=3),
    "businessPhones": st.lists(st.sampled_from(["+1 1", "+1 2"]), max_size=3),
    "businessAddress": st.fixed_dictionaries({"street": TEXT, "city": TEXT}),
    "singleValueExtendedProperties": st.just([]),
}


@st.composite
def contact(draw, cid: str) -> dict:
    keys = draw(st.lists(st.sampled_from(sorted(PROPS)), unique=True))
    return {"id": cid, **{k: draw(PROPS[k]) for k in keys}}


@pytest.mark.slow  # ~1 s an example on this loaded machine
@settings(max_examples=60, deadline=None, phases=(Phase.explicit, Phase.reuse, Phase.generate))
@given(st.data())
def test_merge_items_equals_the_row_by_row_merge(data) -> None:
    stored_ids = data.draw(st.lists(st.sampled_from(["a", "b", "c", "d"]), unique=True))
    full = [{"id": i, "changeKey": "k0", "givenName": f"G{i}", "jobTitle": "T",
             "createdDateTime": "2026-11-01T00:00:00Z", "lastModifiedDateTime": "2026-11-01T00:00:00Z",
             "emailAddresses": [{"address": f"{i}@x.example"}], "businessPhones": ["+1 0", "+1 9"],
             "businessAddress": {"street": "1 Way", "city": "Leeds"}} for i in stored_ids]
    snapshot = contacts_to_frame(full)
    item_ids = data.draw(st.lists(st.sampled_from(["a", "b", "c", "d", "e"]), unique=True, min_size=1))
    items = [data.draw(contact(i)) for i in item_ids]
    got = merge_items(items, snapshot)
    want = _row_by_row(items, snapshot)
    assert list(got.columns) == list(OUTLOOK_COLUMNS)
    # The same instants; the unit of a time column (s or us) follows pandas' parsing and
    # is evened out by the concat with the mirror in apply_changes.
    for col in ("outlook_created", "outlook_modified"):
        got[col], want[col] = got[col].astype("datetime64[us, UTC]"), want[col].astype("datetime64[us, UTC]")
    pd.testing.assert_frame_equal(got, want)
