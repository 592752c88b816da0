"""Issue 15 goal 2: a cycle's own cost at 100,000 linked contacts, the old code beside the new.

``python -m bench.cycles_bench`` (``BENCH_CYCLES_N``, default 100000; ``BENCH_CYCLES_BASE``,
the commit to compare with, default the one before issue 15 goal 2's work).

The data (``bench.harness.build``'s mix: 100,000 people, 50 % on both sides) is seeded
once and cached in ``~/.cache/contact-sync-bench`` (``BENCH_FLEET_CACHE``), keyed by N.
Then, for each code (``old``: ``git archive`` of the base commit's ``contactsync/`` and
``bench/`` in a temporary folder; ``new``: this tree), from a fresh copy of that data: the
first sync (window lifted, no latency; minutes at 100,000), the echo (the next cycle, which
reads back the first sync's own 25,000 Outlook creates through delta) and ``edits_1pct``
(1 % of N edited on each side, then a cycle). Both codes see the same data; each code's
echo follows its own first sync, since what that sync records decides the echo's cost.

Figures, per cycle and code (``table`` in the result; the ratios old / new beside it):
the steps' CPU seconds (``cycle_cpu_s``, the goal's "own CPU"), the process's from the
cycle's start (``process_cpu_s``) and from the interpreter's start, imports included
(``process_cpu_with_imports_s``), and the process's peak RSS (VmHWM), the emulator's CPU
apart, with the emulator's latency at 0: the goal is the sync's own work outside Graph's
time. Both codes run in this interpreter with pyarrow installed (the bench refuses to run
without it: pandas' ``str`` dtype is Arrow's only with it). ``BENCH_CYCLES_PROFILE=1`` also writes a cProfile (CPU clock) of each cycle
to ``$TMPDIR/contactsync-cycles-<code>-<cycle>.prof``. Results: ``bench/results/cycles.json``, with the load average before and after.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.harness import PY, RESULTS, ROOT, UNLIMITED, USER, DataSet, Emulator, build, log, machine

BASE = "ee528d2"  # main before issue 15 goal 2's fourth round (this bench's "old"; a0849be before the first)
CACHE_VERSION = 1
SCENARIOS = ("echo", "edits_1pct")
#: The CPU figures compared old / new (each cycle's; ``figures`` in the result says what each holds).
FIGURES = ("cycle_cpu_s", "process_cpu_s", "process_cpu_with_imports_s")


def _cache_dir(n: int) -> Path:
    base = Path(os.environ.get("BENCH_FLEET_CACHE", Path.home() / ".cache" / "contact-sync-bench"))
    return base / f"cycles-{n}-v{CACHE_VERSION}"


def _config(folder: Path, graph_url: str, upn: str) -> Path:
    cfg = folder / "contact-sync.toml"
    cfg.write_text(
        f'[crm]\nurl = "sqlite:///{folder / "crm.db"}"\nsite_code = "SYNC"\n\n'
        f'[outlook]\ngraph_url = "{graph_url}"\ntoken = "bench"\n\n'
        '[state]\nurl = "sqlite:///state.db"\n\n'
        "[sync]\ngx_validation = false\n\n"
        f'[[users]]\ncrm_user = "{USER}"\nmailbox = "{upn}"\n'
    )
    return cfg


def _child(code_dir: Path, config: Path, profile: Path | None, *, arrow: bool = True) -> dict[str, Any]:
    """One timed cycle in a child process running the code in ``code_dir`` (``arrow=False``:
    as the default install, without pyarrow, bench/no_pyarrow.py)."""
    args = [PY, "-m", "bench.cycles_bench", "_cycle", str(config), USER]
    if profile is not None:
        args.append(str(profile))
    # BENCH_OVERLAP=0: the steps one after another, so that each step's CPU is its own
    # (with the overlap, the CRM read's thread would count in the Outlook extract's too).
    env = {**os.environ, "BENCH_CLIENT_WINDOW": f"{UNLIMITED}/600", "PYTHONPATH": str(code_dir),
           "BENCH_OVERLAP": "0"}
    if not arrow:
        from bench import no_pyarrow

        env = no_pyarrow.env(config.parent / "no-pyarrow", env)
    proc = subprocess.run(args, capture_output=True, text=True, cwd=code_dir, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"cycle child failed:\n{proc.stderr[-4000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if arrow and not result.get("pyarrow"):  # pandas' str dtype is Arrow's only with it: old and new alike
        raise RuntimeError(f"pyarrow is not importable by {PY}: install it (pip install pyarrow), "
                           "the two codes are compared with it installed")
    return result


def seeded_cache(n: int) -> Path:
    """The CRM and the folder of N people before any sync, built once (module docstring)."""
    cache = _cache_dir(n)
    if (cache / "manifest.json").exists():
        return cache
    shutil.rmtree(cache, ignore_errors=True)
    cache.mkdir(parents=True)
    log(f"cycles: seeding N={n} into {cache} (once) ...")
    emu = Emulator(cache / "graph.db")
    try:
        ds = build(cache, emu, n, "data")
        shutil.move(str(ds.folder / "crm.db"), cache / "crm.db")
        manifest = {"n": n, "port": emu.port, "upn": ds.upn, "folder_id": ds.folder_id,
                    "outlook_ids": {str(k): v for k, v in ds.outlook_ids.items()}}
    finally:
        emu.stop()
    shutil.rmtree(cache / "data", ignore_errors=True)
    (cache / "manifest.json").write_text(json.dumps(manifest))
    return cache


def old_code(base: str, into: Path) -> Path:
    """The base commit's ``contactsync/`` and ``bench/`` (plus this module) in ``into``."""
    into.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "archive", base, "contactsync", "bench"], cwd=ROOT.parent,
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    shutil.copy2(Path(__file__), into / "bench" / "cycles_bench.py")
    model = into / "contactsync" / "model.py"
    if "mode.string_storage" not in model.read_text():
        # A base from before pyarrow was a dependency: with pyarrow installed its inferred
        # text would be Arrow-stored, which this tree pins to Python storage (contactsync.model);
        # the same pin for the base, so that the two codes differ by their code alone.
        (into / "sitecustomize.py").write_text(
            'import pandas as pd\npd.set_option("mode.string_storage", "python")\n')
    return into


