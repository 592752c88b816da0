"""An edit in the middle of a large, otherwise unchanged group is read, and it changes the
settled fingerprint (contactsync.cycle.settled, R17), on both read paths: SQLite through
the driver's tuples (one C pass, a frame that is a view of it) and PostgreSQL through ADBC.
Also: the fingerprint depends on the values only, never on how their strings were made
(marshal format 0), so a fingerprint recorded by one process compares in the next."""

# SIM300 mistakes the CRM's upper-case column names for constants.
# ruff: noqa: SIM300

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime

import pandas as pd
import sqlalchemy as sa

from contactsync import model
from contactsync.crm import demo
from contactsync.crm.extract import CrmReader
from contactsync.crm.schema import crm_tables
from contactsync.cycle.settled import fingerprint
from contactsync.plan.schema import PlanSettings

T = crm_tables(None)
N = 1_200
MIDDLE = f"CGRPA{N // 2:07d}"
KEYS = {"user": demo.LEE, "group": demo.GROUP_NAME, "folder": "CRM Contacts"}


def _grow_group(engine: sa.Engine) -> None:
    """N more members of Lee's group, each with an address, owned by Everyone."""
    now = datetime(2025, 6, 1, 12, 0, 0, 123456)
    ids = [f"CGRPA{i:07d}" for i in range(N)]
    with engine.begin() as conn:
        conn.execute(sa.insert(T.contact), [
            {"CONTACTID": c, "ACCOUNTID": demo.aid(1 + i % 7), "ACCOUNT": "x", "FIRSTNAME": f"F{i}",
             "LASTNAME": f"L{i}", "EMAIL": f"p{i}@grp.example", "TITLE": "Buyer", "ADDRESSID": f"aGRPA{i:07d}",
             "SECCODEID": demo.EVERYONE, "CREATEDATE": now, "MODIFYDATE": now}
            for i, c in enumerate(ids)])
        conn.execute(sa.insert(T.address), [
            {"ADDRESSID": f"aGRPA{i:07d}", "ENTITYID": c, "ADDRESS1": f"{i} Main St ",
             "ADDRESS2": "Floor 2" if i % 3 == 0 else None, "CITY": "Town", "MODIFYDATE": now}
            for i, c in enumerate(ids)])
        conn.execute(sa.insert(T.adhocgroup), [{"GROUPID": demo.LEE_GROUP, "ENTITYID": c} for c in ids])


def _read(engine: sa.Engine) -> tuple[pd.DataFrame, str]:
    frame = model.compact_emails(CrmReader(engine, schema=None, user_id=demo.LEE).extract_group(demo.GROUP_NAME))
    return frame, fingerprint(frame, PlanSettings(), **KEYS)


def _row(frame: pd.DataFrame, crm_id: str) -> pd.Series:
    return frame.set_index(frame["crm_id"].str.rstrip()).loc[crm_id]


def test_an_edit_in_the_middle_of_a_large_group_is_read_and_changes_the_fingerprint(crm_engine: sa.Engine) -> None:
    _grow_group(crm_engine)
    before, fp_before = _read(crm_engine)
    assert len(before) == N + 9  # the demo group: 10 members, 9 of them visible to Lee (R1)
    again, fp_again = _read(crm_engine)
    assert fp_again == fp_before  # an unchanged group: the same fingerprint, read after read
    pd.testing.assert_frame_equal(again, before)
    # the lines joined, only the street's own trailing blanks stripped (str.rstrip)
    assert _row(before, MIDDLE)["street"] == f"{N // 2} Main St \nFloor 2"
    assert _row(before, f"CGRPA{N // 2 + 1:07d}")["street"] == f"{N // 2 + 1} Main St"

    seen = {fp_before}
    edits = [  # each leaves every MODIFYDATE alone (R17: still a change)
        ("title", sa.update(T.contact).where(T.contact.c.CONTACTID == MIDDLE).values(TITLE="Head Buyer"),
         "job_title", "Head Buyer"),
        ("street", sa.update(T.address).where(T.address.c.ENTITYID == MIDDLE).values(ADDRESS3="Wing B"),
         "street", f"{N // 2} Main St \nFloor 2\nWing B"),
        ("read-only (R1)", sa.update(T.contact).where(T.contact.c.CONTACTID == MIDDLE)
         .values(SECCODEID=demo.MARKETING), "read_only", True),
    ]
    for what, stmt, column, value in edits:
        with crm_engine.begin() as conn:
            conn.execute(stmt)
        after, fp_after = _read(crm_engine)
        assert _row(after, MIDDLE)[column] == value, what
        others = after["crm_id"].str.rstrip() != MIDDLE
        pd.testing.assert_frame_equal(after[others].reset_index(drop=True),
                                      before[(before["crm_id"].str.rstrip() != MIDDLE)].reset_index(drop=True))
        assert fp_after not in seen, what
        seen.add(fp_after)


