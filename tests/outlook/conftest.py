"""Outlook client tests run against the Graph emulator over real HTTP, one mailbox each."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pandas as pd
import pytest
import requests

from contactsync.config import OutlookSettings
from contactsync.outlook.client import GraphClient
from contactsync.plan.schema import ACTION_COLUMNS


class Emu:
    """The session emulator plus its control endpoints."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle
        self.url = handle.url
        self.graph_url = handle.graph_url

    def stats(self) -> dict:
        return requests.get(f"{self.url}/_emulator/stats", timeout=10).json()

    def reset_stats(self) -> None:
        requests.post(f"{self.url}/_emulator/stats/reset", timeout=10).raise_for_status()

    def fault(self, **spec: Any) -> None:
        requests.post(f"{self.url}/_emulator/faults", json=spec, timeout=10).raise_for_status()

    def clear(self) -> None:
        requests.delete(f"{self.url}/_emulator/faults", timeout=10)
        requests.post(f"{self.url}/_emulator/latency", json={"ms": 0}, timeout=10)
        requests.post(f"{self.url}/_emulator/delta", json={"updated_items": "full", "expand": "honour"}, timeout=10)
        requests.post(
            f"{self.url}/_emulator/limits",
            json={"requests_per_window": 10_000, "window_s": 600, "concurrent": 4},
            timeout=10,
        )

    def raw(self) -> requests.Session:
        s = requests.Session()
        s.headers["Authorization"] = "Bearer test"
        return s


@pytest.fixture()
def emu(emulator_session: Any) -> Iterator[Emu]:
    e = Emu(emulator_session)
    e.clear()
    e.reset_stats()
    yield e
    e.clear()


@pytest.fixture()
def make_client(emu: Emu) -> Callable[..., GraphClient]:
    def make(mailbox: str | None = None, **kwargs: Any) -> GraphClient:
        mailbox = mailbox or f"user-{uuid.uuid4().hex[:8]}@example.com"
        kwargs.setdefault("backoff_base_s", 0.05)
        return GraphClient(OutlookSettings(graph_url=emu.graph_url, token="test-token"), mailbox, **kwargs)

    return make


def actions(rows: list[dict]) -> pd.DataFrame:
    """A plan's Outlook action rows (ACTION_COLUMNS), missing columns as None."""
    full = [{"side": "outlook", "rule": "R4", "fields": "", **r} for r in rows]
    frame = pd.DataFrame(full).reindex(columns=list(ACTION_COLUMNS))
    return frame.astype(object).where(frame.notna(), None)


def create_rows(n: int, prefix: str = "C") -> list[dict]:
    return [
        {
            "action_id": f"create-{i}",
            "op": "create",
            "crm_id": f"{prefix}{i:011d}",
            "fields": "first_name,last_name,email1,work_phone,city",
            "first_name": f"First{i}",
            "last_name": f"Last{i}",
            "email1": f"person{i}@example.com",
            "work_phone": f"+1 555 {i:04d}",
            "city": "Springfield",
        }
        for i in range(n)
    ]
