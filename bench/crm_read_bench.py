"""Issue 15 goals 2 and 3: the CRM read at 100,000 contacts, the old way beside the new.

``python -m bench.crm_read_bench`` (``make bench-crm-read``; ``BENCH_CYCLES_N``, default
100000). Data: the cycles bench's cached CRM (``~/.cache/contact-sync-bench/cycles-N-v1``,
read-only: copied to a temporary folder; built by ``python -m bench.cycles_bench`` once);
the user ``bench.harness.USER`` and its group of 75 % of N.

Figures, each the old way and the new in one run (CPU seconds of this process, the RSS
the result holds after a collection, their ratios), the load average before and after:
- ``group_read_postgres``: the group read on PostgreSQL (the same data copied into a
  throw-away server, bench/fleet.py's), SQLAlchemy's psycopg against
  ADBC (crm/arrow_read.py). Skipped where the server binaries are absent.
- ``group_read_sqlite``: the group read on SQLite, which stays on sqlite3 (arrow_read's
  docstring says why): one figure, the floor the other ways are measured against.
- ``group_read_sqlite_vs_base``: the group read (CPU; and the first read's peak RSS
  above the process's before it, and what its frame holds after a collection), the
  settled fingerprint of its frame and the driver's bare ``fetchall`` (the floor), for
  the base commit's code
  (``BENCH_CRM_READ_BASE``, default ``BASE``; its ``contactsync/`` by ``git archive``)
  beside this tree's, each in child processes taken in turn (``BENCH_CRM_READ_ROUNDS``
  rounds, the best of each): ratios old / new.
- ``first_sync_candidates_sqlite``: the first sync's R7 candidate read of every
  contact's email (a first sync's folder holds mostly the group's own people), all
  matches against those outside the group only (``outside_group=True``, issue 15 goal 3).
Results: ``bench/results/crm_read.json``.
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil

from bench.harness import RESULTS, USER, log, machine

GROUP = "Outlook Sync"
BASE = "ac65e3d"  # main before issue 15 goal 2's sixth round (crm6)
PY = sys.executable


def _measure(label: str, make: Callable[[], Any], runs: int = 3) -> dict[str, float]:
    """Best CPU of ``runs`` and the RSS the result holds (after a collection)."""
    proc = psutil.Process()
    best, held = float("inf"), 0.0
    for _ in range(runs):
        gc.collect()
        before = proc.memory_info().rss
        t0 = time.process_time()
        result = make()
        cpu = time.process_time() - t0
        gc.collect()
        held = max(held, (proc.memory_info().rss - before) / 1e6)
        best = min(best, cpu)
        del result
    log(f"crm_read: {label}: {best:.3f} s CPU, +{held:.0f} MB")
    return {"cpu_s": round(best, 3), "rss_added_mb": round(held, 1)}


def _pair(old: dict[str, float], new: dict[str, float]) -> dict[str, Any]:
    return {"old": old, "new": new,
            "cpu_ratio": round(old["cpu_s"] / new["cpu_s"], 2) if new["cpu_s"] else None,
            "rss_ratio": round(old["rss_added_mb"] / new["rss_added_mb"], 2) if new["rss_added_mb"] > 0 else None}


@contextmanager
def _postgres() -> Iterator[str | None]:
    """A throw-away PostgreSQL server's empty database (bench/fleet.py's, made for the
    Prefect server: the same server, read here with psycopg and ADBC)."""
    from bench.fleet import prefect_postgres

    with prefect_postgres() as url:
        yield None if url is None else url.replace("+asyncpg", "+psycopg")


def _copy_to_postgres(sqlite_path: Path, url: str) -> None:
    """The CRM's tables and rows, as they are, into the empty database ``url``."""
    import psycopg

    from contactsync.crm.schema import crm_tables
    from contactsync.crm.setup import init_database

    init_database(url)
    src = sqlite3.connect(sqlite_path)
    with psycopg.connect(url.replace("postgresql+psycopg", "postgresql")) as dst:
        for table in crm_tables(None).metadata.sorted_tables:
            cols = [c.name for c in table.columns]
            quoted = ", ".join(f'"{c}"' for c in cols)
            with dst.cursor() as cur, cur.copy(f'COPY "{table.name}" ({quoted}) FROM STDIN') as copy:
                for row in src.execute(f'SELECT {quoted} FROM "{table.name}"'):
                    copy.write_row(row)
        with dst.cursor() as cur:
            cur.execute("ANALYZE")
    src.close()


