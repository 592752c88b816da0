"""First sync under Graph's real limits: 2,000 and 10,000 side by side in one run.

``python -m bench.graph_limits`` (results in ``results/graph_limits.json``).

The emulator runs as a subprocess with Graph's own limits (10,000 requests per 600 s per
mailbox, 4 concurrent places, each request inside a ``$batch`` counted and run up to 4 at
a time, spec/GRAPH_API.md) and 100 ms added to every request, which holds its place for
that time. The data is ``bench.run``'s mix (50 % on both sides, 25 % only in the CRM
group, 25 % only in the Outlook folder); the cycle is ``bench.driver.timed_cycle`` (the
sync's steps without Prefect), nothing linked yet.

Per size: HTTP requests and the inner requests of batches, 429s (inner ones included),
wall time, and the least time 4 concurrent places allow: every request (an inner one
too, a batch envelope not) holds a place for 100 ms, so the least is ``(requests -
batches + inner) x 0.1 s / 4``; the window (10,000 per 600 s) adds to it only beyond
10,000. The ratio wall / least is the goal's (<= 1.15), the share of inner requests
throttled the other (<= 1 %). A second least counts the delta pages as the chain they are
(one after the other: each page's ``nextLink`` comes with it), the rest in 4 places. The plain reads of the folder that carry the CrmContactId
``$expand`` (contact delta has none) are counted apart, as ``tag_read_requests``.

Each run's ``timeline`` splits its wall: when the first ``$batch`` left, each batch's time
on the wire (min, median, max: 500 ms is its 5 rounds of 100 ms), what followed the last
answer, and the full garbage collections' seconds under the GIL.

Beside each wall: the CPU seconds of the sync's process and of the emulator. The cycle
reads and writes the CRM beside the Outlook folder (``CycleOptions.overlap``); the first
size is run a second time without that (``side_by_side``), so the gain is a ratio of one run.
The lazy imports of the cycle are done, and a first sync of 200 is run, before any clock
starts: a process's one-off costs would fall on whichever run came first. What the imports
made is then frozen out of the garbage collector's sight (``gc.freeze``), as the warm
process that serves ``contact-sync sync`` does before it forks the child that runs the
cycle (cli/warm.py): unfrozen, the one full collection of a first sync walked every object
of pandas, SQLAlchemy and O365 (0.2 s under the GIL, at the first delta page, where it held
back the next page's request), which production's cycle does not pay.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.harness import RESULTS, USER, Emulator, build, log

LATENCY_MS = 100.0
PLACES = 4
WINDOW = (10_000, 600.0)
DELTA_PAGE = 200  # Graph's contact delta page (outlook.extract asks 500, gets 200)
SIZES = tuple(int(s) for s in os.environ.get("BENCH_LIMITS_SIZES", "2000,10000").split(","))


def least_time_s(stats: dict[str, Any], latency_ms: float = LATENCY_MS) -> float:
    """The least wall time 4 places allow for these requests (module docstring)."""
    place_requests = stats["requests"] - stats["batches"] + stats["inner_requests"]
    places = place_requests * latency_ms / 1000.0 / PLACES
    over = max(0, place_requests - WINDOW[0])
    return places + (over / WINDOW[0]) * WINDOW[1]


class TagReads:
    """Counts the requests of the plain folder reads for the tags (outlook.extract.read_tags)."""

    def __init__(self, emu: Emulator) -> None:
        from contactsync.outlook import extract

        self.emu, self.requests, self._real = emu, 0, extract.read_tags
        extract.read_tags = self._counted

    def _counted(self, client: Any, folder_id: str, ids: list[str] | None, folder_size: int = 0) -> Any:
        """The requests ``read_tags`` makes, as it chooses them (it runs beside the delta
        chain, so the emulator's counts cannot tell them apart)."""
        from contactsync.outlook.extract import TAG_PAGE

        found = self._real(client, folder_id, ids, folder_size)
        if ids is None or -(-folder_size // TAG_PAGE) <= -(-len(ids) // 20):
            self.requests += max(1, -(-(len(found) if ids is None else folder_size) // TAG_PAGE)) if ids != [] else 0
        else:
            self.requests += -(-len(ids) // 20)
        return found

    def close(self) -> None:
        from contactsync.outlook import extract

        extract.read_tags = self._real


class Timeline:
    """When the batches were on the wire (the pacer's places held, from the request's
    leaving to its answer) and how long full garbage collections held the GIL: what the
    wall is made of (the reads and steps before the first batch, the batches, what
    follows the last answer), for the figures' sake."""

    def __init__(self) -> None:
        from contactsync.outlook import pacing

        self.batches: list[tuple[float, float]] = []
        self.full_gc_s = 0.0
        self._gc_started = 0.0
        self._pacer, self._real = pacing.Pacer, pacing.Pacer.slot
        real = self._real

        @contextmanager
        def slot(pacer: Any, weight: int = 1) -> Iterator[None]:
            with real(pacer, weight):
                started = time.perf_counter()
                try:
                    yield
                finally:
                    if weight > 1:
                        self.batches.append((started, time.perf_counter()))

        pacing.Pacer.slot = slot  # type: ignore[method-assign]
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if info.get("generation") != 2:
            return
        if phase == "start":
            self._gc_started = time.perf_counter()
        else:
            self.full_gc_s += time.perf_counter() - self._gc_started

    def close(self) -> None:
        self._pacer.slot = self._real  # type: ignore[method-assign]
        gc.callbacks.remove(self._on_gc)

    def figures(self, started: float, wall: float) -> dict[str, Any]:
        if not self.batches:
            return {"full_gc_s": round(self.full_gc_s, 3)}
        spans = sorted(b - a for a, b in self.batches)
        return {
            "first_batch_leaves_s": round(min(a for a, _ in self.batches) - started, 3),
            "after_last_answer_s": round(started + wall - max(b for _, b in self.batches), 3),
            "batch_on_the_wire_ms": {"min": round(spans[0] * 1000, 1),
                                     "median": round(spans[len(spans) // 2] * 1000, 1),
                                     "max": round(spans[-1] * 1000, 1)},
            "full_gc_s": round(self.full_gc_s, 3),
        }


def first_sync(root: Path, emu: Emulator, n: int, latency_ms: float = LATENCY_MS, *,
               overlap: bool = True) -> dict[str, Any]:
    """One first sync of ``n`` people against ``emu`` (set to ``latency_ms`` by the caller);
    ``overlap`` False reads and writes the CRM before the Outlook folder, not beside it."""
    from bench.driver import timed_cycle

    ds = build(root, emu, n, f"limits{n}{'' if overlap else '-sequential'}")
    emu.reset_stats()
    tags = TagReads(emu)
    timeline = Timeline()
    load_before = os.getloadavg()
    try:
        cpu0, emu_cpu0 = time.process_time(), emu.cpu_s()
        os.environ["BENCH_OVERLAP"] = "1" if overlap else "0"
        started = time.perf_counter()
        cycle = timed_cycle(str(ds.config), USER)
        wall = time.perf_counter() - started
        cpu, emu_cpu = time.process_time() - cpu0, emu.cpu_s() - emu_cpu0
    finally:
        tags.close()
        timeline.close()
        os.environ.pop("BENCH_OVERLAP", None)
    stats = emu.stats()
    least = least_time_s(stats, latency_ms)
    # Delta pages chain (each page's nextLink comes with the page): they cannot share places.
    chain = -(-len(ds.outlook_ids) // DELTA_PAGE) if ds.outlook_ids else 1
    least_chain = least + chain * latency_ms / 1000.0 * (1 - 1 / PLACES)
    load_inner = stats["inner_requests"]
    out = {
        "n": n,
        "overlap": overlap,
        "status": cycle["status"],
        "errors": cycle["errors"],
        "counts": cycle["counts"],
        "requests": stats["requests"],
        "inner_requests": stats["inner_requests"],
        "batches": stats["batches"],
        "throttled_429": stats["throttled"],
        "throttled_share_of_inner": round(stats["throttled"] / load_inner, 4) if load_inner else 0.0,
        "tag_read_requests": tags.requests,
        "wall_s": round(wall, 2),
        "least_possible_s": round(least, 2),
        "ratio_to_least": round(wall / least, 3) if least else None,
        "delta_pages_in_chain": chain,
        "least_with_delta_chain_s": round(least_chain, 2),
        "ratio_to_least_with_delta_chain": round(wall / least_chain, 3) if least_chain else None,
        "steps_s": cycle["steps_s"],
        # the process's CPU seconds during each step (all its threads): what the load average does not stretch
        "steps_cpu_s": cycle["steps_cpu_s"],
        # CPU seconds beside the wall: the sync's process (all its threads) and the
        # emulator's, whose serving of each request (one thread) Graph does not add
        "client_cpu_s": round(cpu, 2),
        "emulator_cpu_s": round(emu_cpu, 2),
        # the wall's parts: before the first $batch left, each batch on the wire, after the last answer
        "timeline": timeline.figures(started, wall),
        "load_s": cycle["steps_s"].get("load_outlook"),
        "load_ratio_to_least": None,
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
    }
    # The Outlook load step alone: its inner requests against their places (the reads come before).
    if out["load_s"] and stats["inner_requests"] and latency_ms:
        out["load_ratio_to_least"] = round(out["load_s"] / (stats["inner_requests"] * latency_ms / 1000 / PLACES), 3)
    log(f"first sync {n}: {out['wall_s']} s (least {out['least_possible_s']} s, x{out['ratio_to_least']}), "
        f"{out['requests']} requests ({out['inner_requests']} inner), {out['throttled_429']} 429s")
    return out


def warm_imports() -> None:
    """Import what the cycle imports on first use (O365 alone is ~0.3 s), before any clock
    starts: a process's one-off cost, which only the first size measured would pay."""
    import contactsync.cycle.run  # noqa: F401
    import contactsync.outlook.client  # noqa: F401
    import contactsync.outlook.extract  # noqa: F401
    import contactsync.outlook.load  # noqa: F401
    import contactsync.quality  # noqa: F401
    import contactsync.state  # noqa: F401
    import contactsync.state.history  # noqa: F401


def main() -> int:
    RESULTS.mkdir(exist_ok=True)
    warm_imports()
    gc.collect()  # as cli/warm.py before it serves a cycle (module docstring)
    gc.freeze()
    with tempfile.TemporaryDirectory(prefix="bench-limits-") as tmp:
        root = Path(tmp)
        emu = Emulator(root / "graph.db")
        try:
            emu.latency(LATENCY_MS)
            emu.limits(requests_per_window=WINDOW[0], window_s=WINDOW[1], concurrent=PLACES)
            # A small first sync, not measured: the first cycle of a process pays one-off
            # costs (caches, first calls) that would fall on whichever run came first.
            first_sync(root, emu, 200)
            runs = [first_sync(root, emu, n) for n in SIZES]
            # The same first sync with the CRM side read and written before the Outlook
            # one (as before the overlap), in the same run: the gain as a ratio.
            sequential = first_sync(root, emu, SIZES[0], overlap=False)
        finally:
            emu.stop()
    result = {
        "what": "first sync under Graph's real limits (10,000/600 s, 4 concurrent, batches 4 at a time "
                "inside), 100 ms per request",
        "measured_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "goals": {"throttled_share_of_inner_max": 0.01, "ratio_to_least_max": 1.15},
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "runs": runs,
        "side_by_side": {
            "n": SIZES[0],
            "overlapped_wall_s": runs[0]["wall_s"],
            "sequential_wall_s": sequential["wall_s"],
            "sequential_over_overlapped": round(sequential["wall_s"] / runs[0]["wall_s"], 3),
            "sequential": sequential,
        },
    }
    (RESULTS / "graph_limits.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
