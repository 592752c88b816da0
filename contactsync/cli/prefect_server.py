"""Which Prefect API the commands use, and the local Prefect server they start when none is set.

Prefect 3 with no ``PREFECT_API_URL`` falls back to its default profile ``ephemeral``
(``PREFECT_SERVER_EPHEMERAL_ENABLED``): ``prefect.client.orchestration.get_client`` then
starts a temporary API server in a subprocess for every process, about 8 s per command
here, and throws its history away with it. Instead (spec/INTERFACE.md "Prefect"):

- a configured API always wins: ``PREFECT_API_URL`` in the environment, or in the active
  profile of the user's own profiles file. Moving ``PREFECT_HOME`` to contact-sync's home
  would hide that file from Prefect, so its path is kept in ``PREFECT_PROFILES_PATH``;
- otherwise one local server (``prefect server start`` on 127.0.0.1, its SQLite database
  and log file under the Prefect home) is started once, detached from the command, and
  reused by every later command until ``contact-sync prefect stop`` or a reboot.

Only the standard library and psutil here: this runs before Prefect is imported, because
Prefect reads its settings from the environment once, at import.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterator, MutableMapping
from dataclasses import asdict, dataclass
from pathlib import Path

from contactsync.errors import ConfigError

STATE_NAME = "contact-sync-server.json"
LOG_NAME = "contact-sync-server.log"
LOCK_NAME = "contact-sync-server.lock"
DEFAULT_PORT = 4200  # Prefect's own default, so `prefect` in a shell finds it; else any free port
#: The first start runs Prefect's database migrations: on a busy 2-core machine that
#: takes far longer than a later start (a few seconds).
START_TIMEOUT_S = float(os.environ.get("CONTACT_SYNC_PREFECT_START_TIMEOUT", "180"))

Env = MutableMapping[str, str]


def default_home() -> Path:
    return Path.home() / ".contact-sync" / "prefect"


@dataclass(frozen=True)
class ApiChoice:
    """The Prefect API a command talks to, and where that choice came from."""

    url: str
    source: str  # "environment", "profile NAME in PATH" or "local server"
    started: bool = False  # this process started the local server


@dataclass(frozen=True)
class ServerInfo:
    """What ``contact-sync-server.json`` records about the running local server."""

    pid: int
    port: int
    url: str
    log_file: str
    home: str
    created: float  # the process's start time: a reused pid after a reboot is not ours


# --- the user's own configuration -----------------------------------------------------------
def user_profiles_path(env: Env) -> Path:
    """The profiles file Prefect would read for this user before contact-sync moves its home."""
    if env.get("PREFECT_PROFILES_PATH"):
        return Path(env["PREFECT_PROFILES_PATH"]).expanduser()
    home = Path(env["PREFECT_HOME"]).expanduser() if env.get("PREFECT_HOME") else Path.home() / ".prefect"
    return home / "profiles.toml"


def configured_api(env: Env) -> ApiChoice | None:
    """The API the user configured, if any: the environment first, then the active profile."""
    if env.get("PREFECT_API_URL"):
        return ApiChoice(env["PREFECT_API_URL"], "environment (PREFECT_API_URL)")
    path = user_profiles_path(env)
    if not path.is_file():
        return None
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return None  # Prefect itself reports a broken profiles file
    name = env.get("PREFECT_PROFILE") or data.get("active") or "ephemeral"
    url = (data.get("profiles", {}).get(name) or {}).get("PREFECT_API_URL")
    return ApiChoice(str(url), f"profile {name!r} in {path}") if url else None


def prepare_environment(env: Env | None = None) -> Path:
    """Quiet, persistent Prefect settings that keep the user's profile visible; the home."""
    env = os.environ if env is None else env
    profiles = user_profiles_path(env)
    if "PREFECT_PROFILES_PATH" not in env and profiles.is_file():
        env["PREFECT_PROFILES_PATH"] = str(profiles)
    home = Path(env.setdefault("PREFECT_HOME", str(default_home()))).expanduser()
    home.mkdir(parents=True, exist_ok=True)  # Prefect makes only the last folder
    env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    env.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    env.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")
    return home


