"""`contact-sync demo`: the guided tour on the embedded default (SQLite CRM + Graph emulator).

A first cycle for each demo user, then scripted edits on both sides (an update in the CRM,
a conflicting edit of one field on both sides, an Outlook contact with a company the CRM
does not know, a contact deleted in the CRM and one deleted in Outlook), a second cycle that
is explained action by action with its rule ids, a third that finds nothing to do (R17),
and the HTML report. Everything lives in one folder and nothing is left running.
"""

from __future__ import annotations

import os
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
import sqlalchemy as sa
import typer

from contactsync.cycle.outcome import CycleOutcome

DEMO_USERS = (("UDEMOA000001", "lee@example.com"), ("UDEMOA000002", "sam@example.com"))
DEMO_TOKEN = "demo-token-not-a-secret"


def say(text: str = "") -> None:
    typer.echo(text)


def write_config(folder: Path, graph_url: str) -> Path:
    users = "\n".join(
        f'[[users]]\ncrm_user = "{uid}"\nmailbox = "{mailbox}"\n' for uid, mailbox in DEMO_USERS
    )
    cfg = folder / "contact-sync.toml"
    cfg.write_text(
        "# Written by `contact-sync demo`: the embedded default, offline.\n"
        '[crm]\nurl = "sqlite:///crm.db"\nsite_code = "SYNC"\n\n'
        f'[outlook]\ngraph_url = "{graph_url}"\ntoken = "{DEMO_TOKEN}"\n\n'
        '[state]\nurl = "sqlite:///state.db"\n\n'
        '[sync]\ngroup_name = "Outlook Sync"\nfolder_name = "CRM Contacts"\nconflict_policy = "latest"\n\n'
        + users,
        encoding="utf-8",
    )
    return cfg


def explain(outcome: CycleOutcome, *, limit: int = 25) -> None:
    c = outcome.counts
    say(
        f"  {outcome.user.strip()}: {outcome.status} - Outlook: {c['outlook']['create']} created, "
        f"{c['outlook']['update']} updated, {c['outlook']['delete']} deleted; CRM: "
        f"{c['crm']['create']} created, {c['crm']['update']} updated, {c['crm']['unlink']} unlinked, "
        f"{c['crm']['group_add']} added to / {c['crm']['group_remove']} removed from the sync group"
    )
    shown = [a for a in outcome.actions if not (a.get("op") == "update" and not a.get("fields"))]
    creates = [a for a in shown if a["op"] == "create" and a["side"] == "outlook" and a.get("rule") == "R4"]
    if len(creates) > 3:  # a first sync: say it once, not per contact
        ids = ", ".join((a.get("crm_id") or "").strip() for a in creates)
        say(f"      R4 outlook create          {len(creates)} group members made in the sync folder ({ids})")
        shown = [a for a in shown if a not in creates]
    for action in shown[:limit]:
        fields = f" [{action['fields']}]" if action.get("fields") and action["op"] == "update" else ""
        say(f"    {action.get('rule', ''):>4} {action['side']:>7} {action['op']:<14}{fields} {action.get('reason') or ''}")
    if len(shown) > limit:
        say(f"    ... and {len(shown) - limit} more")
    for conflict in outcome.conflict_rows[:10]:
        say(
            f"    R9 conflict on {conflict['field']} of {conflict['crm_id']}: CRM {conflict['crm_value']!r} vs "
            f"Outlook {conflict['outlook_value']!r} -> {conflict['winner']} wins ({conflict['policy']})"
        )
    for problem in outcome.problems[:10]:
        say(f"    R19 quarantined {problem['side']} {problem['record_id']}: {problem['reason']}")
    for err in outcome.errors[:10]:
        say(f"    error: {err}")


