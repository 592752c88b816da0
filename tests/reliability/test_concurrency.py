"""Two cycles at once. For one user: one writes, the other waits or exits with code 4 (the
per-user lock), and nothing is duplicated. For different users: they run in parallel on a
shared PostgreSQL state store and each ends as if it had run alone.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from contactsync.emulator import start_in_thread
from tests.e2e.conftest import LEE, SAM, make_env
from tests.reliability import scenario
from tests.reliability.world import (
    child_cycle,
    clone,
    diff,
    journal_pending,
    outlook_contacts,
    start_child,
    world_picture,
    writes,
)


def finish(proc: Any) -> tuple[int, dict[str, Any]]:
    stdout, stderr = proc.communicate(timeout=300)
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    assert lines, stderr[-2000:]
    return proc.returncode, json.loads(lines[-1])


@pytest.mark.parametrize("attempt", [0, pytest.param(1, marks=pytest.mark.slow), pytest.param(2, marks=pytest.mark.slow)])
def test_two_cycles_for_one_user_at_once_one_writes_the_other_exits_4_never_duplicates(
    base: Path, reference: dict[str, Any], tmp_path: Path, attempt: int
) -> None:
    env, emu = clone(base, tmp_path / "w", scenario.EXTRA)
    try:
        procs = [start_child(env.config, LEE) for _ in range(2)]
        results = [finish(p) for p in procs]
        codes = sorted(rc for rc, _ in results)
        # Either the lock refused the second (4), or it started after the first finished and
        # found nothing to do (0, no writes).
        assert codes in ([0, 4], [0, 0]), results
        if codes == [0, 0]:
            assert min(writes(out) for _, out in results) == 0, results
        assert journal_pending(env, LEE) == 0
        delta = diff(world_picture(env), reference["picture"])
        assert not delta, delta
        assert writes(child_cycle(env.config, LEE).outcome()) == 0
    finally:
        emu.stop()


@pytest.mark.postgres
@pytest.mark.slow
def test_cycles_for_different_users_run_in_parallel_on_a_shared_postgres_state_store(
    tmp_path: Path, postgres_url: str
) -> None:
    """Lee and Sam share Emma (contact 5) and the CRM; each cycle runs in its own process."""
    results = {}
    for mode in ("parallel", "serial"):
        folder = tmp_path / mode
        folder.mkdir()
        emu = start_in_thread(db_path=folder / "graph.db")
        try:
            env = make_env(folder, f"sqlite:///{folder / 'crm.db'}", emu, extra=scenario.EXTRA)
            state_url = postgres_url if mode == "parallel" else f"sqlite:///{folder / 'state.db'}"
            env.config.write_text(env.config.read_text().replace('url = "sqlite:///state.db"', f'url = "{state_url}"'))
            if mode == "parallel":
                procs = {u: start_child(env.config, u) for u in (LEE, SAM)}
                outs = {u: finish(p) for u, p in procs.items()}
            else:
                outs = {u: (r.returncode, r.outcome()) for u in (LEE, SAM)
                        for r in [child_cycle(env.config, u)]}
            assert all(rc == 0 and o["status"] == "ok" for rc, o in outs.values()), outs
            assert all(o["counts"]["outlook"]["create"] == 9 for _, o in outs.values()), outs
            again = {u: child_cycle(env.config, u).outcome() for u in (LEE, SAM)}
            assert all(writes(o) == 0 for o in again.values()), again
            results[mode] = world_picture(env)
        finally:
            emu.stop()
    delta = diff(results["parallel"], results["serial"])
    assert not delta, delta


@pytest.mark.postgres
@pytest.mark.slow
def test_two_first_cycles_for_one_user_on_postgres_never_duplicate(tmp_path: Path, postgres_url: str) -> None:
    """The lock on a shared PostgreSQL store: two first cycles at once make 9 contacts, not 18."""
    emu = start_in_thread(db_path=tmp_path / "graph.db")
    try:
        env = make_env(tmp_path, f"sqlite:///{tmp_path / 'crm.db'}", emu, extra=scenario.EXTRA)
        env.config.write_text(env.config.read_text().replace('url = "sqlite:///state.db"', f'url = "{postgres_url}"'))
        procs = [start_child(env.config, LEE) for _ in range(2)]
        results = [finish(p) for p in procs]
        codes = sorted(rc for rc, _ in results)
        assert codes in ([0, 4], [0, 0]), results
        contacts = outlook_contacts(env, LEE)
        assert len(contacts) == 9, [c.get("surname") for c in contacts]
        assert writes(child_cycle(env.config, LEE).outcome()) == 0
    finally:
        emu.stop()
