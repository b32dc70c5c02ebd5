"""Open a local HTML file in real headless Chromium and report what went wrong.

Chromium (Debian package ``chromium``; ``scripts/test.sh`` installs it) is
driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``: the
browser reads commands on fd 3 and writes replies on fd 4, NUL-separated
JSON), so no extra Python package and no network port are needed. Collected:

- uncaught exceptions (``Runtime.exceptionThrown``),
- ``console.error`` / ``console.assert`` calls (``Runtime.consoleAPICalled``),
- browser log entries of level error: failed loads, blocked content, CSP
  violations (``Log.entryAdded``),
- every request the page makes (``Network.requestWillBeSent``), so a test can
  prove the page loads nothing but itself.

``SIMRECON_CHROMIUM`` may name the browser binary (default: ``chromium`` on PATH).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

TIMEOUT = 60.0


class BrowserMissingError(RuntimeError):
    pass


def chromium_binary() -> str:
    name = os.environ.get("SIMRECON_CHROMIUM", "chromium")
    found = shutil.which(name)
    if not found:
        raise BrowserMissingError(
            f"{name!r} not found: install Debian's chromium package (scripts/test.sh does: "
            "apt-get install -y --no-install-recommends chromium) or set SIMRECON_CHROMIUM")
    return found


@dataclass
class PageReport:
    errors: list[str] = field(default_factory=list)  # exceptions, console errors, log errors
    console: list[str] = field(default_factory=list)  # every console message "type: text"
    requests: list[str] = field(default_factory=list)  # every URL the page requested
    values: dict[str, object] = field(default_factory=dict)  # results of `evaluate`
    screenshot: Path | None = None


class _Pipe:
    """DevTools protocol over the browser's fd 3 / fd 4 pipe."""

    def __init__(self, command: list[str]) -> None:
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()

        def wire() -> None:  # in the child: commands on fd 3, replies on fd 4
            a = fcntl.fcntl(to_child_r, fcntl.F_DUPFD, 10)
            b = fcntl.fcntl(from_child_w, fcntl.F_DUPFD, 10)
            os.dup2(a, 3)
            os.dup2(b, 4)

        # The browser's own log goes to a file: a full pipe would block it.
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 (closed in close())
        self.process = subprocess.Popen(
            command, preexec_fn=wire, close_fds=False, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=self._log)
        os.close(to_child_r)
        os.close(from_child_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict] = []

    def _messages(self, deadline: float):  # type: ignore[no-untyped-def]
        while True:
            while b"\0" in self._buffer:
                raw, self._buffer = self._buffer.split(b"\0", 1)
                yield json.loads(raw)
            ready, _, _ = select.select([self._from_child], [], [],
                                        max(0.0, deadline - time.monotonic()))
            if not ready:
                raise TimeoutError("the browser did not answer in time")
            chunk = os.read(self._from_child, 1 << 20)
            if not chunk:
                raise EOFError("the browser closed the DevTools pipe")
            self._buffer += chunk

    def wait_for(self, predicate, timeout: float = TIMEOUT) -> dict:  # type: ignore[no-untyped-def]
        for message in self._messages(time.monotonic() + timeout):
            if "id" not in message:
                self.events.append(message)
            if predicate(message):
                return message
        raise AssertionError("unreachable")

    def call(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self._next_id += 1
        ident = self._next_id
        message: dict = {"id": ident, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_child, json.dumps(message).encode() + b"\0")
        reply = self.wait_for(lambda m: m.get("id") == ident)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def close(self) -> str:
        with contextlib.suppress(EOFError, TimeoutError, OSError):
            self.call("Browser.close")
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for fd in (self._to_child, self._from_child):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._log.seek(0)
        text = self._log.read().decode("utf-8", "replace")
        self._log.close()
        return text


def _describe_exception(details: dict) -> str:
    exception = details.get("exception") or {}
    text = exception.get("description") or details.get("text", "exception")
    return f"uncaught {text.splitlines()[0]} (line {details.get('lineNumber', 0) + 1})"


def open_page(path: Path, *, screenshot: Path | None = None, width: int = 1280,
              height: int = 900, full_page_max: int = 12000,
              evaluate: dict[str, str] | None = None, settle_ms: int = 300) -> PageReport:
    """Load ``path`` in headless Chromium; run ``evaluate`` (name → JavaScript
    expression, awaited, by value) after load; save a PNG screenshot of the page
    (full height up to ``full_page_max`` px)."""
    binary = chromium_binary()
    profile = Path(tempfile.mkdtemp(prefix="simrecon-chromium-"))
    command = [binary, "--headless", "--disable-gpu", "--no-sandbox",
               "--remote-debugging-pipe", f"--user-data-dir={profile}", "--no-first-run",
               "--no-default-browser-check", "--disable-extensions",
               "--disable-background-networking", "--disable-sync", "--mute-audio",
               f"--window-size={width},{height}", "about:blank"]
    pipe = _Pipe(command)
    report = PageReport()
    try:
        target = pipe.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = pipe.call("Target.attachToTarget",
                            {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime", "Log", "Page", "Network"):
            pipe.call(f"{domain}.enable", session=session)
        pipe.call("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
                  session=session)
        pipe.call("Page.navigate", {"url": Path(path).resolve().as_uri()}, session=session)
        pipe.wait_for(lambda m: m.get("method") == "Page.loadEventFired")
        for name, expression in (evaluate or {}).items():
            result = pipe.call("Runtime.evaluate", {"expression": expression,
                                                    "returnByValue": True,
                                                    "awaitPromise": True}, session=session)
            if "exceptionDetails" in result:
                report.errors.append(f"evaluate {name}: "
                                     f"{_describe_exception(result['exceptionDetails'])}")
            report.values[name] = result.get("result", {}).get("value")
        # Let late events (timers, handlers run by `evaluate`) arrive.
        pipe.call("Runtime.evaluate", {"expression": f"new Promise(r => setTimeout(r, "
                                                     f"{settle_ms}))", "awaitPromise": True},
                  session=session)
        if screenshot is not None:
            metrics = pipe.call("Page.getLayoutMetrics", session=session)
            content = metrics.get("cssContentSize") or metrics["contentSize"]
            clip = {"x": 0, "y": 0, "width": max(width, int(content["width"])),
                    "height": min(full_page_max, int(content["height"])), "scale": 1}
            shot = pipe.call("Page.captureScreenshot", {"format": "png", "clip": clip,
                                                        "captureBeyondViewport": True},
                             session=session)
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            screenshot.write_bytes(base64.b64decode(shot["data"]))
            report.screenshot = screenshot
    finally:
        pipe.close()
        shutil.rmtree(profile, ignore_errors=True)
    for event in pipe.events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.exceptionThrown":
            report.errors.append(_describe_exception(params["exceptionDetails"]))
        elif method == "Runtime.consoleAPICalled":
            text = " ".join(str(a.get("value", a.get("description", "")))
                            for a in params.get("args", []))
            report.console.append(f"{params.get('type')}: {text}")
            if params.get("type") in ("error", "assert"):
                report.errors.append(f"console.{params['type']}: {text}")
        elif method == "Log.entryAdded":
            entry = params.get("entry", {})
            if entry.get("level") == "error":
                report.errors.append(f"{entry.get('source')}: {entry.get('text')} "
                                     f"{entry.get('url', '')}".strip())
        elif method == "Network.requestWillBeSent":
            report.requests.append(params["request"]["url"])
    return report


def artifacts_dir() -> Path:
    """Where tests leave files for people to look at (``SIMRECON_TEST_ARTIFACTS``, default
    ``tests/artifacts/``, kept out of git by its own ``.gitignore``)."""
    folder = Path(os.environ.get("SIMRECON_TEST_ARTIFACTS")
                  or Path(__file__).resolve().parent / "artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    ignore = folder / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# test artefacts (screenshots): never committed\n*\n",
                          encoding="utf-8")
    return folder


def browse(url: str, steps: list[tuple[str, str, bool]], *, screenshot: Path | None = None,
           width: int = 1280, height: int = 900, full_page_max: int = 6000) -> PageReport:
    """Open ``url`` (a page served on loopback) in headless Chromium and run ``steps``:
    ``(name, JavaScript expression, navigates)``, each awaited, its value kept under
    ``name``; after a step that submits a form or follows a link (``navigates``) the
    next waits for the new page to load. Screenshot of the last page as in ``open_page``."""
    binary = chromium_binary()
    profile = Path(tempfile.mkdtemp(prefix="simrecon-chromium-"))
    command = [binary, "--headless", "--disable-gpu", "--no-sandbox",
               "--remote-debugging-pipe", f"--user-data-dir={profile}", "--no-first-run",
               "--no-default-browser-check", "--disable-extensions",
               "--disable-background-networking", "--disable-sync", "--mute-audio",
               f"--window-size={width},{height}", "about:blank"]
    pipe = _Pipe(command)
    report = PageReport()
    try:
        target = pipe.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = pipe.call("Target.attachToTarget",
                            {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime", "Log", "Page", "Network"):
            pipe.call(f"{domain}.enable", session=session)
        pipe.call("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
                  session=session)
        pipe.call("Page.navigate", {"url": url}, session=session)
        pipe.wait_for(lambda m: m.get("method") == "Page.loadEventFired")
        for name, expression, navigates in steps:
            seen = len(pipe.events)
            result = pipe.call("Runtime.evaluate", {"expression": expression,
                                                    "returnByValue": True,
                                                    "awaitPromise": True}, session=session)
            if "exceptionDetails" in result:
                report.errors.append(f"step {name}: "
                                     f"{_describe_exception(result['exceptionDetails'])}")
            report.values[name] = result.get("result", {}).get("value")
            loaded = any(e.get("method") == "Page.loadEventFired" for e in pipe.events[seen:])
            if navigates and not loaded:
                try:
                    pipe.wait_for(lambda m: m.get("method") == "Page.loadEventFired")
                except TimeoutError as exc:
                    raise TimeoutError(f"step {name}: no page loaded after it") from exc
        if screenshot is not None:
            metrics = pipe.call("Page.getLayoutMetrics", session=session)
            content = metrics.get("cssContentSize") or metrics["contentSize"]
            clip = {"x": 0, "y": 0, "width": max(width, int(content["width"])),
                    "height": min(full_page_max, int(content["height"])), "scale": 1}
            shot = pipe.call("Page.captureScreenshot", {"format": "png", "clip": clip,
                                                        "captureBeyondViewport": True},
                             session=session)
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            screenshot.write_bytes(base64.b64decode(shot["data"]))
            report.screenshot = screenshot
    finally:
        pipe.close()
        shutil.rmtree(profile, ignore_errors=True)
    for event in pipe.events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.exceptionThrown":
            report.errors.append(_describe_exception(params["exceptionDetails"]))
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            report.errors.append(f"console.{params['type']}")
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            report.errors.append(f"{entry.get('source')}: {entry.get('text')}")
        elif method == "Network.requestWillBeSent":
            report.requests.append(params["request"]["url"])
    return report
