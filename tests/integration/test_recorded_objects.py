"""Nothing decided by majority over unlocked copies (issue 14 point 7), on real stores.

The hostile test that found it: with one agent's store keys, a forged ``config`` was
written into two stores as their current, unlocked version; verification then "healed"
the Object Lock store's good ``config`` with the forgery (two copies against one), and
restic failed on every store. Here three SeaweedFS buckets with Object Lock (as policies
must have on SeaweedFS) hold fs1's real restic repository, every copy locked, and
``config``, the sealed password and a manifest are forged behind drd's back through
boto3, as an attacker with write access would: a new, unlocked version over the locked
one. Verification and replication must check every copy against the digest the catalog
recorded, never against the other copies.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import os
import uuid

import boto3
import pytest
import sqlalchemy as sa
from botocore.config import Config as BotoConfig

from drd.catalog.models import Alert, AuditEntry, RecordedObject, SnapshotManifest, System
from drd.crypto.pem import public_key_pem
from drd.crypto.seal import seal
from drd.recorded.catalog import manifest_objects
from drd.recorded.keys import CONFIG, ESCROW_KEY, manifest_keys
from drd.replication.run import replicate
from drd.services import enrollment
from drd.services.alerts import resolve_by_operator
from drd.services.protocol import EnrollRequest
from drd.verification import verify
from tests.integration.staging import StoreSetup, make_stage

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STORES = ("dc-a", "dc-b", "vault")


def locked_stage(tmp_path, server, restic_binary, database_url=None, lacks=None):
    """fs1's repository (a real backup, its manifest, the sealed password) in ``dc-a``,
    ``dc-b`` and ``vault``, buckets with Object Lock, every copy locked for a day, as the
    fan-out writes them; config recorded as enrollment records it. ``lacks(store, key)``
    True: that store never got that object (the fan-out missed it there)."""
    suffix = uuid.uuid4().hex[:8]
    stage = make_stage(tmp_path, database_url=database_url, restic_binary=restic_binary,
                       object_lock_days=1,
                       stores=[StoreSetup(name, region, server, f"r{name[-1]}-{suffix}",
                                          object_lock=True)
                               for name, region in (("dc-a", "r1"), ("dc-b", "r1"),
                                                    ("vault", "r2"))])
    stage.init("dc-a")
    stage.write_files(6, size=5_000)
    snapshot = stage.backup("dc-a")
    stage.report(snapshot, {"dc-a": True, "dc-b": False, "vault": False})
    stage.sign_manifest(snapshot)
    origin = stage.raw_store("dc-a")
    objects = {info.key: origin.read(info.key) for info in origin.list()
               if not info.key.startswith("locks/")}
    objects |= agent_objects(stage, snapshot)
    retain_until = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    for name in STORES:
        target = stage.raw_store(name)
        for key, data in objects.items():
            if lacks is None or not lacks(name, key):
                target.put(key, data, retain_until=retain_until)
    stage.snapshot = snapshot
    return stage


def agent_objects(stage, snapshot: str) -> dict[str, bytes]:
    """What the agent puts beside the repository: the sealed password and the manifest
    with its signature document, byte for byte."""
    with stage.catalog.session() as session:
        system = session.scalar(sa.select(System).where(System.name == "fs1"))
        manifest = session.scalar(sa.select(SnapshotManifest))
        objects = manifest_objects(snapshot, manifest.content, manifest.signature,
                                   system.agent_public_key)
        return {ESCROW_KEY: system.sealed_password, **objects}


def forge(stage, store: str, key: str, data: bytes) -> None:
    """Put ``data`` under ``key`` of fs1's repository in ``store`` with boto3, behind
    drd's back (on the locked bucket: a new, unlocked version over the locked one)."""
    setup = stage.stores[store]
    raw = stage.raw_store(store).unwrap()
    boto3.client("s3", endpoint_url=setup.server.endpoint,
                 aws_access_key_id=setup.server.access_key,
                 aws_secret_access_key=setup.server.secret_key, region_name="us-east-1",
                 config=BotoConfig(s3={"addressing_style": "path"})
                 ).put_object(Bucket=raw.bucket, Key=f"{raw.prefix}/{key}", Body=data)


