"""Settings: the TOML file of spec/INTERFACE.md, every value overridable from the environment.

Environment variables are ``CONTACT_SYNC_<SECTION>__<KEY>`` (e.g.
``CONTACT_SYNC_OUTLOOK__CLIENT_SECRET``) and win over the file, so secrets never need to
be written into it. Secrets are ``SecretStr`` and print as ``**********``.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from contactsync.errors import ConfigError
from contactsync.model import FIELDS, pad_user
from contactsync.vocab import Direction, Policy, TagLinks

CONFIG_ENV = "CONTACT_SYNC_CONFIG"
DEFAULT_CONFIG_NAME = "contact-sync.toml"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class CrmSettings(_Section):
    url: str = "sqlite:///crm.db"
    schema_name: str = Field("", alias="schema")
    site_code: str = "SYNC"

    @field_validator("site_code")
    @classmethod
    def _site_code(cls, v: str) -> str:
        if len(v) != 4 or not v.isalnum():
            raise ValueError("site_code must be 4 letters or digits (SalesLogix site code)")
        return v


class OutlookSettings(_Section):
    graph_url: str = "https://graph.microsoft.com/v1.0"
    tenant_id: str = ""
    client_id: str = ""
    client_secret: SecretStr = SecretStr("")
    #: Or the name of a Prefect Secret block holding it (issue 16 item 6): filled in by a
    #: resolver from outside contactsync (tasks/secrets.py), which never imports Prefect.
    client_secret_block: str = ""
    token: SecretStr = SecretStr("")

    @field_validator("graph_url")
    @classmethod
    def _graph_url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("graph_url must be an http(s) URL ending in /v1.0")
        return v.rstrip("/")


class StateSettings(_Section):
    url: str = "sqlite:///state.db"


class SyncSettings(_Section):
    group_name: str = "Outlook Sync"
    folder_name: str = "CRM Contacts"
    conflict_policy: Policy = "latest"
    direction: Direction = "two-way"
    create_in_crm: bool = True
    keep_outlook_copy_on_group_removal: bool = False
    mass_change_share: float = Field(0.2, ge=0.0, le=1.0)
    mass_change_min: int = Field(10, ge=0)
    field_direction: dict[str, Direction] = Field(default_factory=dict)
    #: R7a: when a new link's Outlook contact gets its CrmContactId tag. ``with-write``
    #: (default): in the POST that creates it, else with the pair's next Outlook write, and
    #: at once only where email matching (R7) could not find the pair again after a lost
    #: state store (no email address). ``at-link``: every new link is tagged at once, one
    #: Graph request per linked pair, which on a first sync can cost four times the
    #: requests (Graph allows 10,000 per 10 minutes per mailbox).
    tag_links: TagLinks = "with-write"
    #: Run the Great Expectations suites on what each cycle writes (Data Docs for the
    #: report). Quarantine (R19) never depends on it; turning it off saves GX's start-up
    #: (several seconds) on cycles with changes.
    gx_validation: bool = True
    #: Users whose cycles run at the same time in one command or flow run (the fan-out).
    parallel_users: int = Field(4, ge=1, le=256)

    @field_validator("field_direction")
    @classmethod
    def _known_fields(cls, v: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(v) - set(FIELDS))
        if unknown:
            raise ValueError(
                f"unknown field(s) {unknown}; the canonical names are: {', '.join(FIELDS)}"
            )
        return v


class OrchestrationSettings(_Section):
    #: A Dask scheduler (``tcp://host:8786``): the users' cycles run on that cluster
    #: (prefect-dask). Empty: in the command's or the flow run's own process, in threads.
    dask_address: str = ""


class UsersFromCrmSettings(_Section):
    #: Every enabled CRM user who owns a contact sync group (R2's ``group_name``) syncs,
    #: with USERINFO.EMAIL as the mailbox; a ``[[users]]`` entry for the same user wins.
    enabled: bool = False


class ReportSettings(_Section):
    #: Where `contact-sync report` (without --out) and the daily quality-report flow write
    #: report.html / report.json; relative to the configuration file's folder, never to
    #: the working directory (a deployment's is the code checkout).
    out_dir: str = "report"
    days: int = Field(7, ge=1)  # the report's period (`--days` wins)
    #: How long `contact-sync explain` can look back: older history rows are dropped.
    history_days: int = Field(90, ge=1)


class UserSettings(_Section):
    crm_user: str
    mailbox: str

    @field_validator("crm_user")
    @classmethod
    def _pad(cls, v: str) -> str:
        return pad_user(v)

    @field_validator("mailbox")
    @classmethod
    def _mailbox(cls, v: str) -> str:
        if "@" not in v:
            raise ValueError("mailbox must be the user's userPrincipalName (name@domain)")
        return v.strip()


class Settings(BaseSettings):
    """The whole configuration. Build it with :func:`load_settings`."""

    model_config = SettingsConfigDict(
        env_prefix="CONTACT_SYNC_",
        env_nested_delimiter="__",
        extra="forbid",
        populate_by_name=True,
    )

    crm: CrmSettings = Field(default_factory=CrmSettings)
    outlook: OutlookSettings = Field(default_factory=OutlookSettings)
    state: StateSettings = Field(default_factory=StateSettings)
    sync: SyncSettings = Field(default_factory=SyncSettings)
    orchestration: OrchestrationSettings = Field(default_factory=OrchestrationSettings)
    users_from_crm: UsersFromCrmSettings = Field(default_factory=UsersFromCrmSettings)
    report: ReportSettings = Field(default_factory=ReportSettings)
    users: list[UserSettings] = Field(default_factory=list)
    #: Folder of the configuration file: relative SQLite paths are relative to it.
    base_dir: Path = Field(default_factory=Path.cwd, exclude=True)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The file's values arrive as init kwargs; the environment must win over them.
        return (env_settings, init_settings)

    def user(self, crm_user: str) -> UserSettings:
        """The configured user with this CRM id (padding optional)."""
        padded = pad_user(crm_user)
        for u in self.users:
            if u.crm_user == padded:
                return u
        known = ", ".join(u.crm_user.strip() for u in self.users) or "none"
        raise ConfigError(
            f"user {crm_user.strip()!r} is not in the configuration",
            hint=f"add a [[users]] entry for it (configured users: {known})",
        )

    def crm_url(self) -> str:
        return resolve_url(self.crm.url, self.base_dir)

    def state_url(self) -> str:
        return resolve_url(self.state.url, self.base_dir)

    def report_dir(self) -> Path:
        """[report] out_dir, relative to the configuration file's folder."""
        return (self.base_dir / Path(self.report.out_dir).expanduser()).resolve()


