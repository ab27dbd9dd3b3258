"""Backup runs with real restic through the real fan-out endpoint into local stores.

Three filesystem stores stand in for the policy's stores; restic runs once per source
through :class:`agents.target.FanoutTarget`. Checked: every store alone restores the tree
byte for byte, the manifest lists exactly the files restic saved (excludes matched as
restic matches them), is signed, and is stored sealed to the escrow key only; a failing
``before`` command backs up nothing, a failing dump leaves no snapshot, and reports are
spooled when the centre is unreachable.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import shutil
import socket
import subprocess
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from agents.backup import RunContext, plan_backup, run_backup, snapshot_report
from agents.commands import CommandFailed, CommandOutput, command_environment
from agents.home import AgentConfig, AgentHome, identity_key_pem
from agents.service import backup_system, fanout_target
from agents.target import DirectTarget, FanoutTarget
from drd.crypto.pem import public_key_pem
from drd.crypto.seal import manifest_context, unseal
from drd.crypto.signing import verify
from drd.recorded.keys import manifest_keys
from drd.restic import Repository, Restic
from drd.secrets import Secret
from drd.services.protocol import ManifestUpload, SnapshotReport
from drd.stores import FilesystemStore
from policies.schema import Policy

pytestmark = pytest.mark.integration

PASSWORD = Secret("agent-integration-password-5b2d")
STORES = ("dc-a", "dc-b", "region-b")
ESCROW = X25519PrivateKey.generate()  # the centre's escrow key, which manifests are sealed to


def make_tree(root: Path, files: int, seed: int = 3) -> None:
    generator = random.Random(seed)
    for index in range(files):
        folder = root / f"d{index % 13:02d}" / f"e{index % 3}"
        folder.mkdir(parents=True, exist_ok=True)
        size = generator.choice([0, 5, 900, 4096, 70_000])
        (folder / f"f{index:04d}.bin").write_bytes(generator.randbytes(size))
    (root / "d00" / "skip.tmp").write_text("excluded")
    (root / "d01" / "cache").mkdir()
    (root / "d01" / "cache" / "inside").write_text("excluded with its directory")
    (root / "d02" / "keep.tmp").write_text("re-included by a negated pattern")
    os.symlink("d00/e0/f0000.bin", root / "link")


def make_policy(source: Path, dump_command: list[str], **changes) -> Policy:
    document = {
        "policy": "agent-test", "schedule": "0 * * * *",
        "sources": [{"path": str(source), "exclude": ["*.tmp", "!keep.tmp", "cache/"]},
                    {"command": dump_command, "filename": "app.sql"}],
        "stores": list(STORES), "min_copies": 2, "retention": {"keep_last": 3},
        "rpo": "1h", "rto": "4h",
    }
    document.update(changes)
    return Policy.model_validate(document)


@pytest.fixture
def restic(restic_binary: str, tmp_path: Path) -> Restic:
    return Restic(restic_binary, cache_dir=tmp_path / "cache")


@pytest.fixture
def stores(tmp_path: Path) -> list[FilesystemStore]:
    made = []
    for name in STORES:
        root = tmp_path / "vault" / name / "parks" / "fs1"
        root.mkdir(parents=True)
        made.append(FilesystemStore(name, root))
    return made


@pytest.fixture
def initialised(stores, restic) -> list[FilesystemStore]:
    target = FanoutTarget(stores, PASSWORD, min_copies=2, object_lock_days=0,
                          display="parks/fs1")
    with target as repository:
        restic.init(repository)
    assert target.outcome().durable
    return stores


def context_for(policy: Policy, stores, restic: Restic, **options) -> RunContext:
    target = FanoutTarget(stores, PASSWORD, min_copies=policy.min_copies,
                          object_lock_days=policy.object_lock_days, display="parks/fs1")
    return RunContext(system="fs1", policy=policy, restic=restic, target=target,
                      stores=stores, identity_key=options.pop("key", None)
                      or Ed25519PrivateKey.generate(), escrow_key=ESCROW.public_key(),
                      **options)


def direct(store: FilesystemStore) -> Repository:
    return Repository(url=Secret(str(store.root)), password=PASSWORD, display=store.name)


def restic_ls_files(restic_binary: str, store: FilesystemStore, snapshot_id: str) -> set[str]:
    """The regular files restic saved in a snapshot, read with plain restic."""
    completed = subprocess.run(
        [restic_binary, "-r", str(store.root), "ls", "--json", snapshot_id],
        env={"PATH": os.environ["PATH"], "RESTIC_PASSWORD": PASSWORD.reveal(),
             "RESTIC_CACHE_DIR": str(store.root.parent / "cache")},
        capture_output=True, text=True, check=True, timeout=120)
    files = set()
    for line in completed.stdout.splitlines():
        item = json.loads(line)
        if item.get("struct_type") == "node" and item.get("type") == "file":
            files.add(item["path"])
    return files


def digest_tree(root: Path) -> dict[str, str]:
    return {str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(root.rglob("*")) if path.is_file() and not path.is_symlink()}


def test_a_run_lands_in_every_store_with_a_signed_manifest_of_what_restic_saved(
        tmp_path, initialised, restic, restic_binary):
    stores = initialised
    source = tmp_path / "share"
    make_tree(source, 400)
    dump = tmp_path / "dump.sql"
    dump.write_bytes(b"INSERT INTO t VALUES (1);\n" * 20_000)
    policy = make_policy(source, ["cat", str(dump)])
    key = Ed25519PrivateKey.generate()
    events = []
    plan = plan_backup(policy, run_id=str(uuid.uuid4()), host="fs1")
    result = run_backup(context_for(policy, stores, restic, key=key,
                                    progress=events.append), plan)

    assert result.ok, result.problems
    assert result.outcome.durable and all(s.complete for s in result.outcome.stores.values())
    assert [snapshot.kind for snapshot in result.snapshots] == ["paths", "command"]
    assert events  # restic status messages reached the progress callback
    paths, dumped = result.snapshots
    assert not paths.partial and paths.tags == (f"drd-run:{plan.run_id}",)
    assert paths.files == 400 + 1  # keep.tmp is re-included; the link is not a file

    expected = {str(source / name): digest for name, digest in digest_tree(source).items()
                if not name.endswith("skip.tmp") and "/cache/" not in name}
    for store in stores:  # every store alone is a complete repository
        repository = direct(store)
        listed = {snapshot.id for snapshot in restic.snapshots(repository)}
        assert listed == {paths.snapshot_id, dumped.snapshot_id}
        target = tmp_path / f"restore-{store.name}"
        restic.restore(repository, paths.snapshot_id, target)
        restored = digest_tree(target / source.relative_to("/"))  # restic keeps full paths
        assert restored == {name: digest for name, digest in digest_tree(source).items()
                            if not name.endswith("skip.tmp") and "/cache/" not in name}
        restic.restore(repository, dumped.snapshot_id, tmp_path / f"dump-{store.name}")
        assert (tmp_path / f"dump-{store.name}" / "app.sql").read_bytes() == dump.read_bytes()

    manifest = paths.manifest.manifest
    assert {entry["path"]: entry["sha256"] for entry in manifest["files"]} == expected
    assert {entry["path"] for entry in manifest["files"]} == \
        restic_ls_files(restic_binary, stores[0], paths.snapshot_id)
    for snapshot in result.snapshots:  # sealed to the escrow key, signed in plaintext
        sealed_key, signature_key = snapshot.manifest.object_keys()
        assert sealed_key.endswith(".json.sealed")
        for store in stores:
            assert not store.exists(manifest_keys(snapshot.snapshot_id)[0])
            sealed = store.read(sealed_key)
            assert str(source).encode() not in sealed
            data = unseal(ESCROW, sealed, manifest_context("fs1", snapshot.snapshot_id))
            assert data == snapshot.manifest.data
            document = json.loads(store.read(signature_key))
            verify(key.public_key(), data, base64.b64decode(document["signature"]))
    dump_entry = dumped.manifest.manifest["files"][0]
    assert dump_entry == {"path": "/app.sql", "size": dump.stat().st_size, "mtime_ns": None,
                          "sha256": hashlib.sha256(dump.read_bytes()).hexdigest()}
    for snapshot in result.snapshots:
        report = snapshot_report(result, snapshot, "fs1.parks.city")
        SnapshotReport.model_validate(report)
        assert report["manifest_sha256"] == snapshot.manifest.sha256
    assert result.as_dict()["stores"] == dict.fromkeys(STORES, True)


def test_a_failing_before_command_backs_up_nothing_and_after_still_runs(
        tmp_path, initialised, restic):
    source = tmp_path / "share"
    make_tree(source, 10)
    thawed = tmp_path / "thawed"
    policy = make_policy(source, ["echo", "dump"],
                         before=[["sh", "-c", "echo frozen-failed >&2; exit 4"]],
                         after=[["touch", str(thawed)]])
    result = run_backup(context_for(policy, initialised, restic),
                        plan_backup(policy, run_id=str(uuid.uuid4()), host="fs1"))
    assert not result.ok and result.snapshots == []
    assert "before command sh -c" in result.failure()
    assert "exit status 4" in result.failure() and "frozen-failed" in result.failure()
    assert thawed.exists()
    assert restic.snapshots(direct(initialised[0])) == []


def test_a_failing_dump_leaves_no_snapshot_and_marks_the_run_partial(
        tmp_path, initialised, restic):
    source = tmp_path / "share"
    make_tree(source, 10)
    thawed = tmp_path / "thawed"
    # half a dump, then a failure: restic must not save the truncated half
    failing = ["sh", "-c", "head -c 3000000 /dev/zero; echo 'dump: disk full' >&2; exit 3"]
    policy = make_policy(source, failing, after=[["touch", str(thawed)]])
    result = run_backup(context_for(policy, initialised, restic),
                        plan_backup(policy, run_id=str(uuid.uuid4()), host="fs1"))
    assert not result.ok
    assert "the dump app.sql failed" in result.failure()
    assert "exit status 3" in result.failure() and "disk full" in result.failure()
    assert thawed.exists()
    assert [snapshot.kind for snapshot in result.snapshots] == ["paths"]
    assert result.snapshots[0].partial  # the run failed: not a good restore point
    for store in initialised:
        snapshots = restic.snapshots(direct(store))
        assert [snapshot.paths for snapshot in snapshots] == [(str(source),)]
    report = snapshot_report(result, result.snapshots[0], "fs1")
    assert report["partial"] is True


def test_a_missing_source_path_fails_the_run_with_the_reason(tmp_path, initialised, restic):
    policy = make_policy(tmp_path / "nowhere", ["echo", "x"])
    result = run_backup(context_for(policy, initialised, restic),
                        plan_backup(policy, run_id=str(uuid.uuid4()), host="fs1"))
    assert not result.ok and "does not exist" in result.failure()
    assert [snapshot.kind for snapshot in result.snapshots] == ["command"]
    assert result.snapshots[0].partial


def test_a_run_that_can_no_longer_be_durable_stops_restic_at_once(tmp_path, initialised,
                                                                 restic):
    source = tmp_path / "share"
    make_tree(source, 30)
    for broken in initialised[1:]:  # two of three stores fail every write; min_copies 2
        shutil.rmtree(broken.root)
        broken.root.write_text("not a directory any more")
    policy = make_policy(source, ["echo", "x"])

    started = time.monotonic()
    result = run_backup(context_for(policy, initialised, restic),
                        plan_backup(policy, run_id=str(uuid.uuid4()), host="fs1"))
    assert time.monotonic() - started < 25  # restic's own retries take about 50 s a run
    assert not result.ok and not result.outcome.durable and not result.snapshots
    assert "restic was stopped rather than left to retry" in result.failure()
    assert restic.snapshots(direct(initialised[0])) == []


def test_a_run_can_be_cancelled_and_after_commands_still_run(tmp_path, initialised, restic):
    source = tmp_path / "share"
    make_tree(source, 50)
    thawed = tmp_path / "thawed"
    # a dump that hangs without a byte of output, as a stuck database would
    policy = make_policy(source, ["sh", "-c", "sleep 60"], after=[["touch", str(thawed)]])
    deadline = time.monotonic() + 4  # the path backup is done by then; the dump hangs

    started = time.monotonic()
    result = run_backup(context_for(policy, initialised, restic,
                                    should_stop=lambda: time.monotonic() > deadline),
                        plan_backup(policy, run_id=str(uuid.uuid4()), host="fs1"))
    assert time.monotonic() - started < 20
    assert result.cancelled and not result.ok and thawed.exists()
    assert "cancelled" in result.failure()
    snapshots = restic.snapshots(direct(initialised[0]))
    assert [snapshot.paths for snapshot in snapshots] == [(str(source),)]  # never the dump
    assert result.snapshots[0].partial
    assert restic.check(direct(initialised[0])).ok  # restic was stopped cleanly: no stale lock


def test_terminating_a_dump_stops_what_it_started_too() -> None:
    # sh waits for sleep, which holds the pipe: killing sh alone would leave the reader hung
    output = CommandOutput(["sh", "-c", "sleep 60; echo never"],
                           env=command_environment(os.environ))
    stopper = threading.Timer(0.5, output.terminate)
    started = time.monotonic()
    stopper.start()
    with pytest.raises(CommandFailed, match="exit status -15"):
        list(output)
    stopper.join()
    assert time.monotonic() - started < 10


def test_a_dump_is_hashed_as_it_streams() -> None:
    output = CommandOutput(["sh", "-c", "head -c 3000000 /dev/zero"], env={})
    data = b"".join(output)
    output.terminate()
    assert len(data) == output.size == 3_000_000
    assert output.sha256 == hashlib.sha256(bytes(3_000_000)).hexdigest()


# -- the whole run of an enrolled home, with the centre unreachable ------------------------


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # closed again when the block ends


def enrolled_home(tmp_path: Path, source: Path, stores_root: Path, server: str) -> AgentHome:
    """A home as enrollment leaves it, for a centre that is not there."""
    home = AgentHome(tmp_path / "agent")
    home.ensure()
    assignment = {
        "system": "fs1", "department": "parks", "repository_path": "parks/fs1",
        "policy": make_policy(source, ["echo", "dump"]).model_dump(mode="json"),
        "policy_version": 1,
        "stores": [{"name": name, "kind": "file", "url": f"file://{stores_root / name}",
                    "endpoint": None, "region": None, "object_lock": False,
                    "access_key_id": None, "secret_access_key": None} for name in STORES],
        "escrow_public_key": public_key_pem(ESCROW.public_key()).decode(),
    }
    home.install(ca_pem=b"", identity_key_pem=identity_key_pem(Ed25519PrivateKey.generate()),
                 password=PASSWORD, agent_token=Secret("agent-token-value"),
                 assignment=assignment)
    home.write_config(AgentConfig(server=server, ca_file=str(home.ca_file), system="fs1",
                                  department="parks", hostname="fs1.test",
                                  enrolled_at=datetime.now(UTC).isoformat()))
    return home


def test_reports_are_spooled_when_the_centre_is_unreachable(tmp_path, initialised, restic):
    source = tmp_path / "share"
    make_tree(source, 20)
    home = enrolled_home(tmp_path, source, tmp_path / "vault", f"http://127.0.0.1:{closed_port()}")
    outcome = backup_system(home, restic=restic, target_factory=fanout_target)
    assert outcome.result.ok, outcome.result.problems
    assert not outcome.assignment_fresh  # the cached assignment was used
    entries = sorted(path.name for path in home.spool_dir.iterdir())
    assert [name.split("-")[1] for name in entries] == ["report", "manifest"] * 2
    assert outcome.delivery.remaining == 4 and outcome.delivery.delivered == 0
    assert outcome.as_dict()["reports"] == {"delivered": 0, "spooled": 4}
    state = home.last_backup()
    assert state["ok"] and state["last_success"]
    first = json.loads((home.spool_dir / entries[0]).read_text())
    SnapshotReport.model_validate(first["body"])
    upload = ManifestUpload.model_validate(
        json.loads((home.spool_dir / entries[1]).read_text())["body"])
    assert upload.sealed is not None and upload.sealed.size > 61


def test_the_direct_target_reads_one_store(initialised, restic):
    with DirectTarget(initialised[1], PASSWORD) as repository:
        assert restic.snapshots(repository) == []
