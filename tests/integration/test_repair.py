"""Objects a store still holds beneath a delete marker or an overwrite come back (issue 14
point 7: "drd cannot read past delete markers"), on real SeaweedFS Object Lock buckets.

fs1's real restic repository (a backup, its signed manifest) is in ``dc-a``, ``dc-b``
and ``vault``, three lock-enabled buckets, every object locked for a day, as the fan-out
writes them. Then objects are deleted with the store's own keys (a delete marker over the
locked versions: what a thief of the centre's keys, or of shared keys, can do) or
overwritten (what a thief of fs1's own keys can do on SeaweedFS), and drills, restores,
replication, verification and ``drd repair`` must read past them: the newest version
whose bytes hash to the object's name (or match the catalog's record) comes back as the
current one, audited as ``object.repair`` (``object.heal`` by verification), and a
``tamper`` alert names fs1.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid

import boto3
import pytest
import sqlalchemy as sa
from botocore.config import Config as BotoConfig
from click.testing import CliRunner

from drd.catalog.models import Alert, AuditEntry
from drd.cli.main import cli
from drd.devstores import start_many_in, weed_available
from drd.errors import UserError
from drd.recorded.keys import CONFIG
from drd.replication.run import replicate
from drd.services.restore import RestoreRequest
from drd.services.restore.centre import restore_system
from drd.verification import verify
from restore_drills.run import run_drill
from tests.conftest import need
from tests.integration.conftest import WEED_HOW_TO
from tests.integration.staging import StoreSetup, make_stage

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STORES = ("dc-a", "dc-b", "vault")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A SeaweedFS server of this module's own: a ``weed mini`` holds some 80 buckets
    with objects before it answers InternalError, and these tests make three each."""
    need("SeaweedFS", weed_available(), WEED_HOW_TO)
    (started,) = start_many_in([(tmp_path_factory.mktemp("seaweed-repair"), "repair")])
    yield started
    started.kill()


def locked_stage(tmp_path, server, restic_binary, database_url=None, *,
                 lacking: bool = False):
    """fs1's repository in three Object Lock buckets, every copy locked for a day, its
    snapshot reported with true counts and a signed manifest. ``lacking``: ``vault``
    never got the first pack (``stage.lacking``), as a store the fan-out missed."""
    suffix = uuid.uuid4().hex[:8]
    stage = make_stage(tmp_path, database_url=database_url, restic_binary=restic_binary,
                       object_lock_days=1,
                       stores=[StoreSetup(name, region, server, f"p{name[-1]}-{suffix}",
                                          object_lock=True)
                               for name, region in (("dc-a", "r1"), ("dc-b", "r1"),
                                                    ("vault", "r2"))])
    stage.init("dc-a")
    stage.write_files(8, size=40_000)
    files = [path for path in stage.source.rglob("*") if path.is_file()]
    snapshot = stage.backup("dc-a")
    stage.report(snapshot, files=len(files), size=sum(path.stat().st_size for path in files))
    stage.sign_manifest(snapshot)
    origin = stage.raw_store("dc-a")
    objects = {info.key: origin.read(info.key) for info in origin.list()
               if not info.key.startswith("locks/")}
    retain_until = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    stage.lacking = min(key for key in objects if key.startswith("data/")) if lacking \
        else None
    for name in STORES:
        target = stage.raw_store(name)
        for key, data in objects.items():
            if name == "vault" and key == stage.lacking:
                continue
            target.put(key, data, retain_until=retain_until)
    stage.snapshot, stage.objects = snapshot, objects
    return stage


def packs(stage) -> list[str]:
    return sorted(key for key in stage.objects if key.startswith("data/"))


def client(stage, store: str):
    setup = stage.stores[store]
    return boto3.client("s3", endpoint_url=setup.server.endpoint,
                        aws_access_key_id=setup.server.access_key,
                        aws_secret_access_key=setup.server.secret_key,
                        region_name="us-east-1",
                        config=BotoConfig(s3={"addressing_style": "path"}))


def overwrite(stage, store: str, key: str, data: bytes) -> None:
    """A new, unlocked version over the locked one, behind drd's back."""
    raw = stage.raw_store(store).unwrap()
    client(stage, store).put_object(Bucket=raw.bucket, Key=f"{raw.prefix}/{key}", Body=data)


