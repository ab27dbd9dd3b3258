"""``drd keys change-passphrase | rotate-escrow | rotate-signing | finish-rotation`` on a
real home and catalog (SQLite, and PostgreSQL for the escrow rotation), with real restic
opening the repository through the re-sealed password.

After each rotation the centre must still serve: the master key opens every key and
store secret, the escrowed password unseals (audited) and opens the repository, drill
reports exported before still verify, the catalog copy in the stores is made with the
new keys. What the old key or passphrase opened must stay shut, and no secret may sit
in the catalog or the home in clear.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import click
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from drd.catalog.models import AuditEntry, Daemon, Drill, Store, StoreCredential, System
from drd.cli.main import cli
from drd.config import load_config
from drd.credentials.reconcile import credential_context
from drd.crypto.errors import CryptoError
from drd.crypto.keystore import KeyStore
from drd.crypto.masterkey import load_master_key
from drd.crypto.pem import public_key_pem
from drd.crypto.seal import password_context, unseal
from drd.crypto.signing import public_key_fingerprint
from drd.errors import DrdError, OperationError, UserError
from drd.recovery.container import read_header
from drd.recovery.copies import list_copies
from drd.restic import Repository
from drd.secrets import Secret
from drd.services import key_rotation
from drd.services.agents import build_assignment
from drd.services.centre import open_catalog, open_master_key
from drd.services.credentials import keys_for_assignment
from drd.services.escrow import unseal_password
from drd.services.stores import secret_context
from drd.stores.filesystem import FilesystemStore
from restore_drills.report import sign_report, verify_report_signature
from tests.integration.staging import StoreSetup, make_stage
from tests.integration.test_cli import drd as drd_process
from tests.unit.restore_drills.sample import report

pytestmark = pytest.mark.integration

OLD = "the old master passphrase"
NEW = "a brand new master passphrase"
STORE_SECRET = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY"
KIT = {"DRD_RECOVERY_PASSPHRASE": "recovery kit passphrase, long enough"}


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


def drd(*args: str, home: Path | None = None, env: dict | None = None,
        check: int | None = 0) -> Ran:
    """Run ``drd ARGS`` in this process (a subprocess costs ~1.7 s of start-up here; one
    test runs the real entry point); drd's errors map to their exit status and message
    as :func:`drd.console.runner.run` maps them."""
    environment = {name: None for name in os.environ
                   if name.startswith(("AWS_", "DRD_HOME", "DRD_MASTER", "DRD_NEW"))}
    if home is not None:
        environment["DRD_HOME"] = str(home)
    environment.update(env or {})
    result = CliRunner().invoke(cli, list(args), env=environment, standalone_mode=False)
    status, stderr = result.exit_code, result.stderr
    if isinstance(result.exception, DrdError):
        status, stderr = result.exception.exit_status, stderr + str(result.exception)
    elif isinstance(result.exception, click.UsageError):
        status, stderr = 2, stderr + str(result.exception)
    elif result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    if check is not None:
        assert status == check, (status, result.stdout, stderr)
    return Ran(status, result.stdout, stderr)


def file_stage(tmp_path: Path, database_url: str | None = None, restic_binary: str = "restic"):
    return make_stage(tmp_path, database_url=database_url, restic_binary=restic_binary, stores=[
        StoreSetup("dc-a", "eu-1", directory=tmp_path / "dc-a"),
        StoreSetup("region-b", "eu-2", directory=tmp_path / "region-b")])


def audit_entries(catalog, action: str) -> list[AuditEntry]:
    with catalog.read_session() as session:
        return list(session.scalars(sa.select(AuditEntry).where(AuditEntry.action == action)
                                    .order_by(AuditEntry.id)))


def no_leftovers(home: Path) -> bool:
    return not any((home / name).exists() for name in (
        key_rotation.STAGING_DIR, key_rotation.RETIRING_DIR, key_rotation.MARKER_FILE))


def add_signed_drills(stage, key) -> tuple[int, int]:
    """Two finished drills of fs1 signed with ``key``; the second changed after signing."""
    with stage.catalog.session() as session:
        system = session.scalar(sa.select(System).where(System.name == stage.system))
        store = session.scalar(sa.select(Store).where(Store.name == "dc-a"))
        ids = []
        for passed in (True, False):
            document = report(store="dc-a", passed=passed, reasons=[])
            row = Drill(system_id=system.id, store_id=store.id, snapshot_restic_id="ab" * 32,
                        started_at=dt.datetime(2026, 11, 27, tzinfo=dt.UTC),
                        finished_at=dt.datetime(2026, 11, 27, 0, 1, tzinfo=dt.UTC),
                        passed=passed, rto_seconds=document["rto_seconds"],
                        rpo_seconds=document["rpo_seconds"])
            session.add(row)
            session.flush()
            row.report = {**document, "id": row.id}
            row.signature = sign_report(key, row.report)
            ids.append(row.id)
        session.flush()
        changed = session.get(Drill, ids[1])
        changed.report = {**changed.report, "passed": True}  # forged after signing
    return ids[0], ids[1]


# -- change-passphrase ---------------------------------------------------------------------


def test_change_passphrase_reencrypts_everything_and_the_old_one_opens_nothing(
        tmp_path, monkeypatch):
    monkeypatch.setenv("DRD_MASTER_PASSPHRASE", OLD)
    stage = file_stage(tmp_path)
    home, keys = stage.home, stage.config.keys_dir
    with stage.catalog.session() as session:  # an S3 store's secret (never contacted here)
        session.add(Store(name="vault", kind="s3", url="s3://vault", region="eu-3",
                          endpoint="http://127.0.0.1:9", access_key_id="AKIAVAULT",
                          secret_encrypted=stage.master_key.encrypt(
                              STORE_SECRET.encode(), secret_context("vault"))))
    old_key_file = (keys / "escrow.key.enc").read_bytes()
    env = {"DRD_MASTER_PASSPHRASE": OLD, "DRD_NEW_MASTER_PASSPHRASE": NEW}

    # bad input first: a short one, the one in use; nothing changes
    short = drd("keys", "change-passphrase", home=home, check=2,
                env={**env, "DRD_NEW_MASTER_PASSPHRASE": "short"})
    assert "at least 12 characters" in short.stderr
    same = drd("keys", "change-passphrase", home=home, check=2,
               env={**env, "DRD_NEW_MASTER_PASSPHRASE": OLD})
    assert "the one in use" in same.stderr
    wrong_old = drd("keys", "change-passphrase", home=home, check=2,
                    env={**env, "DRD_MASTER_PASSPHRASE": "not the passphrase at all"})
    assert "wrong master passphrase" in wrong_old.stderr
    assert (keys / "escrow.key.enc").read_bytes() == old_key_file

    result = json.loads(drd_process("keys", "change-passphrase", "--json", home=home,
                                    env=env).stdout)
    assert result["counts"] == {"key_files": 4, "store_secrets": 1, "store_credentials": 0}
    assert no_leftovers(home)
    assert NEW not in drd("keys", "change-passphrase", home=home, check=2, env=env).stderr

    with pytest.raises(UserError, match="wrong master passphrase"):
        load_master_key(keys, Secret(OLD))
    with pytest.raises(CryptoError):  # the old key opens no key file
        stage.master_key.decrypt((keys / "escrow.key.enc").read_bytes(),
                                 "keystore:escrow.key.enc")
    new_key = load_master_key(keys, Secret(NEW))
    keystore = KeyStore(keys, new_key)
    assert keystore.escrow_private_key().public_key().public_bytes_raw() == \
        keystore.escrow_public_key().public_bytes_raw()
    keystore.signing_private_key()
    keystore.ca_private_key()
    with stage.catalog.session() as session:
        vault = session.scalar(sa.select(Store).where(Store.name == "vault"))
        assert new_key.decrypt(vault.secret_encrypted, secret_context("vault")) == \
            STORE_SECRET.encode()
        with pytest.raises(CryptoError):
            stage.master_key.decrypt(vault.secret_encrypted, secret_context("vault"))
        system = session.scalar(sa.select(System).where(System.name == stage.system))
        assignment = build_assignment(session, system, new_key,
                                      public_key_pem(keystore.escrow_public_key()).decode())
        assert [store.name for store in assignment.stores] == ["dc-a", "region-b"]
    # the escrow key still unseals (audited), and the centre's commands open with the new one
    assert unseal_password(stage.catalog, keystore, stage.system, actor="test",
                           reason="drill") == stage.password
    drd("keys", "export-recovery-kit", "-o", str(tmp_path / "kit.json"), home=home,
        env={"DRD_MASTER_PASSPHRASE": NEW, **KIT})
    refused = drd("keys", "export-recovery-kit", "-o", str(tmp_path / "kit2.json"), home=home,
                  check=2, env={"DRD_MASTER_PASSPHRASE": OLD, **KIT})
    assert "wrong master passphrase" in refused.stderr
    (entry,) = audit_entries(stage.catalog, "keys.change_passphrase")
    assert entry.details["store_secrets"] == 1 and entry.actor.startswith("cli:")
    for path in [*home.rglob("*")]:
        if path.is_file():
            data = path.read_bytes()
            assert STORE_SECRET.encode() not in data, path
            assert stage.password.reveal().encode() not in data, path
            assert NEW.encode() not in data and OLD.encode() not in data, path
    stage.catalog.dispose()


SYSTEM_SECRETS = {"AKFS1OLD": "fs1-superseded-secret-key-0000000000000",
                  "AKFS1NEW": "fs1-active-secret-key-111111111111111111"}


def add_systems_own_keys(stage, master_key) -> None:
    """A brokered store ``vault`` (never contacted here) where fs1 holds keys of its own:
    an active one, the superseded one it still uses until it confirms, a disabled one."""
    with stage.catalog.session() as session:
        store = Store(name="vault", kind="s3", url="s3://vault", region="eu-3",
                      endpoint="http://127.0.0.1:9", object_lock=True, credentials="seaweedfs",
                      access_key_id="AKIAVAULT", secret_encrypted=master_key.encrypt(
                          STORE_SECRET.encode(), secret_context("vault")))
        session.add(store)
        session.flush()
        system = session.scalar(sa.select(System).where(System.name == stage.system))
        for key, state in (("AKFS1OLD", "superseded"), ("AKFS1NEW", "active")):
            session.add(StoreCredential(
                system_id=system.id, store_id=store.id, state=state, principal="drd-fs1",
                access_key_id=key, secret_encrypted=master_key.encrypt(
                    SYSTEM_SECRETS[key].encode(), credential_context("vault", key))))
        session.add(StoreCredential(system_id=system.id, store_id=store.id, state="disabled",
                                    principal="drd-fs1", access_key_id="AKFS1GONE"))


def test_change_passphrase_reencrypts_the_systems_own_keys(tmp_path, database_url):
    stage = file_stage(tmp_path, database_url)
    add_systems_own_keys(stage, stage.master_key)

    result = key_rotation.change_passphrase(stage.config, stage.catalog, stage.master_key,
                                            Secret(NEW), actor="test")
    assert no_leftovers(stage.home)
    new_key = load_master_key(stage.config.keys_dir, Secret(NEW))
    with stage.catalog.session() as session:
        system = session.scalar(sa.select(System).where(System.name == stage.system))
        vault = session.scalar(sa.select(Store).where(Store.name == "vault"))
        # what the agent is handed still opens: its own key, not the store's
        handed = keys_for_assignment(session, system, [vault], new_key, allow_shared=False)
        assert handed["vault"].access_key_id == "AKFS1NEW"
        assert handed["vault"].secret_access_key.reveal() == SYSTEM_SECRETS["AKFS1NEW"]
        for row in session.scalars(sa.select(StoreCredential)
                                   .where(StoreCredential.secret_encrypted.is_not(None))):
            context = credential_context("vault", row.access_key_id)
            assert new_key.decrypt(row.secret_encrypted, context) == \
                SYSTEM_SECRETS[row.access_key_id].encode()
            with pytest.raises(CryptoError):  # the old master key opens none of them
                stage.master_key.decrypt(row.secret_encrypted, context)
    assert result.counts == {"key_files": 4, "store_secrets": 1, "store_credentials": 2}
    (entry,) = audit_entries(stage.catalog, "keys.change_passphrase")
    assert entry.details["store_credentials"] == 2
    for path in [*stage.home.rglob("*")]:
        if path.is_file():
            assert not any(secret.encode() in path.read_bytes()
                           for secret in SYSTEM_SECRETS.values()), path
    stage.catalog.dispose()


def test_a_systems_key_the_master_key_cannot_open_stops_the_change(tmp_path):
    stage = file_stage(tmp_path)
    add_systems_own_keys(stage, stage.master_key)
    with stage.catalog.session() as session:  # encrypted under another context: damaged
        row = session.scalar(sa.select(StoreCredential)
                             .where(StoreCredential.access_key_id == "AKFS1NEW"))
        row.secret_encrypted = stage.master_key.encrypt(b"x", "store-credential:vault:other")
    keys = stage.config.keys_dir
    before = {path.name: path.read_bytes() for path in keys.iterdir() if path.is_file()}
    with pytest.raises(OperationError, match="fs1's key AKFS1NEW in store 'vault'"):
        key_rotation.change_passphrase(stage.config, stage.catalog, stage.master_key,
                                       Secret(NEW), actor="test")
    assert no_leftovers(stage.home)
    assert {path.name: path.read_bytes() for path in keys.iterdir() if path.is_file()} == before
    with stage.catalog.read_session() as session:  # nothing re-encrypted, nothing audited
        vault = session.scalar(sa.select(Store).where(Store.name == "vault"))
        assert stage.master_key.decrypt(vault.secret_encrypted, secret_context("vault")) == \
            STORE_SECRET.encode()
        old = session.scalar(sa.select(StoreCredential)
                             .where(StoreCredential.access_key_id == "AKFS1OLD"))
        assert stage.master_key.decrypt(old.secret_encrypted,
                                        credential_context("vault", "AKFS1OLD")) == \
            SYSTEM_SECRETS["AKFS1OLD"].encode()
    assert audit_entries(stage.catalog, "keys.change_passphrase") == []
    stage.catalog.dispose()


# -- rotate-escrow -----------------------------------------------------------------------------


def test_rotate_escrow_reseals_every_password_and_restic_still_opens(tmp_path, database_url,
                                                                     restic_binary):
    stage = file_stage(tmp_path, database_url, restic_binary)
    stage.init("dc-a")
    stage.write_files(count=5, size=2_000)
    snapshot = stage.backup("dc-a")
    home, keys = stage.home, stage.config.keys_dir
    kit = tmp_path / "kit-before.json"
    drd("keys", "export-recovery-kit", "-o", str(kit), home=home, env=KIT)
    old_private = stage.keystore.escrow_private_key()
    with stage.catalog.read_session() as session:
        sealed_before = session.scalar(sa.select(System.sealed_password))

    result = json.loads(drd("keys", "rotate-escrow", "--json", home=home).stdout)
    assert result["kind"] == "escrow" and result["counts"] == {"systems": 1}
    assert result["new_key_sha256"] != result["old_key_sha256"]
    assert result["catalog_copy_problems"] == []
    assert no_leftovers(home)

    keystore = KeyStore(keys, open_master_key(load_config(home)))
    new_private = keystore.escrow_private_key()
    assert new_private.public_key().public_bytes_raw() == \
        keystore.escrow_public_key().public_bytes_raw() != \
        old_private.public_key().public_bytes_raw()
    with stage.catalog.read_session() as session:
        sealed_after = session.scalar(sa.select(System.sealed_password))
    assert sealed_after != sealed_before
    with pytest.raises(CryptoError):  # the old key cannot open what is sealed now
        unseal(old_private, sealed_after, password_context(stage.system))
    # no key file of the home holds the old escrow private key any more
    master_key = open_master_key(load_config(home))
    for path in keys.rglob("*.key.enc"):
        der = master_key.decrypt(path.read_bytes(), f"keystore:{path.name}")
        assert old_private.private_bytes_raw() not in der, path

    # the centre unseals (audited) and real restic opens the repository with the password
    password = unseal_password(stage.catalog, keystore, stage.system, actor="test",
                               reason="drill")
    assert password == stage.password
    url, env = stage.raw_store("dc-a").restic_location()
    snapshots = stage.restic.snapshots(Repository(url=url, password=password, env=env,
                                                  display="dc-a/fs1"))
    assert [s.id for s in snapshots] == [snapshot]
    unseals = audit_entries(stage.catalog, "escrow.unseal")
    assert any(f"rotation {result['rotation']}" in entry.details["reason"] for entry in unseals)
    (rotated,) = audit_entries(stage.catalog, "keys.rotate_escrow")
    assert rotated.details["new_key_sha256"] == result["new_key_sha256"]

    # each store's newest catalog copy is sealed to the new key; the old kit no longer fits
    for name in ("dc-a", "region-b"):
        store = FilesystemStore(name, tmp_path / name)
        newest = list_copies(store)[0]
        with open(tmp_path / name / newest, "rb") as handle:
            assert read_header(handle).document["escrow_key_sha256"] == \
                result["new_key_sha256"]
    check = drd("keys", "check-recovery-kit", str(kit), home=home, check=1)
    assert "DIFFERENT keys" in check.stdout
    stage.catalog.dispose()


# -- rotate-signing ------------------------------------------------------------------------------


def test_rotate_signing_keeps_what_was_signed_verifiable(tmp_path):
    stage = file_stage(tmp_path)
    home, keys = stage.home, stage.config.keys_dir
    old_key = stage.keystore.signing_private_key()
    old_fingerprint = public_key_fingerprint(old_key.public_key())
    good, forged = add_signed_drills(stage, old_key)
    exported = tmp_path / "before.json"
    drd("drill", "report", str(good), "--format", "json", "-o", str(exported), home=home)

    result = json.loads(drd("keys", "rotate-signing", "--json", home=home).stdout)
    assert result["old_key_sha256"] == old_fingerprint != result["new_key_sha256"]
    assert result["counts"] == {"drills_signed_again": 1}
    assert result["unverified_drills"] == [forged]
    assert result["catalog_copy_problems"] == [] and no_leftovers(home)
    assert (keys / "retired" / f"signing-{old_fingerprint}.pub.pem").exists()

    # a report exported before: verified with the retired key, which is named
    verified = drd("drill", "verify-report", str(exported), home=home)
    assert verified.stdout.strip() == (f"OK: signed by {old_fingerprint} (a retired signing "
                                       "key of this centre)")
    # the catalog row was signed again: exports go on, with the new key
    after = tmp_path / "after.json"
    drd("drill", "report", str(good), "--format", "json", "-o", str(after), home=home)
    assert drd("drill", "verify-report", str(after), home=home).stdout.strip() == \
        f"OK: signed by {result['new_key_sha256']}"
    assert after.read_bytes() == exported.read_bytes()
    # the forged row is still refused, not signed afresh
    refused = drd("drill", "report", str(forged), "-o", str(tmp_path / "f.html"), home=home,
                  check=1)
    assert "does not match the signature" in refused.stderr
    keystore = KeyStore(keys, stage.master_key)
    with stage.catalog.read_session() as session:
        row = session.get(Drill, good)
        verify_report_signature(keystore.signing_public_key(), row.report, row.signature)
    (entry,) = audit_entries(stage.catalog, "keys.rotate_signing")
    assert entry.details["drills_unverified"] == [forged]
    newest = list_copies(FilesystemStore("dc-a", tmp_path / "dc-a"))[0]
    with open(tmp_path / "dc-a" / newest, "rb") as handle:
        assert read_header(handle).document["signing_key_sha256"] == result["new_key_sha256"]
    stage.catalog.dispose()


def test_a_copy_signed_by_a_retired_key_is_recovered_and_says_so(tmp_path):
    home = tmp_path / "centre"
    drd("init", "--home", str(home))
    for name, region in (("near", "r1"), ("away", "r2")):
        drd("store", "add", name, "--url", f"file://{tmp_path / name}", "--region", region,
            "--home", str(home))
    drd("catalog", "backup", "--home", str(home))
    old = KeyStore(home / "keys", None).signing_public_key()
    # rotated without writing a new copy (as when every store was down): the newest copy
    # in the stores is signed by the key that is now retired
    config = load_config(home)
    catalog = open_catalog(config)
    key_rotation.rotate_signing(config, catalog, open_master_key(config), actor="test")
    catalog.dispose()
    kit = tmp_path / "kit.json"
    drd("keys", "export-recovery-kit", "-o", str(kit), "--home", str(home), env=KIT)
    recovered = drd("recover-catalog", "--home", str(tmp_path / "new"), "--url",
                    f"file://{tmp_path / 'near'}", "--recovery-kit", str(kit), env=KIT)
    fingerprint = public_key_fingerprint(old)
    assert f"the retired signing key {fingerprint} (listed in the kit)" in recovered.stderr
    assert (tmp_path / "new" / "keys" / "retired" / f"signing-{fingerprint}.pub.pem").exists()


# -- interruptions and refusals ------------------------------------------------------------------


class Crash(BaseException):
    """Stands for the process dying: nothing after it runs."""


def test_a_rotation_stopped_after_its_commit_is_finished(tmp_path, monkeypatch):
    stage = file_stage(tmp_path)
    home, keys = stage.home, stage.config.keys_dir
    old_public = (keys / "escrow.pub.pem").read_bytes()

    def crash(_home):
        raise Crash()

    monkeypatch.setattr(key_rotation, "_swap", crash)
    with pytest.raises(Crash):
        key_rotation.rotate_escrow(stage.config, stage.catalog, stage.master_key, actor="t")
    monkeypatch.undo()
    # committed: the catalog holds passwords sealed to the staged key, keys/ the old one
    assert (keys / "escrow.pub.pem").read_bytes() == old_public
    assert (home / key_rotation.STAGING_DIR).is_dir()
    # no daemon starts on the old keys meanwhile
    assert "finish-rotation" in drd("serve", home=home, check=2).stderr
    # and the crash came between the two renames
    keys.rename(home / key_rotation.RETIRING_DIR)
    finished = json.loads(drd("keys", "finish-rotation", "--json", home=home).stdout)
    assert finished["outcome"] == "finished" and finished["kind"] == "escrow"
    assert no_leftovers(home) and (keys / "escrow.pub.pem").read_bytes() != old_public
    keystore = KeyStore(keys, stage.master_key)
    assert unseal_password(stage.catalog, keystore, stage.system, actor="t",
                           reason="check") == stage.password
    assert json.loads(drd("keys", "finish-rotation", "--json", home=home).stdout)[
        "outcome"] == "none"
    stage.catalog.dispose()


def test_a_rotation_stopped_before_its_commit_is_undone(tmp_path, monkeypatch):
    stage = file_stage(tmp_path)
    home, keys = stage.home, stage.config.keys_dir
    good, _ = add_signed_drills(stage, stage.keystore.signing_private_key())
    before = {path.name: path.read_bytes() for path in keys.iterdir() if path.is_file()}
    real_record = key_rotation.audit.record

    def crash_at_commit(session, actor, action, target, **details):
        if action == "keys.rotate_signing":
            raise Crash()
        return real_record(session, actor, action, target, **details)

    monkeypatch.setattr(key_rotation.audit, "record", crash_at_commit)
    monkeypatch.setattr(key_rotation, "_undo", lambda *args: None)  # died: no clean-up
    with pytest.raises(Crash):
        key_rotation.rotate_signing(stage.config, stage.catalog, stage.master_key, actor="t")
    monkeypatch.undo()
    assert (home / key_rotation.MARKER_FILE).exists()
    # any rotation command first undoes it; here the explicit one
    undone = json.loads(drd("keys", "finish-rotation", "--json", home=home).stdout)
    assert undone["outcome"] == "discarded" and no_leftovers(home)
    assert {path.name: path.read_bytes() for path in keys.iterdir() if path.is_file()} == before
    with stage.catalog.read_session() as session:
        row = session.get(Drill, good)
        verify_report_signature(stage.keystore.signing_public_key(), row.report,
                                row.signature)
    # a partial staging directory (no marker) is removed too
    (home / key_rotation.STAGING_DIR).mkdir()
    assert json.loads(drd("keys", "finish-rotation", "--json", home=home).stdout)[
        "outcome"] == "discarded"
    stage.catalog.dispose()


def test_one_rotation_at_a_time(tmp_path):
    """Another process rotating (it holds the lock) makes every keys command wait its
    turn: two at once could remove each other's staged keys."""
    import subprocess
    import sys

    stage = file_stage(tmp_path)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, sys, time; f = open(sys.argv[1], 'a'); "
         "fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)",
         str(stage.home / key_rotation.LOCK_FILE)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        refused = drd("keys", "finish-rotation", home=stage.home, check=2)
        assert "another drd keys command" in refused.stderr
    finally:
        holder.kill()
        holder.wait()
    stage.catalog.dispose()


def test_a_running_daemon_is_refused_and_nothing_changes(tmp_path):
    stage = file_stage(tmp_path)
    keys = stage.config.keys_dir
    with stage.catalog.session() as session:
        session.add(Daemon(id="d1", hostname="centre-1", pid=os.getpid()))
    before = (keys / "escrow.pub.pem").read_bytes()
    for command in ("rotate-escrow", "rotate-signing"):
        refused = drd("keys", command, home=stage.home, check=2)
        assert "drd serve is running (centre-1 pid" in refused.stderr
    assert (keys / "escrow.pub.pem").read_bytes() == before
    assert audit_entries(stage.catalog, "escrow.unseal") == []
    stage.catalog.dispose()


def test_the_administrators_guide_names_only_keys_commands_that_exist():
    from drd.cli.keys import keys_group

    text = (Path(__file__).parents[2] / "docs" / "administrators.md").read_text()
    named = set(re.findall(r"drd keys ([a-z-]+)", text))
    assert {"change-passphrase", "rotate-escrow", "rotate-signing", "finish-rotation",
            "export-recovery-kit", "check-recovery-kit"} <= named
    assert named <= set(keys_group.commands), named - set(keys_group.commands)
