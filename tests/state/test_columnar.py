"""Links and mirror kept as a columnar base + the rows changed since (issue 15).

What a user relies on: whatever sequence of saves, unlinks, status changes and Outlook
deletes the cycles make, the store gives back exactly the rows a plain table would hold,
in key order, whether the delta was folded into the base (compaction) or not; a store
written by version 2 (rows only) opens with every row; the blob codec keeps every value
(None, Unicode, separators, line breaks, times) as it was.
"""

from __future__ import annotations

import json
import zlib

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contactsync.model import FIELDS, OUTLOOK_COLUMNS, conform
from contactsync.plan.schema import LINK_COLUMNS
from contactsync.state import StateStore, blobs, key_order, meta_table
from contactsync.state.columnar import Reader, decode, encode, encode_columns
from contactsync.state.rows import bulk_insert, iso_series, now_iso, tuples
from contactsync.state.schema import blobs_table, segments_table

from .conftest import USER

TEXT = st.one_of(st.none(), st.text(st.sampled_from(list("aZé \n\r\x1f\x1e~,\"")), max_size=5))
IDS = st.sampled_from([f"C{i}" for i in range(8)])
OUTLOOK_IDS = st.sampled_from([f"O{i}" for i in range(8)])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(TEXT, TEXT), max_size=20))
def test_codec_round_trip_keeps_every_value(values):
    times = pd.to_datetime(pd.Series([1_700_000_000 + i if i % 3 else None for i in range(len(values))],
                                     dtype="float64"), unit="s", utc=True)
    frame = pd.DataFrame({"a": [v[0] for v in values], "b": [v[1] for v in values]}, dtype=object)
    frame["t"] = times
    back = decode(encode(frame, times=("t",)))
    assert back["a"].tolist() == frame["a"].tolist() and back["b"].tolist() == frame["b"].tolist()
    assert back["t"].isna().tolist() == frame["t"].isna().tolist()
    assert (back["t"].dropna() == frame["t"].dropna()).all()
    assert back.dtypes["a"] is np.dtype(object) and str(back.dtypes["t"]) == "datetime64[ns, UTC]"


def _version_1(frame: pd.DataFrame, times: tuple[str, ...]) -> bytes:
    """A blob as the store wrote it before format 2: header and bodies in one zlib
    stream, the missing positions of a text column listed in the header."""
    header: dict = {"version": 1, "rows": len(frame), "columns": []}
    bodies = []
    for name in frame.columns:
        if name in times:
            ns = frame[name].dt.tz_convert(None).to_numpy(dtype="datetime64[ns]").view(np.int64)
            meta, body = {"kind": "time"}, ns.astype(">i8").tobytes()
        else:
            values = frame[name].tolist()
            meta = {"kind": "text", "missing": [i for i, v in enumerate(values) if v is None]}
            body = "\x1f".join("" if v is None else v for v in values).encode()
        header["columns"].append({"name": name, **meta, "bytes": len(body)})
        bodies.append(body)
    head = json.dumps(header).encode()
    return zlib.compress(len(head).to_bytes(8, "big") + head + b"".join(bodies))


def test_blobs_written_in_format_1_still_read_back_whole_or_by_column():
    """A store folded by migration 4 before format 2 holds version-1 blobs: they must
    keep reading, all columns or only some (the R7 move check reads two)."""
    frame = pd.DataFrame({"crm_id": ["C1", "C2", "C3"], "outlook_id": ["O1", None, "O3"],
                          "city": [None, "Zürich", "a\nb"]}, dtype=object)
    frame["t"] = pd.to_datetime(["2026-01-01T10:00:00Z", None, "2026-03-01T00:00:00Z"], utc=True)
    old = _version_1(frame, ("t",))
    pd.testing.assert_frame_equal(decode(old), decode(encode(frame, times=("t",))))
    assert decode(old)["city"].tolist() == [None, "Zürich", "a\nb"]
    assert decode(old, ("crm_id", "outlook_id")).to_dict("list") == {
        "crm_id": ["C1", "C2", "C3"], "outlook_id": ["O1", None, "O3"]}
    assert decode(encode(frame, ("t",)), ("outlook_id",))["outlook_id"].tolist() == ["O1", None, "O3"]


def _link(crm_id: str, outlook_id: str, title: str | None) -> dict:
    return {"crm_id": crm_id, "outlook_id": outlook_id, "status": "active",
            **dict.fromkeys(FIELDS), "job_title": title}


