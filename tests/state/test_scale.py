"""Scale: 100,000 links and Outlook contacts per user round-trip whole; a 1,000-row upsert and
an incremental save change only their rows. How fast is bench/speed_floors.py's to say
(state_links_100k, state_mirror_100k), not a test's."""

from __future__ import annotations

import pandas as pd
import pytest

from bench.speed_floors import snapshots
from contactsync.model import OUTLOOK_COLUMNS
from contactsync.state import StateStore

from .conftest import USER

N = 100_000


@pytest.mark.slow
def test_100k_links_round_trip_and_a_1000_row_upsert_changes_those_rows(store: StateStore) -> None:
    snaps = snapshots(N)
    store.save_pairs(USER, snaps)
    links = store.load_links(USER)
    assert len(links) == N
    changed = snaps.sample(1000, random_state=7).assign(city="Lyon")
    store.save_pairs(USER, changed)
    after = store.load_links(USER)
    assert len(after) == N and (after["city"] == "Lyon").sum() == 1000
    assert set(after.loc[after["city"] == "Lyon", "crm_id"]) == set(changed["crm_id"])


@pytest.mark.slow
def test_100k_outlook_snapshot_round_trip(store: StateStore) -> None:
    snaps = snapshots(N)
    frame = snaps.drop(columns=["crm_id", "new_key"]).assign(
        change_key="EQAAABYAAAA", outlook_created=pd.Timestamp("2024-01-01", tz="UTC"),
        outlook_modified=pd.Timestamp("2024-06-01 10:00", tz="UTC"))
    frame = frame.reindex(columns=list(OUTLOOK_COLUMNS))
    store.save_outlook(USER, "F", "token-1", frame=frame, full=True)
    link, loaded = store.load_outlook(USER, "F")
    assert (link, len(loaded)) == ("token-1", N)
    store.save_outlook(USER, "F", "token-2", changed=frame.head(1000).assign(city="Oslo"),
                       removed_ids=frame["outlook_id"].tail(100).tolist())
    link, after = store.load_outlook(USER, "F")
    assert (link, len(after)) == ("token-2", N - 100)
    assert not after["outlook_id"].isin(frame["outlook_id"].tail(100)).any()
    assert set(after.loc[after["city"] == "Oslo", "outlook_id"]) == set(frame["outlook_id"].head(1000))
