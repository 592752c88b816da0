"""The speed floors that used to be timed tests, measured here instead (the house rule:
speed and memory goals live in benchmarks, not in tests that fail when the machine is busy).

``python -m bench.speed_floors`` (``make bench-floors``; ``BENCH_FLOORS_REPEAT``, default 3).
Each floor is one operation at the size its test covered, timed ``repeat`` times in this
process (the best run is the figure; CPU and wall both), next to the bound the old test
asserted, so a regression of an order of magnitude shows as ``within_bound: false``:

- ``state_links_100k``: save 100,000 links, load them, upsert 1,000 (tests/state/test_scale.py
  holds what they read back);
- ``state_mirror_100k``: the Outlook mirror of 100,000 saved, loaded, 1,000 changed + 100 removed;
- ``crm_extract_100k``: the security-scoped group read of 100,000 members on SQLite
  (tests/crm/test_scale.py);
- ``crm_create_20k``: 20,000 CRM creates in one writer call (tests/crm/test_scale.py);
- ``record_problems_100k``: R19's record checks over 100,000 Outlook rows
  (tests/quality/test_quality.py);
- ``emulator_creates_1000`` / ``emulator_delta_10k``: the emulator's 1,000 creates through 50
  ``$batch`` and a delta of 10,000 contacts (tests/emulator/test_performance.py): the
  emulator must not be what the sync's benchmarks measure.

Results: ``bench/results/speed_floors.json`` with the load average before and after.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import requests
import sqlalchemy as sa

from bench.harness import RESULTS, log, machine

REPEAT = int(os.environ.get("BENCH_FLOORS_REPEAT", "3"))
USER = "ULEE00000001"
JSON = {"Content-Type": "application/json"}


def _timed(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, out


def _best(runs: list[dict[str, float]]) -> dict[str, float]:
    """Each figure's minimum over the runs (the machine's noise only ever adds)."""
    return {k: round(min(r[k] for r in runs), 4) for k in runs[0]}


# --- the state store ---------------------------------------------------------------------
def snapshots(n: int) -> pd.DataFrame:
    """``n`` pairs' snapshots, seven fields filled (the tests' data at scale too)."""
    from contactsync.model import FIELDS
    from contactsync.plan.schema import SNAPSHOT_COLUMNS

    frame = pd.DataFrame({"crm_id": [f"CSYNC{i:07d}" for i in range(n)],
                          "outlook_id": [f"AAMkAGI2THVSAAA{i:09d}=" for i in range(n)]})
    for f in FIELDS:
        frame[f] = [f"{f} {i}" for i in range(n)] if f in (
            "first_name", "last_name", "email1", "company", "job_title", "city", "work_phone") else None
    return frame.reindex(columns=list(SNAPSHOT_COLUMNS))


def state_links(folder: Path, n: int = 100_000) -> dict[str, float]:
    from contactsync.state import StateStore

    snaps = snapshots(n)
    changed = snaps.sample(1000, random_state=7).assign(city="Lyon")
    store = StateStore(f"sqlite:///{folder / 'links.db'}")
    try:
        save, _, _ = _timed(lambda: store.save_pairs(USER, snaps))
        load, load_cpu, links = _timed(lambda: store.load_links(USER))
        upsert, _, _ = _timed(lambda: store.save_pairs(USER, changed))
        assert len(links) == n
    finally:
        store.close()
    (folder / "links.db").unlink()
    return {"save_s": save, "load_s": load, "load_cpu_s": load_cpu, "upsert_1000_s": upsert}


def state_mirror(folder: Path, n: int = 100_000) -> dict[str, float]:
    from contactsync.model import OUTLOOK_COLUMNS
    from contactsync.state import StateStore

    frame = snapshots(n).drop(columns=["crm_id", "new_key"]).assign(
        change_key="EQAAABYAAAA", outlook_created=pd.Timestamp("2024-01-01", tz="UTC"),
        outlook_modified=pd.Timestamp("2024-06-01 10:00", tz="UTC")).reindex(columns=list(OUTLOOK_COLUMNS))
    store = StateStore(f"sqlite:///{folder / 'mirror.db'}")
    try:
        save, _, _ = _timed(lambda: store.save_outlook(USER, "F", "t1", frame=frame, full=True))
        load, load_cpu, (_, loaded) = _timed(lambda: store.load_outlook(USER, "F"))
        inc, _, _ = _timed(lambda: store.save_outlook(
            USER, "F", "t2", changed=frame.head(1000).assign(city="Oslo"),
            removed_ids=frame["outlook_id"].tail(100).tolist()))
        assert len(loaded) == n
    finally:
        store.close()
    (folder / "mirror.db").unlink()
    return {"save_s": save, "load_s": load, "load_cpu_s": load_cpu, "incremental_1100_s": inc}


# --- the CRM -----------------------------------------------------------------------------
def big_group(url: str, n: int) -> sa.Engine:
    """The demo CRM at ``url`` with ``n`` more contacts (CBIGA0000000...), each with an
    address (every other one of two lines), all in Lee's sync group, visible to everyone."""
    from contactsync.crm import demo
    from contactsync.crm.schema import crm_tables, make_engine
    from contactsync.crm.setup import init_database

    init_database(url, demo=True)
    engine, t, now = make_engine(url), crm_tables(None), datetime(2025, 6, 1)
    contacts = [{"CONTACTID": f"CBIGA{i:07d}", "ACCOUNTID": demo.aid(1 + i % 7), "ACCOUNT": "x",
                 "FIRSTNAME": f"F{i}", "LASTNAME": f"L{i}", "EMAIL": f"p{i}@big.example",
                 "WORKPHONE": "+1 555 0100", "ADDRESSID": f"aBIGA{i:07d}", "SECCODEID": demo.EVERYONE,
                 "CREATEDATE": now, "MODIFYDATE": now} for i in range(n)]
    addresses = [{"ADDRESSID": f"aBIGA{i:07d}", "ENTITYID": f"CBIGA{i:07d}", "ADDRESS1": f"{i} Main St",
                  "ADDRESS2": "Floor 2" if i % 2 else None, "CITY": "Town", "MODIFYDATE": now}
                 for i in range(n)]
    with engine.begin() as conn:
        conn.execute(sa.insert(t.contact), contacts)
        conn.execute(sa.insert(t.address), addresses)
        conn.execute(sa.insert(t.adhocgroup), [{"GROUPID": demo.LEE_GROUP, "ENTITYID": c["CONTACTID"]}
                                                for c in contacts])
    return engine


