"""Manifests in the stores are sealed to the escrow key (issue 14 point 7): whoever can
read a store learns no file name of a system from them.

A real centre (uvicorn in a thread, as tests/integration/test_agent_centre.py serves it)
with three Object Lock buckets on one SeaweedFS server, and a real agent (``drd-agent
enroll`` and ``backup`` in subprocesses, restic through the fan-out, the system's own
store keys). Then every object of every store is read with the stores' own keys and
searched for a file name planted in the source, and for that file's SHA-256: neither may
appear. The centre must still have checked the signature (over the unsealed bytes) and
recorded the digest of the sealed object as stored; a sealed manifest forged in one store
(a valid seal to the escrow key, with the right context, of the attacker's manifest: the
escrow public key is no secret) is found by verification, alerted as ``tamper`` and
healed from a store whose copy matches the record; forged in every store, it is written
back from the catalog (sealed again, byte for byte); a drill whose catalog has lost the
manifest reads and unseals the store's copy, and the audit log says so.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path
from types import SimpleNamespace

import boto3
import pytest
import sqlalchemy as sa

from drd.catalog.models import Alert, AuditEntry, Snapshot, SnapshotManifest, System
from drd.config import load_config
from drd.confirmation.run import confirm_reports
from drd.crypto.errors import CryptoError
from drd.crypto.keystore import KeyStore
from drd.crypto.seal import SEAL_HEAD_SIZE, manifest_context, seal, unseal
from drd.recorded.catalog import records_of
from drd.recorded.keys import manifest_keys, sealed_manifest_keys
from drd.services import policies as policy_service
from drd.services import stores as store_service
from drd.services.centre import initialise, open_catalog, open_master_key
from drd.stores import FilesystemStore
from drd.stores.url import StoreSpec
from drd.verification import verify
from restore_drills.run import _manifest_from_store, run_drill
from tests.integration.test_agent_centre import Centre, agent

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STORES = {"dc-a": "region-a", "dc-b": "region-a", "region-b": "region-b"}
PREFIX = "city"


def policy_text(source: Path, dump: Path) -> str:
    return f"""\
policy: agent-test
schedule: "0 3 * * *"
sources:
  - path: {source}
  - command: ["cat", "{dump}"]
    filename: app.sql