LINK_OPS = st.lists(st.one_of(
    st.tuples(st.just("save"), st.lists(st.tuples(IDS, OUTLOOK_IDS, TEXT), min_size=1, max_size=4)),
    st.tuples(st.just("remove"), st.lists(IDS, min_size=1, max_size=3)),
    st.tuples(st.just("stop"), st.lists(IDS, min_size=1, max_size=3)),
), max_size=12)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=LINK_OPS, compact_at=st.sampled_from([1, 3, 1000]))
def test_links_read_back_as_a_plain_table_would_hold_them(tmp_path_factory, monkeypatch, ops, compact_at):
    """R7 one-to-one moves, R11-R13 unlinks, R12 stopped pairs: the base + delta store
    equals a dict model after every operation, compacting often or never."""
    monkeypatch.setattr(blobs, "COMPACT_MIN", compact_at)
    store = StateStore(f"sqlite:///{tmp_path_factory.mktemp('s') / 'state.db'}")
    model: dict[str, dict] = {}
    try:
        for op, args in ops:
            if op == "save":
                rows = {c: _link(c, o, t) for c, o, t in args}  # last one per crm_id wins
                if len({r["outlook_id"] for r in rows.values()}) < len(rows):
                    continue  # two pairs of one save on one Outlook contact: not one-to-one
                store.save_pairs(USER, pd.DataFrame(list(rows.values())))
                for c, row in rows.items():
                    model = {k: v for k, v in model.items() if v["outlook_id"] != row["outlook_id"]}
                    model[c] = row
            elif op == "remove":
                assert store.remove_links(USER, args) == len(set(args) & set(model))
                for c in args:
                    model.pop(c, None)
            else:
                assert store.set_status(USER, args, "stopped") == len(set(args) & set(model))
                for c in set(args) & set(model):
                    model[c] = {**model[c], "status": "stopped"}
            got = store.load_links(USER)
            assert list(got.columns) == list(LINK_COLUMNS)
            assert got["crm_id"].tolist() == sorted(model)
            want = [[model[c][k] for k in LINK_COLUMNS] for c in sorted(model)]
            assert got.to_numpy(dtype=object).tolist() == want
    finally:
        store.close()


def _contact(outlook_id: str, city: str | None) -> dict:
    return {"outlook_id": outlook_id, "change_key": "ck", "crm_tag": None,
            "outlook_created": pd.Timestamp("2026-01-01", tz="UTC"),
            "outlook_modified": pd.Timestamp("2026-01-02 10:00", tz="UTC"),
            **dict.fromkeys(FIELDS), "city": city}


MIRROR_OPS = st.lists(st.tuples(
    st.booleans(),  # full read
    st.lists(st.tuples(OUTLOOK_IDS, TEXT), max_size=4),
    st.lists(OUTLOOK_IDS, max_size=3),
), max_size=10)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=MIRROR_OPS, compact_at=st.sampled_from([1, 3, 1000]))
def test_mirror_reads_back_as_a_plain_table_would_hold_it(tmp_path_factory, monkeypatch, ops, compact_at):
    monkeypatch.setattr(blobs, "COMPACT_MIN", compact_at)
    store = StateStore(f"sqlite:///{tmp_path_factory.mktemp('m') / 'state.db'}")
    model: dict[str, dict] = {}
    try:
        for k, (full, changed, removed) in enumerate(ops):
            rows = {o: _contact(o, c) for o, c in changed}
            frame = pd.DataFrame(list(rows.values()), columns=list(OUTLOOK_COLUMNS))
            if full:
                store.save_outlook(USER, "F", f"t{k}", frame=frame, full=True)
                model = dict(rows)
            else:
                store.save_outlook(USER, "F", f"t{k}", changed=frame, removed_ids=removed)
                for o in removed:
                    model.pop(o, None)
                model.update(rows)
            link, got = store.load_outlook(USER, "F")
            assert link == f"t{k}"
            assert got["outlook_id"].tolist() == sorted(model)
            assert got["city"].tolist() == [model[o]["city"] for o in sorted(model)]
            assert (got["outlook_modified"] == pd.Timestamp("2026-01-02 10:00", tz="UTC")).all()
    finally:
        store.close()


def _as_rows(conn: sa.Connection, kind: blobs.Kind, user: str, folder: str, frame: pd.DataFrame) -> None:
    """Rows as a version 2-4 program wrote them to the row tables (times as ISO text)."""
    frame = frame.copy()
    for col in kind.times:
        frame[col] = iso_series(frame[col])
    lead = {"crm_user": user, **({"folder_id": folder} if kind is blobs.MIRROR else {"updated_at": now_iso()})}
    rows = tuples(frame, kind.columns, *lead.values())
    bulk_insert(conn, kind.table, (*lead, *kind.columns), rows)