def remove(stage, store: str, key: str) -> None:
    stage.raw_store(store).delete(key)


def read(stage, store: str, key: str) -> bytes:
    return stage.raw_store(store).read(key)


def open_alerts(stage, kind: str) -> list[Alert]:
    with stage.catalog.session() as session:
        return list(session.scalars(sa.select(Alert).where(Alert.kind == kind,
                                                           Alert.resolved_at.is_(None))))


def tampered(stage) -> set[tuple[str, str]]:
    """(store, key) of the open tamper alerts; each names the system."""
    alerts = open_alerts(stage, "tamper")
    assert all("fs1" in alert.message and alert.details["system"] == "fs1"
               for alert in alerts)
    return {(alert.details["store"], alert.details["key"]) for alert in alerts}


def restic_opens_every_store(stage) -> None:
    for name in STORES:
        (snapshot,) = stage.restic.snapshots(stage.repository(name))
        assert snapshot.id == stage.snapshot, name


def audit_entries(stage, action: str) -> list[AuditEntry]:
    with stage.catalog.session() as session:
        return list(session.scalars(sa.select(AuditEntry).where(AuditEntry.action == action)))


def drop_record(stage, key: str) -> None:
    with stage.catalog.session() as session:
        session.execute(sa.delete(RecordedObject).where(RecordedObject.key == key))


# -- config ---------------------------------------------------------------------------


def test_two_forged_unlocked_configs_never_outvote_the_locked_good_one(
        tmp_path, seaweed_session, restic_binary, database_url):
    stage = locked_stage(tmp_path, seaweed_session, restic_binary, database_url)
    good = read(stage, "vault", CONFIG)
    forged = os.urandom(len(good))  # the same size: only the digest can tell
    forge(stage, "dc-a", CONFIG, forged)
    forge(stage, "dc-b", CONFIG, forged)

    report = verify(stage.catalog, stage.master_key, stage.config, full=True)

    assert report.ok, report.as_dict()
    assert all(read(stage, name, CONFIG) == good for name in STORES)
    # from the locked good copy (dc-b may take dc-a's, healed and locked just before)
    assert {(f.store, f.key) for f in report.healed} == {("dc-a", CONFIG), ("dc-b", CONFIG)}
    assert [f.source for f in report.healed if f.store == "dc-a"] == ["vault"]
    assert {f.source for f in report.healed} <= {"vault", "dc-a"}
    assert tampered(stage) == {("dc-a", CONFIG), ("dc-b", CONFIG)}
    restic_opens_every_store(stage)
    # the vault's locked copy was never written over: it has one version
    vault = stage.raw_store("vault").unwrap()
    assert len([v for v in vault.list_versions(CONFIG) if v.key == CONFIG]) == 1
    # the healed copies are locked again, over the forgeries
    for name in ("dc-a", "dc-b"):
        assert stage.raw_store(name).head(CONFIG).retain_until > dt.datetime.now(dt.UTC)
    # healed, but whoever forged them may still hold the keys: open until a person says
    again = verify(stage.catalog, stage.master_key, stage.config, full=True)
    assert again.ok and not again.healed and len(tampered(stage)) == 2
    for alert in open_alerts(stage, "tamper"):
        assert alert.count == 1  # not raised again by a run that found the copy right
        resolve_by_operator(stage.catalog, alert.id, actor="test", note="keys rotated")
    verify(stage.catalog, stage.master_key, stage.config, full=True)
    assert tampered(stage) == set()


