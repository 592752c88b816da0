"""The CRM read through ADBC (crm/arrow_read.py, crm/arrow_frame.py) gives exactly the frame
SQLAlchemy's driver gives: dtypes, None, times, read_only, street (issue 15 goals 2, 3).

The tests of test_extract.py (R1, R2, R5b, R7, R9, R13) and test_roundtrip.py run with
the default reader, so on PostgreSQL they already run through ADBC; here the two ways are
held equal value for value on the same database, and the way each engine reads is pinned.
"""

# SIM300 mistakes the CRM's upper-case column names for constants.
# ruff: noqa: SIM300

from __future__ import annotations

import logging
import sys
from datetime import datetime
from itertools import count
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contactsync import model
from contactsync.crm import arrow_frame, arrow_read, demo
from contactsync.crm import extract as extract_mod
from contactsync.crm.extract import CrmReader, street_from_lines, to_utc
from contactsync.crm.load import CrmWriter
from contactsync.crm.schema import crm_tables
from contactsync.db import make_engine
from contactsync.plan.schema import ACTION_COLUMNS

from .conftest import GROUP, LEE, SAM
from .test_roundtrip import CONTACT

T = crm_tables(None)
_ids = count()


def _both(engine: sa.Engine, user: str = LEE) -> tuple[CrmReader, CrmReader]:
    """The ADBC reader and the SQLAlchemy one, on PostgreSQL (SQLite has only the latter)."""
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite reads through SQLAlchemy only: there is no second way to compare")
    return (CrmReader(engine, schema=None, user_id=user),
            CrmReader(engine, schema=None, user_id=user, arrow=False))


