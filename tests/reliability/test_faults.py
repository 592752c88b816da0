"""Faults on either side: a cycle completes or fails cleanly, and the next cycles converge to
the end state of a fault-free cycle with no duplicates (R17, R18).

Outlook: the emulator's fault injection at 20 % of requests (429 with Retry-After, 500,
503, dropped connections, and commit-then-fail: the write happened, its answer was lost -
the classic source of duplicates after a retry). CRM: a constraint that rejects one unit
(it is rolled back alone) and a database that fails in the middle of the load (a
TransientError: the cycle fails; what committed stays, the next cycle completes the rest).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa

from tests.e2e.conftest import LEE, SyncEnv
from tests.reliability import scenario
from tests.reliability.world import (
    child_cycle,
    clone,
    diff,
    journal_pending,
    world_picture,
    writes,
)

RATE = 0.2
MAX_CYCLES = 8

FAULTS: dict[str, dict[str, Any]] = {
    "429-retry-after": {"status": 429, "retry_after": 1},
    "500": {"status": 500},
    "503": {"status": 503, "retry_after": 0},
    "drop": {"status": "drop"},
    "commit-then-fail-post": {"status": "commit-then-fail", "methods": ["POST"]},
    "commit-then-fail-patch": {"status": "commit-then-fail", "methods": ["PATCH"]},
    "commit-then-fail-delete": {"status": "commit-then-fail", "methods": ["DELETE"]},
}


def set_fault(env: SyncEnv, fault: dict[str, Any] | None) -> None:
    url = f"{env.emulator.url}/_emulator/faults"
    if fault is None:
        requests.delete(url, timeout=10).raise_for_status()
    else:
        requests.post(url, json=fault, timeout=10).raise_for_status()


def converge(env: SyncEnv, *, max_cycles: int = MAX_CYCLES) -> tuple[int, list[str]]:
    """Cycles (each completing or failing cleanly) until one writes nothing; (cycles, statuses)."""
    statuses = []
    for n in range(1, max_cycles + 1):
        run = child_cycle(env.config, LEE, timeout=300)
        out = run.outcome()
        statuses.append(out.get("status", f"rc {run.returncode}"))
        assert run.returncode in (0, 1), f"cycle {n} did not end cleanly: rc {run.returncode}\n{run.stderr[-2000:]}"
        assert out, f"cycle {n} printed no outcome: {run.stderr[-2000:]}"
        if out["status"] == "ok" and writes(out) == 0:
            return n, statuses
    raise AssertionError(f"no convergence in {max_cycles} cycles: {statuses}")


def assert_reference(env: SyncEnv, reference: dict[str, Any]) -> None:
    assert journal_pending(env, LEE) == 0
    delta = diff(world_picture(env), reference["picture"])
    assert not delta, delta


def outlook_fault_case(
    base: Path, folder: Path, reference: dict[str, Any], name: str, seed: int, rate: float = RATE
) -> tuple[int, list[str]]:
    env, emu = clone(base, folder, scenario.EXTRA)
    try:
        set_fault(env, {**FAULTS[name], "rate": rate, "seed": seed})
        cycles, statuses = converge(env)
        set_fault(env, None)
        # Faults off: one more cycle must have nothing left to do.
        last = child_cycle(env.config, LEE).outcome()
        assert last["status"] == "ok" and writes(last) == 0, (statuses, last)
        assert_reference(env, reference)
        return cycles, statuses
    finally:
        emu.stop()


def test_commit_then_fail_on_post_never_duplicates_a_created_contact(
    base: Path, reference: dict[str, Any], tmp_path: Path
) -> None:
    """The answer of a create is lost although it happened; the retry must not create twice."""
    cycles, _ = outlook_fault_case(base, tmp_path / "w", reference, "commit-then-fail-post", seed=7)
    assert cycles <= MAX_CYCLES


def test_r12_a_delete_whose_answer_was_lost_is_not_resent_into_deleted_items(
    base: Path, reference: dict[str, Any], tmp_path: Path
) -> None:
    """Every DELETE is applied and its answer lost. A blind retry hit the copy in Deleted
    Items (same immutable id) and removed it for good; R12/R13 promise a recoverable copy."""
    env, emu = clone(base, tmp_path / "w", scenario.EXTRA)
    try:
        set_fault(env, {"status": "commit-then-fail", "methods": ["DELETE"], "rate": 1.0, "retry_after": 0})
        out = child_cycle(env.config, LEE).outcome()
        assert out["status"] == "ok", out
        set_fault(env, None)
        assert sorted(c["surname"] for c in env.graph(LEE).deleted()) == ["Costa", "Kim", "Liu"]
        assert writes(child_cycle(env.config, LEE).outcome()) == 0
        assert_reference(env, reference)
    finally:
        emu.stop()


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(FAULTS))
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_outlook_faults_at_20_percent_converge_without_duplicates(
    base: Path, reference: dict[str, Any], tmp_path: Path, name: str, seed: int
) -> None:
    cycles, statuses = outlook_fault_case(base, tmp_path / "w", reference, name, seed)
    print(f"fault {name} at {RATE:.0%} seed {seed}: quiet after {cycles} cycle(s): {statuses}")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["commit-then-fail-post", "commit-then-fail-delete", "500"])
def test_outlook_faults_at_50_percent_converge_without_duplicates(
    base: Path, reference: dict[str, Any], tmp_path: Path, name: str
) -> None:
    """Harsher than the issue asks. (A dropped connection loses the whole $batch, so "drop"
    at 50 % never lets a batch of 20 through: not tried.)"""
    cycles, statuses = outlook_fault_case(base, tmp_path / "w", reference, name, seed=11, rate=0.5)
    print(f"fault {name} at 50% seed 11: quiet after {cycles} cycle(s): {statuses}")


# --- the CRM side ------------------------------------------------------------------------
def crm_exec(env: SyncEnv, sql: str) -> None:
    engine = sa.create_engine(env.crm_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(sql))
    finally:
        engine.dispose()


def test_crm_constraint_rolls_back_one_unit_and_the_next_cycle_completes_it(
    base: Path, reference: dict[str, Any], tmp_path: Path
) -> None:
    env, emu = clone(base, tmp_path / "w", scenario.EXTRA)
    try:
        crm_exec(env, "CREATE TRIGGER no_eli BEFORE INSERT ON CONTACT WHEN NEW.FIRSTNAME = 'Eli' "
                      "BEGIN SELECT RAISE(ABORT, 'injected constraint'); END")
        first = child_cycle(env.config, LEE)
        out = first.outcome()
        assert first.returncode == 1 and out["status"] == "failed", out
        assert len(out["errors"]) >= 1 and all("Eli" in e or "rolled back" in e or "held back" in e
                                               for e in out["errors"]), out["errors"]
        # Only Eli's unit (and the Outlook tag of that pair) did not happen.
        assert writes(out) >= writes(reference["outcome"]) - 3, out
        crm_exec(env, "DROP TRIGGER no_eli")
        cycles, _ = converge(env)
        assert cycles <= 2
        assert_reference(env, reference)
    finally:
        emu.stop()


def test_crm_database_failing_mid_load_fails_the_cycle_cleanly_and_the_next_completes(
    base: Path, reference: dict[str, Any], tmp_path: Path
) -> None:
    """Updates run after creates: a broken UPDATE (OperationalError, like a lost connection)
    fails the cycle with creates already committed; the next cycle finishes without duplicates."""
    env, emu = clone(base, tmp_path / "w", scenario.EXTRA)
    try:
        crm_exec(env, "CREATE TABLE gone (x)")
        crm_exec(env, "CREATE TRIGGER lost_conn BEFORE UPDATE ON CONTACT BEGIN INSERT INTO gone VALUES (1); END")
        crm_exec(env, "DROP TABLE gone")
        first = child_cycle(env.config, LEE)
        out = first.outcome()
        assert first.returncode == 1 and out["status"] == "failed", (first.stdout, first.stderr[-2000:])
        assert any("CRM database failed" in e for e in out["errors"]), out["errors"]
        created = env.crm_rows("SELECT COUNT(*) AS n FROM CONTACT WHERE CONTACTID LIKE 'CSYNC%'")[0]["n"]
        assert created == 3  # the creates before the failure stay committed
        crm_exec(env, "DROP TRIGGER lost_conn")
        cycles, _ = converge(env)
        assert cycles <= 2
        assert_reference(env, reference)
    finally:
        emu.stop()