def run_code(label: str, code_dir: Path, cache: Path, work: Path, profile: bool) -> dict[str, Any]:
    """First sync, echo, 1 %-edits from a fresh copy of the seeded data, with the code in ``code_dir``."""
    from bench.run import edit_one_percent

    manifest = json.loads((cache / "manifest.json").read_text())
    folder = work / label
    folder.mkdir()
    # Development: BENCH_CYCLES_KEEP=1 keeps each code's state after its first sync, and
    # BENCH_CYCLES_FROM_FIRST=1 starts from it (echo and edits in a minute, not ten).
    kept = cache / f"after-first-{label}"
    from_first = os.environ.get("BENCH_CYCLES_FROM_FIRST") == "1" and kept.exists()
    source = kept if from_first else cache
    for name in ("crm.db", "graph.db", "state.db"):
        for part in (name, f"{name}-wal"):  # a WAL not yet checkpointed holds the last writes
            if (source / part).exists():
                shutil.copy2(source / part, folder / part)
    emu = Emulator(folder / "graph.db", port=manifest["port"])
    out: dict[str, Any] = {}
    try:
        emu.limits(requests_per_window=UNLIMITED, window_s=600.0)
        cfg = _config(folder, emu.graph_url, manifest["upn"])
        ds = DataSet(manifest["n"], folder, f"sqlite:///{folder / 'crm.db'}", cfg, manifest["upn"],
                     manifest["folder_id"], {int(k): v for k, v in manifest["outlook_ids"].items()})
        for name in SCENARIOS if from_first else ("first_sync", *SCENARIOS):
            if name == "echo" and os.environ.get("BENCH_CYCLES_KEEP") == "1" and not from_first:
                emu.stop()
                shutil.rmtree(kept, ignore_errors=True)
                shutil.copytree(folder, kept)
                emu = Emulator(folder / "graph.db", port=manifest["port"])
                emu.limits(requests_per_window=UNLIMITED, window_s=600.0)
            edits = edit_one_percent(ds, emu) if name == "edits_1pct" else None
            emu.reset_stats()
            emu_cpu = emu.cpu_s()
            prof = Path(tempfile.gettempdir()) / f"contactsync-cycles-{label}-{name}.prof" if profile else None
            log(f"cycles [{label}] {name} ...")
            r = _child(code_dir, cfg, prof)
            r["emulator_cpu_s"] = round(emu.cpu_s() - emu_cpu, 2)
            r["http_requests"] = emu.stats()["requests"]
            if edits:
                r["edits"] = edits
            r["cycle_cpu_s"] = round(sum(r["steps_cpu_s"].values()), 3)
            log(f"  {r['status']}: {r['process_cpu_s']} s CPU ({r['cycle_cpu_s']} in steps; "
                f"{r['process_cpu_with_imports_s']} with the process's start and imports), {r['wall_s']} s wall, "
                f"peak RSS {r['peak_rss_mb']} MB, {r['counts']}, steps {r['steps_cpu_s']}")
            out[name] = r
    finally:
        emu.stop()
    return out


