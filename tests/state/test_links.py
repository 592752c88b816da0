"""Links and snapshots: what the planner reads back is exactly what the loader saved."""

from __future__ import annotations

import pandas as pd
import pytest

from contactsync.model import FIELDS
from contactsync.plan.schema import LINK_COLUMNS, SNAPSHOT_COLUMNS
from contactsync.state import StateStore

from .conftest import OTHER, USER


def snapshots(n: int, *, start: int = 0, **values: object) -> pd.DataFrame:
    rows = []
    for i in range(start, start + n):
        row = dict.fromkeys(SNAPSHOT_COLUMNS)
        row.update(crm_id=f"CSYNC{i:07d}", outlook_id=f"AAMk-{i}", first_name=f"First{i}",
                   last_name=f"Last{i}", email1=f"p{i}@example.com")
        row.update(values)
        rows.append(row)
    return pd.DataFrame(rows, columns=list(SNAPSHOT_COLUMNS))


def by_id(frame: pd.DataFrame) -> dict[str, dict[str, object]]:
    return {r["crm_id"]: r for r in frame.to_dict("records")}


def test_r8_snapshot_round_trip_keeps_none_unicode_and_newlines(store: StateStore) -> None:
    snap = snapshots(2)
    snap.loc[0, "last_name"] = "Çelik-Øster 山田 🙂"
    snap.loc[0, "street"] = "1 Rue d'Été\nBâtiment B"
    snap.loc[1, "middle_name"] = ""  # empty stays empty, None stays None
    assert store.save_pairs(USER, snap) == 2
    links = store.load_links(USER)
    assert list(links.columns) == list(LINK_COLUMNS)
    got = by_id(links)
    assert got["CSYNC0000000"]["last_name"] == "Çelik-Øster 山田 🙂"
    assert got["CSYNC0000000"]["street"] == "1 Rue d'Été\nBâtiment B"
    assert got["CSYNC0000000"]["status"] == "active"
    assert got["CSYNC0000001"]["middle_name"] == ""
    assert got["CSYNC0000001"]["birthday"] is None
    assert all(links[f].dtype == object for f in FIELDS)


def test_empty_store_gives_typed_empty_link_frame(store: StateStore) -> None:
    links = store.load_links(USER)
    assert links.empty and list(links.columns) == list(LINK_COLUMNS)


def test_r8_save_pairs_upserts_by_crm_id(store: StateStore) -> None:
    store.save_pairs(USER, snapshots(3))
    changed = snapshots(1, start=1, city="Lyon")
    changed = pd.concat([changed, snapshots(1, start=3)], ignore_index=True)
    store.save_pairs(USER, changed)
    got = by_id(store.load_links(USER))
    assert sorted(got) == ["CSYNC0000000", "CSYNC0000001", "CSYNC0000002", "CSYNC0000003"]
    assert got["CSYNC0000001"]["city"] == "Lyon"
    assert got["CSYNC0000000"]["city"] is None


def test_r7_links_are_one_to_one_an_outlook_id_moves_to_its_new_pair(store: StateStore) -> None:
    store.save_pairs(USER, snapshots(2))
    relinked = snapshots(1, start=5, outlook_id="AAMk-0")  # AAMk-0 now pairs with CSYNC5
    store.save_pairs(USER, relinked)
    got = by_id(store.load_links(USER))
    assert "CSYNC0000000" not in got
    assert got["CSYNC0000005"]["outlook_id"] == "AAMk-0"
    assert store.load_links(USER)["outlook_id"].is_unique


def test_users_are_isolated(store: StateStore) -> None:
    store.save_pairs(USER, snapshots(2))
    store.save_pairs(OTHER, snapshots(1, first_name="Kim"))
    assert len(store.load_links(USER)) == 2
    other = store.load_links(OTHER)
    assert other["first_name"].tolist() == ["Kim"]
    store.remove_links(OTHER, ["CSYNC0000000"])
    assert len(store.load_links(USER)) == 2


def test_r12_status_stopped_and_back(store: StateStore) -> None:
    snap = snapshots(2)
    snap["status"] = ["active", "stopped"]
    store.save_pairs(USER, snap)
    assert by_id(store.load_links(USER))["CSYNC0000001"]["status"] == "stopped"
    assert store.set_status(USER, ["CSYNC0000001"], "active") == 1
    assert store.set_status(USER, ["CSYNC0000000"], "stopped") == 1
    got = by_id(store.load_links(USER))
    assert (got["CSYNC0000000"]["status"], got["CSYNC0000001"]["status"]) == ("stopped", "active")
    with pytest.raises(ValueError):
        store.set_status(USER, ["CSYNC0000000"], "paused")


def test_r11_remove_links(store: StateStore) -> None:
    store.save_pairs(USER, snapshots(3))
    assert store.remove_links(USER, ["CSYNC0000000", "CSYNC0000002", "nope"]) == 2
    assert store.load_links(USER)["crm_id"].tolist() == ["CSYNC0000001"]


def test_r18_save_pairs_refuses_unresolved_new_key(store: StateStore) -> None:
    snap = snapshots(1, crm_id=None, new_key="new:AAMk-0")
    with pytest.raises(ValueError, match="new_key"):
        store.save_pairs(USER, snap)
    assert store.load_links(USER).empty


def test_r18_failed_save_leaves_previous_snapshot(store: StateStore) -> None:
    store.save_pairs(USER, snapshots(2))
    bad = snapshots(2, city="Lyon")
    bad.loc[1, "status"] = "bogus"
    with pytest.raises(ValueError):
        store.save_pairs(USER, bad)
    assert store.load_links(USER)["city"].isna().all()


def test_bulk_save_of_several_thousand_rows_in_chunks(store: StateStore) -> None:
    store.save_pairs(USER, snapshots(7_500))
    store.save_pairs(USER, snapshots(2_500, start=5_000, city="Nice"))
    links = store.load_links(USER)
    assert len(links) == 7_500
    assert (links["city"] == "Nice").sum() == 2_500