class Graph:
    """Just enough HTTP to script Outlook-side edits the way a person would make them."""

    def __init__(self, graph_url: str, mailbox: str) -> None:
        self.base = f"{graph_url}/users/{mailbox}"
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {DEMO_TOKEN}"
        self.http.headers["Prefer"] = 'IdType="ImmutableId"'  # the ids the sync stores

    def folder_id(self, name: str) -> str:
        r = self.http.get(f"{self.base}/contactFolders", params={"$filter": f"displayName eq '{name}'"})
        r.raise_for_status()
        return r.json()["value"][0]["id"]

    def contacts(self, folder: str) -> list[dict[str, Any]]:
        r = self.http.get(f"{self.base}/contactFolders/{folder}/contacts", params={"$top": 999})
        r.raise_for_status()
        return r.json()["value"]

    def patch(self, contact_id: str, body: dict[str, Any]) -> None:
        self.http.patch(f"{self.base}/contacts/{contact_id}", json=body).raise_for_status()

    def create(self, folder: str, body: dict[str, Any]) -> dict[str, Any]:
        r = self.http.post(f"{self.base}/contactFolders/{folder}/contacts", json=body)
        r.raise_for_status()
        return r.json()

    def delete(self, contact_id: str) -> None:
        self.http.delete(f"{self.base}/contacts/{contact_id}").raise_for_status()


def _crm_edit(engine: sa.Engine, contact_id: str, **columns: str) -> None:
    now = datetime.now(UTC).replace(tzinfo=None)
    sets = ", ".join(f"{col} = :{col}" for col in columns)
    with engine.begin() as conn:
        conn.execute(
            sa.text(f"UPDATE CONTACT SET {sets}, MODIFYDATE = :now, MODIFYUSER = :u WHERE CONTACTID = :id"),
            {**columns, "now": now, "u": "ADMIN       ", "id": contact_id},
        )


def _crm_delete(engine: sa.Engine, contact_id: str) -> None:
    """A CRM user deletes a contact (the CRM does this; the sync never would, R15)."""
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM ADHOCGROUP WHERE ENTITYID = :id"), {"id": contact_id})
        conn.execute(sa.text("DELETE FROM ADDRESS WHERE ENTITYID = :id"), {"id": contact_id})
        conn.execute(sa.text("DELETE FROM CONTACT WHERE CONTACTID = :id"), {"id": contact_id})


def run_demo(folder: Path) -> int:
    """Run the whole tour; returns the exit code (0 when every step went as described)."""
    from contactsync.cli.commands import prepare_prefect_env

    started = time.monotonic()
    folder = folder.resolve()
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    prefect_api = prepare_prefect_env()
    try:
        return _tour(folder, started)
    finally:
        if prefect_api.started:  # the demo leaves nothing running that it started
            from contactsync.cli.prefect_server import stop_server

            stop_server(Path(os.environ["PREFECT_HOME"]))


def _tour(folder: Path, started: float) -> int:
    from contactsync.crm.setup import init_database
    from contactsync.emulator.server import start_in_thread

    say(f"contact-sync demo in {folder}")
    say("1. A CRM on SQLite with Infor CRM's tables and demo data (contact-sync crm init --demo)")
    say("   " + init_database(f"sqlite:///{folder / 'crm.db'}", demo=True).replace("\n", "\n   "))
    with start_in_thread(db_path=folder / "graph.db") as emulator:
        say(f"2. The Microsoft Graph emulator on {emulator.graph_url} (contact-sync emulator serve)")
        cfg = write_config(folder, emulator.graph_url)
        say(f"   configuration: {cfg}")
        say("   (the first flow run prepares Prefect's local database; later runs are quick)")
        first = _cycle(cfg, "3. First cycle: every sync-group member is created in the user's 'CRM Contacts' folder (R4)")
        if (code := _stopped(first)) is not None:
            return code
        script = scripted_edits(folder, emulator.graph_url)
        second = _cycle(cfg, "5. Second cycle: each edit handled by its rule")
        if (code := _stopped(second)) is not None:
            return code
        third = _cycle(cfg, "6. Third cycle: nothing changed, nothing written (R17)")
        if (code := _stopped(third)) is not None:
            return code
        quiet = all(sum(sum(v.values()) for v in o.counts.values()) == 0 for o in third)
        say("   quiet: " + ("yes, no writes" if quiet else "NO - something was written again"))
        from flows.quality_report import quality_report

        paths = quality_report(out_dir=str(folder / "report"), config_path=str(cfg))
    say(f"7. The data-quality report: {paths.get('html')} (and report.json beside it)")
    say("   Open it in a browser. On top, one health row per user, worst first: red = not syncing,")
    say("   amber = records held back (R19), green = fine; then a chart of the fleet's cycles per day.")
    say("   Each user's section: a chart of the period's cycles, every conflict with both values and")
    say("   the winner (R9), what is quarantined and what to fix, and a link to that user's Data Docs.")
    conflicted = [c for o in second for c in o.conflict_rows]
    if conflicted:
        c = conflicted[0]
        say(f"   Why did {c['crm_id'].strip()} change? contact-sync explain --crm-id {c['crm_id'].strip()} --config {cfg}")
    say(f"   ({script} scripted edits; {time.monotonic() - started:.0f} s in all; nothing left running)")
    if not quiet:
        say("The demo did not go as described: see the errors above.")
        return 1
    return 0


