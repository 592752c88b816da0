"""bench/graph_limits.py still runs a first sync end to end (it once imported a renamed
function and broke silently): 40 people, 5 ms per request, Graph's real limits."""

from __future__ import annotations

from pathlib import Path

from bench.graph_limits import PLACES, WINDOW, first_sync
from bench.harness import Emulator


def test_graph_limits_first_sync_runs_small_and_reports_its_ratio(tmp_path: Path) -> None:
    emu = Emulator(tmp_path / "graph.db")
    try:
        emu.latency(5.0)
        emu.limits(requests_per_window=WINDOW[0], window_s=WINDOW[1], concurrent=PLACES)
        out = first_sync(tmp_path, emu, 40, latency_ms=5.0)
    finally:
        emu.stop()
    assert out["status"] == "ok" and out["errors"] == 0
    # the mix: 10 people only in the CRM (created in Outlook, R4), 10 only in Outlook (R5c)
    assert out["counts"]["outlook"]["create"] == 10
    assert out["counts"]["crm"]["create"] == 10
    assert (out["batches"], out["inner_requests"], out["throttled_429"]) == (1, 10, 0)
    assert out["tag_read_requests"] == 1  # one plain folder read carries the tags (R7a)
    # the least the places allow counts every request once (the batch envelope not)
    assert out["least_possible_s"] == round((out["requests"] - 1 + 10) * 0.005 / PLACES, 2)
    assert out["ratio_to_least"] is not None and out["ratio_to_least"] >= 1.0
    assert out["load_s"] is not None and out["load_ratio_to_least"] >= 1.0


def test_graph_limits_sequential_first_sync_writes_the_same(tmp_path: Path) -> None:
    """The side-by-side run (CRM first, then Outlook: ``overlap`` off) syncs the same."""
    emu = Emulator(tmp_path / "graph.db")
    try:
        out = first_sync(tmp_path, emu, 40, latency_ms=0.0, overlap=False)
    finally:
        emu.stop()
    assert out["status"] == "ok" and out["overlap"] is False
    assert (out["counts"]["outlook"]["create"], out["counts"]["crm"]["create"]) == (10, 10)


def test_graph_limits_timeline_splits_the_wall_around_its_one_batch(tmp_path: Path) -> None:
    """The run's timeline: its one $batch (10 creates, 4 at a time, 5 ms each: 3 rounds)
    left after the reads and was answered before the cycle ended, never faster than its
    rounds; the pacer is given back as it was."""
    from contactsync.outlook import pacing

    slot = pacing.Pacer.slot
    emu = Emulator(tmp_path / "graph.db")
    try:
        emu.latency(5.0)
        out = first_sync(tmp_path, emu, 40, latency_ms=5.0)
    finally:
        emu.stop()
    line = out["timeline"]
    assert 0 < line["first_batch_leaves_s"] < out["wall_s"]
    assert 0 <= line["after_last_answer_s"] < out["wall_s"] - line["first_batch_leaves_s"]
    on_wire = line["batch_on_the_wire_ms"]
    assert on_wire["min"] == on_wire["median"] == on_wire["max"] >= 3 * 5.0
    assert line["full_gc_s"] >= 0
    assert pacing.Pacer.slot is slot
