"""Fan-out fixtures: the e2e world (demo CRM, emulator, the real command) and one Prefect API.

The Prefect test harness is started once per session, or reused when tests/e2e or
tests/reliability already started it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import prefect_harness
from tests.e2e.conftest import env  # noqa: F401  (the fixture, shared)


@pytest.fixture(scope="session", autouse=True)
def fanout_prefect_harness() -> Iterator[None]:
    with prefect_harness(startup_timeout=120):
        yield
