"""The files of the deployment path say what the README says (issue 16 item 7): the
deployments' full names and entrypoints, the worker image's environment, the build
context, and an automation file Prefect accepts."""

from __future__ import annotations

import importlib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOYMENTS = ROOT / "deployments"


def test_each_deployment_names_a_real_flow_by_its_full_name() -> None:
    spec = yaml.safe_load((DEPLOYMENTS / "prefect.yaml").read_text())
    full_names = set()
    for d in spec["deployments"]:
        path, func = d["entrypoint"].split(":")
        assert (ROOT / path).is_file(), path  # relative to the project root, where `prefect deploy` runs
        flow = getattr(importlib.import_module(path.removesuffix(".py").replace("/", ".")), func)
        full_names.add(f"{flow.name}/{d['name']}")
        assert d["work_pool"]["name"] == "contact-sync" and "contact-sync" in d["tags"]
    assert full_names == {"sync_all_users/sync-all-users", "backfill/backfill", "quality_report/quality-report"}
    steps = spec["pull"][0]["prefect.deployments.steps.set_working_directory"]
    assert steps["directory"] == "{{ $CONTACT_SYNC_HOME }}"  # resolved by `prefect deploy`, baked in


def test_the_worker_image_sets_where_the_code_and_the_configuration_are() -> None:
    text = (DEPLOYMENTS / "Dockerfile").read_text()
    env = text[text.index("ENV "):].split("CMD")[0]
    assert "CONTACT_SYNC_HOME=/opt/contact-sync" in env and "WORKDIR /opt/contact-sync" in text
    assert "CONTACT_SYNC_CONFIG=/etc/contact-sync/contact-sync.toml" in env
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", "**/*.db"} <= set(ignored)


def test_the_failed_runs_automation_is_one_prefect_accepts() -> None:
    from prefect.automations import AutomationCore
    from prefect.events.actions import SendNotification

    automation = AutomationCore.model_validate(yaml.safe_load((DEPLOYMENTS / "notify-failed-runs.yaml").read_text()))
    assert automation.trigger.expect == {"prefect.flow-run.Failed"}
    assert isinstance(automation.actions[0], SendNotification)