def _peak_rss_mb() -> float:
    """This process's peak resident set so far (VmHWM), MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024 / 1e6
    return float("nan")


def _child_figures(db: str) -> None:
    """In a child process (``_group DB``): the group read, the fingerprint of its frame
    and the bare fetchall of its statement, CPU seconds (best of 3), as JSON."""
    import sqlite3

    from contactsync import model
    from contactsync.crm.extract import CrmReader
    from contactsync.cycle.settled import fingerprint
    from contactsync.db import make_engine
    from contactsync.plan.schema import PlanSettings

    reader = CrmReader(make_engine(f"sqlite:///{db}"), schema=None, user_id=USER)
    proc = psutil.Process()
    gc.collect()
    base_mb = proc.memory_info().rss / 1e6
    frame = model.compact_emails(reader.read_group(GROUP)[0])  # the first read: its peak is the process's
    gc.collect()
    peak = {"peak_added_mb": round(_peak_rss_mb() - base_mb, 1),
            "held_mb": round(proc.memory_info().rss / 1e6 - base_mb, 1)}
    sql = str(reader.group_statement(GROUP).compile(reader.engine, compile_kwargs={"literal_binds": True}))
    con = sqlite3.connect(db)
    out = {
        "fetchall": _measure("fetchall", lambda: con.execute(sql).fetchall())["cpu_s"],
        "read_group": _measure("read_group", lambda: reader.read_group(GROUP))["cpu_s"],
        "fingerprint": _measure("fingerprint", lambda: fingerprint(
            frame, PlanSettings(), user=USER, group=GROUP, folder="Outlook Sync"))["cpu_s"],
        "members": len(frame),
        **peak,
    }
    print(json.dumps(out))


def _versus_base(db: Path, work: Path) -> dict[str, Any]:
    """The base commit's code beside this tree's, child processes in turn (module docstring)."""
    from bench.cycles_bench import old_code

    base = os.environ.get("BENCH_CRM_READ_BASE", BASE)
    old_dir = old_code(base, work / "old")
    shutil.copy2(Path(__file__), old_dir / "bench" / "crm_read_bench.py")
    codes = {"old": old_dir, "new": Path(__file__).resolve().parent.parent}
    runs: dict[str, list[dict[str, float]]] = {"old": [], "new": []}
    for _ in range(int(os.environ.get("BENCH_CRM_READ_ROUNDS", "2"))):
        for code, where in codes.items():
            proc = subprocess.run([PY, "-m", "bench.crm_read_bench", "_group", str(db)], cwd=where,
                                  env={**os.environ, "PYTHONPATH": str(where)}, capture_output=True,
                                  text=True, check=True)
            runs[code].append(json.loads(proc.stdout.strip().splitlines()[-1]))
    best = {code: {k: min(r[k] for r in rs)
                   for k in ("fetchall", "read_group", "fingerprint", "peak_added_mb", "held_mb")}
            for code, rs in runs.items()}
    return {"base": base, **best,
            "ratios_old_over_new": {k: round(best["old"][k] / best["new"][k], 2) if best["new"][k] else None
                                    for k in best["new"]},
            "read_above_fetchall_s": {c: round(b["read_group"] - b["fetchall"], 3) for c, b in best.items()}}


def main() -> None:
    from contactsync.crm.extract import CrmReader
    from contactsync.db import make_engine

    n = int(os.environ.get("BENCH_CYCLES_N", "100000"))
    cached = Path(os.environ.get("BENCH_FLEET_CACHE", Path.home() / ".cache" / "contact-sync-bench")) \
        / f"cycles-{n}-v1" / "crm.db"
    if not cached.exists():
        raise SystemExit(f"no cached CRM at {cached}: run python -m bench.cycles_bench once")
    work = Path(tempfile.mkdtemp(prefix="contactsync-crmread-"))
    load_before = os.getloadavg()
    result: dict[str, Any] = {"n": n, "machine": machine()}
    try:
        shutil.copy2(cached, work / "crm.db")
        engine = make_engine(f"sqlite:///{work / 'crm.db'}")
        reader = CrmReader(engine, schema=None, user_id=USER)
        assert reader.arrow is None  # SQLite: sqlite3 only
        members = len(reader.read_group(GROUP)[0])
        result["group_members"] = members
        result["group_read_sqlite"] = _measure("group read, SQLite", lambda: reader.read_group(GROUP))
        synced = cached.parent / "after-first-new" / "crm.db"  # the echo's and the 1 % cycle's CRM
        if synced.exists():
            shutil.copy2(synced, work / "synced.db")
        result["group_read_sqlite_vs_base"] = _versus_base(
            work / ("synced.db" if synced.exists() else "crm.db"), work)
        log(f"crm_read: versus base: {result['group_read_sqlite_vs_base']}")
        with sqlite3.connect(work / "crm.db") as con:
            emails = [e for (e,) in con.execute('SELECT "EMAIL" FROM "CONTACT" WHERE "EMAIL" IS NOT NULL')]
        result["candidate_emails"] = len(emails)
        result["candidate_rows"] = {
            "all_matches": len(reader.candidates_by_email(emails)),
            "outside_the_group": len(reader.candidates_by_email(emails, outside_group=True))}
        result["first_sync_candidates_sqlite"] = _pair(
            _measure("candidates, all matches", lambda: reader.candidates_by_email(emails), runs=2),
            _measure("candidates, outside the group", lambda: reader.candidates_by_email(
                emails, outside_group=True), runs=2))
        with _postgres() as base:
            if base is None:
                result["group_read_postgres"] = "skipped: no PostgreSQL server binaries"
            else:
                t0 = time.perf_counter()
                _copy_to_postgres(work / "crm.db", base)
                log(f"crm_read: copied the CRM into PostgreSQL in {time.perf_counter() - t0:.0f} s")
                pg = make_engine(base)
                new, old = (CrmReader(pg, schema=None, user_id=USER),
                            CrmReader(pg, schema=None, user_id=USER, arrow=False))
                assert new.arrow is not None
                got, want = new.read_group(GROUP)[0], old.read_group(GROUP)[0]
                if os.environ.get("BENCH_CRM_READ_DEBUG"):
                    import pickle
                    Path("/tmp/a5_pg_frames.pkl").write_bytes(pickle.dumps((got, want)))
                assert len(got) == len(want) == members, "the two reads differ in rows"
                # Row order is the server's (no ORDER BY): compared in crm_id order.
                key = "crm_id"
                assert got.sort_values(key).reset_index(drop=True).equals(
                    want.sort_values(key).reset_index(drop=True)), "the two reads differ"
                del got, want
                result["group_read_postgres"] = _pair(
                    _measure("group read, PostgreSQL via psycopg", lambda: old.read_group(GROUP)),
                    _measure("group read, PostgreSQL via ADBC", lambda: new.read_group(GROUP)))
                pg.dispose()
        engine.dispose()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["load_average"] = {"before": [round(x, 2) for x in load_before],
                              "after": [round(x, 2) for x in os.getloadavg()]}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "crm_read.json").write_text(json.dumps(result, indent=2) + "\n")
    log(f"crm_read: {RESULTS / 'crm_read.json'}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["_group"]:
        _child_figures(sys.argv[2])
    else:
        main()
