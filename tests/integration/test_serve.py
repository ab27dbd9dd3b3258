"""``drd serve`` and the centre's commands as an operator runs them: real processes.

The server runs as ``python -m drd.cli.main serve`` on a free port; the tests talk to it
over HTTPS, trusting only the centre's CA (as an agent that pinned it does), or over
plain HTTP with ``--insecure-http``, and stop it with SIGTERM as systemd would.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from drd.crypto.keystore import KeyStore
from drd.crypto.pem import load_escrow_public_key, public_key_pem
from drd.crypto.seal import seal
from drd.services.enrollment_token import decode_token
from tests.integration.test_cli import REPO, add_file_stores, drd

pytestmark = pytest.mark.integration

POLICY = REPO / "policies" / "examples" / "fileserver.yaml"
STARTUP_SECONDS = 30
STOP_SECONDS = 10


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """A running ``drd serve``; ``stop()`` sends SIGTERM (or another signal) and returns
    the exit status."""

    def __init__(self, process: subprocess.Popen, base_url: str, stderr: Path) -> None:
        self.process = process
        self.base_url = base_url
        self.stderr = stderr

    def log(self) -> str:
        return self.stderr.read_text()

    def stop(self, signal_number: int = signal.SIGTERM) -> int:
        self.process.send_signal(signal_number)
        return self.process.wait(timeout=STOP_SECONDS)


def _environment(home: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items()
                   if not k.startswith(("AWS_", "DRD_HOME", "DRD_MASTER", "JOURNAL_STREAM"))}
    environment["DRD_HOME"] = str(home)
    environment.update(extra or {})
    return environment


@contextmanager
def serving(home: Path, tmp_path: Path, *args: str, scheme: str = "https",
            verify: ssl.SSLContext | bool = True, env: dict | None = None,
            journal: bool = False) -> Iterator[Server]:
    """Start ``drd serve`` and wait until ``/healthz`` answers; kill it if still running.

    ``journal``: tell it that its stderr is journald's stream, as systemd does.
    """
    port = free_port()
    stderr = tmp_path / f"serve-{port}.log"
    env = dict(env or {})
    with open(stderr, "wb") as log:
        if journal:
            status = os.fstat(log.fileno())
            env["JOURNAL_STREAM"] = f"{status.st_dev}:{status.st_ino}"
        process = subprocess.Popen(
            [sys.executable, "-m", "drd.cli.main", "serve", "--listen", f"127.0.0.1:{port}",
             *args], env=_environment(home, env), stdout=subprocess.DEVNULL, stderr=log)
    server = Server(process, f"{scheme}://127.0.0.1:{port}", stderr)
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            assert process.poll() is None, f"drd serve exited early:\n{server.log()}"
            try:
                if httpx.get(f"{server.base_url}/healthz", verify=verify,
                             timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"drd serve did not start:\n{server.log()}"
            time.sleep(0.1)
        yield server
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def ca_context(home: Path) -> ssl.SSLContext:
    """Trust the centre's CA and nothing else, as an enrolled agent does."""
    return ssl.create_default_context(cadata=(home / "keys" / "ca.crt.pem").read_text())


@pytest.fixture
def home(tmp_path: Path, database_url: str) -> Path:
    path = tmp_path / "centre"
    drd("init", "--database-url", database_url, home=path)
    add_file_stores(path, tmp_path / "vault")
    # the example policy names S3 stores with Object Lock; these are file stores
    policy = tmp_path / "fileserver.yaml"
    policy.write_text(POLICY.read_text() + "allow_shared_credentials: true\n")
    drd("policy", "apply", str(policy), home=path)
    return path


# -- serving ------------------------------------------------------------------------------


