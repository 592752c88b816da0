"""R18/R17: a cycle SIGKILLed after its k-th committed write, then resumed, ends exactly where
an uninterrupted cycle ends - for every k, on either side.

The victim runs in a child process (``cycle_child``) with ``CONTACT_SYNC_CRASH_AFTER_WRITES``;
the two recovery cycles run through the real ``contact-sync sync`` (Prefect flow). The end
state is compared as a picture of both sides (``world.py``): same CRM rows, same Outlook
contacts and tags, same Deleted Items; no duplicates; an empty journal.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import LEE
from tests.reliability import scenario
from tests.reliability.world import (
    child_cycle,
    clone,
    diff,
    journal_pending,
    world_picture,
    writes,
)


def count_writes(base: Path, tmp: Path, side: str) -> int:
    """How many committed writes of ``side`` a cycle makes: crash after k until it survives."""
    k = 0
    while True:
        k += 1
        env, emu = clone(base, tmp / f"probe-{side}-{k}", scenario.EXTRA)
        try:
            if not child_cycle(env.config, LEE, crash_after=k, side=side).killed:
                return k - 1
        finally:
            emu.stop()


def crash_and_recover(base: Path, folder: Path, k: int, side: str | None, reference: dict[str, Any]) -> str | None:
    """Crash after the k-th write, recover with two real cycles; the problem found, if any."""
    env, emu = clone(base, folder, scenario.EXTRA)
    try:
        victim = child_cycle(env.config, LEE, crash_after=k, side=side)
        if not victim.killed:
            return f"k={k} side={side}: the cycle was not killed (rc {victim.returncode}) {victim.stderr[-500:]}"
        first = env.sync("--user", LEE)
        second = env.sync("--user", LEE).by_user()[LEE]
        problems = []
        if first.exit_code != 0:
            problems.append(f"recovery cycle exit {first.exit_code}: {first.stdout[-800:]}")
        if writes(second) != 0:
            problems.append(f"second recovery cycle still wrote: {second['counts']}")
        pending = journal_pending(env, LEE)
        if pending:
            problems.append(f"{pending} journal row(s) left")
        delta = diff(world_picture(env), reference["picture"])
        if delta:
            problems.append(delta)
        return f"k={k} side={side}: " + "\n".join(problems) if problems else None
    finally:
        emu.stop()


# The default suite tries two crash points; the slow sweep below tries them all. The 5th CRM
# write is the create of the contact without email (R5a): only the journal can re-link it.
@pytest.mark.parametrize("side,k", [("crm", 5), ("outlook", 5)])
def test_r18_crash_after_kth_write_then_recovery_matches_uninterrupted_cycle(
    base: Path, reference: dict[str, Any], tmp_path: Path, side: str, k: int
) -> None:
    problem = crash_and_recover(base, tmp_path / "w", k, side, reference)
    assert problem is None, problem


@pytest.mark.slow
def test_r18_every_crash_point_of_a_cycle_recovers_to_the_uninterrupted_end_state(
    base: Path, reference: dict[str, Any], tmp_path: Path
) -> None:
    crm_writes = count_writes(base, tmp_path, "crm")
    outlook_writes = count_writes(base, tmp_path, "outlook")
    assert crm_writes >= 8 and outlook_writes >= 8, (crm_writes, outlook_writes)
    problems = []
    for side, total in (("crm", crm_writes), ("outlook", outlook_writes)):
        for k in range(1, total + 1):
            found = crash_and_recover(base, tmp_path / f"{side}-{k}", k, side, reference)
            if found:
                problems.append(found)
    print(f"crash points tried: crm {crm_writes}, outlook {outlook_writes}")
    assert not problems, f"{len(problems)} of {crm_writes + outlook_writes} crash points diverged:\n" + "\n\n".join(problems)


# --- the first cycle: a crash among the initial creates must not duplicate them ------------
@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """A world before its first cycle (demo CRM, empty mailbox) and its uninterrupted end."""
    from contactsync.emulator import start_in_thread
    from tests.e2e.conftest import make_env

    folder = tmp_path_factory.mktemp("fresh-base")
    emu = start_in_thread(db_path=folder / "graph.db")
    try:
        make_env(folder, f"sqlite:///{folder / 'crm.db'}", emu, extra=scenario.EXTRA)
    finally:
        emu.stop()
    env, emu = clone(folder, tmp_path_factory.mktemp("fresh-ref"), scenario.EXTRA)
    try:
        run = child_cycle(env.config, LEE)
        assert run.returncode == 0, run.stdout + run.stderr
        return folder, {"picture": world_picture(env)}
    finally:
        emu.stop()


@pytest.mark.parametrize("k", [5])
def test_r18_crash_in_the_first_cycle_never_duplicates_the_initial_creates(
    fresh: tuple[Path, dict[str, Any]], tmp_path: Path, k: int
) -> None:
    folder, ref = fresh
    problem = crash_and_recover(folder, tmp_path / "w", k, "outlook", ref)
    assert problem is None, problem


@pytest.mark.slow
def test_r18_every_crash_point_of_the_first_cycle(fresh: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    folder, ref = fresh
    total = count_writes(folder, tmp_path, "outlook")
    assert total == 9
    problems = [p for k in range(1, total + 1)
                if (p := crash_and_recover(folder, tmp_path / f"k{k}", k, "outlook", ref))]
    print(f"first-cycle crash points tried: {total}")
    assert not problems, "\n\n".join(problems)


@pytest.mark.slow
@pytest.mark.parametrize("first,second", [(("crm", 3), ("crm", 1)), (("crm", 5), ("outlook", 2)),
                                          (("outlook", 3), ("outlook", 1)), (("outlook", 8), ("crm", 1))])
def test_r18_a_recovery_cut_again_still_ends_where_the_uninterrupted_cycle_ends(
    base: Path, reference: dict[str, Any], tmp_path: Path, first: tuple[str, int], second: tuple[str, int]
) -> None:
    """Two crashes in a row (the recovery cycle dies too), then two clean cycles."""
    env, emu = clone(base, tmp_path / "w", scenario.EXTRA)
    try:
        assert child_cycle(env.config, LEE, crash_after=first[1], side=first[0]).killed
        again = child_cycle(env.config, LEE, crash_after=second[1], side=second[0])
        # The recovery may have fewer writes of that side than the cut: then it completes.
        assert again.killed or again.returncode == 0, again.stderr[-2000:]
        assert env.sync("--user", LEE).exit_code == 0
        assert writes(env.sync("--user", LEE).by_user()[LEE]) == 0
        assert journal_pending(env, LEE) == 0
        delta = diff(world_picture(env), reference["picture"])
        assert not delta, delta
    finally:
        emu.stop()
