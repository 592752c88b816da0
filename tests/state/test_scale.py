"""Scale: 100,000 links and Outlook contacts per user (bounds generous for a shared CI box)."""

from __future__ import annotations

import time

import pandas as pd
import pytest

from contactsync.model import FIELDS, OUTLOOK_COLUMNS
from contactsync.plan.schema import SNAPSHOT_COLUMNS
from contactsync.state import StateStore

from .conftest import USER

N = 100_000


def big_snapshots(n: int) -> pd.DataFrame:
    frame = pd.DataFrame({"crm_id": [f"CSYNC{i:07d}" for i in range(n)],
                          "outlook_id": [f"AAMkAGI2THVSAAA{i:09d}=" for i in range(n)]})
    for f in FIELDS:
        frame[f] = [f"{f} {i}" for i in range(n)] if f in (
            "first_name", "last_name", "email1", "company", "job_title", "city", "work_phone") else None
    return frame.reindex(columns=list(SNAPSHOT_COLUMNS))


@pytest.mark.slow
def test_100k_links_load_fast_and_1000_row_upsert_is_quick(store: StateStore) -> None:
    snaps = big_snapshots(N)
    t0 = time.perf_counter()
    store.save_pairs(USER, snaps)
    insert_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    links = store.load_links(USER)
    load_s = time.perf_counter() - t0
    assert len(links) == N
    changed = snaps.sample(1000, random_state=7).assign(city="Lyon")
    t0 = time.perf_counter()
    store.save_pairs(USER, changed)
    upsert_s = time.perf_counter() - t0
    print(f"\n{store.engine.dialect.name}: insert {N} {insert_s:.2f}s, load {load_s:.2f}s, "
          f"upsert 1000 {upsert_s:.3f}s")
    assert (store.load_links(USER)["city"] == "Lyon").sum() == 1000
    assert load_s < 4.0
    assert upsert_s < 1.0


@pytest.mark.slow
def test_100k_outlook_snapshot_round_trip(store: StateStore) -> None:
    snaps = big_snapshots(N)
    frame = snaps.drop(columns=["crm_id", "new_key"]).assign(
        change_key="EQAAABYAAAA", outlook_created=pd.Timestamp("2024-01-01", tz="UTC"),
        outlook_modified=pd.Timestamp("2024-06-01 10:00", tz="UTC"))
    frame = frame.reindex(columns=list(OUTLOOK_COLUMNS))
    t0 = time.perf_counter()
    store.save_outlook(USER, "F", "token-1", frame=frame, full=True)
    save_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    link, loaded = store.load_outlook(USER, "F")
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    store.save_outlook(USER, "F", "token-2", changed=frame.head(1000).assign(city="Oslo"),
                       removed_ids=frame["outlook_id"].tail(100).tolist())
    inc_s = time.perf_counter() - t0
    print(f"\n{store.engine.dialect.name}: outlook save {N} {save_s:.2f}s, load {load_s:.2f}s, "
          f"incremental 1000+100 {inc_s:.3f}s")
    assert (link, len(loaded)) == ("token-1", N)
    assert len(store.load_outlook(USER, "F")[1]) == N - 100
    assert load_s < 5.0
    assert inc_s < 1.0