def _cycle(cfg: Path, title: str) -> list[CycleOutcome]:
    """One cycle per demo user, explained; a cycle that fails is an outcome, not a traceback
    (the flow run still ends Failed in Prefect, spec/INTERFACE.md "Prefect")."""
    from contactsync.cycle.run import CycleOptions
    from flows.sync_contacts import outcomes_in, sync_contacts

    say(title)
    outcomes = []
    for uid, _ in DEMO_USERS:
        state = sync_contacts(user=uid, config_path=str(cfg), return_state=True)
        for outcome in outcomes_in(state, uid, CycleOptions()):
            explain(outcome)
            outcomes.append(outcome)
    return outcomes


def _stopped(outcomes: list[CycleOutcome]) -> int | None:
    """The exit code of spec/INTERFACE.md when a cycle did not end ok, after saying why on
    stderr the way `contact-sync sync` does; None: the tour goes on."""
    from contactsync.cycle.outcome import worst_exit_code

    bad = [o for o in outcomes if o.status != "ok"]
    if not bad:
        return None
    for o in bad:
        typer.echo(f"contact-sync: {o.user.strip()}: {o.status}: {o.message or '; '.join(o.errors[:3])}", err=True)
    say("The demo stopped: a cycle did not end ok (see the reason above); nothing is left running.")
    return worst_exit_code(bad) or 1


def scripted_edits(folder: Path, graph_url: str) -> int:
    """Step 4: edits on both sides, as users would make them between two cycles."""
    from contactsync.state import StateStore

    say("4. Edits between the cycles (Lee's contacts):")
    uid, mailbox = DEMO_USERS[0]
    crm = sa.create_engine(f"sqlite:///{folder / 'crm.db'}")
    store = StateStore(f"sqlite:///{folder / 'state.db'}")
    links = store.load_links(uid).sort_values("crm_id").reset_index(drop=True)
    graph = Graph(graph_url, mailbox)
    folder_id = graph.folder_id("CRM Contacts")
    by_id = {c["id"]: c for c in graph.contacts(folder_id)}
    pairs = [(r.crm_id, r.outlook_id) for r in links.itertuples() if r.outlook_id in by_id]
    if len(pairs) < 4:
        say("   not enough linked contacts to script the edits")
        return 0
    (upd_crm, _), (conf_crm, conf_out), (del_crm, _), (_, del_out) = pairs[:4]

    _crm_edit(crm, upd_crm, TITLE="VP Sales")
    say(f"   - CRM: {upd_crm.strip()} gets job title 'VP Sales' (expect R8: copied to Outlook)")
    _crm_edit(crm, conf_crm, MOBILE="+1 555 0100")
    time.sleep(1.1)  # so the Outlook edit is clearly the later one
    graph.patch(conf_out, {"mobilePhone": "+1 555 0199"})
    say(f"   - both: {conf_crm.strip()}'s mobile phone set to +1 555 0100 in CRM, then +1 555 0199 in Outlook (expect R9: latest, Outlook wins)")
    graph.create(
        folder_id,
        {"givenName": "Dana", "surname": "Reyes", "companyName": "Brightwater Analytics",
         "emailAddresses": [{"address": "dana.reyes@brightwater.example", "name": "Dana Reyes"}],
         "jobTitle": "Head of Data"},
    )
    say("   - Outlook: new contact Dana Reyes at 'Brightwater Analytics', a company the CRM lacks (expect R5c: new account + contact)")
    _crm_delete(crm, del_crm)
    say(f"   - CRM: contact {del_crm.strip()} deleted by a CRM user (expect R13: its Outlook copy goes to Deleted Items)")
    graph.delete(del_out)
    say("   - Outlook: one contact deleted in Outlook (expect R11: removed from the CRM sync group, unlinked, never deleted in CRM)")
    crm.dispose()
    return 5
