"""The agent against a real centre: ``drd.api`` under uvicorn on 127.0.0.1, a real catalog.

The centre is built in this process (``drd init``'s service, three file stores in two
regions, a policy) and served by uvicorn in a thread, so the test can stop it and start it
again on the same port. The agent runs as people run it: ``drd-agent enroll``, ``backup``,
``snapshots``, ``status`` and ``run`` in subprocesses. Checked: enrollment pins the CA,
escrows the password and leaves a private home; token mistakes are refused before
anything is written; backups with the centre down are spooled and delivered once each
when it is back; the daemon backs up on "back up now" and stops cleanly on SIGTERM.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from agents.client import CentreUnreachable
from agents.enroll import ESCROW_KEY, enroll
from agents.home import AgentHome
from agents.service import fanout_target
from drd.api.app import create_app
from drd.catalog import Catalog
from drd.config import load_config
from drd.crypto.ca import certificate_pem, create_ca
from drd.crypto.keystore import KeyStore
from drd.crypto.seal import password_context, unseal
from drd.errors import OperationError
from drd.restic import Repository, Restic
from drd.secrets import Secret
from drd.services import agents as agent_service
from drd.services import enrollment
from drd.services import policies as policy_service
from drd.services import snapshots as snapshot_service
from drd.services import stores as store_service
from drd.services.centre import initialise, open_catalog, open_master_key
from drd.stores.url import StoreSpec

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BIN = Path(sys.executable).parent
REGIONS = {"dc-a": "region-a", "dc-b": "region-a", "region-b": "region-b"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Centre:
    """A real centre served by uvicorn in a thread; ``stop()``/``start()`` on one port."""

    def __init__(self, home: Path, catalog: Catalog, keystore: KeyStore, app,
                 vault: Path, tls: bool = False) -> None:
        self.home = home
        self.catalog = catalog
        self.keystore = keystore
        self.app = app
        self.vault = vault
        self.tls = tls
        self.port = free_port()
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        options = {}
        if self.tls:  # the centre's own certificate, issued by its CA, as drd serve has it
            files = self.keystore.server_tls_files(self.home)
            options = {"ssl_certfile": str(files.certfile), "ssl_keyfile": str(files.keyfile),
                       "ssl_keyfile_password": files.password.reveal()}
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port,
                                log_level="warning", lifespan="off", **options)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            assert time.monotonic() < deadline, "the centre did not start"
            time.sleep(0.05)

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            self._thread.join(20)
            self._server = None

    def token(self, system: str = "fs1", **options) -> str:
        issued = enrollment.issue_token(
            self.catalog, system=system, department="parks", policy="agent-test",
            ca_sha256=options.pop("ca_sha256", self.keystore.ca_fingerprint()),
            server=options.pop("server", self.url), **options)
        return issued.token.text.reveal()

    def snapshots(self) -> list[dict]:
        return [view.as_dict() for view in snapshot_service.list_snapshots(self.catalog, "fs1")]


def write_policy(path: Path, source: Path, dump_command: list[str], extra: str = "") -> Path:
    path.write_text(f"""\
policy: agent-test
schedule: "0 3 * * *"
sources:
  - path: {source}
    exclude: ["*.tmp"]
  - command: {json.dumps(dump_command)}
    filename: app.sql