def resolve_url(url: str, base_dir: Path) -> str:
    """Make a relative SQLite path relative to the configuration file's folder."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/"):
        rest = url[len(prefix) :]
        if rest and rest != ":memory:" and not rest.startswith("file:"):
            return prefix + str((base_dir / rest).resolve())
    return url


def config_path(path: str | Path | None) -> Path:
    """The configuration file to use: the argument, $CONTACT_SYNC_CONFIG, else ./contact-sync.toml."""
    if path:
        return Path(path)
    env = os.environ.get(CONFIG_ENV)
    if env:
        return Path(env)
    return Path.cwd() / DEFAULT_CONFIG_NAME


def load_settings(path: str | Path | None = None, **overrides: Any) -> Settings:
    """Read and validate the configuration; raise ConfigError (exit 2) with what to fix."""
    cfg = config_path(path)
    if not cfg.is_file():
        raise ConfigError(
            f"configuration file {cfg} not found",
            hint=f"pass --config PATH, set {CONFIG_ENV}, or create {DEFAULT_CONFIG_NAME} "
            "(see README: Configuration)",
        )
    try:
        data = tomllib.loads(cfg.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{cfg} is not valid TOML: {exc}") from exc
    data.update(overrides)
    data["base_dir"] = cfg.resolve().parent
    settings = settings_from_dict(data, source=str(cfg))
    for resolve in SETTINGS_RESOLVERS:
        settings = resolve(settings)
    return settings


#: Functions that complete loaded settings from where contactsync may not look itself
#: (tasks/secrets.py: the client secret from a Prefect Secret block). The orchestration
#: layer registers them when it is imported; plain library use runs none.
SETTINGS_RESOLVERS: list[Callable[[Settings], Settings]] = []


def settings_from_dict(data: dict[str, Any], *, source: str = "configuration") -> Settings:
    """Validate a configuration mapping; errors name the key (never a secret's value)."""
    try:
        return Settings(**data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"])
            problems.append(f"{where}: {err['msg']}")
        raise ConfigError(
            f"{source} is invalid: " + "; ".join(problems),
            hint="fix these keys (spec: README, section Configuration)",
        ) from None
