"""The gate in front of large bodies (drd/api/large_bodies.py), driven as ASGI, no I/O.

The catalog lookups are replaced by stand-ins that accept one agent token and one
person's token; everything else (which check a path takes, what is read when, what is
answered) is the real code.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from types import SimpleNamespace
from unittest import mock

import pytest

from drd.api import auth
from drd.api.app import create_app
from drd.api.auth import bearer_check_for, current_agent, current_principal
from drd.api.large_bodies import LargeBodyGate
from drd.api.limits import MANIFEST_LIMIT, SMALL_BODY_LIMIT, BodyBudget, content_length
from drd.services.agents import AgentIdentity
from drd.services.refusals import NotAllowed, NotAuthenticated
from drd.services.tokens import Principal

AGENT_TOKEN = "agent-token"
PERSON_TOKEN = "person-token"
MANIFEST = "/v1/agent/snapshots/" + "a" * 64 + "/manifest"


@pytest.fixture(autouse=True)
def tokens(monkeypatch) -> None:
    def authenticate_agent(catalog, credential, now=None):
        if not credential:
            raise NotAuthenticated("no credential: send 'Authorization: Bearer <token>'")
        if credential == PERSON_TOKEN:
            raise NotAllowed("a token of role 'operator' cannot call the agent API")
        if credential != AGENT_TOKEN:
            raise NotAuthenticated("unknown agent token")
        return AgentIdentity(system_id=1, system="fs1", department="parks", token_id=1)

    def authenticate(catalog, credential, now=None):
        if credential not in (AGENT_TOKEN, PERSON_TOKEN):
            raise NotAuthenticated("unknown token")
        return Principal(token_id=2, name="night", role="operator", departments=(),
                         systems=())

    monkeypatch.setattr(auth, "authenticate_agent", authenticate_agent)
    monkeypatch.setattr(auth, "authenticate", authenticate)


class Downstream:
    """The app behind the gate: reads the whole body, answers 204; may wait for a go."""

    def __init__(self) -> None:
        self.calls = 0
        self.bodies: list[bytes] = []
        self.go: asyncio.Event | None = None

    async def __call__(self, scope, receive, send) -> None:
        self.calls += 1
        if self.go is not None:
            await self.go.wait()
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        self.bodies.append(body)
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})


class Client:
    """Sends a body in pieces and counts what the gate pulled of it."""

    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces = list(pieces)
        self.pulled = 0

    async def receive(self) -> dict:
        if not self.pieces:
            return {"type": "http.request", "body": b"", "more_body": False}
        piece = self.pieces.pop(0)
        self.pulled += len(piece)
        return {"type": "http.request", "body": piece, "more_body": bool(self.pieces)}


async def call(gate, path: str, pieces: list[bytes], *, token: str | None = None,
               chunked: bool = False, method: str = "PUT") -> tuple[dict, Client]:
    headers = [(b"content-type", b"application/json")]
    if chunked:
        headers.append((b"transfer-encoding", b"chunked"))
    else:
        headers.append((b"content-length", str(sum(map(len, pieces))).encode()))
    if token:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    scope = {"type": "http", "method": method, "path": path, "raw_path": path.encode(),
             "root_path": "", "query_string": b"", "headers": headers,
             "http_version": "1.1", "scheme": "http", "server": ("127.0.0.1", 1)}
    client = Client(pieces)
    answer: dict = {}

    async def send(message) -> None:
        if message["type"] == "http.response.start":
            answer["status"] = message["status"]
            answer["headers"] = {k.decode().lower(): v.decode()
                                 for k, v in message["headers"]}
        else:
            answer["body"] = answer.get("body", b"") + message.get("body", b"")

    await gate(scope, client.receive, send)
    return answer, client


def gate_on(downstream: Downstream, budget: int = 2 * MANIFEST_LIMIT) -> LargeBodyGate:
    context = SimpleNamespace(catalog=None, now=lambda: dt.datetime.now(dt.UTC))
    return LargeBodyGate(downstream, context=context, budget=BodyBudget(budget))


def run(coroutine):
    return asyncio.run(coroutine)


def detail(answer: dict) -> str:
    return json.loads(answer["body"])["detail"]


# -- which check a path takes --------------------------------------------------------------


def test_the_check_per_path_is_the_one_each_route_takes() -> None:
    """Every operation with a body, and every one that takes a token, as /openapi.json
    publishes them (the routes' own dependencies): the gate would ask what the route
    asks."""
    app = create_app(mock.Mock(), mock.Mock(), mock.Mock(), keystore=mock.Mock())
    schemes = {"HTTPBearer": current_agent, "token": current_principal}
    checked = 0
    for path, operations in app.openapi()["paths"].items():
        concrete = path.replace("{snapshot_id}", "a" * 64).replace("{name}", "fs1")
        concrete = concrete.replace("{drill_id}", "1")
        for method, operation in operations.items():
            security = [name for requirement in operation.get("security", [])
                        for name in requirement]
            if not security and "requestBody" not in operation:
                continue  # nothing to read and nobody to check
            expected = schemes[security[0]] if security else None
            assert bearer_check_for(concrete) is expected, (method, path)
            checked += 1
    assert checked >= 15
    assert bearer_check_for("/v1/agent/enroll") is None
    assert bearer_check_for("/v1/agent/enroll/preview") is None
    assert bearer_check_for("/login") is None


def test_declared_and_chunked_lengths() -> None:
    def scope(*headers):
        return {"headers": list(headers)}

    assert content_length(scope((b"content-length", b"12"))) == 12
    assert content_length(scope((b"content-length", b"x"))) is None
    assert content_length(scope()) is None
    assert content_length(scope((b"content-length", b"12"),
                                (b"transfer-encoding", b"chunked"))) is None


def test_the_budget_is_all_or_nothing() -> None:
    budget = BodyBudget(100)
    assert budget.claim(60) and not budget.claim(41) and budget.claim(40)
    budget.release(60)
    assert budget.in_use == 40 and budget.claim(60) and not budget.claim(1)


# -- strangers --------------------------------------------------------------------------


def test_a_large_declared_body_without_a_good_token_is_refused_unread() -> None:
    downstream = Downstream()
    gate = gate_on(downstream)
    body = [b" " * 65536] * 4
    for token, status, reason in ((None, 401, "no credential"),
                                  ("forged", 401, "unknown agent token"),
                                  (PERSON_TOKEN, 403, "cannot call the agent API")):
        answer, client = run(call(gate, MANIFEST, body, token=token))
        assert answer["status"] == status and reason in detail(answer)
        assert answer["headers"]["connection"] == "close"
        assert client.pulled == 0
    assert answer["headers"].get("www-authenticate") is None  # only with a 401
    answer, _ = run(call(gate, MANIFEST, body))
    assert answer["headers"]["www-authenticate"] == "Bearer"
    assert downstream.calls == 0 and gate.budget.in_use == 0


def test_a_chunked_body_is_read_only_to_the_small_limit_before_the_check() -> None:
    downstream = Downstream()
    gate = gate_on(downstream)
    answer, client = run(call(gate, MANIFEST, [b" " * 1024] * 1000, chunked=True))
    assert answer["status"] == 401 and answer["headers"]["connection"] == "close"
    assert SMALL_BODY_LIMIT < client.pulled <= SMALL_BODY_LIMIT + 1024
    assert downstream.calls == 0


def test_paths_that_take_no_token_take_no_large_body() -> None:
    downstream = Downstream()
    gate = gate_on(downstream)
    for path in ("/v1/agent/enroll/preview", "/v1/agent/enroll", "/login"):
        answer, client = run(call(gate, path, [b" " * (SMALL_BODY_LIMIT + 1)],
                                  method="POST"))
        assert answer["status"] == 413 and "without a bearer token" in detail(answer)
        assert client.pulled == 0
    enrollment = b'{"token": "drd-enroll-1.x"}'
    answer, _ = run(call(gate, "/v1/agent/enroll", [enrollment], method="POST"))
    assert answer["status"] == 204 and downstream.bodies == [enrollment]


# -- callers with a good token ----------------------------------------------------------


def test_small_and_authenticated_bodies_reach_the_app_whole() -> None:
    downstream = Downstream()
    gate = gate_on(downstream)
    small = [b"{", b" " * 100, b"}"]
    large = [bytes([n]) * 5000 for n in range(10)]
    for pieces, token, chunked in ((small, None, False), (small, None, True),
                                   (large, AGENT_TOKEN, False), (large, AGENT_TOKEN, True)):
        answer, _ = run(call(gate, MANIFEST, pieces, token=token, chunked=chunked))
        assert answer["status"] == 204
        assert downstream.bodies[-1] == b"".join(pieces)
    answer, _ = run(call(gate, "/v1/systems/fs1/restore", large, token=PERSON_TOKEN,
                         method="POST"))
    assert answer["status"] == 204 and gate.budget.in_use == 0


def test_large_bodies_beyond_the_budget_wait_for_their_turn_with_429() -> None:
    downstream = Downstream()
    gate = gate_on(downstream, budget=100_000)
    body = [b" " * 60_000]

    async def scenario() -> tuple[dict, dict, dict]:
        downstream.go = asyncio.Event()
        first = asyncio.create_task(call(gate, MANIFEST, body, token=AGENT_TOKEN))
        while gate.budget.in_use == 0:
            await asyncio.sleep(0)
        second, client = await call(gate, MANIFEST, body, token=AGENT_TOKEN)
        assert client.pulled == 0
        downstream.go.set()
        first_answer, _ = await first
        third, _ = await call(gate, MANIFEST, body, token=AGENT_TOKEN)
        return first_answer, second, third

    first, second, third = run(scenario())
    assert first["status"] == 204 and third["status"] == 204
    assert second["status"] == 429 and second["headers"]["retry-after"] == "60"
    assert "again later" in detail(second) and second["headers"]["connection"] == "close"
    assert gate.budget.in_use == 0