stores: [dc-a, dc-b, region-b]
min_copies: 2
allow_shared_credentials: true    # file stores: every agent has the same access
retention: {{keep_last: 10}}
rpo: 2d
rto: 1h
{extra}""")
    return path


@pytest.fixture
def centre(tmp_path: Path, monkeypatch, request) -> Iterator[Centre]:
    monkeypatch.delenv("DRD_MASTER_PASSPHRASE", raising=False)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    home = tmp_path / "centre"
    initialise(home, f"sqlite:///{tmp_path / 'catalog.sqlite'}")
    config = load_config(home)
    catalog = open_catalog(config)
    master_key = open_master_key(config)
    vault = tmp_path / "vault"
    for name, region in REGIONS.items():
        (vault / name).mkdir(parents=True)
        store_service.add_store(catalog, master_key, StoreSpec(
            name=name, url=f"file://{vault / name}", region=region), None, None)
    source = tmp_path / "share"
    for index in range(60):
        folder = source / f"d{index % 4}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{index}.txt").write_text(f"file {index}\n" * (index + 1))
    (source / "skip.tmp").write_text("excluded")
    dump = tmp_path / "dump.sql"
    dump.write_text("CREATE TABLE t(x);\n" * 1000)
    options = getattr(request, "param", {})
    policy = write_policy(tmp_path / "policy.yaml", source,
                          options.get("dump_command", ["cat", str(dump)]),
                          options.get("extra", "").replace("{tmp}", str(tmp_path)))
    policy_service.apply(catalog, [policy], store_service.store_regions(catalog))
    keystore = KeyStore(config.keys_dir, master_key)
    centre = Centre(home, catalog, keystore, create_app(catalog, master_key, config), vault,
                    tls=options.get("tls", False))
    centre.start()
    yield centre
    centre.stop()
    catalog.dispose()


def agent(*args: str, home: Path, check: int | None = 0, timeout: float = 300,
          **options) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("DRD_", "AWS_"))}
    environment["DRD_AGENT_HOME"] = str(home)
    result = subprocess.run([str(BIN / "drd-agent"), *args], env=environment,
                            capture_output=True, text=True, timeout=timeout, **options)
    if check is not None:
        assert result.returncode == check, (args, result.stdout, result.stderr)
    return result


def test_enroll_back_up_and_deliver_reports_once_the_centre_is_back(centre: Centre,
                                                                      tmp_path: Path) -> None:
    home = tmp_path / "agent"
    token = centre.token()
    token_file = tmp_path / "token.txt"  # as the docs say: never on the command line
    token_file.write_text(token + "\n")
    enrolled = json.loads(agent("enroll", "--server", centre.url + "/", "--token-file",
                                str(token_file), "--json", home=home).stdout)
    assert enrolled["system"] == "fs1" and enrolled["repository"] == "created"
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    for name in ("agent.yaml", "ca.pem", "identity.key", "repository.password",
                 "agent.token", "assignment.json"):
        assert stat.S_IMODE((home / name).stat().st_mode) == 0o600, name
    assert not (home / "pending").exists()
    password = (home / "repository.password").read_text().strip()
    assert len(password) == 43
    escrow = centre.keystore.escrow_private_key()
    for name in REGIONS:  # the password is escrowed in every store, sealed to the centre
        sealed = (centre.vault / name / "parks" / "fs1" / ESCROW_KEY).read_bytes()
        assert unseal(escrow, sealed, password_context("fs1")).decode() == password

    again = agent("enroll", "--server", centre.url, "--token", token, home=home, check=2)
    assert "already enrolled" in again.stderr
    assert "--token on the command line is visible to other users" in again.stderr
    used = agent("enroll", "--server", centre.url, "--token", "-", input=token,
                 home=tmp_path / "other", check=2)
    assert "refused the enrollment token" in used.stderr
    assert not (tmp_path / "other" / "agent.yaml").exists()

    first = json.loads(agent("backup", "--json", home=home).stdout)
    assert first["ok"] and first["stores"] == dict.fromkeys(REGIONS, True)
    assert first["files"] == 60 + 1 and first["reports"] == {"delivered": 4, "spooled": 0}
    listed = {s["snapshot_id"]: s for s in centre.snapshots()}
    assert set(listed) == {s["snapshot_id"] for s in first["snapshots"]}
    assert all(s["manifest"] and not s["partial"] for s in listed.values())
    assert listed[first["snapshot_id"]]["files"] == 60  # skip.tmp is excluded

    centre.stop()
    offline = agent("backup", "--json", home=home)
    offline_result = json.loads(offline.stdout)
    assert offline_result["ok"] and offline_result["reports"]["spooled"] == 4
    assert "using the cached assignment" not in offline.stdout
    status = json.loads(agent("status", "--json", home=home).stdout)
    assert status["enrolled"] and status["system"] == "fs1" and status["spooled_reports"] == 4
    assert status["last_backup"]["ok"]

    centre.start()
    third = json.loads(agent("backup", "--json", home=home).stdout)
    assert third["reports"] == {"delivered": 8, "spooled": 0}  # 4 spooled + 4 new
    assert list((home / "spool").iterdir()) == []
    recorded = [s["snapshot_id"] for s in centre.snapshots()]
    assert len(recorded) == len(set(recorded)) == 6  # every report once
    assert set(offline_result["snapshots"][i]["snapshot_id"] for i in range(2)) <= set(recorded)

    snapshots = json.loads(agent("snapshots", "--json", home=home).stdout)
    assert {s["id"] for s in snapshots} == set(recorded)
    table = agent("snapshots", home=home).stdout
    assert first["snapshot_id"][:8] in table
    logs = offline.stderr + table
    assert password not in logs


def test_token_mistakes_are_refused_before_anything_is_written(centre: Centre,
                                                               tmp_path: Path) -> None:
    home = tmp_path / "agent"
    other_server = agent("enroll", "--server", "http://127.0.0.1:1", "--token", centre.token(),
                         home=home, check=2)
    assert f"the token was issued for {centre.url}" in other_server.stderr
    wrong_ca = agent("enroll", "--server", centre.url, "--token",
                     centre.token(ca_sha256="0" * 64), home=home, check=2)
    assert "the server's CA does not match the token: wrong server?" in wrong_ca.stderr
    expired = agent("enroll", "--server", centre.url, "--token", centre.token(
        now=dt.datetime.now(dt.UTC) - dt.timedelta(hours=2),
        expires_in=dt.timedelta(hours=1)), home=home, check=2)
    assert "expired at" in expired.stderr
    garbage = agent("enroll", "--server", centre.url, "--token", "drd-enroll-1.xyz",
                    home=home, check=2)
    assert "damaged" in garbage.stderr
    assert not (home / "agent.yaml").exists() and not (home / "pending").exists()
    not_enrolled = agent("backup", home=home, check=2)
    assert "not enrolled" in not_enrolled.stderr
    centre.stop()
    down = agent("enroll", "--server", centre.url, "--token", "-", input=centre.token(),
                 home=home, check=1)
    assert down.stderr.count("\n") == 1 and "cannot reach the centre" in down.stderr


class FailOnce(httpx.BaseTransport):
    """A real HTTP transport whose first ``POST /v1/agent/enroll`` fails to connect."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.failed = False

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/agent/enroll" and not self.failed:
            self.failed = True
            raise httpx.ConnectError("connection reset (simulated)")
        return self.inner.handle_request(request)