def delete(stage, store: str, key: str) -> None:
    """A delete with the store's own keys: a delete marker over the locked versions."""
    stage.raw_store(store).delete(key)
    assert not stage.raw_store(store).exists(key)


def read(stage, store: str, key: str) -> bytes:
    return stage.raw_store(store).read(key)


def entries(stage, action: str) -> list[AuditEntry]:
    with stage.catalog.session() as session:
        return list(session.scalars(sa.select(AuditEntry).where(AuditEntry.action == action)
                                    .order_by(AuditEntry.id)))


def tampered(stage) -> set[tuple[str, str]]:
    with stage.catalog.session() as session:
        alerts = list(session.scalars(sa.select(Alert).where(
            Alert.kind == "tamper", Alert.resolved_at.is_(None))))
    assert all("fs1" in alert.message and alert.details["system"] == "fs1"
               for alert in alerts)
    return {(alert.details["store"], alert.details["key"]) for alert in alerts}


def repair_cli(stage, *args: str):
    return CliRunner().invoke(cli, ["--home", str(stage.home), "repair", *args])


# -- drills and restores read past the markers -----------------------------------------


def test_a_drill_from_a_store_with_markers_over_a_pack_and_config_repairs_it_first(
        tmp_path, server, restic_binary, database_url):
    stage = locked_stage(tmp_path, server, restic_binary, database_url)
    pack = packs(stage)[0]
    delete(stage, "dc-a", pack)
    delete(stage, "dc-a", CONFIG)

    outcome = run_drill(stage.catalog, stage.master_key, stage.keystore, stage.config,
                        stage.home, "fs1", store="dc-a")

    assert outcome.passed, outcome.report["reasons"]
    repaired = outcome.report["repair"]["repaired"]
    assert {(item["key"], item["reason"]) for item in repaired} == {(pack, "hidden"),
                                                                   (CONFIG, "hidden")}
    assert outcome.report["checks"]["repair"]["passed"]
    assert "repair" in outcome.report["phases"]
    assert read(stage, "dc-a", pack) == stage.objects[pack]
    assert read(stage, "dc-a", CONFIG) == stage.objects[CONFIG]
    audited = entries(stage, "object.repair")
    assert {entry.target for entry in audited} == {f"dc-a:fs1/{pack}", f"dc-a:fs1/{CONFIG}"}
    assert all(entry.details["reason"] == "hidden" and entry.details["source"] == "dc-a"
               and entry.details["version"] and entry.details["retain_until"]
               for entry in audited)
    assert tampered(stage) == {("dc-a", pack), ("dc-a", CONFIG)}
    # the copy brought back is locked again, and the marker stays beneath it
    assert stage.raw_store("dc-a").head(pack).retain_until > dt.datetime.now(dt.UTC)
    history = list(stage.raw_store("dc-a").unwrap().list_versions(pack))
    assert [v.is_delete_marker for v in history].count(True) == 1
    # a second drill finds nothing to repair
    again = run_drill(stage.catalog, stage.master_key, stage.keystore, stage.config,
                      stage.home, "fs1", store="dc-a")
    assert again.passed and again.report["repair"]["repaired"] == []
    assert "repair" not in again.report["checks"]
    assert len(entries(stage, "object.repair")) == 2


def test_a_restore_from_a_store_with_a_marker_over_a_pack_repairs_it_and_restores(
        tmp_path, server, restic_binary):
    stage = locked_stage(tmp_path, server, restic_binary)
    for pack in packs(stage):
        delete(stage, "vault", pack)
    target = tmp_path / "restored"

    result = restore_system(stage.catalog, stage.master_key, stage.keystore, stage.config,
                            "fs1", RestoreRequest(target=target, store="vault", verify=True),
                            actor="test")

    assert result.store == "vault" and [a.ok for a in result.attempts] == [True]
    for path in stage.source.rglob("*"):
        if path.is_file():
            restored = target / path.relative_to("/")
            assert restored.read_bytes() == path.read_bytes(), path
    assert {entry.target for entry in entries(stage, "object.repair")} == {
        f"vault:fs1/{pack}" for pack in packs(stage)}
    (restore,) = entries(stage, "system.restore")
    assert restore.details["outcome"] == "done"


# -- drd repair -------------------------------------------------------------------------


