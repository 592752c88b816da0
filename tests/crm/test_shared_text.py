"""The CRM read's repeating texts (company, city, job title...) as one object per distinct
value (issue 15 goal 3: memory), with every value as the driver gave it."""

from __future__ import annotations

import pandas as pd
import sqlalchemy as sa

from contactsync.crm.extract import CrmReader
from contactsync.crm.values import REPEATING_TEXT, shared

from .conftest import GROUP, LEE


def _fresh(*values: object) -> pd.Series:
    """Equal texts as distinct objects, as a driver returns them row by row."""
    return pd.Series(["".join(list(v)) if isinstance(v, str) else v for v in values], dtype=object)


def test_equal_texts_become_one_object_and_none_stays() -> None:
    values = _fresh("Acme", "Acme", None, "Acme", "Globex", "Globex", None, "Acme")
    assert values[0] is not values[1]
    out = shared(values)
    assert out.tolist() == values.tolist()
    assert out.dtype == object and out.index.equals(values.index)
    assert out[0] is out[1] is out[3] is out[7] and out[4] is out[5]
    assert out[2] is None and out[6] is None


def test_mostly_distinct_or_not_text_is_left_as_given() -> None:
    distinct = _fresh("a", "b", "c", "a")
    assert shared(distinct) is distinct
    numbers = pd.Series([1, 1.0, True, 1, "x", "x"], dtype=object)  # hashing would merge the first three
    out = shared(numbers)
    assert [type(v) for v in out] == [int, float, bool, int, str, str]
    empty = pd.Series([None, None], dtype=object)
    assert shared(empty).tolist() == [None, None]


def test_group_read_shares_the_repeating_texts(crm_engine: sa.Engine) -> None:
    frame = CrmReader(crm_engine, schema=None, user_id=LEE).extract_group(GROUP)
    assert len(frame) > 0
    repeating = [c for c in REPEATING_TEXT if frame[c].nunique() * 2 <= len(frame) and frame[c].notna().any()]
    assert repeating  # the demo group repeats its companies and cities
    for column in repeating:
        first: dict[str, str] = {}
        for value in frame[column].dropna():
            assert first.setdefault(value, value) is value, column