stores: [dc-a, dc-b, region-b]
min_copies: 2
retention: {{keep_daily: 7}}
object_lock_days: 1
rpo: 2d
rto: 1h
"""


@pytest.fixture
def centre(tmp_path: Path, monkeypatch, seaweed_session):
    monkeypatch.delenv("DRD_MASTER_PASSPHRASE", raising=False)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    server = seaweed_session
    suffix = uuid.uuid4().hex[:8]
    home = tmp_path / "centre"
    initialise(home, f"sqlite:///{tmp_path / 'catalog.sqlite'}")
    config = load_config(home)
    catalog = open_catalog(config)
    master_key = open_master_key(config)
    buckets = {name: f"drd-{name}-{suffix}" for name in STORES}
    for name, region in STORES.items():
        store_service.add_store(catalog, master_key, StoreSpec(
            name=name, url=f"s3://{buckets[name]}/{PREFIX}", endpoint=server.endpoint,
            region=region, object_lock=True), server.access_key, server.secret)
    source = tmp_path / "share"
    planted = f"planted-{uuid.uuid4().hex}.txt"
    for index in range(20):
        folder = source / f"d{index % 3}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{index}.bin").write_bytes(os.urandom(1000 + index * 200))
    (source / "d1" / planted).write_bytes(os.urandom(3000))
    dump = tmp_path / "dump.sql"
    dump.write_text("CREATE TABLE t(x);\n" * 500)
    policy = tmp_path / "policy.yaml"
    policy.write_text(policy_text(source, dump))
    policy_service.apply(catalog, [policy], store_service.store_regions(catalog))
    from drd.api.app import create_app

    keystore = KeyStore(config.keys_dir, master_key)
    served = Centre(home, catalog, keystore, create_app(catalog, master_key, config),
                    tmp_path / "vault")
    served.start()
    served.server, served.buckets, served.config = server, buckets, config
    served.master_key = master_key
    served.planted = planted
    served.planted_sha256 = hashlib.sha256((source / "d1" / planted).read_bytes()).hexdigest()
    yield served
    served.stop()
    catalog.dispose()


def admin(centre):
    server = centre.server
    return boto3.client("s3", endpoint_url=server.endpoint, region_name="us-east-1",
                        aws_access_key_id=server.access_key,
                        aws_secret_access_key=server.secret_key)


def every_object(centre, name: str) -> dict[str, bytes]:
    """Every object in store ``name``'s bucket, read with the store's own keys."""
    client = admin(centre)
    bucket = centre.buckets[name]
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return {item["Key"]: client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
            for page in pages for item in page.get("Contents", [])}


def repository_key(key: str) -> str:
    return f"{PREFIX}/parks/fs1/{key}"


def read(centre, name: str, key: str) -> bytes:
    return admin(centre).get_object(Bucket=centre.buckets[name],
                                    Key=repository_key(key))["Body"].read()


def forge(centre, name: str, key: str, data: bytes) -> None:
    """What an attacker with write access does: a new, unlocked version over the locked one."""
    admin(centre).put_object(Bucket=centre.buckets[name], Key=repository_key(key), Body=data)


def tampered(centre) -> set[tuple[str, str]]:
    with centre.catalog.session() as session:
        alerts = session.scalars(sa.select(Alert).where(Alert.kind == "tamper",
                                                        Alert.resolved_at.is_(None)))
        return {(alert.details["store"], alert.details["key"]) for alert in alerts}


def test_no_store_object_names_a_file_yet_the_centre_checks_heals_and_drills(
        centre, tmp_path: Path) -> None:
    home = tmp_path / "agent"
    agent("enroll", "--server", centre.url, "--token", "-", home=home,
          input=centre.token("fs1") + "\n")
    result = json.loads(agent("backup", "--json", home=home).stdout)
    assert result["ok"] and all(result["stores"].values()), result
    snapshot_ids = sorted(snapshot["snapshot_id"] for snapshot in result["snapshots"])
    assert len(snapshot_ids) == 2 and result["reports"]["spooled"] == 0

    # nothing in any store names the planted file or carries its digest
    for name in STORES:
        objects = every_object(centre, name)
        assert any("/data/" in key for key in objects), name
        for key, body in objects.items():
            assert centre.planted.encode() not in body, (name, key)
            assert centre.planted_sha256.encode() not in body, (name, key)
        manifests = sorted(key.rsplit("/", 1)[1] for key in objects
                           if key.startswith(repository_key("drd/manifests/")))
        assert manifests == sorted(f"{snapshot_id}.json{suffix}"
                                   for snapshot_id in snapshot_ids
                                   for suffix in (".sealed", ".sig")), name

    # the centre checked the signature over the unsealed bytes and recorded the sealed
    # object's digest; the escrow key opens it under this system's and snapshot's context
    escrow = centre.keystore.escrow_private_key()
    with centre.catalog.session() as session:
        system_id = session.scalar(sa.select(System.id).where(System.name == "fs1"))
        records = records_of(session, system_id)
        kept = {restic_id: (manifest.content, manifest.sealed_head)
                for manifest, restic_id in session.execute(
                    sa.select(SnapshotManifest, Snapshot.restic_id).join(Snapshot))}
    assert sorted(kept) == snapshot_ids
    for snapshot_id in snapshot_ids:
        sealed_key, signature_key = sealed_manifest_keys(snapshot_id)
        assert manifest_keys(snapshot_id)[0] not in records  # no plaintext object recorded
        assert signature_key in records
        for name in STORES:
            body = read(centre, name, sealed_key)
            assert (records[sealed_key].sha256, records[sealed_key].size) == \
                (hashlib.sha256(body).hexdigest(), len(body)), name
        content, head = kept[snapshot_id]
        assert head == body[:SEAL_HEAD_SIZE]
        assert unseal(escrow, body, manifest_context("fs1", snapshot_id)) == content
        other = next(i for i in snapshot_ids if i != snapshot_id)
        for context in (manifest_context("fs2", snapshot_id), manifest_context("fs1", other)):
            with pytest.raises(CryptoError):
                unseal(escrow, body, context)
    assert any(centre.planted.encode() in content for content, _ in kept.values())

    # forged in one store: found, alerted as tamper, healed from a matching copy
    paths_id = result["snapshot_id"]
    sealed_key, _ = sealed_manifest_keys(paths_id)
    good = read(centre, "region-b", sealed_key)
    forged = seal(centre.keystore.escrow_public_key(), b'{"files":[]}',
                  manifest_context("fs1", paths_id))
    forge(centre, "dc-a", sealed_key, forged)
    report = verify(centre.catalog, centre.master_key, centre.config, full=True)
    assert report.ok, report.as_dict()
    assert [(f.store, f.key) for f in report.healed] == [("dc-a", sealed_key)]
    assert report.healed[0].source in ("dc-b", "region-b")
    assert read(centre, "dc-a", sealed_key) == good
    assert tampered(centre) == {("dc-a", sealed_key)}

    # forged in every store: written back from the catalog, sealed again byte for byte
    for name in STORES:
        forge(centre, name, sealed_key, forged)
    report = verify(centre.catalog, centre.master_key, centre.config, full=True)
    assert report.ok, report.as_dict()
    assert {f.store for f in report.healed} == set(STORES)
    assert [f.source for f in report.healed if f.store == "dc-a"] == ["catalog"]
    assert all(read(centre, name, sealed_key) == good for name in STORES)
    assert tampered(centre) == {(name, sealed_key) for name in STORES}
    with centre.catalog.session() as session:
        assert records_of(session, system_id) == records  # backfill added no .json record

    # the catalog lost its manifests: the drill reads the sealed copies from its store
    confirm_reports(centre.catalog, centre.master_key, "fs1")
    with centre.catalog.session() as session:
        session.execute(sa.delete(SnapshotManifest))
    outcome = run_drill(centre.catalog, centre.master_key, centre.keystore, centre.config,
                        centre.home, "fs1", store="region-b")
    assert outcome.passed, outcome.summary()
    assert outcome.report["checks"]["manifest_signature"]["passed"]
    assert outcome.report["checks"]["manifest"]["passed"]
    with centre.catalog.session() as session:
        unsealed = list(session.scalars(sa.select(AuditEntry).where(
            AuditEntry.action == "escrow.unseal_manifest")))
    assert sorted(entry.details["snapshot"] for entry in unsealed) == snapshot_ids
    assert all(entry.target == "fs1" and entry.details["store"] == "region-b"
               and "drill" in entry.details["reason"] for entry in unsealed)


def test_a_drill_reads_a_legacy_plaintext_manifest_and_prefers_the_sealed_one(tmp_path):
    (tmp_path / "dc-a").mkdir()
    store = FilesystemStore("dc-a", tmp_path / "dc-a")
    target = SimpleNamespace(name="dc-a", store=store)
    snapshot_id = "a" * 64
    signature_document = json.dumps({"version": 1, "algorithm": "ed25519", "key": "k",
                                     "signature": "c2lnbmF0dXJl"}).encode()
    legacy, signature_key = manifest_keys(snapshot_id)
    store.put(legacy, b'{"legacy":true}')
    store.put(signature_key, signature_document)
    opened = []

    def unseal_blob(blob: bytes) -> bytes:
        opened.append(blob)
        return b'{"sealed":true}'

    assert _manifest_from_store(target, snapshot_id, unseal_blob) == \
        (b'{"legacy":true}', b"signature")
    assert opened == []  # a legacy manifest needs no key: nothing unsealed, nothing audited
    store.put(sealed_manifest_keys(snapshot_id)[0], b"\x01sealed bytes")
    assert _manifest_from_store(target, snapshot_id, unseal_blob) == \
        (b'{"sealed":true}', b"signature")
    assert opened == [b"\x01sealed bytes"]
    assert _manifest_from_store(target, "b" * 64, unseal_blob) is None
