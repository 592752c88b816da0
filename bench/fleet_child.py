"""The child processes of bench/fleet.py: the set-up cycles (no Prefect), and the timed
command with its counters (CRM statements per user, Graph requests per mailbox,
thread-seconds in SQL, HTTP, the cycles and their steps)."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import sqlalchemy as sa

from bench.harness import PY, UNLIMITED

CONTACT_SYNC = str(Path(PY).with_name("contact-sync"))


def settle_child(cfg: str, users: int) -> int:
    """One real cycle per user, no Prefect (set-up): ``run_cycle`` with the plain steps."""
    from contactsync.config import load_settings
    from contactsync.cycle.run import CycleOptions, run_cycle
    from contactsync.cycle.users import syncing_users
    from contactsync.outlook import pacing

    pacing.MAILBOX_WINDOW = (UNLIMITED, 600.0)  # set-up: Graph's limits lifted (emulator too)
    settings = load_settings(cfg)
    statuses: Counter[str] = Counter()
    for user in syncing_users(settings)[:users]:
        out = run_cycle(settings, user, CycleOptions(force=True))
        statuses[out.status] += 1
    print(json.dumps(dict(statuses)))
    return 0


class Counters:
    """What the timed command spends, attached to its engines and its HTTP session."""

    def __init__(self, users: list[str], graph_url: str) -> None:
        self.users = set(users)
        self.graph_url = graph_url
        self.lock = threading.Lock()
        self.crm_by_user: Counter[str] = Counter()
        self.crm_other = 0
        self.graph_by_mailbox: Counter[str] = Counter()
        self.seconds: Counter[str] = Counter()
        self._t = threading.local()

    def attach(self, crm: sa.Engine, state: sa.Engine) -> None:
        for name, engine in (("crm_sql", crm), ("state_sql", state)):
            sa.event.listen(engine, "before_cursor_execute", self._before(name))
            sa.event.listen(engine, "after_cursor_execute", self._after(name))
        import requests

        send = requests.Session.send
        counters = self

        def counted(session: Any, request: Any, **kw: Any) -> Any:
            if not str(request.url).startswith(counters.graph_url):
                return send(session, request, **kw)
            parts = unquote(str(request.url)[len(counters.graph_url):]).split("/")
            t0 = time.perf_counter()
            try:
                return send(session, request, **kw)
            finally:
                with counters.lock:
                    counters.seconds["graph_http"] += time.perf_counter() - t0
                    counters.graph_by_mailbox[parts[2].lower() if len(parts) > 2 and parts[1] == "users" else "-"] += 1

        requests.Session.send = counted  # type: ignore[method-assign]

    def _before(self, name: str) -> Any:
        def before(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
            self._t.started = time.perf_counter()
            if name != "crm_sql":
                return
            values = parameters.values() if isinstance(parameters, dict) else (parameters or ())
            found = [v for v in values if isinstance(v, str) and v in self.users]
            with self.lock:
                if found:
                    self.crm_by_user[found[0]] += 1
                else:
                    self.crm_other += 1
        return before

    def _after(self, name: str) -> Any:
        def after(*_args: Any) -> None:
            with self.lock:
                self.seconds[name] += time.perf_counter() - getattr(self._t, "started", time.perf_counter())
        return after


def _time_the_cycles(counters: Counters) -> None:
    """Thread-seconds inside each user's cycle (``run_cycle``, its two or three Prefect
    task runs included) and inside the steps themselves (the plain functions the tasks
    wrap): the rest of the command's time is Prefect's flow and task runs around them."""
    import flows.sync_contacts as flow_module
    import tasks.cycle as task_module

    def timer(name: str, fn: Any) -> Any:
        def timed_fn(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                with counters.lock:
                    counters.seconds[name] += time.perf_counter() - t0
        return timed_fn

    as_task = task_module._as_task
    task_module._as_task = lambda name, step: as_task(name, timer(f"step:{name}", step))  # type: ignore[assignment]
    flow_module.run_cycle = timer("cycles", flow_module.run_cycle)  # type: ignore[assignment]


def timed_child(cfg: str, out: str) -> int:
    """``contact-sync sync --json`` of every user in this process, with the counters on."""
    import resource

    from contactsync.config import load_settings
    from contactsync.cycle.sides import crm_engine, state_store
    from contactsync.cycle.users import syncing_users

    settings = load_settings(cfg)
    users = [u.crm_user for u in syncing_users(settings)]
    counters = Counters(users, settings.outlook.graph_url)
    counters.attach(crm_engine(settings.crm_url()), state_store(settings.state_url()).engine)
    counters.crm_by_user.clear()
    counters.crm_other = 0
    _time_the_cycles(counters)
    from contactsync.cli import run_app

    sys.argv = [CONTACT_SYNC, "sync", "--json", "--config", cfg]
    t0, c0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
    code = 0
    try:
        run_app()
    except SystemExit as exc:
        code = int(exc.code or 0)
    c1 = resource.getrusage(resource.RUSAGE_SELF)
    result = {"exit_code": code, "in_process_wall_s": round(time.perf_counter() - t0, 2),
              "cpu_s": round(c1.ru_utime + c1.ru_stime - c0.ru_utime - c0.ru_stime, 2),
              "crm_reads_per_user": dict(Counter(counters.crm_by_user.values())),
              "crm_statements_not_naming_a_user": counters.crm_other,
              "graph_requests_per_mailbox": dict(Counter(v for k, v in counters.graph_by_mailbox.items() if k != "-")),
              "thread_seconds": {k: round(v, 2) for k, v in counters.seconds.items()}}
    Path(out).write_text(json.dumps(result))
    return code
