"""Issue 15 goal 3: a cycle's big columns go back to the OS when freed.

``cycle.memory.tune_allocator`` fixes glibc's mmap threshold (and keeps one arena), once
per process, at the start of every cycle: the whole first sync at 100,000 contacts then
peaks ~70 MB lower (bench/allocator_bench.py). What a user relies on is checked here: after
the setting, a block of a column's size freed and made again is mmapped (so its free gives
it back), where glibc's dynamic threshold would have served the second one from the heap."""

from __future__ import annotations

import ctypes
import subprocess
import sys
from pathlib import Path

import pytest

from contactsync.config import load_settings
from contactsync.cycle import memory
from contactsync.cycle import run as cycle_run
from contactsync.emulator import start_in_thread
from tests.e2e.conftest import LEE, make_env

#: Prints how many bytes more glibc holds in mmapped blocks once a 1 MB block, made after
#: another 1 MB block was freed, is alive (mallinfo2's hblkhd, glibc >= 2.33).
PROBE = """
import ctypes, sys
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                                               "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = Info
from contactsync.cycle import memory
if sys.argv[1] == "tuned":
    assert memory.tune_allocator() is True
first = bytearray(1 << 20)
del first  # glibc's dynamic threshold rises to this block's size here
before = libc.mallinfo2().hblkhd
second = bytearray(1 << 20)
print(libc.mallinfo2().hblkhd - before)
"""


def _has_mallinfo2() -> bool:
    try:
        return hasattr(ctypes.CDLL("libc.so.6"), "mallinfo2")
    except OSError:
        return False


@pytest.mark.skipif(not _has_mallinfo2(), reason="glibc >= 2.33 only (mallinfo2)")
def test_a_freed_columns_worth_of_memory_is_mmapped_again_after_tuning(tmp_path: Path) -> None:
    def mmapped(arm: str) -> int:
        out = subprocess.run([sys.executable, "-c", PROBE, arm], capture_output=True, text=True, check=True)
        return int(out.stdout.strip())

    assert mmapped("tuned") >= 1 << 20  # the second 1 MB block is its own mapping: freed, it goes back
    assert mmapped("plain") == 0  # glibc's default: from the heap, where a free leaves a hole


def test_tuning_sets_both_parameters_once_and_nothing_without_glibc(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, int]] = []

    class Libc:
        def mallopt(self, param: int, value: int) -> int:
            calls.append((param, value))
            return 1

    memory.tune_allocator.cache_clear()
    monkeypatch.setattr(memory, "_libc", lambda: Libc())
    try:
        assert memory.tune_allocator() is True and memory.tune_allocator() is True
        assert calls == [(-3, memory.MMAP_THRESHOLD), (-8, memory.ARENA_MAX)]  # M_MMAP_THRESHOLD, M_ARENA_MAX
        memory.tune_allocator.cache_clear()
        monkeypatch.setattr(memory, "_libc", lambda: None)  # macOS, musl
        assert memory.tune_allocator() is False
    finally:
        memory.tune_allocator.cache_clear()


def test_every_cycle_starts_by_tuning_the_allocator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI, the flows' tasks and the Dask workers all run ``run_cycle``: it is where the
    setting is made, before the CRM read's thread exists."""
    tuned: list[int] = []
    monkeypatch.setattr(cycle_run, "tune_allocator", lambda: tuned.append(1) or True)
    with start_in_thread(db_path=tmp_path / "graph.db") as emulator:
        env = make_env(tmp_path, f"sqlite:///{tmp_path / 'crm.db'}", emulator)
        env.graph(LEE).make_folder("CRM Contacts")
        settings = load_settings(env.config)
        outcome = cycle_run.run_cycle(settings, settings.user(LEE), cycle_run.CycleOptions(force=True))
    assert outcome.status == "ok", outcome.errors
    assert tuned == [1]
