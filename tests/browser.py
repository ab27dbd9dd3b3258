"""A small driver for headless Chromium over the DevTools protocol, for tests.

:func:`chromium` starts ``chromium --headless=new`` with its own profile directory and
a DevTools port it picks itself (read back from ``DevToolsActivePort``), connects to its
page over a WebSocket and yields a :class:`Browser`; the browser process is killed and
its profile removed when the ``with`` block ends, whatever happens in it.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from websockets.sync.client import connect

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
START_SECONDS = 15
COMMAND_SECONDS = 10


def find_chromium() -> str | None:
    """The Chromium binary (``DRD_CHROMIUM`` overrides the PATH lookup), or None."""
    if configured := os.environ.get("DRD_CHROMIUM"):
        return configured
    for name in CHROMIUM_NAMES:
        if found := shutil.which(name):
            return found
    return None


class BrowserError(Exception):
    """Chromium did not start, or a DevTools command failed or timed out."""


class Browser:
    """One page of a running Chromium: navigate, evaluate, wait, screenshot."""

    def __init__(self, socket) -> None:
        self._socket = socket
        self._next_id = 0

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        """Run a DevTools command and return its ``result`` (events in between are
        dropped). Raises :class:`BrowserError` for an error answer or no answer."""
        self._next_id += 1
        command_id = self._next_id
        self._socket.send(json.dumps({"id": command_id, "method": method, "params": params}))
        deadline = time.monotonic() + COMMAND_SECONDS
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BrowserError(f"{method}: no answer within {COMMAND_SECONDS} s")
            message = json.loads(self._socket.recv(timeout=remaining))
            if message.get("id") != command_id:
                continue
            if "error" in message:
                raise BrowserError(f"{method}: {message['error']}")
            return message.get("result", {})

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript ``expression`` in the page (JSON-serialisable)."""
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True,
                           awaitPromise=True)
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression!r} threw: {result['exceptionDetails']}")
        return result["result"].get("value")

    def navigate(self, url: str) -> None:
        self.send("Page.navigate", url=url)

    def wait_for(self, expression: str, timeout: float = COMMAND_SECONDS) -> Any:
        """Poll ``expression`` until it is truthy; return its value.

        Raises :class:`BrowserError` with the page's address after ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            try:
                value = self.evaluate(expression)
            except BrowserError:  # the page was replaced while evaluating: try again
                value = None
            if value:
                return value
            if time.monotonic() > deadline:
                where = self.evaluate("location.href")
                raise BrowserError(f"{expression!r} still false after {timeout} s at {where}")
            time.sleep(0.05)

    def screenshot(self, path: Path) -> Path:
        """Save the whole page (not only the window) as a PNG at ``path``."""
        size = self.send("Page.getLayoutMetrics")["cssContentSize"]
        shot = self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                         clip={"x": 0, "y": 0, "width": size["width"],
                               "height": size["height"], "scale": 1})
        path.write_bytes(base64.b64decode(shot["data"]))
        return path


def _devtools_port(profile: Path, process: subprocess.Popen) -> int:
    active = profile / "DevToolsActivePort"
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BrowserError(f"chromium exited with status {process.returncode} at start")
        try:
            first_line = active.read_text().splitlines()[0]
        except (FileNotFoundError, IndexError):
            time.sleep(0.05)
            continue
        return int(first_line)
    raise BrowserError(f"chromium wrote no DevToolsActivePort within {START_SECONDS} s")


@contextmanager
def chromium(binary: str, width: int = 1280, height: int = 900) -> Iterator[Browser]:
    """Headless Chromium with a fresh profile, its first page as a :class:`Browser`.

    ``--no-sandbox``: CI runs the tests as root, where Chromium's sandbox cannot start.
    """
    profile = Path(tempfile.mkdtemp(prefix="drd-chromium-"))
    process = subprocess.Popen(
        [binary, "--headless=new", "--remote-debugging-port=0", f"--user-data-dir={profile}",
         "--no-sandbox", "--no-first-run", "--disable-gpu", "--disable-dev-shm-usage",
         "--disable-extensions", f"--window-size={width},{height}", "about:blank"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port = _devtools_port(profile, process)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list",
                                    timeout=COMMAND_SECONDS) as answer:
            targets = json.load(answer)
        page = next((target for target in targets if target.get("type") == "page"), None)
        if page is None:
            raise BrowserError(f"chromium shows no page to drive: {targets}")
        with connect(page["webSocketDebuggerUrl"], max_size=None,
                     open_timeout=COMMAND_SECONDS) as socket:
            yield Browser(socket)
    finally:
        process.kill()
        process.wait(timeout=COMMAND_SECONDS)
        shutil.rmtree(profile, ignore_errors=True)
