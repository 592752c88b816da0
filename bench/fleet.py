"""The fleet (issue 15 item 1): a whole sales force's quiet 15-minute cycle in ONE command.

``python -m bench.fleet`` (or ``BENCH_FLEET=1 python -m bench.run``). A CRM of
``BENCH_FLEET_CONTACTS`` contacts (default 1,000,000) and ``BENCH_FLEET_USERS`` users
(default 500) in teams of 10; each user owns a contact sync group of
``BENCH_FLEET_GROUP`` (default 2,000): 3/4 of it the team's shared territory, 1/4 the
user's own accounts, so teammates' groups overlap as real teams' do. Each team has an
owner (SECCODE) that its members have rights to (SECRIGHTS, R1); the contacts outside
every group belong to an owner none of them sees. Graph is the emulator in its own
process, 50 ms per request.

Set-up (cached, keyed by the parameters, in ``BENCH_FLEET_CACHE`` or
``~/.cache/contact-sync-bench``): the CRM is written, each mailbox's folder is seeded with
the same people, then every user goes through two REAL cycles (``run_cycle``, no Prefect,
0 latency, Graph's limits lifted): the first links every pair by email (R7), the second
plans nothing and settles (R17). Reruns copy the cached files and skip all that.

Timed: after one warm-up command (it starts the local Prefect server, as the first
command after a boot does), one ``contact-sync sync --json`` of every user in one process
(``python -m bench.fleet child``, the CLI's own entry with counters attached): wall, CPU
of the command, of the Prefect server and of the emulator; CRM statements per user (from
the user id bound in each statement), Graph requests per mailbox (from the client's HTTP
session), thread-seconds in CRM SQL, state-store SQL, Graph, and the cycles' own time;
and the SQLite query plan of the group/SECRIGHTS/CONTACT read.

Goals: under 5 minutes; at most 2 Graph requests and 1 CRM read per user.
Results: ``bench/results/fleet.json``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench.harness import (
    LATENCY_MS,
    NOW,
    PY,
    RESULTS,
    Emulator,
    graph_body,
    log,
    machine,
    person,
)
from contactsync.crm.schema import crm_tables
from contactsync.crm.setup import init_database

#: Bump when the data set's shape changes: old caches are then built anew.
BUILD_VERSION = 1
TEAM = 10
T = crm_tables(None)
CONTACT_SYNC = str(Path(PY).with_name("contact-sync"))
GROUP_NAME = "Outlook Sync"
REPO = Path(__file__).resolve().parent.parent


def params() -> dict[str, int]:
    return {"users": int(os.environ.get("BENCH_FLEET_USERS", "500")),
            "contacts": int(os.environ.get("BENCH_FLEET_CONTACTS", "1000000")),
            "group": int(os.environ.get("BENCH_FLEET_GROUP", "2000")), "team": TEAM, "version": BUILD_VERSION}


def uid(u: int) -> str:
    return f"UFLT{u:08d}"


def mailbox(u: int) -> str:
    return f"fleet{u:05d}@bench.example"


def members(u: int, group: int) -> list[int]:
    """Contact numbers in user ``u``'s group: the team's shared 3/4, then the user's own 1/4."""
    team, k = divmod(u, TEAM)
    shared, own = group * 3 // 4, group - group * 3 // 4
    base = team * (shared + TEAM * own)
    return [base + i for i in range(shared)] + [base + shared + k * own + i for i in range(own)]


def team_owner(team: int) -> str:
    return f"FTEAM{team:07d}"


