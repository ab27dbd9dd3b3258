"""The centre survives its own disaster (issue 7 point 2), on real components.

A centre with an enrolled system backs up with real restic into two SeaweedFS stores
(one with Object Lock), exports its recovery kit and writes catalog copies; then its home
and catalog are deleted, a new centre is recovered from the locked store alone with
the real ``drd`` command line, and a drill and a restore pass on it. Around that: a
changed copy is refused (an older good one is taken instead), a wrong passphrase or a
taken home changes nothing, the kit holds no key in clear, the catalog round-trips on
SQLite and PostgreSQL, and the leader's copier writes on its schedule.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import io
import json
import os
import secrets
import shutil
import stat
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from drd.catalog import Catalog, migrate
from drd.catalog.models import AuditEntry, SnapshotManifest, Store, Token
from drd.catalog.models import System as SystemRow
from drd.cli.main import main
from drd.config import load_config
from drd.crypto.keystore import KeyStore
from drd.daemon.catalog_copy import FIRST_DELAY_SECONDS, RETRY_SECONDS, CatalogCopier
from drd.recovery.copies import COPY_PREFIX, LATEST, list_copies, publish
from drd.recovery.dump import TABLES, DamagedDump, dump_lines, load_lines
from drd.services.centre import open_catalog, open_master_key
from drd.services.escrow import unseal_password
from drd.services.stores import open_registered, store_rows
from drd.services.tokens import authenticate, create_token
from drd.stores import FilesystemStore
from tests.integration.staging import StoreSetup, make_stage

pytestmark = [pytest.mark.integration]

KIT_PASSPHRASE = "purple elephant juggling seventeen lanterns"


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


def drd(*args: str, env: dict | None = None, check: int | None = 0) -> Ran:
    """Run ``drd`` in this process through its real entry point (argument parsing, exit
    statuses, stdout and stderr as the console script has them), with only ``env``'s
    DRD_* and AWS_* variables set; assert its exit status is ``check`` (unless None)."""
    saved = dict(os.environ)
    for name in [name for name in os.environ if name.startswith(("AWS_", "DRD_"))]:
        del os.environ[name]
    os.environ.update(env or {})
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main(list(args))
                code = 0
            except SystemExit as done:
                code = done.code if isinstance(done.code, int) else 1
    finally:
        os.environ.clear()
        os.environ.update(saved)
    result = Ran(code, out.getvalue(), err.getvalue())
    if check is not None:
        assert result.returncode == check, (result.returncode, result.stdout, result.stderr)
    return result


def passphrase(value: str = KIT_PASSPHRASE) -> dict:
    return {"DRD_RECOVERY_PASSPHRASE": value}


def private_bytes(key) -> bytes:
    return key.private_bytes(Encoding.DER, PrivateFormat.PKCS8, NoEncryption())


def delete_centre(stage, tmp_path: Path) -> None:
    """The disaster: the home (keys, settings) and the catalog database are gone."""
    stage.catalog.dispose()
    shutil.rmtree(stage.home)
    for path in tmp_path.glob("catalog.sqlite*"):
        path.unlink()


@pytest.mark.slow
def test_a_centre_recovered_from_one_store_drills_and_restores(tmp_path, seaweed,
                                                               restic_binary):
    (server,) = seaweed(1)
    stage = make_stage(tmp_path, restic_binary=restic_binary,
                       stores=[StoreSetup("dc-a", "region-a", server, "rec-a"),
                               StoreSetup("vault", "region-b", server, "rec-vault",
                                          object_lock=True)])
    stage.init("dc-a")
    stage.write_files(8, size=20_000)
    snapshot = stage.backup("dc-a")
    files = [path for path in stage.source.rglob("*") if path.is_file()]
    stage.report(snapshot, files=len(files), size=sum(path.stat().st_size for path in files))
    stage.sign_manifest(snapshot)
    stage.copy_all("dc-a")
    operator = create_token(stage.catalog, role="operator", name="ops-1")
    agent_token = secrets.token_urlsafe(32)  # as enrollment keeps it: the hash alone
    with stage.catalog.session() as session:
        session.add(Token(name="agent-fs1", role="agent", systems=["fs1"],
                          token_hash=Token.hash_token(agent_token)))
    with stage.catalog.session() as session:
        before = session.scalar(sa.select(SystemRow).where(SystemRow.name == "fs1"))
        sealed, agent_key = before.sealed_password, before.agent_public_key
    home = {"DRD_HOME": str(stage.home)}

    # the kit: 0600, and no private key in clear in any encoding
    kit = tmp_path / "kit.json"
    exported = drd("keys", "export-recovery-kit", "-o", str(kit), "--json",
                   env=home | passphrase())
    assert stat.S_IMODE(kit.stat().st_mode) == 0o600
    data = kit.read_bytes()
    for key in (stage.keystore.escrow_private_key(), stage.keystore.signing_private_key(),
                stage.keystore.ca_private_key()):
        der = private_bytes(key)
        for form in (der, der[-32:], base64.b64encode(der), der[-32:].hex().encode()):
            assert form not in data
    assert KIT_PASSPHRASE.encode() not in data and b"PRIVATE KEY" not in data
    assert json.loads(exported.stdout)["ca_certificate_sha256"] == stage.keystore.ca_fingerprint()
    checked = drd("keys", "check-recovery-kit", str(kit), "--json", env=home)
    assert json.loads(checked.stdout)["matches_this_centre"] is True

    # two copies into every store; the locked bucket takes both and a new `latest`
    for _ in range(2):
        written = json.loads(drd("catalog", "backup", "--json", env=home).stdout)
        assert [store["ok"] for store in written["stores"]] == [True, True]
    delete_centre(stage, tmp_path)

    # a wrong passphrase: exit 2, and nothing written
    new_home = tmp_path / "rebuilt"
    aws = {"AWS_ACCESS_KEY_ID": server.access_key, "AWS_SECRET_ACCESS_KEY": server.secret_key}
    recover_args = ("recover-catalog", "--home", str(new_home), "--url", "s3://rec-vault",
                    "--endpoint", server.endpoint, "--region", "region-b",
                    "--recovery-kit", str(kit))
    wrong = drd(*recover_args, env=aws | passphrase("not the right passphrase"), check=2)
    assert "wrong recovery passphrase" in wrong.stderr
    assert not new_home.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".rebuilt")] == []

    recovered = json.loads(drd(*recover_args, "--json", env=aws | passphrase()).stdout)
    assert recovered["recovered_store"] == "vault"
    assert recovered["stores_needing_keys"] == ["dc-a"]
    assert recovered["skipped_copies"] == []
    assert recovered["ca_fingerprint"] == json.loads(exported.stdout)["ca_certificate_sha256"]
    assert recovered["counts"]["systems"] == 1 and recovered["counts"]["snapshots"] == 1
    assert recovered["counts"]["snapshot_manifests"] == 1
    assert sorted(p.name for p in new_home.iterdir()) == ["catalog.sqlite", "drd.yaml", "keys"]
    assert secret_free(new_home, server.secret_key)

    # the rebuilt centre: same system, password, agent key, tokens; a drill passes
    config = load_config(new_home)
    catalog = open_catalog(config)
    master_key = open_master_key(config)
    keystore = KeyStore(config.keys_dir, master_key)
    with catalog.session() as session:
        after = session.scalar(sa.select(SystemRow).where(SystemRow.name == "fs1"))
        assert (after.sealed_password, after.agent_public_key) == (sealed, agent_key)
        stores = {row.name: row for row in session.scalars(sa.select(Store))}
        assert stores["dc-a"].secret_encrypted is None
        assert stores["vault"].secret_encrypted is not None
        assert session.scalar(sa.select(AuditEntry.action).where(
            AuditEntry.action == "catalog.recover")) == "catalog.recover"
    assert authenticate(catalog, operator.token.reveal()).name == "ops-1"
    assert authenticate(catalog, agent_token).systems == ("fs1",)

    drill = drd("--home", str(new_home), "drill", "run", "fs1", "--store", "vault",
                "--json", check=None)
    assert drill.returncode == 0, drill.stderr
    report = json.loads(drill.stdout)
    assert report["passed"] is True and report["store"] == "vault"
    assert report["snapshot"] == snapshot

    # the escrowed password unseals with the recovered escrow key
    assert unseal_password(catalog, keystore, "fs1", actor="test",
                           reason="check") == stage.password
    # a restore with drd restore on the rebuilt centre (from the one store it has keys for)
    target = tmp_path / "restored"
    restored = json.loads(drd("--home", str(new_home), "restore", "fs1", "--target",
                              str(target), "--verify", "--json").stdout)
    assert restored["snapshot"] == snapshot and restored["store"] == "vault"
    assert restored["files"] == len(files)
    for path in files:
        assert (target / path.relative_to(path.anchor)).read_bytes() == path.read_bytes()

    # the other store's keys re-entered: copies go to both stores again
    drd("--home", str(new_home), "store", "set-keys", "dc-a", env=aws)
    again = json.loads(drd("--home", str(new_home), "catalog", "backup", "--json").stdout)
    assert [store["ok"] for store in again["stores"]] == [True, True]
    catalog.dispose()


def secret_free(home: Path, secret: str) -> bool:
    """No file of the home holds the store's secret key in clear."""
    return all(secret.encode() not in path.read_bytes()
               for path in home.rglob("*") if path.is_file())


