"""The warm process that serves `sync` and `backfill` (the default; ``CONTACT_SYNC_WARM=0``: off).

A quiet cycle is half a second of work, but a command's process first imports Prefect,
pandas, SQLAlchemy and O365 (about 2.6 s of a ~4 s quiet command, issue 16) and spends
another ~0.5 s leaving: no lazier import reaches the goal of at most twice a naive
script's time (bench/command_bench.py), since the flow run needs Prefect and the cycle
pandas and SQLAlchemy. So the first such command starts, in the background, a process
that has imported all of that once and waits on a Unix socket in the Prefect home. Each
later command hands it its arguments, environment, working folder and its own
stdin/stdout/stderr (``SCM_RIGHTS``); the warm process forks a child that becomes that
command (its own process, environment and exit code, output on the caller's terminal, its
flow runs as any command's) and answers with the exit code once Prefect has flushed its
logs and events. Signals sent to the command (Ctrl-C) are passed to the child.

When it must not serve a command, it does not:
- the socket's name carries a key of the interpreter, the code's files, the installed
  packages (the site-packages folder changes on every install) and the user's Prefect
  profiles file, and a key of the ``PREFECT_*`` environment: changed code or Prefect
  configuration gets a new warm process, and one of stale code is stopped when it starts;
- the command's configuration file is read by the child, per command, as without it;
- an idle one leaves after ``CONTACT_SYNC_WARM_IDLE_S`` (default 1,800 s), and at once when
  its socket is gone (`contact-sync prefect stop` stops them all; a removed Prefect home);
- anything unusual (no warm process yet, a refused connection, one that does not answer
  within seconds) runs the command in this process as ``CONTACT_SYNC_WARM=0`` would.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable, Mapping
from pathlib import Path

WARM_COMMANDS = ("sync", "backfill")
IDLE_S = float(os.environ.get("CONTACT_SYNC_WARM_IDLE_S", "1800"))
#: How long a command waits for the warm process to take it (a fork: milliseconds).
ANSWER_S = 15.0
#: How often an idle warm process checks that its socket is still there.
POLL_S = 5.0
_CODE = Path(__file__).resolve().parents[2]
_PACKAGES = ("contactsync", "flows", "tasks", "expectations")
_PREFIX = "contact-sync-warm-"


def enabled(env: Mapping[str, str]) -> bool:
    """The warm process is the default path; ``CONTACT_SYNC_WARM=0`` turns it off."""
    return env.get("CONTACT_SYNC_WARM", "1").strip().lower() not in ("0", "false", "no", "off")


def prefect_home() -> Path:
    from contactsync.cli.prefect_server import default_home

    return Path(os.environ.get("PREFECT_HOME") or default_home()).expanduser()


def _stat_key(path: Path | str) -> str:
    try:
        st = os.stat(path)
    except OSError:
        return f"{path}:-"
    return f"{path}:{st.st_size}:{st.st_mtime_ns}"


def code_key(env: Mapping[str, str]) -> str:
    """What the warm process's imports depend on: interpreter, code, packages, profiles."""
    from contactsync.cli.prefect_server import user_profiles_path

    h = hashlib.sha256(sys.executable.encode())
    for package in _PACKAGES:
        for root, _dirs, files in os.walk(_CODE / package):
            for name in sorted(files):
                if name.endswith((".py", ".json")):
                    h.update(_stat_key(os.path.join(root, name)).encode())
    for folder in dict.fromkeys((sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"])):
        h.update(_stat_key(folder).encode())  # a pip install or uninstall changes the folder
    h.update(_stat_key(user_profiles_path(dict(env))).encode())
    return h.hexdigest()[:12]


def settings_key(env: Mapping[str, str]) -> str:
    """The Prefect settings the warm process was started with (``PREFECT_*``)."""
    h = hashlib.sha256()
    for k in sorted(env):
        if k.startswith("PREFECT_"):
            h.update(f"{k}={env[k]}\0".encode())
    return h.hexdigest()[:8]


def warm_key(env: Mapping[str, str]) -> str:
    return f"{code_key(env)}-{settings_key(env)}"


def _socket_path(home: Path, key: str) -> Path:
    return home / f"{_PREFIX}{key}.sock"


# --- the command's side ------------------------------------------------------------------------
def run_warm(argv: list[str]) -> int | None:
    """Run this command in the warm process; None: run it here instead (and warm one up)."""
    if not enabled(os.environ) or not argv or argv[0] not in WARM_COMMANDS:
        return None
    if os.environ.get("CONTACT_SYNC_WARM_CHILD"):
        return None  # this is the warm process's child: run here
    from contactsync.cli.prefect_server import prepare_environment

    prepare_environment()  # the same PREFECT_* as a command run here would have
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    path: Path | None = None
    try:
        path = _socket_path(prefect_home(), warm_key(os.environ))
        _at(path, conn.connect)
    except OSError:
        conn.close()
        if path is not None:
            with contextlib.suppress(OSError):  # an unwritable home: this command runs here anyway
                _spawn(path)
        return None
    with conn:
        request = json.dumps({"argv": argv, "env": dict(os.environ), "cwd": os.getcwd()}).encode()
        try:
            conn.settimeout(ANSWER_S)
            socket.send_fds(conn, [request], [0, 1, 2])
            reader = conn.makefile("r")
            pid = int(reader.readline() or 0)
        except (OSError, ValueError):
            pid = 0
        if not pid:  # it crashed or hangs before taking the command: run it here
            _stop_one(path)
            return None
        conn.settimeout(None)  # a cycle takes as long as it takes

        def forward(sig: int, _frame: object) -> None:
            with contextlib.suppress(OSError):
                os.kill(pid, sig)

        before = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
        try:
            line = reader.readline()
        finally:  # the child is gone: signals are this process's own again
            for sig, handler in before.items():
                signal.signal(sig, handler)
    if line.strip():
        return int(line)
    print(f"contact-sync: the command's process (pid {pid}, a child of the warm process) ended without "
          "an exit code: it was killed or crashed; its cycle is journaled (R18), so run the command again; "
          "set CONTACT_SYNC_WARM=0 to run commands without the warm process", file=sys.stderr)
    return 1


def _at(path: Path, call: Callable[[str], None]) -> None:
    """Bind or connect by the socket's name inside its folder: a Unix socket's path may
    not exceed 107 bytes, which a deep Prefect home easily does."""
    here = os.getcwd()
    os.chdir(path.parent)
    try:
        call(path.name)
    finally:
        os.chdir(here)


def _spawn(path: Path) -> None:
    """Start the warm process for this key in the background, for the next command; stop
    those of stale code in this home (never used again: their key cannot come back)."""
    code = path.name.removeprefix(_PREFIX).split("-")[0]
    for other in path.parent.glob(f"{_PREFIX}*.pid"):
        if not other.name.removeprefix(_PREFIX).startswith(code + "-"):
            _stop_one(other.with_suffix(".sock"))
    log = path.with_suffix(".log")
    with open(log, "ab") as out:
        subprocess.Popen(  # noqa: S603 (our own interpreter and module)
            [sys.executable, "-m", "contactsync.cli.warm", str(path)],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            cwd=str(path.parent),
        )


def _stop_one(path: Path) -> None:
    """Stop the warm process of this socket (it hangs, crashed, or its code is stale)."""
    lock = path.with_suffix(".pid")
    with contextlib.suppress(OSError, ValueError):
        os.kill(int(lock.read_text()), signal.SIGTERM)
    path.unlink(missing_ok=True)
    lock.unlink(missing_ok=True)


# --- the warm process's side -----------------------------------------------------------------
def serve(path: Path) -> None:
    """Import once, then fork one child per command until idle for IDLE_S."""
    import gc
    import threading

    import contactsync.cli  # noqa: F401  (the app and every module a cycle needs)
    import contactsync.cli.commands  # noqa: F401
    import flows.backfill  # noqa: F401
    import flows.sync_all_users  # noqa: F401
    import flows.sync_contacts  # noqa: F401
    from contactsync.cli.prefect_server import pid_file_alive

    try:  # GX too: a cycle with changes would pay its import (seconds) in every child
        from flows.runtime import preload_validation

        preload_validation()
    except Exception as exc:  # noqa: BLE001 (a child imports it itself, and reports what fails)
        print(f"GX not preloaded: {type(exc).__name__}: {exc}", flush=True)
    if threading.active_count() > 1:  # a fork would copy threads' locks mid-use: stay cold
        print(f"not serving: imports started threads {threading.enumerate()}", flush=True)
        return
    # What the imports made lives as long as this process: out of the collector's sight, so
    # that no collection in a child walks it (the 350,000 objects of Prefect, pandas and GX
    # cost 0.25 s CPU a full collection, under the GIL, once per quiet cycle through
    # cycle.memory.release) and a child's pages stay shared with this process (the
    # collector writes to every object it visits). ``gc.freeze`` is CPython's own advice
    # for a process that forks workers (the gc module's documentation).
    gc.collect()
    gc.freeze()

    lock = path.with_suffix(".pid")
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        if pid_file_alive(lock):
            return  # another one is starting for this key
        lock.unlink(missing_ok=True)
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    path.unlink(missing_ok=True)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    _at(path, server.bind)
    os.chmod(path, 0o600)
    server.listen(16)
    server.settimeout(POLL_S)
    inode = path.stat().st_ino
    signal.signal(signal.SIGTERM, lambda *_: (_cleanup(path, lock), os._exit(0)))
    last = time.monotonic()
    try:
        while True:
            with contextlib.suppress(ChildProcessError):
                while os.waitpid(-1, os.WNOHANG)[0]:
                    pass
            try:
                conn, _ = server.accept()
            except TimeoutError:
                if time.monotonic() - last > IDLE_S or not _still_ours(path, inode):
                    return
                continue
            last = time.monotonic()
            child = os.fork()
            if child == 0:
                server.close()
                _child(conn)  # never returns
            conn.close()
            print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} command in child {child}", flush=True)
    finally:
        _cleanup(path, lock)


def _still_ours(path: Path, inode: int) -> bool:
    """Whether the socket file is still this process's (not removed with its Prefect home,
    nor by `contact-sync prefect stop`)."""
    try:
        return path.stat().st_ino == inode
    except OSError:
        return False


def _cleanup(path: Path, lock: Path) -> None:
    with contextlib.suppress(OSError):
        if lock.read_text() != str(os.getpid()):
            return  # another warm process took this key over: its files
    path.unlink(missing_ok=True)
    lock.unlink(missing_ok=True)


def _child(conn: socket.socket) -> None:
    code = 1
    try:
        data, fds, _flags, _addr = socket.recv_fds(conn, 1 << 20, 3)
        request = json.loads(data)
        for fd, target in zip(fds, (0, 1, 2), strict=True):
            os.dup2(fd, target)
            os.close(fd)
        os.environ.clear()
        os.environ.update(request["env"])
        os.environ["CONTACT_SYNC_WARM_CHILD"] = "1"
        os.chdir(request["cwd"])
        from flows.runtime import refresh_settings

        refresh_settings()  # the caller's PREFECT_* settings
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        conn.sendall(f"{os.getpid()}\n".encode())
        from contactsync.cli import run_app

        sys.argv = ["contact-sync", *request["argv"]]
        try:
            run_app()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        import atexit

        atexit._run_exitfuncs()  # Prefect's log and event workers flush here
    except BaseException:  # noqa: BLE001 (the caller gets exit 1; the trace goes to its stderr)
        import traceback

        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        with contextlib.suppress(OSError):
            conn.sendall(f"{code}\n".encode())
        os._exit(code)


if __name__ == "__main__":
    serve(Path(sys.argv[1]))