def _header(what: str, how: str, load_before: tuple[float, float, float]) -> dict[str, Any]:
    """What a result file says first: what it measured, how to run it, where and under which load."""
    return {"what": what, "how_to_run": how, "machine": machine(),
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()]}


def main() -> int:
    n = int(os.environ.get("BENCH_CYCLES_N", "100000"))
    base = os.environ.get("BENCH_CYCLES_BASE", BASE)
    profile = os.environ.get("BENCH_CYCLES_PROFILE", "0") == "1"
    cache = seeded_cache(n)
    work = Path(tempfile.mkdtemp(prefix="contactsync-cycles-"))
    load_before = os.getloadavg()
    try:
        wanted = os.environ.get("BENCH_CYCLES_CODES", "old,new").split(",")
        codes = {"old": lambda: old_code(base, work / "old-code"), "new": lambda: ROOT.parent}
        # One run at a time per cache: each run's emulator serves on the cache's port (its
        # delta links name it), so a second run waits here instead of failing to bind.
        with open(cache / ".run.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            runs = {label: run_code(label, codes[label](), cache, work, profile) for label in wanted}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ratios = {name: {f"{key}_old_over_new": round(runs["old"][name][key] / max(1e-3, runs["new"][name][key]), 2)
                     for key in FIGURES}
              for name in SCENARIOS if "old" in runs and "new" in runs}
    table = {name: {label: {key: runs[label][name][key] for key in (*FIGURES, "peak_rss_mb")} for label in runs}
             for name in SCENARIOS if all(name in r for r in runs.values())}
    result = {
        **_header(f"issue 15 goal 2: cycle CPU at N={n} linked contacts, the base commit {base} ('old') "
                  "beside this tree ('new'), same cached first-synced state, emulator latency 0",
                  "python -m bench.cycles_bench  (BENCH_CYCLES_N, BENCH_CYCLES_BASE, BENCH_CYCLES_PROFILE=1)",
                  load_before),
        "goal": "echo and edits_1pct each <= 3 s of the sync's own CPU",
        "figures": {"cycle_cpu_s": "the cycle's steps (the goal's 'own CPU')",
                    "process_cpu_s": "the cycle's process from the cycle's start: steps, run record, imports made on the way",
                    "process_cpu_with_imports_s": "the whole process: interpreter start and every import too",
                    "peak_rss_mb": "the cycle process's peak resident set (VmHWM)"},
        "goal_met": {name: {label: runs[label][name]["cycle_cpu_s"] <= 3.0 for label in runs}
                     for name in SCENARIOS if all(name in r for r in runs.values())},
        "table": table, "ratios": ratios, "runs": runs,
    }
    if set(runs) != {"old", "new"}:  # a partial run (development): printed, not recorded
        print(json.dumps(result, indent=2, default=str))
        return 0
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "cycles.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    for name in SCENARIOS:
        old, new = runs["old"][name], runs["new"][name]
        log(f"cycles: {name}: steps old {old['cycle_cpu_s']} s, new {new['cycle_cpu_s']} s CPU "
            f"(x{ratios[name]['cycle_cpu_s_old_over_new']}); process with imports old "
            f"{old['process_cpu_with_imports_s']} s, new {new['process_cpu_with_imports_s']} s "
            f"(x{ratios[name]['process_cpu_with_imports_s_old_over_new']}); peak RSS old {old['peak_rss_mb']} MB, "
            f"new {new['peak_rss_mb']} MB")
    return 0