def test_drd_repair_lists_then_fixes_then_has_nothing_left_to_do(
        tmp_path, server, restic_binary, database_url):
    stage = locked_stage(tmp_path, server, restic_binary, database_url)
    pack = packs(stage)[-1]
    index = next(key for key in stage.objects if key.startswith("index/"))
    snapshot_file = f"snapshots/{stage.snapshot}"
    delete(stage, "dc-b", pack)
    delete(stage, "dc-b", index)
    overwrite(stage, "dc-b", snapshot_file, b"ransom")
    overwrite(stage, "dc-b", CONFIG, b"\0" * len(stage.objects[CONFIG]))
    before = {key: list(stage.raw_store("dc-b").unwrap().list_versions(key))
              for key in (pack, index, snapshot_file, CONFIG)}

    dry = repair_cli(stage, "dc-b", "--dry-run", "--json")

    assert dry.exit_code == 0, dry.output
    listed = json.loads(dry.output)
    assert listed["dry_run"] and listed["repaired"] == 4 and listed["unrepaired"] == 0
    (run,) = listed["systems"]
    assert {(item["key"], item["reason"]) for item in run["repaired"]} == {
        (pack, "hidden"), (index, "hidden"), (snapshot_file, "overwritten"),
        (CONFIG, "overwritten")}
    after_dry = {key: list(stage.raw_store("dc-b").unwrap().list_versions(key))
                 for key in before}
    assert after_dry == before  # nothing written
    assert entries(stage, "object.repair") == [] and tampered(stage) == set()

    done = repair_cli(stage, "dc-b", "fs1")

    assert done.exit_code == 0, done.output
    assert "brought back" in done.output and pack in done.output
    for key in (pack, index, snapshot_file, CONFIG):
        assert read(stage, "dc-b", key) == stage.objects[key], key
    assert stage.restic.check(stage.repository("dc-b")).ok
    assert {entry.target for entry in entries(stage, "object.repair")} == {
        f"dc-b:fs1/{key}" for key in before}
    assert tampered(stage) == {("dc-b", key) for key in before}

    again = repair_cli(stage, "dc-b", "--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.output)["repaired"] == 0
    assert len(entries(stage, "object.repair")) == 4
    # stores with nothing covered are fine too; an unknown store is bad input
    assert repair_cli(stage, "vault").exit_code == 0
    unknown = repair_cli(stage, "nowhere")
    assert isinstance(unknown.exception, UserError), unknown.output  # exit status 2


def test_drd_repair_says_what_it_cannot_bring_back_and_exits_1(
        tmp_path, server, restic_binary):
    stage = locked_stage(tmp_path, server, restic_binary, lacking=True)
    pack = stage.lacking
    for _ in range(2):
        overwrite(stage, "vault", pack, b"ransom")  # no good version in its history
    hidden = packs(stage)[1]
    delete(stage, "vault", hidden)

    result = repair_cli(stage, "vault")

    assert result.exit_code == 1, result.output
    assert f"NOT REPAIRED {pack} (overwritten): no version of it in vault is good" \
        in result.output
    assert read(stage, "vault", hidden) == stage.objects[hidden]  # the others go on
    # another store holds it: verification heals it from there, and repair is content
    assert verify(stage.catalog, stage.master_key, stage.config, stores=["vault"],
                  full=True).ok
    assert read(stage, "vault", pack) == stage.objects[pack]
    assert repair_cli(stage, "vault").exit_code == 0


# -- verification -------------------------------------------------------------------------


def test_verification_reports_a_hidden_object_and_brings_it_back_in_place(
        tmp_path, server, restic_binary):
    stage = locked_stage(tmp_path, server, restic_binary)
    pack = packs(stage)[0]
    assert verify(stage.catalog, stage.master_key, stage.config, full=True).ok
    delete(stage, "dc-a", pack)

    report = verify(stage.catalog, stage.master_key, stage.config, stores=["dc-a"],
                    budget_bytes=1)

    assert report.ok, report.as_dict()
    # the ledger took it for missing; its versions say hidden
    assert [(f.key, f.reason) for f in report.hidden] == [(pack, "hidden")]
    assert report.missing == []
    (healed,) = report.healed
    assert (healed.key, healed.reason, healed.source) == (pack, "hidden", "dc-a")
    assert healed.version is not None
    assert read(stage, "dc-a", pack) == stage.objects[pack]
    (entry,) = entries(stage, "object.heal")
    assert entry.details["version"] == healed.version and entry.details["source"] == "dc-a"
    assert tampered(stage) == {("dc-a", pack)}
    with stage.catalog.session() as session:
        alert = session.scalar(sa.select(Alert).where(Alert.kind == "tamper"))
    assert "delete marker" in alert.message and alert.details["reason"] == "hidden"
    assert report.as_dict()["hidden"] == 1


def test_an_overwrite_in_every_store_is_healed_from_the_locked_versions(
        tmp_path, server, restic_binary, database_url):
    stage = locked_stage(tmp_path, server, restic_binary, database_url)
    pack = packs(stage)[0]
    forged_config = b"\0" * len(stage.objects[CONFIG])
    for name in STORES:
        overwrite(stage, name, pack, b"ransom")
        overwrite(stage, name, CONFIG, forged_config)

    report = verify(stage.catalog, stage.master_key, stage.config, full=True)

    assert report.ok, report.as_dict()
    assert not report.lost
    assert {(f.store, f.key) for f in report.healed} == {
        (name, key) for name in STORES for key in (pack, CONFIG)}
    assert all(f.source in STORES for f in report.healed)
    for name in STORES:
        assert read(stage, name, pack) == stage.objects[pack]
        assert read(stage, name, CONFIG) == stage.objects[CONFIG]
        assert stage.raw_store(name).head(pack).retain_until > dt.datetime.now(dt.UTC)
    assert tampered(stage) == {(name, key) for name in STORES for key in (pack, CONFIG)}
    for name in STORES:
        (snapshot,) = stage.restic.snapshots(stage.repository(name))
        assert snapshot.id == stage.snapshot
    again = verify(stage.catalog, stage.master_key, stage.config, full=True)
    assert again.ok and not again.healed and not again.corrupt


def test_a_pack_good_only_in_another_stores_old_version_is_healed_from_it(
        tmp_path, server, restic_binary):
    stage = locked_stage(tmp_path, server, restic_binary, lacking=True)
    pack = stage.lacking
    for name in STORES:  # vault: ransom alone; the others: ransom over the locked pack
        overwrite(stage, name, pack, b"ransom")

    report = verify(stage.catalog, stage.master_key, stage.config, stores=["vault"],
                    full=True)

    assert report.ok, report.as_dict()
    (healed,) = report.healed
    assert (healed.key, healed.reason, healed.source) == (pack, "corrupt", "dc-a")
    assert healed.version is not None
    assert read(stage, "vault", pack) == stage.objects[pack]
    assert hashlib.sha256(read(stage, "vault", pack)).hexdigest() == pack.rsplit("/", 1)[1]
    assert tampered(stage) == {(name, pack) for name in STORES}
    # the other stores' runs heal theirs too (the current copy in vault is good now)
    assert verify(stage.catalog, stage.master_key, stage.config, full=True).ok
    assert all(read(stage, name, pack) == stage.objects[pack] for name in STORES)


# -- replication ------------------------------------------------------------------------


def test_replication_brings_a_hidden_object_back_in_place_instead_of_copying_it_over(
        tmp_path, server, restic_binary):
    stage = locked_stage(tmp_path, server, restic_binary)
    pack = packs(stage)[0]
    delete(stage, "dc-b", pack)
    assert verify(stage.catalog, stage.master_key, stage.config, stores=["dc-a"],
                  full=True).ok  # the ledger knows the stores

    report = replicate(stage.catalog, stage.master_key, stage.config)

    assert report.ok, report.as_dict()
    results = {result.store: result for result in report.stores}
    assert results["dc-b"].objects_repaired == 1 and results["dc-b"].objects_copied == 0
    assert read(stage, "dc-b", pack) == stage.objects[pack]
    (entry,) = entries(stage, "object.repair")
    assert entry.actor == "replicator" and entry.target == f"dc-b:fs1/{pack}"
    assert entry.details["source"] == "dc-b" and entry.details["reason"] == "hidden"
    assert tampered(stage) == {("dc-b", pack)}
    assert replicate(stage.catalog, stage.master_key, stage.config).objects_copied == 0