def test_serve_https_with_the_centres_ca_and_stop_on_sigterm(tmp_path: Path) -> None:
    home = tmp_path / "centre"
    drd("init", home=home)
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    trust = ca_context(home)
    with serving(home, tmp_path, verify=trust, env={"RUNTIME_DIRECTORY": str(runtime)}
                 ) as server:
        assert httpx.get(f"{server.base_url}/readyz", verify=trust).json()["status"] == "ok"
        ca = httpx.get(f"{server.base_url}/v1/ca.pem", verify=trust).content
        assert ca == (home / "keys" / "ca.crt.pem").read_bytes()
        # the certificate names localhost too; the key files were removed once loaded
        assert httpx.get(server.base_url.replace("127.0.0.1", "localhost") + "/healthz",
                         verify=trust).status_code == 200
        assert list(runtime.iterdir()) == []
        # a client that does not trust the centre's CA is refused
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{server.base_url}/healthz", verify=ssl.create_default_context())
        with pytest.raises(httpx.TransportError):
            httpx.get(server.base_url.replace("https", "http") + "/healthz", timeout=5)
        started = time.monotonic()
        assert server.stop() == 0, server.log()
        assert time.monotonic() - started < STOP_SECONDS
    log = server.log()
    assert 'INFO uvicorn.access: 127.0.0.1:' in log and '"GET /healthz HTTP/1.1" 200' in log
    assert "Shutting down" in log and "Traceback" not in log
    for line in log.splitlines():
        assert not line[:4].isdigit(), f"a timestamp in {line!r}"  # journald adds them
        assert line.split(" ", 1)[0] in ("DEBUG", "INFO", "WARNING", "ERROR"), line


def test_serve_insecure_http_on_request_only_and_stop_on_ctrl_c(tmp_path: Path) -> None:
    home = tmp_path / "centre"
    drd("init", home=home)
    with serving(home, tmp_path, "--insecure-http", scheme="http") as server:
        assert httpx.get(f"{server.base_url}/readyz").json()["status"] == "ok"
        assert server.stop(signal.SIGINT) == 0, server.log()
    assert "--insecure-http" in server.log() and "WARNING" in server.log()


def test_serve_logs_for_journald_with_priorities(tmp_path: Path) -> None:
    home = tmp_path / "centre"
    drd("init", home=home)
    with serving(home, tmp_path, "--insecure-http", scheme="http", journal=True) as server:
        assert server.stop() == 0
    lines = server.log().splitlines()
    assert lines and all(line.startswith(("<6>INFO ", "<4>WARNING ")) for line in lines), lines
    assert any(line.startswith("<6>INFO uvicorn.access: ") for line in lines)


def test_serve_refuses_a_bad_address_or_a_busy_port(tmp_path: Path) -> None:
    home = tmp_path / "centre"
    drd("init", home=home)
    bad = drd("serve", "--listen", "8443", home=home, check=2)
    assert "HOST:PORT" in bad.stderr
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        taken = drd("serve", "--listen", f"127.0.0.1:{port}", "--insecure-http", home=home,
                    check=1)
    assert "could not start" in taken.stderr


# -- the operator's commands, against a served centre ------------------------------------


def _enroll(server: Server, home: Path, token: str, trust: ssl.SSLContext
            ) -> tuple[str, Ed25519PrivateKey]:
    """Enroll as drd-agent would: pin the CA from the token, seal, register."""
    decoded = decode_token(token)
    ca = httpx.get(f"{server.base_url}/v1/ca.pem", verify=False).content
    assert KeyStore(home / "keys", None).ca_fingerprint() == decoded.ca_sha256
    assert ca == (home / "keys" / "ca.crt.pem").read_bytes()
    preview = httpx.post(f"{server.base_url}/v1/agent/enroll/preview", json={"token": token},
                         verify=trust)
    assert preview.status_code == 200, preview.text
    escrow = load_escrow_public_key(
        preview.json()["assignment"]["escrow_public_key"].encode())
    key = Ed25519PrivateKey.generate()
    sealed = seal(escrow, b"a-random-restic-password",
                  b"drd-repository-password:" + decoded.system.encode())
    response = httpx.post(f"{server.base_url}/v1/agent/enroll", verify=trust, json={
        "token": token, "hostname": f"{decoded.system}.city",
        "agent_public_key": public_key_pem(key.public_key()).decode(),
        "sealed_password": base64.b64encode(sealed).decode()})
    assert response.status_code == 201, response.text
    return response.json()["agent_token"], key


def _report(snapshot_id: str, complete_b: bool) -> dict:
    return {"report_id": str(uuid.uuid4()), "snapshot_id": snapshot_id,
            "time": "2026-11-02T10:00:00+00:00", "hostname": "fs1.city",
            "paths": ["/srv/share"], "tags": [], "tree": "e" * 64, "files": 12,
            "bytes": 3 * 1024 * 1024, "duration_seconds": 1.5,
            "stores": {"dc-a": {"complete": True},
                       "dc-b": {"complete": complete_b,
                                "missing_objects": 0 if complete_b else 2},
                       "region-b": {"complete": True}}}


