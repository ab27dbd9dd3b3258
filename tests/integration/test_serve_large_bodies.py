"""The centre answers strangers cheaply: large bodies against a real ``drd serve``.

The server runs as its own process (HTTPS with the centre's CA, the API alone: no
workers, no scheduler), so its memory is what ``/proc/<pid>/status`` says. Before each
request the peak (``VmHWM``) is reset through ``/proc/<pid>/clear_refs``; after it, the
peak is compared with the resident size before: a body that was read, even once and
thrown away, would show. Before this gate, four unauthenticated 200 MB PUTs to a
manifest path took a centre from 256 MB to 2.4 GB; one took this server from 107 to
488 MiB. With it, each refusal took 4 to 17 ms, the client had put 1 to 5 MiB into the
connection's buffers, and the server's peak rose by at most 1.1 MiB.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from drd.api.limits import SMALL_BODY_LIMIT
from drd.crypto.signing import sign
from drd.services.snapshots import canonical_json
from tests.integration.test_cli import drd
from tests.integration.test_serve import Server, _enroll, ca_context, home, serving  # noqa: F401

pytestmark = pytest.mark.integration

STRANGER_BYTES = 200 * 10**6
PIECE = 1 << 20
QUICK_SECONDS = 5.0
MAX_GROWTH_KIB = 4 * 1024  # what answering may allocate; the body alone is 195,000 KiB
MAX_SENT = 32 << 20  # what the client's and the kernel's buffers take before a refusal


@dataclass
class Centre:
    home: Path
    server: Server
    trust: object
    agent_token: str
    agent_key: Ed25519PrivateKey

    def url(self, path: str) -> str:
        return f"{self.server.base_url}{path}"

    def issue(self, system: str) -> str:
        return drd("system", "token", system, "--department", "parks", "--policy",
                   "fileserver", home=self.home).stdout.strip()

    def report(self, token: str, snapshot_id: str) -> None:
        report = {"report_id": str(uuid.uuid4()), "snapshot_id": snapshot_id,
                  "time": "2026-11-02T10:00:00+00:00", "hostname": "fs1.city",
                  "paths": ["/srv/share"], "tags": [], "tree": "e" * 64, "files": 12,
                  "bytes": 3 << 20, "duration_seconds": 1.5,
                  "stores": {name: {"complete": True}
                             for name in ("dc-a", "dc-b", "region-b")}}
        answer = httpx.post(self.url("/v1/agent/snapshots"), json=report, verify=self.trust,
                            headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 201, answer.text


@pytest.fixture
def centre(home: Path, tmp_path: Path) -> Iterator[Centre]:  # noqa: F811
    trust = ca_context(home)
    token = drd("system", "token", "fs1", "--department", "parks", "--policy", "fileserver",
                home=home).stdout.strip()
    with serving(home, tmp_path, "--workers", "0", "--no-scheduler", verify=trust) as server:
        agent_token, key = _enroll(server, home, token, trust)
        yield Centre(home, server, trust, agent_token, key)
        assert server.stop() == 0
    assert "Traceback" not in server.log(), server.log()


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


@contextmanager
def peak_growth(pid: int) -> Iterator[list[int]]:
    """Yield a list that holds, afterwards, how far (KiB) the process's resident size
    rose above where it was at the start, at its highest."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets VmHWM to the current VmRSS
    before = _status_kib(pid, "VmRSS")
    growth: list[int] = []
    yield growth
    growth.append(_status_kib(pid, "VmHWM") - before)