def _strings_made_anew(frame: pd.DataFrame) -> pd.DataFrame:
    """The same values, every string a new object (interned ones too)."""
    copy = frame.copy(deep=True)
    for column in copy.columns:
        if copy[column].dtype == object:
            copy[column] = pd.Series([v if not isinstance(v, str) else "".join(list(v)) for v in copy[column]],
                                     dtype=object)
    return copy


def test_the_fingerprint_depends_on_the_values_not_on_how_they_were_made() -> None:
    rows = [{"crm_id": f"C{i:03d}", "first_name": "Ana" if i % 2 else sys.intern("Ana"), "last_name": "",
             "job_title": None, "email1": f"a{i}@x.example", "street": "1 Way\n2", "company": "Acme"}
            for i in range(50)]
    frame = model.conform(pd.DataFrame(rows), model.CRM_COLUMNS)
    anew = _strings_made_anew(frame)
    assert fingerprint(anew, PlanSettings(), **KEYS) == fingerprint(frame, PlanSettings(), **KEYS)
    # an empty text, a missing one and the text "None" are three values
    variants = {fingerprint(frame.assign(last_name=[v] * len(frame)), PlanSettings(), **KEYS)
                for v in ("", None, "None")}
    assert len(variants) == 3


def test_a_fingerprint_made_in_another_process_is_the_same() -> None:
    """The previous run's fingerprint was made by another process: it must compare equal
    for the same frame (no per-process hash seed or object identity in it)."""
    code = (
        "import json, pandas as pd; from contactsync import model; "
        "from contactsync.cycle.settled import fingerprint; from contactsync.plan.schema import PlanSettings; "
        f"rows = [{{'crm_id': f'C{{i:03d}}', 'first_name': 'Ana', 'email1': f'a{{i}}@x', 'city': None}} for i in range(40)]; "
        "frame = model.conform(pd.DataFrame(rows), model.CRM_COLUMNS); "
        f"print(json.dumps(fingerprint(frame, PlanSettings(), **{KEYS!r})))"
    )
    made = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                     env={"PYTHONHASHSEED": "12345"}).stdout)  # another seed than this process's
    rows = [{"crm_id": f"C{i:03d}", "first_name": "Ana", "email1": f"a{i}@x", "city": None} for i in range(40)]
    here = fingerprint(model.conform(pd.DataFrame(rows), model.CRM_COLUMNS), PlanSettings(), **KEYS)
    assert made == here


def test_the_rows_read_in_batches_make_the_same_frame(crm_engine: sa.Engine, monkeypatch) -> None:
    """The driver's rows are fetched FETCH_ROWS at a time into one array (crm/rows.py):
    batches of 500, a last one part full, give the frame one fetch gives."""
    from contactsync.crm import rows

    _grow_group(crm_engine)
    whole, fp_whole = _read(crm_engine)
    monkeypatch.setattr(rows, "FETCH_ROWS", 500)
    batched, fp_batched = _read(crm_engine)
    pd.testing.assert_frame_equal(batched, whole)
    assert fp_batched == fp_whole and len(whole) == N + 9