def test_an_interrupted_enrollment_resumes_with_the_same_password(centre: Centre,
                                                                   tmp_path: Path,
                                                                   restic_binary: str) -> None:
    home = AgentHome(tmp_path / "agent")
    token = centre.token()
    restic = Restic(restic_binary, cache_dir=tmp_path / "cache")
    transport = FailOnce()
    with pytest.raises(CentreUnreachable):
        enroll(home, centre.url, token, restic=restic, target_factory=fanout_target,
               transport=transport)
    assert not home.is_enrolled() and home.pending() is not None
    pending_password = home.pending_password().reveal()
    result = enroll(home, centre.url, token, restic=restic, target_factory=fanout_target,
                    transport=transport)
    assert result.repository == "reused" and result.resumed
    assert home.is_enrolled() and home.password().reveal() == pending_password
    assert home.pending() is None
    config = (centre.vault / "dc-a" / "parks" / "fs1")
    assert Restic(restic_binary).config(Repository(url=Secret(str(config)),
                                                   password=home.password())).version == 2


def test_a_repository_made_with_another_password_is_refused(centre: Centre, tmp_path: Path,
                                                            restic_binary: str) -> None:
    for name in REGIONS:  # someone else's repository where fs1's belongs
        path = centre.vault / name / "parks" / "fs1"
        path.parent.mkdir(parents=True, exist_ok=True)
        Restic(restic_binary).init(Repository(url=Secret(str(path)),
                                              password=Secret("not-the-agents-password")))
    home = AgentHome(tmp_path / "agent")
    with pytest.raises(OperationError, match="password does not open"):
        enroll(home, centre.url, centre.token(), restic=Restic(restic_binary),
               target_factory=fanout_target)
    assert not home.is_enrolled()


