"""The whole cycle as people run it: a centre, three stores, an enrolled agent, backups.

Runs the real commands in subprocesses: ``drd init``, ``drd store add``, ``drd policy
apply``, ``drd serve``, ``drd system token``, ``drd-agent enroll``, ``drd-agent backup``;
then checks the stores byte for byte with plain restic, store by store.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import boto3
import httpx
import pytest

from drd.restic import Repository, Restic

pytestmark = [pytest.mark.slow, pytest.mark.integration]

REGIONS = {"dc-a": "region-a", "dc-b": "region-a", "region-b": "region-b"}
BIN = Path(sys.executable).parent


def run(command: str, *args: str, env: dict, check: int | None = 0,
        timeout: float = 300) -> subprocess.CompletedProcess:
    result = subprocess.run([str(BIN / command), *args], env=env, capture_output=True,
                            text=True, timeout=timeout)
    if check is not None:
        assert result.returncode == check, (command, args, result.stdout, result.stderr)
    return result


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def make_tree(root: Path, files: int, seed: int = 7) -> None:
    generator = random.Random(seed)
    for index in range(files):
        folder = root / f"d{index % 37:02d}" / f"e{index % 5}"
        folder.mkdir(parents=True, exist_ok=True)
        size = generator.choice([0, 10, 700, 4096, 20_000, 150_000])
        data = (generator.randbytes(size // 2) + bytes(size - size // 2)) if size else b""
        (folder / f"f{index:05d}.bin").write_bytes(data)


class Centre:
    """A running ``drd serve`` on a throw-away home, and its stores."""

    def __init__(self, home: Path, servers, env: dict) -> None:
        self.home = home
        self.servers = dict(zip(REGIONS, servers, strict=True))
        self.env = env | {"DRD_HOME": str(home)}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self.log = home.parent / "serve.log"

    def drd(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        return run("drd", *args, env=self.env, **kwargs)

    def start(self) -> None:
        self.process = subprocess.Popen(
            [str(BIN / "drd"), "serve", "--insecure-http", "--listen",
             f"127.0.0.1:{self.port}"], env=self.env, stdout=subprocess.DEVNULL,
            stderr=open(self.log, "ab"))  # noqa: SIM115 -- closed with the process
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise AssertionError(f"drd serve did not start: {self.log.read_text()}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            assert self.process.wait(20) == 0
        self.process = None


@pytest.fixture
def centre(tmp_path: Path, seaweed) -> Centre:
    servers = seaweed(3)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "DRD_"))}
    centre = Centre(tmp_path / "centre", servers, env)
    centre.drd("init")
    for name, region in REGIONS.items():
        server = centre.servers[name]
        keys = {"AWS_ACCESS_KEY_ID": server.access_key,
                "AWS_SECRET_ACCESS_KEY": server.secret_key}
        # Object Lock: SeaweedFS cannot refuse a system's overwrite of its own objects,
        # so a policy may hand a SeaweedFS store to agents only with the lock on
        run("drd", "store", "add", name, "--url", f"s3://drd-{name}/city", "--endpoint",
            server.endpoint, "--region", region, "--object-lock", env=centre.env | keys)
    yield centre
    centre.stop()


def write_policy(path: Path, source: Path, dump: Path, min_copies: int = 2) -> Path:
    path.write_text(f"""
policy: e2e
description: end-to-end test policy
schedule: "0 * * * *"
sources:
  - path: {source}
    exclude: ["*.tmp"]
  - command: ["cat", "{dump}"]
    filename: app.sql
stores: [dc-a, dc-b, region-b]
min_copies: {min_copies}
retention: {{keep_last: 10, keep_daily: 7}}
object_lock_days: 1
rpo: 2h
rto: 1h
""")
    return path


def store_objects(server, bucket: str, prefix: str) -> dict[str, int]:
    client = boto3.client("s3", endpoint_url=server.endpoint,
                          aws_access_key_id=server.access_key,
                          aws_secret_access_key=server.secret_key, region_name="us-east-1")
    objects = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket,
                                                                 Prefix=prefix):
        for item in page.get("Contents", []):
            key = item["Key"][len(prefix):]
            if not key.startswith(("locks/", "drd/")):
                objects[key] = item["Size"]
    return objects


def enrolled_agent(centre: Centre, tmp_path: Path, source: Path, dump: Path,
                   min_copies: int = 2) -> tuple[Path, dict]:
    centre.drd("policy", "apply", str(write_policy(tmp_path / "e2e.yaml", source, dump,
                                                     min_copies)))
    centre.start()
    token = centre.drd("system", "token", "fs1", "--department", "parks", "--policy", "e2e",
                       "--server", centre.url).stdout.strip()
    agent_home = tmp_path / "agent"
    agent_env = {k: v for k, v in centre.env.items() if k != "DRD_HOME"}
    agent_env["DRD_AGENT_HOME"] = str(agent_home)
    token_file = tmp_path / "enrollment.token"
    token_file.write_text(token + "\n")
    run("drd-agent", "enroll", "--server", centre.url, "--token-file", str(token_file),
        env=agent_env)
    return agent_home, agent_env


class ArgvWatcher(threading.Thread):
    """Reads every process's argv while a backup runs, looking for a secret."""

    def __init__(self, *secrets: str) -> None:
        super().__init__(daemon=True)
        self.secrets = [secret.encode() for secret in secrets]
        self.seen: list[str] = []
        self.restic_runs = 0
        self.scans = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            for entry in Path("/proc").iterdir():
                if entry.name.isdigit():
                    try:
                        argv = (entry / "cmdline").read_bytes()
                    except OSError:
                        continue
                    if argv.split(b"\0")[0].endswith(b"restic"):
                        self.restic_runs += 1
                    if any(secret in argv for secret in self.secrets):
                        self.seen.append(argv.decode(errors="replace"))
            self.scans += 1
            time.sleep(0.02)