def test_without_a_record_config_is_learned_from_the_locked_copy_never_the_majority(
        tmp_path, seaweed_session, restic_binary):
    stage = locked_stage(tmp_path, seaweed_session, restic_binary)
    drop_record(stage, CONFIG)  # enrolled by an agent that did not send the digest
    good = read(stage, "vault", CONFIG)
    forged = os.urandom(len(good))
    forge(stage, "dc-a", CONFIG, forged)
    forge(stage, "dc-b", CONFIG, forged)

    report = verify(stage.catalog, stage.master_key, stage.config, full=True)

    assert report.ok, report.as_dict()
    assert all(read(stage, name, CONFIG) == good for name in STORES)
    with stage.catalog.session() as session:
        record = session.scalar(sa.select(RecordedObject).where(RecordedObject.key == CONFIG))
        learned = session.scalar(sa.select(AuditEntry).where(
            AuditEntry.action == "object.record"))
    assert record.sha256 == hashlib.sha256(good).hexdigest()
    assert record.source == "locked copy in vault" and learned.target == "fs1/config"
    assert tampered(stage) == {("dc-a", CONFIG), ("dc-b", CONFIG)}
    restic_opens_every_store(stage)


def test_without_a_record_or_a_locked_copy_config_is_left_alone_and_alerted(
        tmp_path, seaweed_session, restic_binary):
    stage = locked_stage(tmp_path, seaweed_session, restic_binary)
    drop_record(stage, CONFIG)
    good = read(stage, "vault", CONFIG)
    forged = os.urandom(len(good))
    forge(stage, "dc-a", CONFIG, forged)
    forge(stage, "dc-b", CONFIG, forged)
    forge(stage, "vault", CONFIG, good)  # the current version is no longer locked

    report = verify(stage.catalog, stage.master_key, stage.config, full=True)

    # two forged copies against one good: nothing is decided by their count
    assert [read(stage, name, CONFIG) for name in STORES] == [forged, forged, good]
    assert not report.healed and not report.corrupt
    assert {(f.store, f.key) for f in report.unchecked} == {
        (name, CONFIG) for name in STORES}
    (alert,) = open_alerts(stage, "unverifiable")
    assert "fs1" in alert.message and "config cannot be checked" in alert.message
    assert alert.severity == "warning"
    with stage.catalog.session() as session:
        assert session.scalar(sa.select(RecordedObject).where(
            RecordedObject.key == CONFIG)) is None


def test_config_forged_in_every_store_comes_back_from_each_stores_locked_version(
        tmp_path, seaweed_session, restic_binary):
    stage = locked_stage(tmp_path, seaweed_session, restic_binary)
    good = read(stage, "vault", CONFIG)
    forged = os.urandom(len(good))
    for name in STORES:
        forge(stage, name, CONFIG, forged)

    report = verify(stage.catalog, stage.master_key, stage.config, full=True)

    # no current copy matches the record, and the catalog holds no config of its own:
    # the locked version beneath each forgery does (drd.repair), never a vote
    assert report.ok and not report.lost, report.as_dict()
    assert sorted(f.store for f in report.healed if f.key == CONFIG) == list(STORES)
    assert [f.source for f in report.healed if f.store == "dc-a"] == ["dc-a"]
    assert all(f.version for f in report.healed if f.source == f.store)
    assert all(read(stage, name, CONFIG) == good for name in STORES)
    assert tampered(stage) == {(name, CONFIG) for name in STORES}
    assert not open_alerts(stage, "damage")
    restic_opens_every_store(stage)


# -- the sealed password and the manifests ------------------------------------------------


def test_a_forged_sealed_password_and_manifest_are_healed_from_a_matching_copy(
        tmp_path, seaweed_session, restic_binary, database_url):
    stage = locked_stage(tmp_path, seaweed_session, restic_binary, database_url)
    objects = agent_objects(stage, stage.snapshot)
    manifest, signature = manifest_keys(stage.snapshot)
    other = seal(stage.keystore.escrow_public_key(), b"the attacker's password",
                 b"drd-repository-password:fs1")
    forge(stage, "dc-a", ESCROW_KEY, other)
    forge(stage, "dc-b", ESCROW_KEY, other)
    forge(stage, "dc-a", manifest, b'{"files": []}')
    forge(stage, "vault", manifest, b'{"files": []}')  # over the locked version
    forge(stage, "dc-b", signature, objects[signature].replace(b'"signature"', b'"sig"'))

    report = verify(stage.catalog, stage.master_key, stage.config, full=True)

    assert report.ok, report.as_dict()
    for name in STORES:
        for key in (ESCROW_KEY, manifest, signature):
            assert read(stage, name, key) == objects[key], (name, key)
    assert {(f.store, f.key) for f in report.healed} == {
        ("dc-a", ESCROW_KEY), ("dc-b", ESCROW_KEY), ("dc-a", manifest),
        ("vault", manifest), ("dc-b", signature)}
    assert {f.source for f in report.healed if f.key == ESCROW_KEY} <= {"vault", "dc-a"}
    assert tampered(stage) == {(f.store, f.key) for f in report.healed}
    # the healed copy on the locked bucket is locked again
    assert stage.raw_store("vault").head(manifest).retain_until > dt.datetime.now(dt.UTC)