def test_the_daemon_catches_up_backs_up_when_asked_and_stops_on_sigterm(
        centre: Centre, tmp_path: Path) -> None:
    home = tmp_path / "agent"
    agent("enroll", "--server", centre.url, "--token", centre.token(), home=home)
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("DRD_", "AWS_"))}
    environment["DRD_AGENT_HOME"] = str(home)
    log = tmp_path / "agent.log"

    def wait_for_snapshots(count: int) -> None:
        deadline = time.monotonic() + 120
        while len(centre.snapshots()) < count:
            assert daemon.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.5)

    with open(log, "wb") as stderr:
        daemon = subprocess.Popen([str(BIN / "drd-agent"), "run", "--heartbeat", "1"],
                                  env=environment, stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        wait_for_snapshots(2)  # never backed up: the first run is caught up at start
        wait_for(log, "backup ", daemon)
        agent_service.request_backup(centre.catalog, "fs1")
        wait_for_snapshots(4)
        wait_for(log, "reports: 4 delivered", daemon)
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(30) == 0, log.read_text()
    finally:
        if daemon.poll() is None:
            daemon.kill()
    text = log.read_text()
    assert "missed while the agent was not running" in text
    assert "the centre asks for a backup now" in text and "drd-agent stopped" in text
    assert "Running job" not in text  # the scheduler's chatter stays out of the journal
    password = (home / "repository.password").read_text().strip()
    assert password not in text


# a dump that hangs, as a stuck database would; the after command leaves a mark
HANGING = {"dump_command": ["sh", "-c", "echo start; exec sleep 120"],
           "extra": 'after: [["touch", "{tmp}/thawed"]]\n'}


def wait_for(path: Path, text: str, process: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while text not in path.read_text(errors="replace"):
        assert process.poll() is None, path.read_text()
        assert time.monotonic() < deadline, path.read_text()
        time.sleep(0.2)


@pytest.mark.parametrize("centre", [HANGING], indirect=True)
def test_sigterm_stops_a_manual_backup_cleanly(centre: Centre, tmp_path: Path,
                                               restic_binary: str) -> None:
    marker = tmp_path / "thawed"
    home = tmp_path / "agent"
    agent("enroll", "--server", centre.url, "--token", centre.token(), home=home)
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("DRD_", "AWS_"))}
    environment["DRD_AGENT_HOME"] = str(home)
    log = tmp_path / "backup.log"
    with open(log, "wb") as stderr:
        runner = subprocess.Popen([str(BIN / "drd-agent"), "-v", "backup"], env=environment,
                                  stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        wait_for(log, "running command source", runner)
        time.sleep(1)
        runner.send_signal(signal.SIGTERM)
        assert runner.wait(40) == 1, log.read_text()
    finally:
        if runner.poll() is None:
            runner.kill()
    text = log.read_text()
    assert "backup failed" in text and "cancelled" in text
    assert marker.exists()  # the after command ran
    listed = centre.snapshots()
    assert len(listed) == 1 and listed[0]["partial"]  # the path snapshot, never as good
    password = Secret((home / "repository.password").read_text().strip())
    repository = Repository(url=Secret(str(centre.vault / "dc-a" / "parks" / "fs1")),
                            password=password)
    assert len(Restic(restic_binary).snapshots(repository)) == 1  # no dump snapshot
    assert Restic(restic_binary).check(repository).ok  # restic's lock was removed


@pytest.mark.parametrize("centre", [HANGING], indirect=True)
def test_sigterm_stops_the_daemon_and_its_running_backup_after_the_grace(
        centre: Centre, tmp_path: Path, restic_binary: str) -> None:
    marker = tmp_path / "thawed"
    home = tmp_path / "agent"
    agent("enroll", "--server", centre.url, "--token", centre.token(), home=home)
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("DRD_", "AWS_"))}
    environment["DRD_AGENT_HOME"] = str(home)
    log = tmp_path / "agent.log"
    with open(log, "wb") as stderr:
        daemon = subprocess.Popen([str(BIN / "drd-agent"), "run", "--heartbeat", "1",
                                   "--stop-grace", "2"], env=environment,
                                  stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        agent_service.request_backup(centre.catalog, "fs1")
        wait_for(log, "running command source", daemon)
        stopping = time.monotonic()
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(40) == 0, log.read_text()
        assert time.monotonic() - stopping < 30
    finally:
        if daemon.poll() is None:
            daemon.kill()
    text = log.read_text()
    assert "waiting up to 2s for the running backup" in text
    assert "stopping restic" in text and "drd-agent stopped" in text
    assert marker.exists()
    password = Secret((home / "repository.password").read_text().strip())
    repository = Repository(url=Secret(str(centre.vault / "dc-a" / "parks" / "fs1")),
                            password=password)
    assert Restic(restic_binary).check(repository).ok


@pytest.mark.parametrize("centre", [{"tls": True}], indirect=True)
def test_over_https_the_agent_trusts_only_the_pinned_ca(centre: Centre, tmp_path: Path) -> None:
    home = tmp_path / "agent"
    agent("enroll", "--server", centre.url, "--token", centre.token(), home=home)
    pinned = (home / "ca.pem").read_bytes()
    assert pinned == centre.keystore.ca_certificate_pem()
    result = json.loads(agent("backup", "--json", home=home).stdout)
    assert result["ok"] and result["reports"]["delivered"] == 4
    # another CA in the home: the centre's certificate no longer verifies
    (home / "ca.pem").write_bytes(certificate_pem(create_ca("someone else")[1]))
    refused = agent("backup", "--json", home=home, check=0)
    assert "the pinned CA does not sign" in refused.stderr  # the cached assignment is used
    assert json.loads(refused.stdout)["reports"]["spooled"] == 4