def team_of(i: int, p: dict[str, int]) -> int:
    """The team whose territory holds contact ``i`` (past every territory: the owner nobody sees)."""
    per_team = p["group"] * 3 // 4 + TEAM * (p["group"] - p["group"] * 3 // 4)
    return min(i // per_team, -(-p["users"] // TEAM))


def _crm(folder: Path, p: dict[str, int]) -> str:
    """The CRM: teams' owners, users with rights and groups, and every contact."""
    url = f"sqlite:///{folder / 'crm.db'}"
    init_database(url)
    teams = -(-p["users"] // TEAM)
    per_team = p["group"] * 3 // 4 + TEAM * (p["group"] - p["group"] * 3 // 4)
    if teams * per_team > p["contacts"]:
        raise SystemExit(f"BENCH_FLEET_CONTACTS must be at least {teams * per_team} for these groups")
    audit = {"CREATEDATE": NOW, "CREATEUSER": "ADMIN", "MODIFYDATE": NOW, "MODIFYUSER": "ADMIN"}
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.insert(T.seccode), [{"SECCODEID": team_owner(t), "SECCODEDESC": f"Team {t}",
                                              "SECCODETYPE": "G", **audit} for t in range(teams + 1)])
        conn.execute(sa.insert(T.account), [{"ACCOUNTID": f"AFLT{t:08d}", "ACCOUNT": f"Fleet Team {t} Inc",
                                              "ACCOUNT_UC": f"FLEET TEAM {t} INC", "SECCODEID": team_owner(t),
                                              **audit} for t in range(teams + 1)])
        for u in range(p["users"]):
            conn.execute(sa.insert(T.userinfo).values(USERID=uid(u), USERNAME=f"Fleet {u}", FIRSTNAME="Fleet",
                                                      LASTNAME=f"User{u}", EMAIL=mailbox(u), **audit))
            conn.execute(sa.insert(T.usersecurity).values(USERID=uid(u), USERCODE=f"fleet{u}", TYPE="N",
                                                          DEFAULTSECCODEID=team_owner(u // TEAM), ENABLED="T",
                                                          **audit))
            conn.execute(sa.insert(T.secrights).values(SECRIGHTSID=f"QFLT{u:08d}", SECCODEID=team_owner(u // TEAM),
                                                       ACCESSID=uid(u), PROFILEID="QFLTPROFILE1", **audit))
            conn.execute(sa.insert(T.plugin).values(PLUGINID=f"pFLT{u:08d}", NAME=GROUP_NAME, FAMILY="Contact",
                                                    TYPE=8, USERID=uid(u), ISPUBLIC="F", BASEDON="CONTACT", **audit))
        rows: list[dict[str, Any]] = []
        for i in range(p["contacts"]):
            team = team_of(i, p)
            q = person(i)
            rows.append({"CONTACTID": f"CFLT{i:08d}", "ACCOUNTID": f"AFLT{team:08d}",
                         "ACCOUNT": f"Fleet Team {team} Inc", "FIRSTNAME": q["first"], "LASTNAME": q["last"],
                         "LASTNAME_UC": q["last"].upper(), "TITLE": q["title"], "EMAIL": q["email"],
                         "WORKPHONE": q["phone"], "SECCODEID": team_owner(team), "TYPE": "Customer",
                         "STATUS": "Active", **audit})
            if len(rows) == 50_000:
                conn.execute(sa.insert(T.contact), rows)
                rows = []
        if rows:
            conn.execute(sa.insert(T.contact), rows)
        for u in range(p["users"]):
            conn.execute(sa.insert(T.adhocgroup), [{"GROUPID": f"pFLT{u:08d}", "ENTITYID": f"CFLT{i:08d}",
                                                    **audit} for i in members(u, p["group"])])
    engine.dispose()
    return url


def _config(folder: Path, graph_url: str) -> Path:
    cfg = folder / "contact-sync.toml"
    cfg.write_text(
        f'[crm]\nurl = "sqlite:///{folder / "crm.db"}"\nsite_code = "SYNC"\n\n'
        f'[outlook]\ngraph_url = "{graph_url}"\ntoken = "bench"\n\n'
        f'[state]\nurl = "sqlite:///{folder / "state.db"}"\n\n'
        f'[sync]\ngroup_name = "{GROUP_NAME}"\ngx_validation = false\n\n'
        "[users_from_crm]\nenabled = true\n"
    )
    return cfg


def build(folder: Path, p: dict[str, int]) -> dict[str, Any]:
    """The settled fleet in ``folder``, made with the real cycles (module docstring)."""
    folder.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    _crm(folder, p)
    log(f"fleet: CRM written ({p['contacts']:,} contacts) in {time.perf_counter() - started:.0f} s")
    emu = Emulator(folder / "graph.db")
    try:
        for u in range(p["users"]):
            fid = emu.make_folder(mailbox(u))
            bodies = []
            for i in members(u, p["group"]):
                body = graph_body(person(i))
                body.pop("businessAddress")
                body["companyName"] = f"Fleet Team {team_of(i, p)} Inc"
                bodies.append(body)
            emu.seed(mailbox(u), fid, bodies)
        cfg = _config(folder, emu.graph_url)
        statuses: Counter[str] = Counter()
        for rnd in ("link", "settle"):
            t0 = time.perf_counter()
            res = subprocess.run([PY, "-m", "bench.fleet", "settle", str(cfg), str(p["users"])],
                                 capture_output=True, text=True, timeout=6 * 3600, cwd=REPO)
            if res.returncode != 0:
                raise RuntimeError(f"fleet set-up round {rnd} failed: {res.stderr[-2000:]}")
            statuses[rnd] = json.loads(res.stdout.splitlines()[-1])
            log(f"fleet: set-up round {rnd}: {statuses[rnd]} in {time.perf_counter() - t0:.0f} s")
        manifest = {"params": p, "port": emu.port, "built_s": round(time.perf_counter() - started, 1),
                    "set_up": dict(statuses)}
    finally:
        emu.stop()
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest


def _proc_cpu(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


def _cache_dir(p: dict[str, int]) -> Path:
    key = hashlib.sha256(json.dumps(p, sort_keys=True).encode()).hexdigest()[:12]
    base = Path(os.environ.get("BENCH_FLEET_CACHE", Path.home() / ".cache" / "contact-sync-bench"))
    return base / f"fleet-{p['users']}u-{p['contacts']}c-{p['group']}g-{key}"


def cached(p: dict[str, int]) -> Path:
    """The settled fleet's folder for ``p``, built first if this machine has none yet."""
    cache = _cache_dir(p)
    if not (cache / "manifest.json").exists():
        log(f"fleet: building the settled fleet into {cache} (once for these parameters) ...")
        shutil.rmtree(cache, ignore_errors=True)
        build(cache, p)
    return cache


def table(result: dict[str, Any]) -> str:
    """The README's fleet table: one row per Prefect server database, from fleet.json."""
    p = result["params"]
    rows = ["| Prefect server DB | users | wall s | per user s | command CPU s | server CPU s | "
            "CRM reads/user | Graph req/user | in cycles thread-s | CRM SQL s | Graph HTTP s | load avg |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for key in ("prefect_on_sqlite", "prefect_on_postgres"):
        r = result.get(key)
        if not r:
            continue
        ts = r.get("thread_seconds", {})
        rows.append(
            f"| {r['prefect_server_database']} | {p['users']} | {r['process_wall_s']} | {r['per_user_wall_s']} | "
            f"{r.get('command_cpu_s')} | {r.get('prefect_server_cpu_s')} | "
            f"{', '.join(f'{k}' for k in r.get('crm_reads_per_user', {}))} | "
            f"{', '.join(f'{k}' for k in r.get('graph_requests_per_mailbox', {}))} | "
            f"{round(ts.get('cycles', 0), 1)} | {round(ts.get('crm_sql', 0), 1)} | {round(ts.get('graph_http', 0), 1)} | "
            f"{r['load_average_after'][0]} |")
    return (f"CRM of {p['contacts']:,} contacts, {p['users']} users x {p['group']:,}, measured "
            f"{result['machine']['date']} (`python -m bench.fleet`):\n\n" + "\n".join(rows))


def write_table(result: dict[str, Any]) -> None:
    """Put :func:`table` between the README's ``<!-- fleet -->`` markers."""
    readme = REPO / "README.md"
    text = readme.read_text()
    begin, end = "<!-- fleet -->", "<!-- end fleet -->"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        readme.write_text(f"{head}{begin}\n{table(result)}\n{end}{rest.split(end, 1)[1]}")


@contextmanager
def prefect_postgres() -> Iterator[str | None]:
    """A throw-away PostgreSQL server for the Prefect server's database (the tests' own
    helpers, tests/fixtures/postgres.py); None where the server binaries are absent."""
    from tests.fixtures.postgres import _free_port, _pg_bin, _run_as_postgres_user

    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not initdb or not pg_ctl or os.environ.get("BENCH_FLEET_POSTGRES", "1") == "0":
        yield None
        return
    tmp = Path(tempfile.mkdtemp(prefix="contactsync-fleet-pg-"))
    prefix = _run_as_postgres_user()
    if prefix:
        shutil.chown(tmp, user="nobody")
    port = _free_port()
    subprocess.run([*prefix, initdb, "-D", str(tmp / "data"), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                    "--no-sync"], check=True, capture_output=True)
    subprocess.run([*prefix, pg_ctl, "-D", str(tmp / "data"), "-l", str(tmp / "log"), "-w", "-o",
                    f"-p {port} -k {tmp} -c listen_addresses=127.0.0.1 -c max_connections=200", "start"],
                   check=True, capture_output=True)
    try:
        admin = sa.create_engine(f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres",
                                 isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text('CREATE DATABASE "prefect"'))
        admin.dispose()
        yield f"postgresql+asyncpg://postgres@127.0.0.1:{port}/prefect"
    finally:
        subprocess.run([*prefix, pg_ctl, "-D", str(tmp / "data"), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


def timed(work: Path, cfg: Path, emu: Emulator, users: int, label: str, prefect_db: str | None) -> dict[str, Any]:
    """A warm-up command (it starts this run's local Prefect server), then the quiet
    command of every user, timed as a whole process with the counters of ``child``."""
    from contactsync.cli.prefect_server import read_server

    home = work / f"prefect-home-{label}"
    env = {**os.environ, "PREFECT_HOME": str(home)}
    if prefect_db:
        env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = prefect_db
    try:
        t0 = time.perf_counter()
        warm = subprocess.run([CONTACT_SYNC, "sync", "--json", "--user", uid(0), "--config", str(cfg)],
                              capture_output=True, text=True, env=env, timeout=1800)
        log(f"fleet [{label}]: warm-up command {time.perf_counter() - t0:.1f} s, exit {warm.returncode}")
        server = read_server(home)
        s0, e0 = _proc_cpu(server.pid) if server else float("nan"), emu.cpu_s()
        emu.reset_stats()
        out = work / f"timed-{label}.json"
        t0 = time.perf_counter()
        res = subprocess.run([PY, "-m", "bench.fleet", "child", str(cfg), str(out)], capture_output=True,
                             text=True, env=env, timeout=4 * 3600, cwd=REPO)
        wall = round(time.perf_counter() - t0, 2)
        load = [round(x, 2) for x in os.getloadavg()]
        counted = json.loads(out.read_text()) if out.exists() else {}
        lines = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
        statuses = Counter(line["status"] for line in lines)
        result = {
            "prefect_server_database": "postgresql" if prefect_db else "sqlite",
            "process_wall_s": wall, "per_user_wall_s": round(wall / users, 3), "load_average_after": load,
            "statuses": dict(statuses),
            "writes": sum(n for line in lines for side in line["counts"].values() for n in side.values()),
            "command_cpu_s": counted.get("cpu_s"), "per_user_command_cpu_s": round((counted.get("cpu_s") or 0) / users, 3),
            "prefect_server_cpu_s": round(_proc_cpu(server.pid) - s0, 2) if server else None,
            "emulator_cpu_s": round(emu.cpu_s() - e0, 2), "emulator_requests": emu.stats()["requests"], **counted,
        }
        if server:
            result["per_user_prefect_server_cpu_s"] = round(result["prefect_server_cpu_s"] / users, 3)
        result["goals"] = {
            "wall_under_300_s": wall < 300 and statuses == Counter({"ok": users}),
            "graph_requests_per_user_at_most_2": bool(counted.get("graph_requests_per_mailbox")) and all(
                int(k) <= 2 for k in counted["graph_requests_per_mailbox"]),
            "crm_reads_per_user_at_most_1": bool(counted.get("crm_reads_per_user")) and all(
                int(k) <= 1 for k in counted["crm_reads_per_user"]),
        }
        if res.returncode != 0 or len(lines) != users:
            result["stderr_tail"] = res.stderr[-3000:]
        log(f"fleet [{label}]: {users} users quiet in {wall} s ({dict(statuses)}), load {load}")
        return result
    finally:
        subprocess.run([CONTACT_SYNC, "prefect", "stop"], env=env, capture_output=True, timeout=120)


def copy_databases(cache: Path, work: Path) -> None:
    """The cached fleet's CRM, state store and mailboxes into ``work``: a timed run changes
    its copies (run records, tokens), never the cache that later runs start from."""
    for name in ("crm.db", "state.db", "graph.db"):
        shutil.copy2(cache / name, work / name)


def main() -> int:
    p = params()
    cache = cached(p)
    manifest = json.loads((cache / "manifest.json").read_text())
    work = Path(tempfile.mkdtemp(prefix="contactsync-fleet-"))
    emu = None
    try:
        copy_databases(cache, work)
        emu = Emulator(work / "graph.db", port=manifest["port"])
        cfg = _config(work, emu.graph_url)
        emu.latency(LATENCY_MS)
        from contactsync.crm.extract import CrmReader
        from contactsync.crm.schema import make_engine

        engine = make_engine(f"sqlite:///{work / 'crm.db'}")
        plan = CrmReader(engine, schema=None, user_id=uid(0)).query_plan(GROUP_NAME)
        engine.dispose()
        runs = {"prefect_on_sqlite": timed(work, cfg, emu, p["users"], "sqlite", None)}
        with prefect_postgres() as pg:
            if pg:
                runs["prefect_on_postgres"] = timed(work, cfg, emu, p["users"], "postgres", pg)
        result: dict[str, Any] = {
            "machine": machine(), "params": p, "set_up": {k: manifest[k] for k in ("built_s", "set_up")},
            **runs, "group_read_query_plan": plan,
            "how_to_run": "python -m bench.fleet  (BENCH_FLEET_USERS / _CONTACTS / _GROUP shrink it; "
                          "BENCH_FLEET_POSTGRES=0 skips the PostgreSQL-backed Prefect server)",
        }
        if "prefect_on_postgres" in runs:
            result["ratio_wall_sqlite_over_postgres"] = round(
                runs["prefect_on_sqlite"]["process_wall_s"] / runs["prefect_on_postgres"]["process_wall_s"], 2)
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "fleet.json").write_text(json.dumps(result, indent=2) + "\n")
        write_table(result)
        log(f"fleet: results in {RESULTS / 'fleet.json'}")
    finally:
        if emu is not None:
            emu.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    from bench.fleet_child import settle_child, timed_child

    if len(sys.argv) > 1 and sys.argv[1] == "settle":
        sys.exit(settle_child(sys.argv[2], int(sys.argv[3])))
    if len(sys.argv) > 1 and sys.argv[1] == "build":  # the cache alone (a long set-up, run ahead)
        sys.exit(print(cached(params())) or 0)
    if len(sys.argv) > 1 and sys.argv[1] == "table":  # the README's table again, from fleet.json
        sys.exit(write_table(json.loads((RESULTS / "fleet.json").read_text())) or 0)
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        sys.exit(timed_child(sys.argv[2], sys.argv[3]))
    sys.exit(main())