def test_enroll_back_up_to_three_stores_and_restore_from_each(centre: Centre,
                                                              tmp_path: Path) -> None:
    source = tmp_path / "share"
    make_tree(source, 2000)
    (source / "skip.tmp").write_text("excluded")
    dump = tmp_path / "dump.sql"
    dump.write_text("CREATE TABLE t(x);\n" * 5000)
    agent_home, agent_env = enrolled_agent(centre, tmp_path, source, dump)
    password = (agent_home / "repository.password").read_text().strip()
    agent_token = (agent_home / "agent.token").read_text().strip()
    store_secrets = [server.secret_key for server in centre.servers.values()]
    # the agent holds keys of its own for each store, never the stores' own keys
    assignment = (agent_home / "assignment.json").read_text()
    for server in centre.servers.values():
        assert server.secret_key not in assignment and server.access_key not in assignment
    own_keys = [store["access_key_id"] for store in json.loads(assignment)["stores"]]
    assert len(own_keys) == 3 and all(own_keys)

    watcher = ArgvWatcher(password, agent_token, *store_secrets)
    watcher.start()
    backup = run("drd-agent", "backup", "--json", env=agent_env)
    watcher.done.set()
    watcher.join()
    assert watcher.restic_runs > 0, "the watcher never saw restic running"
    assert watcher.seen == []
    result = json.loads(backup.stdout)
    assert result["stores"] == {name: True for name in REGIONS}
    assert result["files"] >= 2000

    prefix = "city/parks/fs1/"
    listings = {name: store_objects(server, f"drd-{name}", prefix)
                for name, server in centre.servers.items()}
    assert listings["dc-a"] and listings["dc-a"] == listings["dc-b"] == listings["region-b"]
    assert any(key.startswith("data/") and key.count("/") == 2 for key in listings["dc-a"])

    restic = Restic()
    for name, server in centre.servers.items():
        repository = Repository(
            url=f"s3:{server.endpoint}/drd-{name}/{prefix.rstrip('/')}", password=password,
            env={"AWS_ACCESS_KEY_ID": server.access_key,
                 "AWS_SECRET_ACCESS_KEY": server.secret_key})
        snapshots = restic.snapshots(repository)
        path_snapshot = next(s for s in snapshots if str(source) in s.paths)
        target = tmp_path / f"restore-{name}"
        restic.restore(repository, path_snapshot.id, target)
        # restic 0.14 restores an absolute source path under its full path
        restored = target / str(source).lstrip("/")
        assert not (restored / "skip.tmp").exists()
        assert digest_tree(restored) == digest_tree(source, excluding="skip.tmp")
        dump_snapshot = next(s for s in snapshots if s.id != path_snapshot.id)
        restic.restore(repository, dump_snapshot.id, tmp_path / f"dump-{name}")
        restored_dump = next((tmp_path / f"dump-{name}").rglob("app.sql"))
        assert restored_dump.read_bytes() == dump.read_bytes()

    listed = json.loads(centre.drd("snapshots", "fs1", "--json").stdout)
    assert {s["id"] if "id" in s else s["snapshot_id"] for s in listed} >= {
        result["snapshot_id"]}
    logs = centre.log.read_text() + backup.stderr
    for secret in (password, agent_token, *store_secrets):
        assert secret not in logs


def digest_tree(root: Path, excluding: str = "") -> dict[str, str]:
    """Every file under ``root`` (relative path -> SHA-256), empty files included."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in root.rglob("*") if p.is_file() and p.name != excluding}


def test_one_store_down_during_a_backup_is_reported_and_the_backup_holds(
        centre: Centre, tmp_path: Path) -> None:
    source = tmp_path / "share"
    make_tree(source, 300)
    dump = tmp_path / "dump.sql"
    dump.write_text("x\n")
    _, agent_env = enrolled_agent(centre, tmp_path, source, dump, min_copies=2)
    centre.servers["region-b"].kill()
    result = json.loads(run("drd-agent", "backup", "--json", env=agent_env).stdout)
    assert result["stores"] == {"dc-a": True, "dc-b": True, "region-b": False}
    listed = json.dumps(json.loads(centre.drd("snapshots", "fs1", "--json").stdout))
    assert "missing" in listed


def test_backups_run_while_the_centre_is_down_and_reports_arrive_later(
        centre: Centre, tmp_path: Path) -> None:
    source = tmp_path / "share"
    make_tree(source, 100)
    dump = tmp_path / "dump.sql"
    dump.write_text("x\n")
    agent_home, agent_env = enrolled_agent(centre, tmp_path, source, dump)
    centre.stop()
    offline = json.loads(run("drd-agent", "backup", "--json", env=agent_env).stdout)
    assert offline["stores"] == {name: True for name in REGIONS}
    assert list((agent_home / "spool").iterdir())
    centre.start()
    run("drd-agent", "backup", "--json", env=agent_env)
    assert not list((agent_home / "spool").iterdir())
    listed = json.dumps(json.loads(centre.drd("snapshots", "fs1", "--json").stdout))
    assert offline["snapshot_id"] in listed
