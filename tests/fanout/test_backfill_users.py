"""The backfill flow picks its users as the commands do (``cycle.users.selected_users``):
a named user who does not sync, or nobody syncing at all, is the ConfigError that says so
before any cycle runs, not a run that repairs nobody (stop 18, "Two ways of picking users")."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from contactsync.errors import ConfigError
from flows.backfill import backfill
from tests.e2e.conftest import SyncEnv
from tests.fanout.test_users_from_crm import DAN, crm_env  # noqa: F401  (the fixture)


def _runs(env: SyncEnv) -> int:
    import sqlalchemy as sa

    state_db = env.folder / "state.db"
    if not state_db.exists():
        return 0
    engine = sa.create_engine(f"sqlite:///{state_db}")
    try:
        with engine.connect() as conn:
            names = sa.inspect(conn).get_table_names()
            return conn.execute(sa.text("SELECT COUNT(*) FROM runs")).scalar_one() if "runs" in names else 0
    finally:
        engine.dispose()


def test_an_unknown_user_is_the_config_error_that_names_them(crm_env: SyncEnv) -> None:  # noqa: F811
    with pytest.raises(ConfigError, match="'NOBODY1'.*neither in the configuration nor a CRM user"):
        backfill(users=["NOBODY1"], config_path=str(crm_env.config))
    # A CRM user who does not sync (disabled) is named with the reason, too.
    with pytest.raises(ConfigError, match=f"{DAN}.*does not sync: disabled"):
        backfill(users=[DAN], config_path=str(crm_env.config))
    assert _runs(crm_env) == 0  # no cycle ran


def test_nobody_syncing_is_a_config_error_not_an_empty_run(crm_env: SyncEnv, tmp_path: Path) -> None:  # noqa: F811
    # The same configuration without its [[users]] and without users from the CRM.
    text = crm_env.config.read_text()
    text = re.sub(r"\[\[users\]\][^\[]*", "", text).replace("enabled = true", "enabled = false")
    lonely = tmp_path / "nobody.toml"
    lonely.write_text(text)
    with pytest.raises(ConfigError, match="no users are configured"):
        backfill(config_path=str(lonely))