def _cycle_child(config: str, user: str, profile: str | None) -> int:
    from contactsync.outlook import pacing

    limit, seconds = os.environ["BENCH_CLIENT_WINDOW"].split("/")
    pacing.MAILBOX_WINDOW = (int(limit), float(seconds))
    from bench.driver import timed_cycle

    started = time.process_time()
    if profile:
        import cProfile

        prof = cProfile.Profile(time.process_time)  # CPU, not wall: the machine is shared
        result = prof.runcall(timed_cycle, config, user)
        prof.dump_stats(profile)
    else:
        result = timed_cycle(config, user)
    # The whole cycle's CPU: the steps plus what runs between them (the run record, the
    # settled fingerprint, imports a step makes on first use); and the process's, from the
    # interpreter's start (process_time counts from there): the fixed start a cycle of a
    # fresh command pays, imports included.
    result["process_cpu_s"] = round(time.process_time() - started, 3)
    result["process_cpu_with_imports_s"] = round(time.process_time(), 3)
    result["imports_before_the_cycle_cpu_s"] = round(started, 3)
    result["pyarrow"] = _pyarrow()
    print(json.dumps(result, default=str))
    return 0


def _pyarrow() -> str | None:
    """pyarrow's version in this process (None: not installed), and so whether pandas'
    ``str`` dtype is Arrow's here."""
    try:
        import pyarrow
    except ImportError:
        return None
    return str(pyarrow.__version__)


def _best(step: Any, times: int = 3) -> float:
    """The least CPU seconds of ``times`` calls (the machine is shared: the least is the work)."""
    spent = []
    for _ in range(times):
        started = time.process_time()
        step()
        spent.append(time.process_time() - started)
    return round(min(spent), 3)