def test_token_enroll_report_and_the_operators_view(home: Path, tmp_path: Path) -> None:
    unknown_policy = drd("system", "token", "fs1", "--department", "parks", "--policy",
                         "nope", home=home, check=2)
    assert "drd policy apply" in unknown_policy.stderr and unknown_policy.stdout == ""
    bad_expiry = drd("system", "token", "fs1", "--department", "parks", "--policy",
                     "fileserver", "--expires", "soon", home=home, check=2)
    assert "--expires" in bad_expiry.stderr

    port = free_port()
    issued = drd("system", "token", "fs1", "--department", "parks", "--policy", "fileserver",
                 "--server", f"https://localhost:{port}", home=home)
    token = issued.stdout.strip()
    assert issued.stdout == token + "\n"  # the token alone on stdout
    assert decode_token(token).server == f"https://localhost:{port}"
    assert "fs1" in issued.stderr

    trust = ca_context(home)
    # no workers: the reports below name snapshots the stores do not hold, which the
    # daemon's confirmation would reject within seconds (test_snapshot_confirmation.py);
    # here they stay as recorded
    with serving(home, tmp_path, "--workers", "0", verify=trust) as server:
        agent_token, _key = _enroll(server, home, token, trust)
        headers = {"Authorization": f"Bearer {agent_token}"}
        again = drd("system", "token", "fs1", "--department", "parks", "--policy",
                    "fileserver", home=home, check=2)
        assert "already enrolled" in again.stderr

        first = _report("a" * 64, complete_b=False)
        for expected in (201, 200):  # delivered twice, recorded once
            response = httpx.post(f"{server.base_url}/v1/agent/snapshots", json=first,
                                  headers=headers, verify=trust)
            assert response.status_code == expected, response.text

        listed = json.loads(drd("snapshots", "--json", home=home).stdout)
        assert len(listed) == 1
        assert listed[0]["snapshot_id"] == "a" * 64 and listed[0]["short_id"] == "aaaaaaaa"
        assert listed[0]["system"] == "fs1" and listed[0]["files"] == 12
        # a claim until the daemon has seen it in the stores (which hold nothing here)
        assert listed[0]["status"] == "unconfirmed"
        assert listed[0]["copies"]["dc-b"] == {"state": "missing", "missing_objects": 2,
                                               "verified_at": None}
        assert listed[0]["copies"]["dc-a"]["state"] == "present"
        assert json.loads(drd("snapshots", "fs1", "--json", home=home).stdout) == listed
        table = drd("snapshots", home=home).stdout
        assert "aaaaaaaa" in table and "dc-b:missing(2)" in table and "3.0 MiB" in table
        assert "unconfirmed" in table
        assert "no system named" in drd("snapshots", "nope", home=home, check=2).stderr

        report = json.loads(drd("status", "--json", home=home).stdout)
        (fs1,) = report["systems"]
        assert fs1["system"] == "fs1" and fs1["department"] == "parks"
        assert fs1["policy"] == "fileserver" and fs1["status"] == "enrolled"
        assert fs1["last_backup_at"] is None  # the unconfirmed report does not count
        assert fs1["rpo"] == "1h" and fs1["rpo_seconds"] == 3600
        assert fs1["late"] is False  # enrolled moments ago: one RPO of grace
        assert report["totals"] == {"systems": 1, "enrolled": 1, "pending": 0,
                                    "late": int(fs1["late"])}
        assert "fs1" in drd("status", home=home).stdout

        beat = {"hostname": "fs1.city", "agent_version": "0.1.0", "restic_version": "0.17.3"}
        drd("backup-now", "fs1", home=home)
        assert "no system named" in drd("backup-now", "nope", home=home, check=2).stderr
        answers = [httpx.post(f"{server.base_url}/v1/agent/heartbeat", json=beat,
                              headers=headers, verify=trust).json()["backup_now"]
                   for _ in range(2)]
        assert answers == [True, False]
        assert server.stop() == 0, server.log()
