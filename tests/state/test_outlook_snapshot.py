"""Outlook snapshot + delta token: advance together, never one without the other."""

from __future__ import annotations

import pandas as pd
import pytest

from contactsync.model import OUTLOOK_COLUMNS
from contactsync.state import StateStore
from contactsync.state import blobs as blobs_mod

from .conftest import USER

FOLDER = "AAMkFolder=="


def contacts(ids: list[str], **values: object) -> pd.DataFrame:
    frame = pd.DataFrame({"outlook_id": ids})
    frame["change_key"] = "ck1"
    frame["outlook_created"] = pd.Timestamp("2024-01-02T03:04:05Z")
    frame["outlook_modified"] = pd.Timestamp("2024-06-01T10:00:00.123456Z")
    frame["given"] = None
    frame["first_name"] = [f"N{i}" for i in ids]
    for k, v in values.items():
        frame[k] = v
    return frame.drop(columns="given")


def test_never_synced_folder_has_no_token_and_empty_frame(store: StateStore) -> None:
    link, frame = store.load_outlook(USER, FOLDER)
    assert link is None
    assert frame.empty and list(frame.columns) == list(OUTLOOK_COLUMNS)


def test_full_save_round_trip_keeps_utc_times(store: StateStore) -> None:
    store.save_outlook(USER, FOLDER, "https://graph/delta?token=1",
                       frame=contacts(["a", "b"], crm_tag=["CSYNC0000001", None]), full=True)
    link, frame = store.load_outlook(USER, FOLDER)
    assert link == "https://graph/delta?token=1"
    assert list(frame.columns) == list(OUTLOOK_COLUMNS)
    assert sorted(frame["outlook_id"]) == ["a", "b"]
    row = frame.set_index("outlook_id").loc["a"]
    assert row["outlook_modified"] == pd.Timestamp("2024-06-01T10:00:00.123456Z")
    assert str(frame["outlook_created"].dtype).endswith("UTC]")
    assert row["crm_tag"] == "CSYNC0000001"
    assert frame.set_index("outlook_id").loc["b", "crm_tag"] is None


def test_full_save_replaces_every_row(store: StateStore) -> None:
    store.save_outlook(USER, FOLDER, "t1", frame=contacts(["a", "b"]), full=True)
    store.save_outlook(USER, FOLDER, "t2", frame=contacts(["c"]), full=True)
    link, frame = store.load_outlook(USER, FOLDER)
    assert (link, frame["outlook_id"].tolist()) == ("t2", ["c"])


def test_incremental_save_upserts_changed_and_deletes_removed(store: StateStore) -> None:
    store.save_outlook(USER, FOLDER, "t1", frame=contacts(["a", "b", "c"]), full=True)
    store.save_outlook(USER, FOLDER, "t2", changed=contacts(["b", "d"], city="Oslo"),
                       removed_ids=["c", "never-seen"])
    link, frame = store.load_outlook(USER, FOLDER)
    assert link == "t2"
    got = frame.set_index("outlook_id")
    assert sorted(got.index) == ["a", "b", "d"]
    assert got.loc["b", "city"] == "Oslo" and got.loc["a", "city"] is None


def test_quiet_cycle_moves_only_the_token(store: StateStore) -> None:
    store.save_outlook(USER, FOLDER, "t1", frame=contacts(["a"]), full=True)
    store.save_outlook(USER, FOLDER, "t2")
    link, frame = store.load_outlook(USER, FOLDER)
    assert (link, len(frame)) == ("t2", 1)


def test_folders_and_users_are_separate(store: StateStore) -> None:
    store.save_outlook(USER, FOLDER, "t1", frame=contacts(["a"]), full=True)
    store.save_outlook(USER, "other", "x1", frame=contacts(["z"]), full=True)
    store.save_outlook("UOTHER000002", FOLDER, "y1", frame=contacts(["q"]), full=True)
    assert store.load_outlook(USER, FOLDER)[1]["outlook_id"].tolist() == ["a"]
    assert store.load_outlook(USER, "other")[0] == "x1"
    assert store.load_outlook("UOTHER000002", FOLDER)[1]["outlook_id"].tolist() == ["q"]


@pytest.mark.parametrize("removed", [["a"], []], ids=["base-rewrite", "delta-rows"])
def test_r18_token_does_not_advance_when_the_rows_fail(
    store: StateStore, monkeypatch: pytest.MonkeyPatch, removed: list[str]
) -> None:
    store.save_outlook(USER, FOLDER, "t1", frame=contacts(["a", "b"]), full=True)

    def boom(*_a: object, **_k: object) -> None:
        raise RuntimeError("disk full")

    # the mirror's row write fails: the changed rows (a delta segment) or the rewritten
    # columnar base (contactsync.state.blobs)
    monkeypatch.setattr(blobs_mod, "add_rows", boom)
    monkeypatch.setattr(blobs_mod, "write_base", boom)
    with pytest.raises(RuntimeError):
        store.save_outlook(USER, FOLDER, "t2", changed=contacts(["c"]), removed_ids=removed)
    link, frame = store.load_outlook(USER, FOLDER)
    assert link == "t1"
    assert sorted(frame["outlook_id"]) == ["a", "b"]