def _big_crm(folder: Path, n: int) -> sa.Engine:
    from contactsync.crm.schema import make_engine

    url = f"sqlite:///{folder / 'crm.db'}"
    return make_engine(url) if (folder / "crm.db").exists() else big_group(url, n)


def crm_extract(folder: Path, n: int = 100_000) -> dict[str, float]:
    from contactsync.crm import demo
    from contactsync.crm.extract import CrmReader

    engine = _big_crm(folder, n)
    try:
        wall, cpu, frame = _timed(lambda: CrmReader(engine, schema=None, user_id=demo.LEE).extract_group(demo.GROUP_NAME))
        assert len(frame) >= n
    finally:
        engine.dispose()
    return {"wall_s": wall, "cpu_s": cpu}


def create_plan(n: int) -> pd.DataFrame:
    """A first sync's CRM side: ``n`` creates (emails x{i}@y.example) under one new account."""
    from contactsync.plan.schema import ACTION_COLUMNS

    return pd.DataFrame([
        {"action_id": f"a{i}", "side": "crm", "op": "create", "new_key": f"new:o{i}",
         "account_key": "acct:Big Co", "fields": "first_name,last_name,email1,street,city,work_phone",
         "first_name": f"F{i}", "last_name": f"L{i}", "email1": f"x{i}@y.example",
         "street": "1 Road\nFloor 2", "city": "Town", "work_phone": "+1 555 0100"} for i in range(n)
    ] + [{"action_id": "acct", "side": "crm", "op": "create_account", "account_key": "acct:Big Co",
          "account_name": "Big Co"}]).reindex(columns=list(ACTION_COLUMNS))


def crm_create(folder: Path, n: int = 20_000) -> dict[str, float]:
    from contactsync.crm import demo
    from contactsync.crm.ids import IdAllocator
    from contactsync.crm.load import CrmWriter
    from contactsync.crm.schema import make_engine
    from contactsync.crm.setup import init_database

    for name in ("create.db", "create-state.db"):
        (folder / name).unlink(missing_ok=True)
    url = f"sqlite:///{folder / 'create.db'}"
    init_database(url, demo=True)
    engine, state = make_engine(url), make_engine(f"sqlite:///{folder / 'create-state.db'}")
    writer = CrmWriter(engine, schema=None, user_id=demo.LEE, site_code="SYNC",
                       allocator=IdAllocator(state, engine, None, "SYNC"))
    plan = create_plan(n)
    try:
        wall, cpu, result = _timed(lambda: writer.apply(plan, group_id=demo.LEE_GROUP))
        assert (result["status"] == "applied").all()
    finally:
        engine.dispose()
        state.dispose()
    return {"wall_s": wall, "cpu_s": cpu, "creates_per_cpu_s": n / cpu}


# --- R19's checks --------------------------------------------------------------------------
def outlook_rows(n: int) -> pd.DataFrame:
    """``n`` valid Outlook contacts but row 4242, whose email1 is "bad" (R19)."""
    from contactsync import model

    i = np.arange(n).astype(str)
    frame = model.conform(pd.DataFrame({
        "outlook_id": np.char.add("AAMk", i), "first_name": np.char.add("Anna", i),
        "last_name": "Berg", "job_title": "Engineer", "company": "ACME",
        "email1": np.char.add(np.char.add("anna.", i), "+x@example.com"),
        "work_phone": "+49 30 1234", "street": "Hauptstr. 1\nHinterhaus", "city": "Berlin",
        "postal_code": "10115", "country": "DE", "birthday": "1980-05-04", "categories": "VIP, Kunde",
    }), model.OUTLOOK_COLUMNS)
    frame.loc[4242, "email1"] = "bad"
    return frame