def _same(got: pd.DataFrame, want: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(got, want)
    assert got.dtypes.equals(want.dtypes)
    for col in got.columns:  # None, never NaN, in the text columns (model.conform)
        if got[col].dtype == object:
            assert not any(isinstance(v, float) for v in got[col]), col


def _vary_the_demo(engine: sa.Engine) -> None:
    """A second street line after a gap, a NULL line, a birthday removed, an account
    modified later than its contacts: the values the frame building converts."""
    c, ad, a = T.contact, T.address, T.account
    with engine.begin() as conn:
        ana_address = sa.select(c.c.ADDRESSID).where(c.c.CONTACTID == demo.cid(1)).scalar_subquery()
        conn.execute(sa.update(ad).where(ad.c.ADDRESSID == ana_address).values(
            ADDRESS1="1 Way ", ADDRESS2="", ADDRESS3="Floor 3\t", ADDRESS4=None,
            MODIFYDATE=datetime(2026, 3, 1, 12, 30, 15, 250000)))
        conn.execute(sa.update(c).where(c.c.CONTACTID == demo.cid(2)).values(BIRTHDAY=None, MIDDLENAME=""))
        conn.execute(sa.update(a).where(a.c.ACCOUNTID == demo.aid(1)).values(MODIFYDATE=datetime(2026, 4, 1)))


def test_each_engine_reads_the_way_it_can_safely(crm_engine: sa.Engine) -> None:
    """PostgreSQL through ADBC; SQLite through sqlite3 (two SQLite copies in one process
    break each other's locks: arrow_read's docstring); the choice is kept per engine."""
    reader = CrmReader(crm_engine, schema=None, user_id=LEE)
    if crm_engine.dialect.name == "postgresql":
        assert reader.arrow is not None
        assert arrow_read.source_for(crm_engine) is reader.arrow
    else:
        assert reader.arrow is None
    assert CrmReader(crm_engine, schema=None, user_id=LEE, arrow=False).arrow is None


def test_without_the_arrow_extra_postgresql_reads_through_sqlalchemy_to_the_same_frame(
    crm_engine: sa.Engine, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The default install has no ADBC driver (pyproject.toml's ``arrow`` extra): the
    engine's reads then go through SQLAlchemy, to the frame ADBC gives, and say so once."""
    with_adbc, _ = _both(crm_engine)
    want, want_gid = with_adbc.read_group(GROUP)
    for name in ("adbc_driver_postgresql", "adbc_driver_postgresql.dbapi"):
        monkeypatch.setitem(sys.modules, name, None)  # import raises ImportError: not installed
    engine = make_engine(crm_engine.url.render_as_string(hide_password=False))  # a new engine: decided anew
    try:
        caplog.set_level(logging.INFO, logger=arrow_read.__name__)
        reader = CrmReader(engine, schema=None, user_id=LEE)
        assert reader.arrow is None and arrow_read.source_for(engine) is None
        got, got_gid = reader.read_group(GROUP)
    finally:
        engine.dispose()
    _same(got, want)
    assert got_gid == want_gid and len(got) > 0
    assert any("no ADBC driver installed" in r.getMessage() for r in caplog.records)


def test_the_group_read_equals_the_sqlalchemy_read_exactly(crm_engine: sa.Engine) -> None:
    _vary_the_demo(crm_engine)
    new, old = _both(crm_engine)
    got, got_gid = new.read_group(GROUP)
    want, want_gid = old.read_group(GROUP)
    _same(got, want)
    assert got_gid == want_gid == demo.LEE_GROUP
    ana = got.set_index("crm_id").loc[demo.cid(1)]
    assert ana["street"] == "1 Way \n\nFloor 3"  # trailing blanks go at the end only
    assert ana["crm_modified"] == pd.Timestamp("2026-04-01", tz="UTC")  # R9: the account's time
    assert got.set_index("crm_id").loc[demo.cid(8), "read_only"]  # R1: Lee has 'R' on Marketing
    # the second read knows the group's id: the plain member read, still equal
    _same(new.read_group(GROUP)[0], old.read_group(GROUP)[0])


@pytest.mark.parametrize("scan", [False, True], ids=["in-lists", "one-scan"])
def test_candidates_and_accounts_equal_the_sqlalchemy_reads(
    crm_engine: sa.Engine, scan: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if scan:  # the first sync's way (thousands of emails): one scan of the visible emails
        monkeypatch.setattr(extract_mod, "SCAN_THRESHOLD", 0)
    _vary_the_demo(crm_engine)
    emails = ["  ANA.LOPEZ@contoso.example", "info@fabrikam.example", "jonas.weber@proseware.example"]
    for user in (LEE, SAM):
        new, old = _both(crm_engine, user)
        assert new.group_id(GROUP) == old.group_id(GROUP)
        _same(new.candidates_by_email(emails), old.candidates_by_email(emails))
        names = ["Contoso Ltd", "contoso ltd", "Fabrikam Inc", "Nobody"]
        _same(new.accounts_by_name(names), old.accounts_by_name(names))


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(contacts=st.lists(CONTACT, min_size=1, max_size=4))
def test_written_contacts_read_back_equal_both_ways(
    lee_writer: CrmWriter, crm_engine: sa.Engine, contacts: list[dict[str, Any]]
) -> None:
    """Any text, street and birthday the writer stores (test_roundtrip's strategy) reads
    back the same through ADBC as through SQLAlchemy."""
    rows = []
    for values in contacts:
        n = next(_ids)
        rows.append({"action_id": f"ar{n}", "side": "crm", "op": "create", "new_key": f"new:ar{n}",
                     "account_id": demo.aid(1), "fields": ",".join(values), **values})
    created = lee_writer.apply(pd.DataFrame(rows).reindex(columns=list(ACTION_COLUMNS)),
                               group_id=demo.LEE_GROUP)
    assert (created["status"] == "applied").all(), created["error"].tolist()
    new, old = _both(crm_engine)
    _same(new.extract_group(GROUP), old.extract_group(GROUP))


# --- the frame building on its own (no database) -----------------------------------------
LINE = st.one_of(st.none(), st.text(st.sampled_from(
    ["a", "1", " ", "\t", "\x0b", "\x0c", "\r", "\x1c", "\x1f", "\x85", "\xa0", "\u2003", "\u2028",
     "\u3000", "\u200b", "é"]), max_size=4))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(LINE, LINE, LINE, LINE), min_size=1, max_size=10))
def test_street_in_arrow_equals_street_in_pandas(rows: list[tuple]) -> None:
    """Trailing whitespace is what Python's str.rstrip() removes, Unicode's included."""
    names = ["_ADDRESS1", "_ADDRESS2", "_ADDRESS3", "_ADDRESS4"]
    lines = pd.DataFrame(rows, columns=names, dtype=object)
    table = pa.table({n: pa.array(lines[n].tolist(), type=pa.string()) for n in names})
    assert arrow_frame.street(table, names).tolist() == street_from_lines(lines).tolist()


@pytest.mark.parametrize("values", [
    ["2025-06-01 12:00:00.000000", None, "2025-06-01 12:00:00"],  # SQLite's texts
    ["2025-06-01T10:00:00+02:00", "2025-06-01 08:00:00Z"],  # with offsets
    ["2025-06-01 12:00:00", "not a time", "2025-06-01"],  # mixed: pandas' parse
    [None, None],
], ids=["naive", "offsets", "mixed", "null"])
def test_times_parse_as_the_sqlalchemy_path_parses_them(values: list[str | None]) -> None:
    table = pa.table({"t": pa.array(values, type=pa.string())})
    got = arrow_frame._series_of_times(arrow_frame._times(table, "t"))
    want = to_utc(pd.Series(values, dtype=object))
    pd.testing.assert_series_equal(got, want, check_names=False)


def test_repeated_values_are_one_object() -> None:
    """issue 15 goal 3: a city over 100,000 rows is one str, not 100,000."""
    values = arrow_frame.objects(pa.chunked_array([["Town 1", None, "Town 1", "Town 2"]]))
    assert values.tolist() == ["Town 1", None, "Town 1", "Town 2"]
    assert values[0] is values[2]


# --- the connection string ----------------------------------------------------------------
def test_the_password_never_reaches_a_message(caplog: pytest.LogCaptureFixture) -> None:
    engine = sa.create_engine("postgresql+psycopg://sync:s3cr%40t-pw@127.0.0.1:9/crm")
    source = arrow_read.source_for(engine)
    assert source is not None and "s3cr" not in source.shown
    with pytest.raises(ConnectionError) as failed, source.connect():
        pass
    assert "s3cr" not in str(failed.value) and failed.value.__cause__ is None
    assert "127.0.0.1:9/crm" in str(failed.value)
    # the reader falls back to SQLAlchemy's driver (whose own error is what the user sees)
    reader = CrmReader(engine, schema=None, user_id=LEE)
    with pytest.raises(sa.exc.OperationalError):
        reader.extract_group(GROUP)
    assert any("reading through SQLAlchemy" in r.getMessage() for r in caplog.records)
    assert not any("s3cr" in r.getMessage() for r in caplog.records)


def test_values_are_bound_never_pasted_into_the_sql() -> None:
    engine = sa.create_engine("postgresql+psycopg://sync@127.0.0.1:9/crm")
    source = arrow_read.source_for(engine)
    assert source is not None
    reader = CrmReader(engine, schema=None, user_id="O'Brien")
    sql, params = source.compile(reader.group_statement("Group'; DROP TABLE CONTACT; --"))
    assert "O'Brien" not in sql and "DROP" not in sql
    assert "O'Brien     " in params and "Group'; DROP TABLE CONTACT; --" in params
    assert '"SECRIGHTS"."ACCESSID" = $' in sql and "::BPCHAR" in sql  # R1 in the SQL, CHAR-typed
    assert model.pad_user("O'Brien") == "O'Brien     "


# --- the R7 candidate read of a first sync (issue 15 goal 3) ------------------------------
@pytest.mark.parametrize("scan", [False, True], ids=["in-lists", "one-scan"])
def test_r7_candidates_outside_the_group_are_the_candidates_less_its_members(
    crm_engine: sa.Engine, scan: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cycle reads the group's members once (the group frame): the candidate read
    leaves them out, and what remains is row for row what it gave before, less them."""
    if scan:
        monkeypatch.setattr(extract_mod, "SCAN_THRESHOLD", 0)
    lee = CrmReader(crm_engine, schema=None, user_id=LEE)
    members = set(lee.extract_group(GROUP)["crm_id"])
    emails = ["ana.lopez@contoso.example", "info@fabrikam.example", "jonas.weber@proseware.example",
              " Ben.Carter@Fabrikam.example "]
    everyone = lee.candidates_by_email(emails)
    assert everyone["in_group"].any() and (~everyone["in_group"]).any()  # both kinds present
    outside = lee.candidates_by_email(emails, outside_group=True)
    assert not outside["in_group"].any() and not set(outside["crm_id"]) & members
    want = everyone[~everyone["in_group"]].reset_index(drop=True)
    pd.testing.assert_frame_equal(outside.sort_values("crm_id").reset_index(drop=True),
                                  want.sort_values("crm_id").reset_index(drop=True))
    # no group looked up by this reader: nothing to leave out
    nobody = CrmReader(crm_engine, schema=None, user_id="ADMIN")
    pd.testing.assert_frame_equal(nobody.candidates_by_email(emails, outside_group=True),
                                  nobody.candidates_by_email(emails))