def use_prefect_api(env: Env | None = None) -> ApiChoice:
    """Point this process at the configured Prefect API, or at the local server (started if
    needed). Call before Prefect is imported, or Prefect's settings already made win."""
    env = os.environ if env is None else env
    home = prepare_environment(env)
    chosen = configured_api(env) or _configured_in_process()
    if chosen is not None:
        return chosen
    info, started = ensure_server(home)
    env["PREFECT_API_URL"] = info.url
    if not _csrf_protected(env):
        # Prefect's client otherwise asks every new client's first write for a CSRF token,
        # which a server without CSRF protection (Prefect's default, and this one unless the
        # environment turns it on) refuses with a 422: one wasted request per user's run.
        env.setdefault("PREFECT_CLIENT_CSRF_SUPPORT_ENABLED", "false")
    return ApiChoice(info.url, "local server", started=started)


def _csrf_protected(env: Env) -> bool:
    """Whether the local server (started with this environment) protects against CSRF."""
    names = ("PREFECT_SERVER_API_CSRF_PROTECTION_ENABLED", "PREFECT_SERVER_CSRF_PROTECTION_ENABLED")
    return any(env.get(n, "").strip().lower() in {"1", "true", "yes", "on"} for n in names)


def _configured_in_process() -> ApiChoice | None:
    """An API this process's Prefect settings already name (e.g. a test harness's)."""
    if "prefect.settings" not in sys.modules:
        return None
    from flows.runtime import api_url_in_process

    url = api_url_in_process()
    return ApiChoice(url, "this process's Prefect settings") if url else None


# --- the local server -----------------------------------------------------------------------
def _state_path(home: Path) -> Path:
    return home / STATE_NAME