def record_problems(_folder: Path, n: int = 100_000) -> dict[str, float]:
    from contactsync import quality

    frame = outlook_rows(n)
    wall, cpu, problems = _timed(lambda: quality.record_problems(frame, side="outlook", id_column="outlook_id"))
    assert problems["record_id"].tolist() == ["AAMk4242"]
    return {"wall_s": wall, "cpu_s": cpu}


# --- the emulator ----------------------------------------------------------------------------
def _emulator(folder: Path) -> tuple[Any, requests.Session, str, str]:
    from contactsync.emulator import start_in_thread

    (folder / "graph.db").unlink(missing_ok=True)
    handle = start_in_thread(db_path=folder / "graph.db")
    http = requests.Session()
    http.headers["Authorization"] = "Bearer bench"
    user = f"{handle.graph_url}/users/lee%40example.com"
    r = http.post(f"{user}/contactFolders", json={"displayName": "CRM Contacts"})
    r.raise_for_status()
    return handle, http, user, r.json()["id"]


def emulator_creates(folder: Path) -> dict[str, float]:
    handle, http, _, fid = _emulator(folder)
    url = f"/users/lee@example.com/contactFolders/{fid}/contacts"

    def creates() -> None:
        for b in range(50):
            items = [{"id": str(i), "method": "POST", "url": url, "headers": JSON,
                      "body": {"givenName": f"G{b}-{i}", "surname": "S",
                               "emailAddresses": [{"address": f"g{b}.{i}@example.com"}]}} for i in range(20)]
            answers = http.post(f"{handle.graph_url}/$batch", json={"requests": items}).json()["responses"]
            assert all(a["status"] == 201 for a in answers)

    try:
        wall, cpu, _ = _timed(creates)
    finally:
        handle.stop(wait=False)
    return {"wall_s": wall, "cpu_s_client_and_emulator": cpu}


def emulator_delta(folder: Path, n: int = 10_000) -> dict[str, float]:
    handle, http, user, fid = _emulator(folder)
    store = handle.store
    store.create_contacts(store.mailbox("lee@example.com"), fid,
                          [{"givenName": f"G{i}", "surname": "S", "emailAddresses": [{"address": f"{i}@x.org"}]}
                           for i in range(n)])

    def full() -> str:
        url, seen, link = f"{user}/contactFolders/{fid}/contacts/delta", 0, ""
        while url:
            body = http.get(url, headers={"Prefer": "odata.maxpagesize=1000"}).json()
            seen += len(body["value"])
            url, link = body.get("@odata.nextLink"), body.get("@odata.deltaLink", link)
        assert seen == n
        return link

    try:
        wall, cpu, link = _timed(full)
        quiet, _, answer = _timed(lambda: http.get(link).json())
        assert answer["value"] == []
    finally:
        handle.stop(wait=False)
    return {"full_wall_s": wall, "full_cpu_s": cpu, "quiet_wall_s": quiet}


#: name -> (measure, {figure: the bound the old timed test asserted})
FLOORS: dict[str, tuple[Callable[[Path], dict[str, float]], dict[str, float]]] = {
    "state_links_100k": (state_links, {"load_s": 4.0, "upsert_1000_s": 1.0}),
    "state_mirror_100k": (state_mirror, {"load_s": 5.0, "incremental_1100_s": 1.0}),
    "crm_extract_100k": (crm_extract, {"cpu_s": 6.0}),
    "crm_create_20k": (crm_create, {"cpu_s": 20_000 / 2500}),
    "record_problems_100k": (record_problems, {"cpu_s": 2.5}),
    "emulator_creates_1000": (emulator_creates, {"wall_s": 5.0}),
    "emulator_delta_10k": (emulator_delta, {"full_wall_s": 5.0, "quiet_wall_s": 0.5}),
}


def main() -> dict[str, Any]:
    load_before = list(os.getloadavg())
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="contactsync-floors-") as tmp:
        for name, (measure, bounds) in FLOORS.items():
            log(f"floors: {name} x{REPEAT} ...")
            best = _best([measure(Path(tmp)) for _ in range(REPEAT)])
            within = all(best[k] <= bound for k, bound in bounds.items())
            out[name] = {"best_of": REPEAT, "figures": best, "bounds": bounds, "within_bound": within}
            log(f"  {best} (bounds {bounds}: {'within' if within else 'OVER'})")
    result = {
        "what": "the speed floors the timed tests used to assert, measured (best of BENCH_FLOORS_REPEAT runs)",
        "how_to_run": "python -m bench.speed_floors  (make bench-floors)",
        "machine": machine(), "load_average_before": load_before,
        "load_average_after": list(os.getloadavg()), "floors": out,
        "all_within_bounds": all(f["within_bound"] for f in out.values()),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "speed_floors.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
