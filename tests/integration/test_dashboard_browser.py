"""The dashboard in a real browser: headless Chromium logs in through the form, as a
person would, and the page shows the known systems with their RPO state; a screenshot
of it is kept for people to look at (``/tmp/drd-dashboard.png``). The drill report it
links to renders under the same Content-Security-Policy."""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import uvicorn

from tests.browser import chromium, find_chromium
from tests.conftest import need
from tests.integration.test_dashboard import EVIL, seeded_centre

pytestmark = pytest.mark.integration

SCREENSHOT_FOR_PEOPLE = Path("/tmp/drd-dashboard.png")
START_SECONDS = 10


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def serving(app) -> Iterator[str]:
    """``app`` served by uvicorn on 127.0.0.1 (plain HTTP) in a thread; its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, name="dashboard-server", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + START_SECONDS
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=START_SECONDS)


def test_chromium_logs_in_and_sees_the_known_system_late(tmp_path: Path,
                                                         monkeypatch) -> None:
    binary = find_chromium()
    need("Chromium", binary is not None,
         "make test installs it (scripts/ensure-system-deps --test), or set DRD_CHROMIUM")
    monkeypatch.delenv("DRD_MASTER_PASSPHRASE", raising=False)
    centre = seeded_centre(tmp_path, f"sqlite:///{tmp_path / 'catalog.sqlite'}")
    with serving(centre.app) as base_url, chromium(binary) as browser:
        browser.navigate(f"{base_url}/")
        browser.wait_for("location.pathname === '/login' && "
                         "document.getElementById('token') !== null")
        browser.evaluate(f"document.getElementById('token').value = "
                         f"{json.dumps(centre.operator)}; "
                         "document.getElementById('login').submit(); true")
        browser.wait_for("location.pathname === '/' && document.readyState === 'complete' "
                         "&& document.getElementById('systems') !== null")

        systems = browser.evaluate(
            "Array.from(document.querySelectorAll('tr[data-system]')).map(row => "
            "[row.dataset.system, row.querySelector('.state').textContent])")
        # the late ones first, then every system by name (SQLite: by code point)
        assert systems == [["roads-db", "late"], [EVIL, "pending"], ["fs1", "ok"],
                           ["roads-db", "late"]]
        # the inline style applies under the page's CSP: a late badge is red, ok green
        late, ok = browser.evaluate(
            "['late', 'ok'].map(state => getComputedStyle(document.querySelector("
            "'tr[data-system] .state-' + state)).backgroundColor)")
        assert (late, ok) == ("rgb(253, 232, 232)", "rgb(229, 245, 232)")
        assert "night-shift" in browser.evaluate("document.querySelector('header').innerText")
        assert browser.evaluate("document.cookie") == ""  # HttpOnly: no script reads it
        assert browser.evaluate("document.scripts.length") == 0

        shot = browser.screenshot(tmp_path / "dashboard.png")

        # the drill report opens by the cookie and renders under the same CSP: its
        # inline stylesheet and style attributes apply, its SVG charts draw
        browser.evaluate("document.querySelector('a[href*=\"/report?format=html\"]')"
                         ".click(); true")
        browser.wait_for("location.pathname.endsWith('/report') && "
                         "document.readyState === 'complete' && "
                         "document.getElementById('verdict') !== null")
        verdict = browser.evaluate("getComputedStyle(document.getElementById('verdict'))"
                                   ".backgroundColor")
        assert verdict == "rgb(218, 251, 225)"  # .verdict.passed of the report's <style>
        charts = browser.evaluate(
            "Array.from(document.querySelectorAll('svg')).map(svg => "
            "svg.getBoundingClientRect().width)")
        assert charts and min(charts) > 0
        bars = browser.evaluate("Array.from(document.querySelectorAll('.bar span'))"
                                ".map(bar => bar.getBoundingClientRect().width)")
        assert bars and max(bars) > 0  # style="width: N%" attributes apply
        assert browser.evaluate("document.scripts.length") == 0
    assert shot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n") and shot.stat().st_size > 10_000
    shutil.copyfile(shot, SCREENSHOT_FOR_PEOPLE)