def test_a_version_2_store_is_folded_into_blobs_and_keeps_every_row(store_url: str) -> None:
    """Migration 4: the rows an older program wrote become each user's base."""
    store = StateStore(store_url)
    links = pd.DataFrame([_link(f"C{i}", f"O{i}", f"T{i}") for i in range(5)])
    store.save_pairs(USER, links)
    store.save_outlook(USER, "F", "tok", frame=pd.DataFrame([_contact(f"O{i}", "Oslo") for i in range(4)]),
                       full=True)
    before_links, (_, before_mirror) = store.load_links(USER), store.load_outlook(USER, "F")
    store.close()
    engine = sa.create_engine(store_url)
    with engine.begin() as conn:  # what version 2 left: the same data as rows, no blobs
        link_rows, mirror_rows = blobs.read(conn, blobs.LINKS, USER), blobs.read(conn, blobs.MIRROR, USER, "F")
        conn.execute(sa.delete(blobs_table))
        conn.execute(sa.delete(segments_table))
        _as_rows(conn, blobs.LINKS, USER, "", link_rows)
        _as_rows(conn, blobs.MIRROR, USER, "F", mirror_rows)
        conn.execute(sa.text("DROP TABLE state_blobs"))
        conn.execute(sa.text("DROP TABLE state_segments"))
        conn.execute(sa.update(meta_table).values(value="2"))
    engine.dispose()
    store = StateStore(store_url)
    try:
        with store.engine.connect() as conn:
            assert blobs.base_rows(conn, blobs.LINKS, USER) == 5
            assert blobs.base_rows(conn, blobs.MIRROR, USER, "F") == 4
            assert blobs.delta_rows(conn, blobs.LINKS, USER) == 0
        pd.testing.assert_frame_equal(store.load_links(USER), before_links)
        pd.testing.assert_frame_equal(store.load_outlook(USER, "F")[1], before_mirror)
    finally:
        store.close()


@pytest.mark.parametrize("n", [0, 1, 2500])
def test_delta_rows_are_folded_once_past_a_tenth_of_the_base(store: StateStore, n: int) -> None:
    """A 1 % cycle writes its rows to the delta; a big one rewrites the base."""
    base = pd.DataFrame([_link(f"C{i:05d}", f"O{i:05d}", "t") for i in range(30_000)])
    store.save_pairs(USER, base)
    changed = base.iloc[np.arange(n) * 7].assign(job_title="new")
    store.save_pairs(USER, changed)
    with store.engine.connect() as conn:
        in_delta = blobs.delta_rows(conn, blobs.LINKS, USER)
    assert in_delta == (n if n <= blobs.compact_limit(30_000) else 0)
    assert (store.load_links(USER)["job_title"] == "new").sum() == n


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(OUTLOOK_IDS, TEXT), min_size=1, max_size=6), st.booleans())
def test_a_delta_of_known_keys_merges_in_place_as_the_general_merge_does(edits, links):
    """The 1 %-edits case (every delta row replaces a base row of its key) takes a short
    path: its result must equal the general merge's, times and all, row for row; for links
    a move of an Outlook contact to another CRM id (R7) must still drop the old holder."""
    kind = blobs.LINKS if links else blobs.MIRROR
    ids = [f"O{i}" for i in range(8)]
    if links:
        base = pd.DataFrame([_link(f"C{i}", o, f"t{i}") for i, o in enumerate(ids)]).reindex(
            columns=list(LINK_COLUMNS)).astype(object)
        delta = pd.DataFrame([_link(f"C{o[1:]}" if k % 2 else f"C{(int(o[1:]) + 1) % 8}", o, t)
                              for k, (o, t) in enumerate(edits)])
        delta = delta.drop_duplicates("crm_id", keep="last").drop_duplicates("outlook_id", keep="last")
        delta = delta.reindex(columns=list(LINK_COLUMNS)).astype(object).sort_values("crm_id")
    else:
        base = pd.DataFrame([_contact(o, f"c{i}") for i, o in enumerate(ids)]).reindex(
            columns=list(OUTLOOK_COLUMNS))
        delta = pd.DataFrame([_contact(o, t) for o, t in edits]).drop_duplicates(
            "outlook_id", keep="last").reindex(columns=list(OUTLOOK_COLUMNS)).sort_values("outlook_id")
        for col in blobs.OUTLOOK_TIMES:
            base[col] = pd.to_datetime(base[col], utc=True)
            delta[col] = pd.to_datetime(delta[col], utc=True) + pd.Timedelta(minutes=5)
    base, delta = conform(base, kind.columns), conform(delta, kind.columns)  # as the store reads them
    fast = blobs.merged(base, delta, kind)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(key_order, "rows_replaced_in_place", lambda *a: None)
        general = blobs.merged(base, delta, kind)
    pd.testing.assert_frame_equal(fast, general)


