"""The group read's fast frame building (issue 15 goal 2) gives what the general way gives:
``model.conform`` of the canonical frame changes nothing, and the street is the four
address lines joined as before, whatever lines are set."""

# SIM300 mistakes the CRM's upper-case column names for constants.
# ruff: noqa: SIM300

from __future__ import annotations

import pandas as pd
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from contactsync import model
from contactsync.crm.extract import CrmReader, street_from_lines
from contactsync.crm.schema import crm_tables

from .conftest import GROUP, LEE

T = crm_tables(None)


def _street_joined_everywhere(lines: pd.DataFrame) -> pd.Series:
    """The formulation before issue 15: every row's four lines joined, then trimmed."""
    filled = [lines[c].astype(object).where(lines[c].notna(), "").astype(str) for c in lines.columns]
    street = filled[0]
    for col in filled[1:]:
        street = street + "\n" + col
    street = street.str.rstrip().astype(object)
    return street.where(street != "", None)


LINE = st.one_of(st.none(), st.sampled_from(["", " ", "1 Main St", "Floor 2", "Suite 9 ", "\t"]))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(LINE, LINE, LINE, LINE), min_size=1, max_size=12))
def test_street_equals_every_line_joined(rows: list[tuple]) -> None:
    lines = pd.DataFrame(rows, columns=["_ADDRESS1", "_ADDRESS2", "_ADDRESS3", "_ADDRESS4"], dtype=object)
    assert street_from_lines(lines).tolist() == _street_joined_everywhere(lines).tolist()


def test_group_frame_is_conformed_already(crm_engine: sa.Engine) -> None:
    with crm_engine.begin() as conn:  # a second line, a gap and a NULL on one address
        conn.execute(sa.update(T.address).where(T.address.c.ADDRESSID == sa.select(
            T.contact.c.ADDRESSID).where(T.contact.c.FIRSTNAME == "Ana").scalar_subquery())
            .values(ADDRESS1="1 Way", ADDRESS2="", ADDRESS3="Floor 3", ADDRESS4=None))
    frame = CrmReader(crm_engine, schema=None, user_id=LEE).extract_group(GROUP)
    assert len(frame) > 0
    again = model.conform(frame, model.CRM_COLUMNS)
    pd.testing.assert_frame_equal(frame, again)
    assert frame.dtypes.equals(again.dtypes)
    assert frame.loc[frame["first_name"] == "Ana", "street"].item() == "1 Way\n\nFloor 3"