def test_a_sealed_password_forged_everywhere_is_written_back_from_the_catalog(
        tmp_path, seaweed_session, restic_binary):
    stage = locked_stage(tmp_path, seaweed_session, restic_binary)
    sealed = agent_objects(stage, stage.snapshot)[ESCROW_KEY]
    for name in STORES:
        forge(stage, name, ESCROW_KEY, b"\x01" + os.urandom(len(sealed) - 1))

    report = verify(stage.catalog, stage.master_key, stage.config, full=True)

    assert report.ok, report.as_dict()
    assert all(read(stage, name, ESCROW_KEY) == sealed for name in STORES)
    # the first from the catalog's bytes; the next may take that healed copy
    assert [f.source for f in report.healed if f.store == "dc-a"] == ["catalog"]
    assert {f.store for f in report.healed} == set(STORES)
    assert {f.source for f in report.healed} <= {"catalog", "dc-a", "dc-b"}
    assert tampered(stage) == {(name, ESCROW_KEY) for name in STORES}


# -- replication ----------------------------------------------------------------------


def test_replication_copies_a_recorded_object_only_from_a_copy_that_matches(
        tmp_path, seaweed_session, restic_binary):
    # dc-b never got them (no version of its own to bring back: they must be copied)
    stage = locked_stage(tmp_path, seaweed_session, restic_binary, lacks=lambda store, key:
                         store == "dc-b" and (key == CONFIG or key.startswith("drd/")
                                              and not key.endswith(".sig")))
    objects = agent_objects(stage, stage.snapshot)
    good_config = read(stage, "vault", CONFIG)
    manifest, _ = manifest_keys(stage.snapshot)
    # dc-a (first in the policy's order) holds forgeries: the same size, and another size
    forge(stage, "dc-a", CONFIG, os.urandom(len(good_config)))
    forge(stage, "dc-a", manifest, b'{"files": []}')

    report = replicate(stage.catalog, stage.master_key, stage.config)

    assert read(stage, "dc-b", CONFIG) == good_config
    assert read(stage, "dc-b", manifest) == objects[manifest]
    assert read(stage, "dc-b", ESCROW_KEY) == objects[ESCROW_KEY]
    # the forged manifest of another size is replaced too; the forged config of the right
    # size was found wrong on the way (verification heals it)
    assert read(stage, "dc-a", manifest) == objects[manifest]
    assert read(stage, "vault", CONFIG) == good_config
    results = {result.store: result for result in report.stores}
    assert results["dc-a"].corrupt_sources >= 1