def floor() -> int:
    """``python -m bench.cycles_bench floor``: what a cycle at N that reads both sides in
    full cannot go under, part by part, on the cached first-synced data (run the bench
    with ``BENCH_CYCLES_KEEP=1`` once to have it). Results: ``bench/results/cycles_floor.json``.

    The CRM part is SQLite's own: the group read's statement run by the ``sqlite3``
    module, as ``count(*)`` (the join alone) and as ``fetchall`` (plus one Python object
    per value, what any DBAPI read of the frame costs), beside the reader's whole read.
    """
    import sqlite3

    import numpy as np
    import pandas as pd
    import sqlalchemy as sa

    from contactsync import model
    from contactsync.crm.extract import CrmReader
    from contactsync.cycle.settled import fingerprint, is_settled
    from contactsync.db import make_engine
    from contactsync.plan import PlanInputs, PlanSettings, plan_cycle
    from contactsync.state import StateStore

    n = int(os.environ.get("BENCH_CYCLES_N", "100000"))
    data = _cache_dir(n) / "after-first-new"
    if not (data / "state.db").exists():
        raise SystemExit(f"no first-synced data in {data}: run BENCH_CYCLES_KEEP=1 python -m bench.cycles_bench once")
    work = Path(tempfile.mkdtemp(prefix="contactsync-floor-"))
    load_before = os.getloadavg()
    try:
        for name in ("crm.db", "state.db"):  # read-only use of the cache: a copy
            for part in (name, f"{name}-wal"):
                if (data / part).exists():
                    shutil.copy2(data / part, work / part)
        reader = CrmReader(make_engine(f"sqlite:///{work / 'crm.db'}"), schema=None, user_id=USER)
        stmt = reader.group_statement("Outlook Sync")
        sql = str(stmt.compile(reader.engine, compile_kwargs={"literal_binds": True}))
        con = sqlite3.connect(work / "crm.db")
        figures: dict[str, float] = {
            "crm_sqlite_join_count": _best(lambda: con.execute(f"SELECT count(*) FROM ({sql})").fetchall()),
            "crm_sqlite_fetchall": _best(lambda: con.execute(sql).fetchall()),
        }
        con.close()
        crm = model.compact_emails(reader.read_group("Outlook Sync")[0])
        figures["crm_read_group"] = _best(lambda: reader.read_group("Outlook Sync"))
        store = StateStore(f"sqlite:///{work / 'state.db'}")
        user = model.pad_user(USER)
        with store.engine.connect() as conn:
            folder = conn.execute(sa.text("SELECT folder_id FROM outlook_delta WHERE crm_user = :u"),
                                  {"u": user}).scalar()
        outlook = store.load_outlook(user, folder)[1]
        links = store.load_links(user)
        figures["state_mirror_load"] = _best(lambda: store.load_outlook(user, folder))
        figures["state_links_load"] = _best(lambda: store.load_links(user))
        inputs = PlanInputs(crm=crm, outlook=outlook, links=links)
        rules = PlanSettings()
        planned = plan_cycle(inputs, rules)
        figures["plan"] = _best(lambda: plan_cycle(inputs, rules))

        def compare_every_field() -> None:  # the per-pair comparison no plan of every pair can skip
            c_at = pd.Index(crm["crm_id"].to_numpy(dtype=object)).get_indexer(links["crm_id"].to_numpy(dtype=object))
            o_at = pd.Index(outlook["outlook_id"].to_numpy(dtype=object)).get_indexer(
                links["outlook_id"].to_numpy(dtype=object))
            for f in rules.fields:
                snap = links[f].to_numpy(dtype=object)
                _ = (crm[f].to_numpy(dtype=object)[c_at] == snap) & (outlook[f].to_numpy(dtype=object)[o_at] == snap)

        figures["plan_of_which_field_comparisons"] = _best(compare_every_field)

        def hash_one_side() -> None:  # a per-row hash of the compared fields, of one side only
            pd.util.hash_pandas_object(crm[list(rules.fields)], index=False)

        figures["row_hashes_of_the_crm_side_instead"] = _best(hash_one_side)
        figures["settled_fingerprint"] = _best(lambda: fingerprint(crm, rules, user=user, group="g", folder="f"))
        figures["settled_fingerprint_per_cell_hashes"] = _best(
            lambda: np.sort(pd.util.hash_pandas_object(crm, index=False).to_numpy()))
        figures["is_settled"] = _best(lambda: is_settled(inputs, planned, pd.DataFrame()))
        store.close()
        imports = subprocess.run(
            [PY, "-c", "import time; t = time.process_time(); import contactsync.cycle.run, "
             "contactsync.cycle.sides, contactsync.outlook.client, contactsync.outlook.extract, "
             "contactsync.crm.extract; print(time.process_time() - t)"],
            capture_output=True, text=True, check=True, cwd=ROOT.parent, env={**os.environ, "PYTHONPATH": str(ROOT.parent)})
        figures["imports_of_a_fresh_process"] = round(float(imports.stdout.strip()), 3)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = {
        **_header(f"issue 15 goal 2: the floor of a cycle at N={n} that reads both sides in full, CPU s, "
                  "least of 3 (the delta pages a cycle reads from Graph are not in it)",
                  "python -m bench.cycles_bench floor", load_before),
        "rows": {"crm": len(crm), "outlook": len(outlook), "links": len(links)},
        "cpu_s": figures,
        "floor_sum_s": round(figures["crm_sqlite_fetchall"] + figures["state_mirror_load"] + figures["state_links_load"]
                             + figures["plan_of_which_field_comparisons"], 3),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "cycles_floor.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_cycle":
        sys.exit(_cycle_child(sys.argv[2], sys.argv[3], sys.argv[4] if len(sys.argv) > 4 else None))
    if len(sys.argv) > 1 and sys.argv[1] == "floor":
        sys.exit(floor())
    sys.exit(main())