# -- file stores: fast checks of refusals --------------------------------------------------


@pytest.fixture
def file_centre(tmp_path):
    """A centre with two file stores, one catalog copy in each, and a kit."""
    home = tmp_path / "centre"
    drd("init", "--home", str(home))
    for name, region in (("near", "r1"), ("away", "r2")):
        drd("store", "add", name, "--url", f"file://{tmp_path / name}", "--region", region,
            "--home", str(home))
    kit = tmp_path / "kit.json"
    drd("keys", "export-recovery-kit", "-o", str(kit), "--home", str(home), env=passphrase())
    drd("catalog", "backup", "--home", str(home))
    return home, kit


def recover_from(tmp_path: Path, kit: Path, store: str, home: Path, *,
                 env: dict | None = None, check: int = 0) -> Ran:
    return drd("recover-catalog", "--home", str(home), "--url", f"file://{tmp_path / store}",
               "--recovery-kit", str(kit), "--json", env=passphrase() | (env or {}),
               check=check)


def test_a_changed_copy_is_refused_and_the_newest_good_one_taken(tmp_path, file_centre):
    home, kit = file_centre
    drd("catalog", "backup", "--home", str(home))  # a second, newer copy
    store = FilesystemStore("near", tmp_path / "near")
    newest, older = list_copies(store)[:2]
    path = tmp_path / "near" / newest
    body = bytearray(path.read_bytes())
    body[-100] ^= 0x01  # in the encrypted frames
    path.write_bytes(bytes(body))

    result = json.loads(recover_from(tmp_path, kit, "near", tmp_path / "one").stdout)
    assert result["copy"] == older
    assert result["skipped_copies"][0]["copy"] == newest
    assert "changed" in result["skipped_copies"][0]["reason"]

    # every copy changed: refused, exit 1, nothing written
    (tmp_path / "near" / older).write_bytes(b"DRDCOPY1" + bytes(200))
    refused = recover_from(tmp_path, kit, "near", tmp_path / "two", check=1)
    assert "none of the 2 catalog copies" in refused.stderr
    assert not (tmp_path / "two").exists()