def read_server(home: Path) -> ServerInfo | None:
    """The recorded local server if its process still runs (whether or not it answers yet)."""
    try:
        info = ServerInfo(**json.loads(_state_path(home).read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None
    return info if _is_our_process(info) else None


def _is_our_process(info: ServerInfo) -> bool:
    import psutil

    try:
        proc = psutil.Process(info.pid)
        return abs(proc.create_time() - info.created) < 1.0 and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def healthy(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=timeout) as resp:  # noqa: S310 (http on 127.0.0.1)
            return resp.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


@contextlib.contextmanager
def _locked(home: Path) -> Iterator[None]:
    """One command at a time decides whether to start the server (no two servers)."""
    with open(home / LOCK_NAME, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _free_port(preferred: int = DEFAULT_PORT) -> int:
    for port in (preferred, 0):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise ConfigError("no free TCP port on 127.0.0.1 for the local Prefect server")


def ensure_server(home: Path, timeout_s: float = START_TIMEOUT_S) -> tuple[ServerInfo, bool]:
    """The running local server, started first if there is none; (info, started here)."""
    with _locked(home):
        info = read_server(home)
        started = info is None
        if info is None:
            info = _start(home)
        _wait_healthy(info, timeout_s)
        return info, started


def _start(home: Path) -> ServerInfo:
    import psutil

    port = _free_port()
    log_file = home / LOG_NAME
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    with open(log_file, "ab") as log:
        log.write(f"--- contact-sync starts the local Prefect server on port {port}\n".encode())
        log.flush()
        proc = subprocess.Popen(  # noqa: S603 (our own interpreter, fixed arguments)
            # Prefect's `prefect server start`, its SQLite writes begun IMMEDIATE (flows/local_server.py)
            [sys.executable, "-m", "flows.local_server", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(home),
            start_new_session=True,  # outlives the command; its own process group for `stop`
        )
    info = ServerInfo(
        pid=proc.pid, port=port, url=f"http://127.0.0.1:{port}/api", log_file=str(log_file),
        home=str(home), created=psutil.Process(proc.pid).create_time(),
    )
    tmp = _state_path(home).with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(info)), encoding="utf-8")
    tmp.replace(_state_path(home))
    return info


def _wait_healthy(info: ServerInfo, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not healthy(info.url):
        if not _is_our_process(info):
            raise ConfigError(
                f"the local Prefect server (pid {info.pid}) exited while starting",
                hint=f"see its log {info.log_file}; or set PREFECT_API_URL to a Prefect server of yours",
            )
        if time.monotonic() > deadline:
            raise ConfigError(
                f"the local Prefect server on {info.url} did not answer within {timeout_s:.0f} s",
                hint=f"see its log {info.log_file}; `contact-sync prefect stop` and retry, or set "
                "CONTACT_SYNC_PREFECT_START_TIMEOUT higher on a slow machine",
            )
        time.sleep(0.2)


def stop_server(home: Path, timeout_s: float = 15.0) -> ServerInfo | None:
    """Stop the local server (its whole process group); the info of what was stopped."""
    stop_warm(home)  # warm processes (cli/warm.py) hold clients of this server
    with _locked(home):
        info = read_server(home)
        _state_path(home).unlink(missing_ok=True)
        if info is None:
            return None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(info.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while _is_our_process(info) and time.monotonic() < deadline:
            time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError):
            if _is_our_process(info):
                os.killpg(info.pid, signal.SIGKILL)
        return info


def describe(env: Env | None = None) -> tuple[str, bool]:
    """`contact-sync prefect status`: the text, and whether the local server runs."""
    env = os.environ if env is None else env
    home = Path(env.get("PREFECT_HOME") or default_home()).expanduser()
    info = read_server(home) if home.is_dir() else None
    lines = []
    if info is None:
        lines.append(f"local Prefect server: not running (Prefect home {home})")
    else:
        state = "running" if healthy(info.url) else "starting or not answering"
        lines += [
            f"local Prefect server: {state}, pid {info.pid}, API {info.url}",
            f"  UI: {info.url.removesuffix('/api')}",
            f"  Prefect home (database): {info.home}",
            f"  log file: {info.log_file}",
        ]
    warm = sorted(home.glob("contact-sync-warm-*.pid")) if home.is_dir() else []
    if warm:
        lines.append(f"warm processes (they serve `sync` and `backfill`; CONTACT_SYNC_WARM=0: off): {len(warm)}, "
                     f"log {warm[0].with_suffix('.log')}")
    configured = configured_api(env)
    if configured is not None:
        lines.append(f"the commands use the configured API {configured.url} ({configured.source})")
    else:
        lines.append("the commands use the local server (started by the first command that needs it)")
    return "\n".join(lines), info is not None


def pid_file_alive(pid_file: Path) -> bool:
    """Whether the process named in a pid file still runs (a warm process's lock)."""
    try:
        os.kill(int(pid_file.read_text()), 0)
        return True
    except (OSError, ValueError):
        return False


def stop_warm(home: Path) -> int:
    """Stop every warm process of this Prefect home (cli/warm.py); how many were stopped.

    Here, not in warm.py, because stopping the server stops them first and warm.py
    imports this module: so the two never import each other."""
    stopped = 0
    for lock in home.glob("contact-sync-warm-*.pid"):
        with contextlib.suppress(OSError, ValueError):
            os.kill(int(lock.read_text()), signal.SIGTERM)
            stopped += 1
    deadline = time.monotonic() + 5
    while any(pid_file_alive(p) for p in home.glob("contact-sync-warm-*.pid")) and time.monotonic() < deadline:
        time.sleep(0.05)
    for leftover in (*home.glob("contact-sync-warm-*.pid"), *home.glob("contact-sync-warm-*.sock")):
        leftover.unlink(missing_ok=True)
    return stopped