def test_mostly_empty_columns_are_kept_sparse_and_read_back_whole_or_by_column():
    """A column empty in most contacts is stored as its values present (``sparse``): the
    same values come back, alone or beside the others, empty and full columns too."""
    n = 1_000
    frame = pd.DataFrame({
        "crm_id": [f"C{i:04d}" for i in range(n)],
        "spouse": [None] * n,
        "middle_name": ["Jo" if i % 7 == 0 else None for i in range(n)],
        "city": ["a\x1fb" if i == 3 else None for i in range(n)],  # the separator itself: JSON
    }, dtype=object)
    blob = encode(frame)
    head = json.loads(blob[len(b"CSB2") + 8 : len(b"CSB2") + 8 + int.from_bytes(blob[4:12], "big")])
    assert {c["name"]: c["kind"] for c in head["columns"]} == {
        "crm_id": "text", "spouse": "sparse", "middle_name": "sparse", "city": "json"}
    back = decode(blob)
    assert back.to_dict("list") == frame.to_dict("list")
    assert decode(blob, ("middle_name",))["middle_name"].tolist() == frame["middle_name"].tolist()
    assert decode(encode(frame.iloc[:0])).empty


def test_version_3_codes_few_distinct_values_and_version_2_blobs_still_read():
    """Format 3 (LZ4, ``dict`` columns for few distinct values): every value back, None
    included, each distinct value one shared object; a version-2 blob (zlib, what stores
    written before hold until their next compaction) reads back the same frame."""
    n = 400
    frame = pd.DataFrame({
        "id": [f"O{i:04d}" for i in range(n)],
        "city": [None if i % 7 == 0 else ("Zürich", "Oslo", "a\nb")[i % 3] for i in range(n)],
        "rare": [None] * (n - 1) + ["x"],
    }, dtype=object)
    frame["t"] = pd.to_datetime([1_700_000_000 + i for i in range(n)], unit="s", utc=True)
    new, old = encode(frame, times=("t",)), encode_columns(
        n, ((c, frame[c]) for c in frame.columns), ("t",), version=2)
    assert new.startswith(b"CSB3") and old.startswith(b"CSB2")
    kinds = {c["name"]: c["kind"] for c in Reader(new).columns}
    assert kinds == {"id": "text", "city": "dict", "rare": "sparse", "t": "time"}
    back = decode(new)
    pd.testing.assert_frame_equal(back, decode(old))
    assert back["city"].tolist() == frame["city"].tolist() and back["id"].tolist() == frame["id"].tolist()
    oslo = back["city"][back["city"] == "Oslo"]
    assert len({id(v) for v in oslo}) == 1  # one object per distinct value
    assert decode(new, ("city",))["city"].tolist() == frame["city"].tolist()
    assert str(back.dtypes["t"]) == "datetime64[ns, UTC]" and (back["t"] == frame["t"]).all()