def test_an_older_copy_under_a_newer_name_is_refused(tmp_path, file_centre):
    """Copy names are not signed: whoever holds a store's keys (every agent of it) could
    put an old, genuinely signed copy under a newer name to have a stale catalog (revoked
    tokens back, say) recovered. The signed time must match the name."""
    home, kit = file_centre
    store = FilesystemStore("near", tmp_path / "near")
    (genuine,) = list_copies(store)[:1]
    renamed = genuine.replace("catalog-2", "catalog-9", 1)  # the year 9xxx: the newest
    (tmp_path / "near" / renamed).write_bytes((tmp_path / "near" / genuine).read_bytes())
    result = json.loads(recover_from(tmp_path, kit, "near", tmp_path / "one").stdout)
    assert result["copy"] == genuine
    assert result["skipped_copies"][0]["copy"] == renamed
    assert "does not match its name" in result["skipped_copies"][0]["reason"]


def test_another_centres_kit_is_refused(tmp_path, file_centre):
    _, _ = file_centre
    other = tmp_path / "other"
    drd("init", "--home", str(other))
    foreign_kit = tmp_path / "foreign.json"
    drd("keys", "export-recovery-kit", "-o", str(foreign_kit), "--home", str(other),
        env=passphrase())
    refused = recover_from(tmp_path, foreign_kit, "away", tmp_path / "new", check=1)
    assert "another centre's key" in refused.stderr
    assert not (tmp_path / "new").exists()
    checked = drd("keys", "check-recovery-kit", str(foreign_kit), "--home",
                  str(tmp_path / "centre"), check=1)
    assert "DIFFERENT keys" in checked.stdout