class Body:
    """``size`` bytes in 1 MiB pieces, counting what the client took of it."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.sent = 0

    def __iter__(self) -> Iterator[bytes]:
        piece = b" " * PIECE
        while self.sent < self.size:
            chunk = piece[:self.size - self.sent]
            self.sent += len(chunk)
            yield chunk


def _send(centre: Centre, method: str, path: str, *, declared: bool,
          token: str | None = None, size: int = STRANGER_BYTES
          ) -> tuple[httpx.Response, Body, float]:
    body = Body(size)
    headers = {"Content-Type": "application/json"}
    if declared:
        headers["Content-Length"] = str(size)
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    started = time.monotonic()
    answer = httpx.request(method, centre.url(path), content=iter(body), headers=headers,
                           verify=centre.trust, timeout=60)
    return answer, body, time.monotonic() - started


def _manifest_path(snapshot_id: str) -> str:
    return f"/v1/agent/snapshots/{snapshot_id}/manifest"


def _large_manifest(snapshot_id: str, files: int) -> dict:
    return {"version": 1, "system": "fs1", "snapshot_id": snapshot_id, "kind": "paths",
            "files": [{"path": f"/srv/share/records/2026/file-{n:08d}.txt", "size": n,
                       "mtime_ns": 1_700_000_000_000_000_000 + n, "sha256": f"{n:064x}"}
                      for n in range(files)]}


def _upload_large_manifests(centre: Centre) -> None:
    headers = {"Authorization": f"Bearer {centre.agent_token}",
               "Content-Type": "application/json"}
    for snapshot_id, chunked in (("b" * 64, False), ("c" * 64, True)):
        centre.report(centre.agent_token, snapshot_id)
        manifest = _large_manifest(snapshot_id, files=150_000)
        signature = base64.b64encode(sign(centre.agent_key, canonical_json(manifest)))
        body = json.dumps({"manifest": manifest, "signature": signature.decode()}).encode()
        assert len(body) > 20 << 20
        content = iter([body[n:n + PIECE] for n in range(0, len(body), PIECE)]) \
            if chunked else body
        answer = httpx.put(centre.url(_manifest_path(snapshot_id)), content=content,
                           headers=headers, verify=centre.trust, timeout=120)
        assert answer.status_code == 204, answer.text
    listed = json.loads(drd("snapshots", "fs1", "--json", home=centre.home).stdout)
    manifests = {snapshot["snapshot_id"]: snapshot["manifest"] for snapshot in listed}
    assert manifests["b" * 64] is True and manifests["c" * 64] is True


def test_large_bodies_are_read_only_for_callers_with_a_good_token(centre: Centre) -> None:
    """Strangers and wrong tokens get their answer at once, unread; the agent's own
    large manifests, declared or chunked, are taken as before."""
    snapshot_id = "a" * 64
    centre.report(centre.agent_token, snapshot_id)
    # a second system whose agent token is then revoked, as after a compromise
    fs2_token, _ = _enroll(centre.server, centre.home, centre.issue("fs2"), centre.trust)
    tokens = json.loads(drd("token", "list", "--all", "--json", home=centre.home).stdout)
    (fs2,) = [t for t in tokens if t["role"] == "agent" and t["systems"] == ["fs2"]]
    drd("token", "revoke", str(fs2["id"]), home=centre.home)
    operator = drd("token", "create", "--role", "operator", "--name", "night",
                   home=centre.home).stdout.strip()
    pending = centre.issue("fs3")
    manifest = _manifest_path(snapshot_id)
    cases = [
        ("PUT", manifest, None, 401, "no credential"),
        ("PUT", manifest, "not-a-token", 401, "unknown agent token"),
        ("PUT", manifest, fs2_token, 401, "revoked"),
        ("PUT", manifest, operator, 403, "cannot call the agent API"),
        ("PUT", manifest, pending, 403, "enroll first"),
        ("POST", "/v1/agent/snapshots", None, 401, "no credential"),
        ("POST", "/v1/systems/fs1/restore", None, 401, "no credential"),
        ("POST", "/v1/agent/enroll", None, 413, "without a bearer token"),
    ]
    pid = centre.server.process.pid
    _send(centre, "PUT", manifest, declared=True, size=SMALL_BODY_LIMIT * 4)  # warm up
    for method, path, token, status, reason in cases:
        for declared in (True, False):
            with peak_growth(pid) as growth:
                answer, body, seconds = _send(centre, method, path, declared=declared,
                                              token=token)
            case = (method, path, token and token[:12], declared, answer.text)
            assert answer.status_code == status and reason in answer.json()["detail"], case
            assert answer.headers["connection"] == "close", case
            assert seconds < QUICK_SECONDS and body.sent < MAX_SENT, (case, seconds, body.sent)
            assert growth[0] < MAX_GROWTH_KIB, (case, growth[0])
    _upload_large_manifests(centre)