@pytest.mark.parametrize("kind_name", ["links", "mirror"])
def test_a_change_in_the_middle_of_a_big_unchanged_set_reads_back_without_a_compaction(
    store: StateStore, kind_name: str
) -> None:
    """Issue 15's cheaper path: a small save goes to a delta segment (the base is not
    rewritten) and reads back merged in key order: edits in the middle, a new key between
    two stored ones, and (mirror) a removed one; then, after many saves, segments stay few."""
    n = 5_000
    if kind_name == "links":
        store.save_pairs(USER, pd.DataFrame([_link(f"C{i:05d}", f"O{i:05d}", "t") for i in range(n)]))
        store.save_pairs(USER, pd.DataFrame([_link(f"C{i:05d}", f"O{i:05d}", "new") for i in (2500, 2501)]
                                            + [_link("C02500x", "O99999", "added")]))
        got = store.load_links(USER)
        kind, folder = blobs.LINKS, ""
    else:
        store.save_outlook(USER, "F", "t1", frame=pd.DataFrame([_contact(f"O{i:05d}", "c") for i in range(n)]),
                           full=True)
        store.save_outlook(USER, "F", "t2", changed=pd.DataFrame(
            [_contact(f"O{i:05d}", "new") for i in (2500, 2501)] + [_contact("O02500x", "added")]),
            removed_ids=["O04000"])
        got = store.load_outlook(USER, "F")[1]
        kind, folder = blobs.MIRROR, "F"
    with store.engine.connect() as conn:
        assert blobs.base_rows(conn, kind, USER, folder) == n  # not compacted
        assert blobs.delta_rows(conn, kind, USER, folder) == 3 + (kind is blobs.MIRROR)
    keys = got[kind.key].tolist()
    assert keys == sorted(keys) and len(keys) == n + 1 - (kind is blobs.MIRROR)
    column = "job_title" if kind is blobs.LINKS else "city"
    at = keys.index(kind.key[0].upper() + "02500")
    assert got[column].iloc[at - 1:at + 4].tolist() == ["c" if column == "city" else "t", "new", "added", "new",
                                                       "c" if column == "city" else "t"]
    assert (kind is blobs.LINKS) or "O04000" not in keys
    for k in range(40):  # many small saves: the newest segments are folded into each new one
        if kind is blobs.LINKS:
            store.save_pairs(USER, pd.DataFrame([_link(f"C{k:05d}", f"O{k:05d}", f"s{k}")]))
        else:
            store.save_outlook(USER, "F", f"u{k}", changed=pd.DataFrame([_contact(f"O{k:05d}", f"s{k}")]))
    with store.engine.connect() as conn:
        assert len(blobs._segments(conn, kind, USER, folder)) <= 7
    got = store.load_links(USER) if kind is blobs.LINKS else store.load_outlook(USER, "F")[1]
    assert got[column].iloc[:40].tolist() == [f"s{k}" for k in range(40)]
    assert got[column].iloc[40] == ("t" if kind is blobs.LINKS else "c")


def test_a_version_4_delta_in_the_row_tables_reads_back_and_moves_to_a_segment_at_the_next_save(
    store_url: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Schema 5: the rows a version-4 program left in ``links`` / ``outlook_contacts``
    (tombstones included) still read, and the next save folds them into a segment."""
    store = StateStore(store_url)
    with monkeypatch.context() as m:  # the bases alone, no segment: what version 4 kept
        m.setattr(blobs, "COMPACT_MIN", 1)
        store.save_pairs(USER, pd.DataFrame([_link(f"C{i}", f"O{i}", "t") for i in range(6)]))
    store.save_outlook(USER, "F", "tok", frame=pd.DataFrame([_contact(f"O{i}", "Oslo") for i in range(6)]),
                       full=True)
    engine = sa.create_engine(store_url)
    with engine.begin() as conn:  # what a version-4 save left: rows in the row tables
        _as_rows(conn, blobs.LINKS, USER, "", conform(pd.DataFrame([_link("C2", "O2", "v4")]), LINK_COLUMNS))
        mirror = pd.DataFrame([_contact("O3", "Bergen"), {"outlook_id": "O4", "change_key": blobs.MIRROR_GONE}])
        _as_rows(conn, blobs.MIRROR, USER, "F", conform(mirror, OUTLOOK_COLUMNS))
    engine.dispose()
    try:
        links, mirror = store.load_links(USER), store.load_outlook(USER, "F")[1]
        assert links.set_index("crm_id")["job_title"].to_dict() == {**{f"C{i}": "t" for i in range(6)}, "C2": "v4"}
        assert mirror.set_index("outlook_id")["city"].to_dict() == {
            "O0": "Oslo", "O1": "Oslo", "O2": "Oslo", "O3": "Bergen", "O5": "Oslo"}
        store.save_pairs(USER, pd.DataFrame([_link("C5", "O5", "later")]))
        store.save_outlook(USER, "F", "tok2", changed=pd.DataFrame([_contact("O0", "later")]))
        with store.engine.connect() as conn:
            for kind, folder in ((blobs.LINKS, ""), (blobs.MIRROR, "F")):
                assert blobs._legacy_rows(conn, kind, USER, folder) == 0
                assert len(blobs._segments(conn, kind, USER, folder)) == 1
        links, mirror = store.load_links(USER), store.load_outlook(USER, "F")[1]
        assert links.set_index("crm_id")["job_title"].to_dict() == {
            **{f"C{i}": "t" for i in range(6)}, "C2": "v4", "C5": "later"}
        assert mirror.set_index("outlook_id")["city"].to_dict() == {
            "O0": "later", "O1": "Oslo", "O2": "Oslo", "O3": "Bergen", "O5": "Oslo"}
    finally:
        store.close()