def test_a_taken_home_a_short_passphrase_and_a_non_kit_are_bad_input(tmp_path, file_centre):
    home, kit = file_centre
    taken = recover_from(tmp_path, kit, "near", home, check=2)
    assert "already holds a drd centre" in taken.stderr
    short = drd("keys", "export-recovery-kit", "-o", str(tmp_path / "k2.json"), "--home",
                str(home), env=passphrase("too short"), check=2)
    assert "at least 12 characters" in short.stderr and not (tmp_path / "k2.json").exists()
    again = drd("keys", "export-recovery-kit", "-o", str(kit), "--home", str(home),
                env=passphrase(), check=2)
    assert "already exists" in again.stderr
    (tmp_path / "notakit.json").write_text("{}")
    notakit = drd("recover-catalog", "--home", str(tmp_path / "n"), "--url",
                  f"file://{tmp_path / 'near'}", "--recovery-kit",
                  str(tmp_path / "notakit.json"), env=passphrase(), check=2)
    assert "not a drd recovery kit" in notakit.stderr
    nothing = drd("recover-catalog", "--home", str(tmp_path / "n"), "--url",
                  f"file://{tmp_path / 'empty'}", "--recovery-kit", str(kit),
                  env=passphrase(), check=None)
    assert nothing.returncode in (1, 2) and not (tmp_path / "n").exists()
    no_passphrase = drd("recover-catalog", "--home", str(tmp_path / "n"), "--url",
                        f"file://{tmp_path / 'near'}", "--recovery-kit", str(kit), check=2)
    assert "DRD_RECOVERY_PASSPHRASE" in no_passphrase.stderr


# -- the catalog stream on both databases --------------------------------------------------


