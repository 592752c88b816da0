"""Headless Chromium over the DevTools protocol: a page as a person sees it.

What the tests read is what the browser rendered: ``document.body.innerText`` (text a
person can see, after HTML parsing and escaping), a full-page PNG screenshot, and every
console message, uncaught exception and browser log entry (CSP violations, failed
loads). Only the ``websockets`` client is needed; Chromium is Debian's ``chromium``.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--remote-debugging-port=0", "--remote-allow-origins=*")
REQUIRE_ENV = "CONTACT_SYNC_REQUIRE_CHROMIUM"


def chromium_path() -> str:
    """The browser, or a skip (a failure when CI requires it, as .ci/run does)."""
    found = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.environ.get(REQUIRE_ENV):
        pytest.fail(f"{REQUIRE_ENV} is set but no chromium is installed (apt-get install chromium)")
    pytest.skip("no chromium on PATH (apt-get install chromium; .ci/run installs it)")


@dataclass
class Page:
    text: str
    problems: list[str] = field(default_factory=list)  # console errors, exceptions, log errors
    screenshot: Path | None = None
    title: str = ""
    values: dict[str, Any] = field(default_factory=dict)  # the asked-for expressions' values


def view(
    html_file: Path, screenshot: Path, *, expressions: dict[str, str] | None = None,
    width: int = 1400, timeout: float = 60.0, clip_from: str | None = None,
) -> Page:
    """Open ``html_file`` in a fresh headless Chromium, read it and take a full-page shot;
    ``expressions`` (name -> JavaScript) are evaluated in the page after it loaded;
    ``clip_from``: a CSS selector, the shot then starts at that element (1,200 px high)."""
    from websockets.sync.client import connect

    profile = tempfile.mkdtemp(prefix="report-chromium-")
    proc = subprocess.Popen([chromium_path(), *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        ws_url = _devtools_url(proc, timeout)
        port = re.search(r":(\d+)/", ws_url).group(1)  # type: ignore[union-attr]
        page_ws = _page_target(port, timeout)
        with connect(page_ws, max_size=None, open_timeout=timeout) as ws:
            cdp = _Cdp(ws, timeout)
            for domain in ("Page", "Runtime", "Log"):
                cdp.call(f"{domain}.enable")
            cdp.call("Emulation.setDeviceMetricsOverride", width=width, height=900,
                     deviceScaleFactor=1, mobile=False)
            cdp.call("Page.navigate", url=html_file.resolve().as_uri())
            cdp.wait_for("Page.loadEventFired")
            time.sleep(0.3)  # late console messages
            text = cdp.evaluate("document.body.innerText")
            title = cdp.evaluate("document.title")
            values = {k: cdp.evaluate(js) for k, js in (expressions or {}).items()}
            height = int(cdp.evaluate("Math.ceil(document.documentElement.scrollHeight)"))
            cdp.call("Emulation.setDeviceMetricsOverride", width=width, height=min(height, 16000),
                     deviceScaleFactor=1, mobile=False)
            params: dict[str, Any] = {"format": "png"}
            if clip_from:
                top = cdp.evaluate(f"document.querySelector({json.dumps(clip_from)}).getBoundingClientRect().top + window.scrollY")
                params["clip"] = {"x": 0, "y": top, "width": width, "height": 1200, "scale": 1}
            shot = cdp.call("Page.captureScreenshot", **params)
            screenshot.write_bytes(base64.b64decode(shot["data"]))
            cdp.drain(0.2)
            return Page(text=text, problems=cdp.problems, screenshot=screenshot, title=title, values=values)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(profile, ignore_errors=True)


def _devtools_url(proc: subprocess.Popen[str], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    assert proc.stderr is not None
    seen: list[str] = []
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            if proc.poll() is not None:
                break
            continue
        seen.append(line)
        found = re.search(r"DevTools listening on (ws://\S+)", line)
        if found:
            return found.group(1)
    raise RuntimeError("chromium did not start its DevTools endpoint:\n" + "".join(seen[-20:]))


def _page_target(port: str, timeout: float) -> str:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as resp:
            pages = [t for t in json.load(resp) if t.get("type") == "page"]
        if pages:
            return pages[0]["webSocketDebuggerUrl"]
        time.sleep(0.1)
    raise RuntimeError("chromium opened no page target")


class _Cdp:
    """Request/response over one DevTools websocket, keeping the events it passes."""

    def __init__(self, ws: Any, timeout: float) -> None:
        self.ws, self.timeout = ws, timeout
        self.ids = itertools.count(1)
        self.events: list[dict[str, Any]] = []
        self.problems: list[str] = []

    def _event(self, msg: dict[str, Any]) -> None:
        self.events.append(msg)
        method, params = msg.get("method"), msg.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert", "warning"):
            args = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
            self.problems.append(f"console.{params['type']}: {args}")
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            self.problems.append(f"exception: {details.get('text')} {details.get('exception', {}).get('description', '')}")
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") in ("error", "warning"):
            entry = params["entry"]
            self.problems.append(f"log {entry.get('source')}: {entry.get('text')}")

    def _recv(self, deadline: float) -> dict[str, Any]:
        return json.loads(self.ws.recv(timeout=max(deadline - time.monotonic(), 0.01)))

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        mid = next(self.ids)
        self.ws.send(json.dumps({"id": mid, "method": method, "params": params}))
        deadline = time.monotonic() + self.timeout
        while True:
            msg = self._recv(deadline)
            if msg.get("id") == mid:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self._event(msg)

    def wait_for(self, method: str) -> None:
        if any(e.get("method") == method for e in self.events):
            return
        deadline = time.monotonic() + self.timeout
        while self._recv_event(deadline) != method:
            pass

    def _recv_event(self, deadline: float) -> str | None:
        msg = self._recv(deadline)
        self._event(msg)
        return msg.get("method")

    def drain(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        try:
            while True:
                self._recv_event(deadline)
        except TimeoutError:
            return

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")
