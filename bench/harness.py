"""What every benchmark of bench/ shares: the emulator it runs, the data set it builds
(the CRM and the mailbox of ``bench.run``'s mix), the machine it ran on, and the log.

A module of its own so that ``bench/run.py`` (the entry point, which hooks every bench in)
and the benches it hooks in never import each other.
"""

# ruff: noqa: SIM300  (SQLAlchemy column comparisons read column == value)
from __future__ import annotations

import contextlib
import json
import os
import platform
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
import sqlalchemy as sa

from contactsync.crm import demo
from contactsync.crm.schema import crm_tables
from contactsync.crm.setup import init_database

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"
PY = sys.executable
T = crm_tables(None)
USER = demo.LEE
FOLDER = "CRM Contacts"
LATENCY_MS = 50.0
NOW = datetime(2025, 6, 1, 12, 0, 0)
PREFER = {"Prefer": 'IdType="ImmutableId"'}
#: first_sync; echo = the next cycle, which reads back the first sync's own writes through
#: the folder's delta (Graph returns every change, the sync's too); quiet = a cycle with
#: nothing changed since the last; edits_1pct = after 1 % edits on each side.
#: quiet_full = the same quiet cycle without the settled shortcut (contactsync.cycle.settled),
#: i.e. what every cycle after one with changes costs at least: the mirror and the links
#: read and the whole plan made.
SCENARIOS = ("first_sync", "echo", "quiet", "quiet_full", "edits_1pct")
UNLIMITED = 1_000_000_000
#: Graph's per-mailbox window (spec/GRAPH_API.md): the floor of a cycle's wall time.
GRAPH_WINDOW = (10_000, 600.0)
NEW_COMPANIES = [f"Bench Newco {k:02d}" for k in range(20)]


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --- the emulator, as a subprocess ----------------------------------------------------------
class Emulator:
    """``contact-sync emulator serve`` in a child process, with its control endpoints."""

    def __init__(self, db: Path, port: int = 0) -> None:
        """``port``: a fixed one (a cached state store's delta links name their endpoint)."""
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a fixed port just left TIME_WAIT
            s.bind(("127.0.0.1", port))
            self.port = s.getsockname()[1]
        exe = Path(PY).with_name("contact-sync")
        self.proc = subprocess.Popen(
            [str(exe), "emulator", "serve", "--port", str(self.port), "--db", str(db)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self.url = f"http://127.0.0.1:{self.port}"
        self.graph_url = f"{self.url}/v1.0"
        self.http = requests.Session()
        self.http.headers["Authorization"] = "Bearer bench"
        for _ in range(300):
            try:
                if self.http.get(f"{self.url}/_emulator/health", timeout=1).ok:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise RuntimeError("the emulator did not start")

    def cpu_s(self) -> float:
        """CPU seconds the emulator process has used (user + system), from /proc."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            return float("nan")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()

    def post(self, path: str, body: Any = None) -> Any:
        r = self.http.post(f"{self.url}{path}", json=body or {}, headers=PREFER, timeout=600)
        r.raise_for_status()
        return r.json() if r.content else None

    def latency(self, ms: float) -> None:
        self.post("/_emulator/latency", {"ms": ms})

    def limits(self, **body: Any) -> None:
        self.post("/_emulator/limits", body)

    def stats(self) -> dict[str, Any]:
        return self.http.get(f"{self.url}/_emulator/stats", timeout=60).json()

    def reset_stats(self) -> None:
        self.post("/_emulator/stats/reset")

    def make_folder(self, upn: str) -> str:
        return str(self.post(f"/v1.0/users/{upn}/contactFolders", {"displayName": FOLDER})["id"])

    def seed(self, upn: str, folder_id: str, contacts: list[dict]) -> list[str]:
        ids: list[str] = []
        for i in range(0, len(contacts), 10_000):
            ids += self.post(f"/_emulator/users/{upn}/seed", {"folderId": folder_id, "contacts": contacts[i:i + 10_000]})["ids"]
        return ids

    def patch_many(self, upn: str, patches: list[tuple[str, dict]]) -> None:
        """Outlook users' edits, 20 to a ``$batch`` (set-up, not measured)."""
        for i in range(0, len(patches), 20):
            reqs = [{"id": str(k), "method": "PATCH", "url": f"/users/{upn}/contacts/{oid}", "body": body,
                     "headers": {"Content-Type": "application/json", **PREFER}}
                    for k, (oid, body) in enumerate(patches[i:i + 20])]
            answer = self.post("/v1.0/$batch", {"requests": reqs})
            bad = [a for a in answer["responses"] if a["status"] >= 300]
            if bad:
                raise RuntimeError(f"edit failed: {bad[0]}")

    def folder_count(self, upn: str, folder_id: str) -> int:
        n, url = 0, f"{self.graph_url}/users/{upn}/contactFolders/{folder_id}/contacts?$top=1000&$select=id"
        while url:
            page = self.http.get(url, timeout=600).json()
            n += len(page["value"])
            url = page.get("@odata.nextLink")
        return n

    def folder_id(self, upn: str) -> str | None:
        page = self.http.get(f"{self.graph_url}/users/{upn}/contactFolders",
                             params={"$filter": f"displayName eq '{FOLDER}'"}, timeout=60).json()
        return page["value"][0]["id"] if page.get("value") else None


# --- data ------------------------------------------------------------------------------
def person(i: int) -> dict[str, Any]:
    acct = 1 + i % 7
    return {
        "first": f"First{i}", "last": f"Last{i}", "email": f"person{i}@bench{i % 50}.example",
        "title": f"Title {i % 40}", "acct": acct, "company": demo.ACCOUNTS[acct - 1][0],
        "phone": f"+1 206 555 {i % 10_000:04d}", "street": f"{i} Main St", "city": f"Town {i % 300}",
    }


def graph_body(p: dict[str, Any]) -> dict[str, Any]:
    return {
        "givenName": p["first"], "surname": p["last"],
        "emailAddresses": [{"address": p["email"], "name": f"{p['first']} {p['last']}"}],
        "jobTitle": p["title"], "companyName": p["company"], "businessPhones": [p["phone"]],
        "businessAddress": {"street": p["street"], "city": p["city"]},
    }


@dataclass
class DataSet:
    n: int
    folder: Path
    crm_url: str
    config: Path
    upn: str
    folder_id: str | None
    #: index -> Outlook id of the seeded contacts
    outlook_ids: dict[int, str]

    def crm_engine(self) -> sa.Engine:
        return sa.create_engine(self.crm_url)


def build(root: Path, emu: Emulator, n: int, name: str, *, crm_only: bool = False) -> DataSet:
    """A CRM database and an Outlook folder holding N people (module docstring's mix)."""
    folder = root / name
    folder.mkdir(parents=True)
    crm_url = f"sqlite:///{folder / 'crm.db'}"
    init_database(crm_url, demo=True)
    idx = range(n)
    in_crm = [i for i in idx if crm_only or i % 4 != 3]
    in_outlook = [] if crm_only else [i for i in idx if i % 4 != 2]
    contacts, addresses, members = [], [], []
    for i in in_crm:
        p = person(i)
        cid, aid = f"CBNCH{i:07d}", f"aBNCH{i:07d}"
        contacts.append({
            "CONTACTID": cid, "ACCOUNTID": demo.aid(p["acct"]), "ACCOUNT": p["company"],
            "FIRSTNAME": p["first"], "LASTNAME": p["last"], "LASTNAME_UC": p["last"].upper(),
            "TITLE": p["title"], "EMAIL": p["email"], "WORKPHONE": p["phone"], "ADDRESSID": aid,
            "SECCODEID": demo.EVERYONE, "TYPE": "Customer", "STATUS": "Active",
            "CREATEDATE": NOW, "CREATEUSER": USER, "MODIFYDATE": NOW, "MODIFYUSER": USER,
        })
        addresses.append({"ADDRESSID": aid, "ENTITYID": cid, "TYPE": "Business", "ADDRESS1": p["street"],
                          "CITY": p["city"], "ISPRIMARY": "T", "CREATEDATE": NOW, "MODIFYDATE": NOW})
        members.append({"GROUPID": demo.LEE_GROUP, "ENTITYID": cid, "CREATEDATE": NOW})
    engine = sa.create_engine(crm_url)
    with engine.begin() as conn:
        conn.execute(sa.delete(T.adhocgroup).where(T.adhocgroup.c.GROUPID == demo.LEE_GROUP))
        for table, rows in ((T.contact, contacts), (T.address, addresses), (T.adhocgroup, members)):
            for k in range(0, len(rows), 20_000):
                conn.execute(sa.insert(table), rows[k:k + 20_000])
    engine.dispose()
    upn = f"{name}@bench.example"
    folder_id = None
    outlook_ids: dict[int, str] = {}
    if not crm_only:
        folder_id = emu.make_folder(upn)
        bodies = []
        for i in in_outlook:
            p = person(i)
            if i % 4 == 3 and i % 40 == 3:
                p["company"] = NEW_COMPANIES[(i // 40) % len(NEW_COMPANIES)]
            bodies.append(graph_body(p))
        outlook_ids = dict(zip(in_outlook, emu.seed(upn, folder_id, bodies), strict=True))
    config = folder / "contact-sync.toml"
    config.write_text(
        f'[crm]\nurl = "{crm_url}"\nsite_code = "SYNC"\n\n'
        f'[outlook]\ngraph_url = "{emu.graph_url}"\ntoken = "bench"\n\n'
        '[state]\nurl = "sqlite:///state.db"\n\n'
        "[sync]\ngx_validation = false\n\n"
        f'[[users]]\ncrm_user = "{USER}"\nmailbox = "{upn}"\n'
    )
    return DataSet(n, folder, crm_url, config, upn, folder_id, outlook_ids)


def machine() -> dict[str, Any]:
    cpu, mem = "", ""
    with contextlib.suppress(OSError, StopIteration):
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    with contextlib.suppress(OSError, IndexError):
        mem = Path("/proc/meminfo").read_text().splitlines()[0].split(":", 1)[1].strip()
    import pandas
    return {"cpu": cpu, "cores": os.cpu_count(), "memory": mem, "os": platform.platform(),
            "python": platform.python_version(), "pandas": pandas.__version__, "sqlalchemy": sa.__version__,
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "latency_ms": LATENCY_MS,
            "databases": "SQLite files (CRM, state)"}


# --- measured cycles (bench.run's sizes and bench.growth) -------------------------------------
def edit_one_percent(ds: DataSet, emu: Emulator) -> dict[str, int]:
    """1 % of N edited on each side, on different linked pairs (no conflicts)."""
    return edit_pairs(ds, emu, max(1, ds.n // 100))


def edit_pairs(ds: DataSet, emu: Emulator, k: int, *, skip: int = 0, label: str = "edit") -> dict[str, int]:
    """``k`` job titles edited on each side, on different linked pairs (no conflicts),
    past the first ``skip`` pairs of each side (so a second round edits other pairs)."""
    crm_side = [i for i in range(0, ds.n, 4)][skip:skip + k]  # pairs seeded on both sides
    out_side = [i for i in range(1, ds.n, 4)][skip:skip + k]
    stamp = datetime.now(UTC).replace(tzinfo=None)
    engine = ds.crm_engine()
    with engine.begin() as conn:
        conn.execute(
            sa.update(T.contact).where(T.contact.c.CONTACTID == sa.bindparam("cid"))
            .values(TITLE=sa.bindparam("title"), MODIFYDATE=stamp),
            [{"cid": f"CBNCH{i:07d}", "title": f"CRM {label} {i}"} for i in crm_side],
        )
    engine.dispose()
    emu.patch_many(ds.upn, [(ds.outlook_ids[i], {"jobTitle": f"Outlook {label} {i}"}) for i in out_side])
    return {"crm": len(crm_side), "outlook": len(out_side)}


def end_state(ds: DataSet, emu: Emulator) -> dict[str, int]:
    folder_id = ds.folder_id or emu.folder_id(ds.upn)
    engine = ds.crm_engine()
    with engine.connect() as conn:
        members = conn.execute(
            sa.select(sa.func.count()).select_from(T.adhocgroup).where(T.adhocgroup.c.GROUPID == demo.LEE_GROUP)
        ).scalar_one()
        titles = dict(conn.execute(
            sa.select(T.contact.c.CONTACTID, T.contact.c.TITLE).where(T.contact.c.TITLE.like("%edit%"))
        ).all())
    engine.dispose()
    return {"crm_group_members": int(members), "crm_edited_titles": len(titles),
            "outlook_folder_contacts": emu.folder_count(ds.upn, folder_id) if folder_id else 0}


# --- child processes ----------------------------------------------------------------------
def child(args: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``python -m bench.run <args>`` and return the JSON on its last output line."""
    started = time.perf_counter()
    proc = subprocess.run([PY, "-m", "bench.run", *args], capture_output=True, text=True, cwd=ROOT.parent,
                          env={**os.environ, **(env or {})})
    if proc.returncode != 0:
        raise RuntimeError(f"child {args[0]} failed:\n{proc.stderr[-4000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["process_wall_s"] = round(time.perf_counter() - started, 3)
    return result


def measured(emu: Emulator, ds: DataSet, args: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    emu.reset_stats()
    cpu = emu.cpu_s()
    result = child(args, env)
    result["emulator_cpu_s"] = round(emu.cpu_s() - cpu, 2)  # the server's share of the wall time
    stats = emu.stats()
    result["http_requests"] = stats["requests"]
    result["inner_requests"] = stats["inner_requests"]
    result["batches"] = stats["batches"]
    result["throttled_429"] = stats["throttled"]
    result["by_method"] = stats["by_method"]
    counted = stats["requests"] - stats["batches"] + stats["inner_requests"] - stats["throttled"]
    result["window_requests"] = counted
    result["graph_window_floor_s"] = window_floor(counted, *GRAPH_WINDOW)
    emu.latency(0)
    result["end_state"] = end_state(ds, emu)
    emu.latency(LATENCY_MS)
    return result


def window_floor(requests_: int, limit: int, window_s: float) -> float:
    """The least wall time ``requests_`` need under a sliding window of ``limit`` per
    ``window_s``: ``limit`` go at once, then ``limit`` more each window."""
    return window_s * ((max(requests_, 1) - 1) // limit)