def test_the_catalog_round_trips_on_sqlite_and_postgresql(tmp_path, database_url,
                                                          restic_binary):
    staged = tmp_path / "stage"  # the fixture's SQLite file is tmp_path/catalog.sqlite
    staged.mkdir()
    stage = make_stage(staged, restic_binary=restic_binary,
                       stores=[StoreSetup("near", "r1", directory=tmp_path / "near"),
                               StoreSetup("away", "r2", directory=tmp_path / "away")])
    stage.init("near")
    stage.write_files(3)
    snapshot = stage.backup("near")
    stage.report(snapshot, {"near": True, "away": False}, files=3, size=60_000)
    stage.sign_manifest(snapshot)
    create_token(stage.catalog, role="operator", name="ops-1")
    lines = list(dump_lines(stage.catalog, {"workers": 3}))

    migrate(database_url)
    target = Catalog(database_url)
    try:
        with target.session() as session:
            result = load_lines(lines, session)
        assert result.settings == {"workers": 3}
        for model, skipped in TABLES:
            assert rows(target, model, skipped) == rows(stage.catalog, model, skipped), model
        with target.session() as session:  # the sequences moved past the loaded ids
            assert session.scalar(sa.select(SnapshotManifest.content))
            session.add(Store(name="later", kind="file", url="file:///x", region="r3"))
            session.flush()
            assert session.scalar(sa.select(Store.id).where(Store.name == "later")) == 3
    finally:
        target.dispose()
    fresh = f"sqlite:///{tmp_path / 'fresh.sqlite'}"
    migrate(fresh)
    with Catalog(fresh) as cut, pytest.raises(DamagedDump, match="cut short"), \
            cut.session() as session:
        load_lines(lines[:-1], session)
    with Catalog(fresh) as cut, cut.read_session() as session:  # rolled back: empty
        assert session.scalar(sa.select(sa.func.count()).select_from(Store)) == 0


def rows(catalog: Catalog, model, skipped) -> list[dict]:
    table = model.__table__
    with catalog.read_session() as session:
        return [{key: value for key, value in row.items() if key not in skipped}
                for row in session.execute(sa.select(table).order_by(table.c.id)).mappings()]


# -- the leader's copier ----------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_copier_writes_after_a_delay_on_change_and_retries_a_failed_store(tmp_path):
    home = tmp_path / "centre"
    drd("init", "--home", str(home))
    drd("store", "add", "near", "--url", f"file://{tmp_path / 'near'}", "--region", "r1",
        "--home", str(home))
    config = load_config(home)
    catalog = open_catalog(config)
    master_key = open_master_key(config)
    keystore = KeyStore(config.keys_dir, master_key)
    clock = Clock()
    copier = CatalogCopier(config, catalog, master_key, keystore, clock=clock)
    near = FilesystemStore("near", tmp_path / "near")

    assert copier.tick() is None  # not at once after starting to lead
    clock.now += FIRST_DELAY_SECONDS
    first = copier.tick()
    assert first is not None and [store.ok for store in first.stores] == [True]
    assert json.loads(b"".join(near.get(LATEST)))["key"] == first.key
    clock.now += 60
    assert copier.tick() is None  # nothing changed, the interval has not passed

    # a new store that cannot be written (its directory is a file): the change is copied
    # soon, the good store gets it, the bad one is retried
    (tmp_path / "blocked").write_text("not a directory")
    with catalog.session() as session:
        session.add(Store(name="blocked", kind="file", url=f"file://{tmp_path / 'blocked'}",
                          region="r2"))
    clock.now += 600
    second = copier.tick()
    assert second is not None
    assert {store.store: store.ok for store in second.stores} == {"near": True,
                                                                  "blocked": False}
    assert copier.retry_at == clock.now + RETRY_SECONDS
    clock.now += RETRY_SECONDS
    (tmp_path / "blocked").unlink()
    (tmp_path / "blocked").mkdir()
    third = copier.tick()
    assert third is not None and all(store.ok for store in third.stores)
    assert copier.retry_at is None
    assert len(list_copies(near)) == 3
    assert all(key.startswith(COPY_PREFIX) for key in list_copies(near))
    clock.now += config.catalog_copy_minutes * 60
    assert copier.tick() is not None  # the interval
    catalog.dispose()