def test_replication_never_copies_a_forged_recorded_object_to_a_store_missing_it(
        tmp_path, seaweed_session, restic_binary):
    stage = locked_stage(tmp_path, seaweed_session, restic_binary)
    manifest, signature = manifest_keys(stage.snapshot)
    good = read(stage, "vault", CONFIG)
    good_signature = read(stage, "vault", signature)
    forge(stage, "dc-a", CONFIG, os.urandom(len(good)))
    forge(stage, "dc-a", signature, b"{}")
    for key in (CONFIG, signature):
        remove(stage, "dc-b", key)
        remove(stage, "vault", key)  # a delete marker over the locked version

    report = replicate(stage.catalog, stage.master_key, stage.config)

    # the markers are noticed: each store gets its own locked version back (drd.repair),
    # never dc-a's forgery, the first in the policy's order
    for name in ("dc-b", "vault"):
        assert read(stage, name, CONFIG) == good
        assert read(stage, name, signature) == good_signature
    results = {result.store: result for result in report.stores}
    assert results["dc-b"].objects_repaired == results["vault"].objects_repaired == 2
    assert {(f"{name}:fs1/{key}") for name in ("dc-b", "vault")
            for key in (CONFIG, signature)} == {
        entry.target for entry in audit_entries(stage, "object.repair")}
    # and an unrecorded config is neither copied by majority nor brought back
    remove(stage, "dc-b", CONFIG)
    drop_record(stage, CONFIG)
    forge(stage, "vault", CONFIG, good)  # unlocked now: nothing to learn from
    replicate(stage.catalog, stage.master_key, stage.config)
    assert not stage.raw_store("dc-b").exists(CONFIG)
    (alert,) = open_alerts(stage, "unverifiable")
    assert "config cannot be checked" in alert.message


# -- where the records come from ----------------------------------------------------------


def test_enrollment_records_the_sealed_password_and_the_agents_config_digest(
        tmp_path, seaweed_session):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    suffix = uuid.uuid4().hex[:8]
    stage = make_stage(tmp_path, object_lock_days=1, stores=[
        StoreSetup(name, region, seaweed_session, f"e{name}-{suffix}", object_lock=True)
        for name, region in (("near", "r1"), ("far", "r2"))])
    config = os.urandom(155)

    def enroll(system: str, **digest) -> None:
        issued = enrollment.issue_token(
            stage.catalog, system=system, department="parks", policy="daemon-test",
            ca_sha256=stage.keystore.ca_fingerprint(), server="https://centre.test:8443",
            expires_in=dt.timedelta(hours=1))
        sealed = seal(stage.keystore.escrow_public_key(), b"password",
                      f"drd-repository-password:{system}".encode())
        enrollment.enroll(stage.catalog, EnrollRequest(
            token=issued.token.text.reveal(), hostname=system,
            agent_public_key=public_key_pem(Ed25519PrivateKey.generate().public_key())
            .decode(), sealed_password=base64.b64encode(sealed).decode(), **digest))
        return sealed

    sealed = enroll("fs2", config_sha256=hashlib.sha256(config).hexdigest(),
                    config_size=len(config))
    older = enroll("fs3")
    with stage.catalog.session() as session:
        records = {(system, key): (sha256, size, source)
                   for system, key, sha256, size, source in session.execute(
                       sa.select(System.name, RecordedObject.key, RecordedObject.sha256,
                                 RecordedObject.size, RecordedObject.source)
                       .join(System, System.id == RecordedObject.system_id))}
    assert records == {
        ("fs2", CONFIG): (hashlib.sha256(config).hexdigest(), 155, "agent at enrollment"),
        ("fs2", ESCROW_KEY): (hashlib.sha256(sealed).hexdigest(), len(sealed),
                              "agent at enrollment"),
        ("fs3", ESCROW_KEY): (hashlib.sha256(older).hexdigest(), len(older),
                              "agent at enrollment")}
    with pytest.raises(ValueError, match="come together"):
        EnrollRequest(token="t", hostname="h", agent_public_key="k", sealed_password="s",
                      config_sha256="a" * 64)


def test_the_agent_reads_back_the_config_restic_init_stored(tmp_path):
    from agents.enroll import config_digest
    from drd.errors import OperationError
    from drd.stores import FilesystemStore

    stores = [FilesystemStore(name, tmp_path / name) for name in ("a", "b", "c")]
    for store in stores:
        store.create_if_missing()
    config = os.urandom(155)
    stores[0].put(CONFIG, config)
    stores[1].put(CONFIG, config)  # c missed it: the others tell
    assert config_digest(stores) == (hashlib.sha256(config).hexdigest(), 155)
    assert config_digest(stores[2:]) is None  # nothing to send: the centre learns it
    stores[2].put(CONFIG, os.urandom(155))
    with pytest.raises(OperationError, match="different restic config"):
        config_digest(stores)

