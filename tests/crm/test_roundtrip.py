"""FIELD_MAP.md round trip: what the writer stores, the reader returns (normalised)."""

from __future__ import annotations

from datetime import date
from itertools import count
from typing import Any

import pandas as pd
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contactsync import model
from contactsync.crm import demo
from contactsync.crm.extract import CrmReader
from contactsync.crm.load import CrmWriter
from contactsync.plan.schema import ACTION_COLUMNS

from .conftest import GROUP, LEE

TEXT = st.characters(codec="utf-8", exclude_categories=("Cc", "Cs", "Zl", "Zp"))
_ids = count()


def _value(field: str) -> st.SearchStrategy[Any]:
    if field == "birthday":
        return st.none() | st.dates(date(1900, 1, 1), date(2100, 12, 31)).map(date.isoformat)
    if field == "street":
        line = st.text(TEXT, max_size=model.STREET_LINE_LENGTH)
        return st.none() | st.lists(line, min_size=1, max_size=model.STREET_MAX_LINES).map("\n".join)
    return st.none() | st.text(TEXT, max_size=model.CRM_LENGTHS[field])


CONTACT = st.fixed_dictionaries({f: _value(f) for f in model.FIELDS if f != "company"})


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(contacts=st.lists(CONTACT, min_size=1, max_size=5))
def test_every_mapped_field_reads_back_as_written(
    lee_writer: CrmWriter, crm_engine: sa.Engine, contacts: list[dict[str, Any]]
) -> None:
    rows = []
    for values in contacts:
        n = next(_ids)
        rows.append({"action_id": f"rt{n}", "side": "crm", "op": "create", "new_key": f"new:rt{n}",
                     "account_id": demo.aid(1), "fields": ",".join(f for f in values), **values})
    created = lee_writer.apply(pd.DataFrame(rows).reindex(columns=list(ACTION_COLUMNS)), group_id=demo.LEE_GROUP)
    assert (created["status"] == "applied").all(), created["error"].tolist()
    frame = CrmReader(crm_engine, schema=None, user_id=LEE).extract_group(GROUP).set_index("crm_id")
    got = model.normalise(frame.loc[created["crm_id"].tolist()].reset_index())
    want = model.normalise(model.conform(pd.DataFrame(contacts), model.CRM_COLUMNS))
    fields = [f for f in model.FIELDS if f != "company"]
    assert got[fields].to_dict("records") == want[fields].to_dict("records")
    assert (frame.loc[created["crm_id"].tolist(), "company"] == "Contoso Ltd").all()