def test_old_generations_are_pruned(tmp_path):
    home = tmp_path / "centre"
    drd("init", "--home", str(home))
    drd("store", "add", "near", "--url", f"file://{tmp_path / 'near'}", "--region", "r1",
        "--home", str(home))
    config = load_config(home)
    catalog = open_catalog(config)
    master_key = open_master_key(config)
    keystore = KeyStore(config.keys_dir, master_key)
    keys = [publish(catalog, master_key, keystore, config).key for _ in range(7)]
    near = FilesystemStore("near", tmp_path / "near")
    assert list_copies(near) == sorted(keys, reverse=True)[:5]
    catalog.dispose()


@pytest.mark.slow
def test_copies_in_an_object_lock_store_are_locked_and_pruned_once_their_lock_ends(
        tmp_path, seaweed_session, restic_binary):
    suffix = secrets.token_hex(4)
    stage = make_stage(tmp_path, restic_binary=restic_binary, object_lock_days=3, stores=[
        StoreSetup(name, region, seaweed_session, f"{name}-{suffix}", object_lock=True)
        for name, region in (("vault", "r1"), ("far", "r2"))])
    vault = stage.raw_store("vault")
    rows = {row.name: row for row in store_rows(stage.catalog, [])}
    root = open_registered(rows["vault"], stage.master_key)  # the store's root
    start = dt.datetime.now(dt.UTC)
    keys = [publish(stage.catalog, stage.master_key, stage.keystore, stage.config,
                    now=start + dt.timedelta(seconds=index)) for index in range(7)]
    assert all(store.ok for result in keys for store in result.stores)
    # each copy is locked for the longest object_lock_days of the policies on the store
    retain_until = root.head(keys[0].key).retain_until
    assert start + dt.timedelta(days=3, seconds=-1) <= retain_until <= \
        dt.datetime.now(dt.UTC) + dt.timedelta(days=3)
    assert root.head(LATEST).retain_until is None  # the pointer is rewritten every time
    # beyond the five newest, copies still locked wait: no error, and none hidden
    assert sorted(list_copies(root)) == sorted(result.key for result in keys)
    last = {store.store: store for store in keys[-1].stores}["vault"]
    assert (last.deleted, last.waiting) == (0, 2)

    # a pass that thinks the lock over (a clock ahead) finds the store refusing: later
    later = publish(stage.catalog, stage.master_key, stage.keystore, stage.config,
                    now=start + dt.timedelta(days=4))
    result = {store.store: store for store in later.stores}["vault"]
    assert result.ok and (result.deleted, result.waiting) == (0, 3)
    assert len(list_copies(root)) == 8

    # a copy whose lock has ended is deleted for good, every version of it
    old = COPY_PREFIX + "20200101T000000000000Z.bin"
    root.put(old, b"an old copy", retain_until=dt.datetime.now(dt.UTC)
             + dt.timedelta(seconds=2))
    time.sleep(3)
    publish(stage.catalog, stage.master_key, stage.keystore, stage.config)
    assert old not in list_copies(root)
    assert [v for v in root.unwrap().list_versions(old) if v.key == old] == []
    assert vault.exists("config") is False  # the system's repository is not touched


def test_recovery_into_a_given_database_then_never_over_a_used_one(tmp_path, file_centre,
                                                                    database_url):
    _, kit = file_centre
    result = json.loads(recover_from(tmp_path, kit, "near", tmp_path / "new",
                                     env={"DRD_DATABASE_URL": database_url}).stdout)
    assert result["counts"]["stores"] == 2 and result["stores_needing_keys"] == []
    config = load_config(tmp_path / "new")
    assert config.database_url == database_url
    assert sorted(path.name for path in (tmp_path / "new").iterdir()) == ["drd.yaml", "keys"]
    with open_catalog(config) as catalog, catalog.read_session() as session:
        assert sorted(session.scalars(sa.select(Store.name))) == ["away", "near"]
    taken = recover_from(tmp_path, kit, "away", tmp_path / "again",
                         env={"DRD_DATABASE_URL": database_url}, check=2)
    assert "already holds a centre" in taken.stderr
    assert not (tmp_path / "again").exists()
