"""Retention on real components: restic forget and prune against one SeaweedFS store (some
buckets with Object Lock), the same objects removed from the other stores after the
delay, and the catalog on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json

import pytest
import sqlalchemy as sa

from drd.catalog import audit
from drd.catalog.models import Alert, AuditEntry, Snapshot, SnapshotCopy, StoreObject, Tombstone
from drd.catalog.types import utcnow
from drd.cli.main import main
from drd.ledger import sync_listing
from drd.replication.run import replicate
from drd.retention.decide import NEWEST_GOOD_REASON
from drd.retention.run import PRUNE_STARTED, run_retention
from tests.integration.staging import StoreSetup, make_stage

pytestmark = [pytest.mark.integration, pytest.mark.slow]


_stores: dict[tuple[int, str], object] = {}


def raw(stage, name: str):
    """Store ``name`` of ``stage``, opened once (a boto3 client costs a quarter second)."""
    if (id(stage), name) not in _stores:
        _stores[(id(stage), name)] = stage.raw_store(name)
    return _stores[(id(stage), name)]


def keys(stage, name: str) -> dict[str, int]:
    return {info.key: info.size for info in raw(stage, name).list()
            if not info.key.startswith("locks/")}


def copy_all(stage, source: str) -> None:
    origin = raw(stage, source)
    for name in stage.stores:
        if name != source:
            target = raw(stage, name)
            target.create_if_missing()
            present = set(keys(stage, name))
            for key in set(keys(stage, source)) - present:
                target.put(key, origin.read(key))


def retention(stage, **options):
    return run_retention(stage.catalog, stage.master_key, stage.keystore, stage.config,
                         stage.system, **options)


def backups(stage, times, *, complete=None) -> list[str]:
    """One snapshot per time (None: now), each copied to every store and reported."""
    ids = []
    for index, moment in enumerate(times):
        stage.write_files(3, seed=f"s{index}-")
        ids.append(stage.backup("dc-a", time=moment))
        copy_all(stage, "dc-a")
        stage.report(ids[-1], complete)
    return ids


def statuses(stage) -> dict[str, str]:
    with stage.catalog.session() as session:
        return dict(session.execute(sa.select(Snapshot.restic_id, Snapshot.status)).all())


def check_ok(stage, store: str) -> None:
    result = stage.restic.check(stage.repository(store))
    assert result.ok, (store, result.errors)


def test_retention_on_lock_enabled_buckets_leaves_locked_snapshots_alone(
        tmp_path, seaweed, restic_binary):
    (server,) = seaweed(1)
    stage = make_stage(tmp_path, restic_binary=restic_binary, object_lock_days=1,
                       retention="{keep_last: 1}", policy_extra="prune: {delete_delay: 1h}\n",
                       stores=[StoreSetup("dc-a", "region-a", server, "lock-a",
                                          object_lock=True),
                               StoreSetup("dc-b", "region-b", server, "lock-b",
                                          object_lock=True)])
    stage.init("dc-a")
    now = utcnow()
    old, locked, newest = backups(
        stage, [now - dt.timedelta(days=30), now - dt.timedelta(hours=12), None])
    # every object under Object Lock, as the fan-out writes it
    retain_until = now + dt.timedelta(days=1)
    for name in stage.stores:
        store = raw(stage, name)
        for key in keys(stage, name):
            store.put(key, store.read(key), retain_until=retain_until)
    before = keys(stage, "dc-b")

    report = retention(stage)

    assert report.ok, report.errors
    assert report.store == "dc-a"
    assert report.forgotten == [old]
    assert report.kept[newest][0] == "last snapshot"
    (reason,) = report.kept[locked]
    assert reason.startswith("object lock holds until ")
    assert report.pruned_objects > 0
    assert statuses(stage) == {old: "forgotten", locked: "active", newest: "active"}
    # the other store keeps everything until the delay has passed
    assert keys(stage, "dc-b") == before
    removed = set(before) - set(keys(stage, "dc-a"))
    # the locked versions stay in the bucket: prune's deletes only hid them
    versions = {version.key for version in raw(stage, "dc-a").unwrap().list_versions()}
    assert removed <= versions

    replicate(stage.catalog, stage.master_key, stage.config)
    later = retention(stage, now=utcnow() + dt.timedelta(hours=2))

    assert later.ok, later.errors
    assert later.forgotten == [] and later.deleted_elsewhere == len(removed)
    assert keys(stage, "dc-a") == keys(stage, "dc-b")
    assert f"snapshots/{old}" not in keys(stage, "dc-b")
    for name in stage.stores:
        check_ok(stage, name)


# the same flow as above, on PostgreSQL (the test above runs on SQLite)
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_other_store_loses_exactly_what_prune_removed_after_the_delay(
        tmp_path, seaweed, restic_binary, database_url):
    (server,) = seaweed(1)
    stage = make_stage(tmp_path, restic_binary=restic_binary, database_url=database_url,
                       retention="{keep_last: 1}",
                       stores=[StoreSetup("dc-a", "region-a", server, "bucket-a"),
                               StoreSetup("far", "region-b", server, "bucket-b")])
    stage.init("dc-a")
    first, second = backups(stage, [None, None])
    before_far = keys(stage, "far")

    report = retention(stage)
    assert report.ok, report.errors
    assert report.forgotten == [first]
    after_a = keys(stage, "dc-a")
    removed = set(before_far) - set(after_a)
    assert report.pruned_objects == len(removed) > 0
    with stage.catalog.session() as session:
        tombstones = {t.key: t for t in session.scalars(sa.select(Tombstone))}
        copies = set(session.scalars(sa.select(SnapshotCopy.state).join(Snapshot)
                                     .where(Snapshot.restic_id == first)))
        actions = list(session.scalars(sa.select(AuditEntry.action).order_by(AuditEntry.id)))
    assert set(tombstones) == removed
    assert all(t.deleted_from == ["dc-a"] and t.done_at is None for t in tombstones.values())
    assert copies == {"forgotten"}
    assert actions[-3:] == ["escrow.unseal", "retention.prune", "retention.forget"]

    # replication copies what prune wrote, and never brings back what it removed
    replicate(stage.catalog, stage.master_key, stage.config)
    assert set(keys(stage, "dc-a")) == set(after_a)
    assert set(before_far) <= set(keys(stage, "far"))

    early = retention(stage, now=utcnow() + dt.timedelta(hours=1))
    assert early.ok and early.deleted_elsewhere == 0 and early.forgotten == []
    assert removed <= set(keys(stage, "far"))

    # a restic lock that is not stale (a backup may be running): everything waits
    lock = "locks/" + "0" * 64
    raw(stage, "far").put(lock, b"lock")
    busy = retention(stage, now=utcnow() + dt.timedelta(days=2))
    assert busy.ok and busy.deleted_elsewhere == 0 and busy.pending == len(removed)
    assert removed <= set(keys(stage, "far"))
    raw(stage, "far").delete(lock)

    events = []
    late = retention(stage, now=utcnow() + dt.timedelta(days=2), progress=events.append)
    assert late.ok, late.errors
    assert late.deleted_elsewhere == len(removed) and late.pending == 0
    assert late.checked == []  # no snapshot came after the prune: nothing to check
    assert [event.files_done for event in events] == list(range(1, len(removed) + 1))
    assert events[-1].percent_done == 1.0 and events[-1].total_files == len(removed)
    assert keys(stage, "far") == keys(stage, "dc-a")
    assert not removed & set(keys(stage, "far"))
    with stage.catalog.session() as session:
        done = list(session.scalars(sa.select(Tombstone)))
        ledger = set(session.scalars(sa.select(StoreObject.key)))
    assert all(t.done_at is not None and sorted(t.deleted_from) == ["dc-a", "far"]
               for t in done)
    assert not removed & ledger
    assert f"snapshots/{first}" not in keys(stage, "far")
    for name in stage.stores:
        check_ok(stage, name)


def test_the_newest_good_backup_is_never_forgotten(tmp_path, restic_binary):
    stage = make_stage(tmp_path, restic_binary=restic_binary, retention="{keep_last: 1}",
                       stores=[StoreSetup("dc-a", "region-a", directory=tmp_path / "a"),
                               StoreSetup("far", "region-b", directory=tmp_path / "b")])
    stage.init("dc-a")
    (good,) = backups(stage, [None])
    # the newest snapshot reached one store only: not durable (min_copies 2), not good
    (newest,) = backups(stage, [None], complete={"dc-a": True, "far": False})

    report = retention(stage)

    assert report.ok, report.errors
    assert report.forgotten == [] and report.pruned_objects == 0
    assert report.kept == {good: [NEWEST_GOOD_REASON], newest: ["last snapshot"]}
    assert statuses(stage) == {good: "active", newest: "active"}


def drd(stage, capsys, *args: str) -> tuple[int, str, str]:
    """Run the ``drd`` command line in this process: (exit status, stdout, stderr)."""
    with pytest.raises(SystemExit) as exit_status:
        main(["--home", str(stage.home), *args])
    captured = capsys.readouterr()
    return exit_status.value.code, captured.out, captured.err


def test_plan_then_a_prune_interrupted_before_its_tombstones_is_finished_by_the_next_run(
        tmp_path, restic_binary, capsys):
    stage = make_stage(tmp_path, restic_binary=restic_binary, retention="{keep_last: 1}",
                       stores=[StoreSetup("dc-a", "region-a", directory=tmp_path / "a"),
                               StoreSetup("far", "region-b", directory=tmp_path / "b")])
    stage.init("dc-a")
    old, newest = backups(stage, [None, None])

    status, out, err = drd(stage, capsys, "retention", "plan", stage.system, "--json")
    assert status == 0, err
    plan = json.loads(out)
    assert [entry["id"] for entry in plan["forget"]] == [old]
    assert plan["forget"][0]["reasons"] == ["no rule keeps it (keep_last 1)"]
    assert plan["keep"][0]["reasons"] == ["last snapshot", NEWEST_GOOD_REASON]
    status, out, _ = drd(stage, capsys, "retention", "plan", stage.system)
    assert status == 0 and "forget" in out and old[:8] in out
    status, _, err = drd(stage, capsys, "retention", "plan", "nope")
    assert status == 2 and "no system named 'nope'" in err
    assert statuses(stage) == {old: "active", newest: "active"}  # planning changes nothing

    # what a run leaves when it dies right after prune: its start recorded (ledger and
    # audit entry), restic done, no tombstone yet
    before = keys(stage, "dc-a")
    with stage.catalog.session() as session:
        store_id = stage.store_row("dc-a").id
        system_id = session.scalar(sa.select(Snapshot.system_id).limit(1))
        sync_listing(session, system_id, store_id, before.items(), utcnow())
        audit.record(session, actor="scheduler", action=PRUNE_STARTED, target=stage.system,
                     store="dc-a", store_id=store_id, snapshots=[old])
    stage.restic.forget(stage.repository("dc-a"), [old])
    stage.restic.prune(stage.repository("dc-a"))
    removed = set(before) - set(keys(stage, "dc-a"))
    assert removed

    report = retention(stage)

    assert report.ok, report.errors
    assert report.forgotten == [old] and report.store == "dc-a"
    assert report.pruned_objects == len(removed)
    with stage.catalog.session() as session:
        assert set(session.scalars(sa.select(Tombstone.key))) == removed
        (done,) = session.scalars(sa.select(AuditEntry).where(
            AuditEntry.action == "retention.forget"))
        assert done.details["resumed"] is True
    assert statuses(stage)[old] == "forgotten"
    status, out, err = drd(stage, capsys, "retention", "run", stage.system, "--json")
    assert status == 0, err
    again = json.loads(out)
    assert again["ok"] and again["pruned_objects"] == 0 and again["forgotten"] == []
    assert again["store"] == "dc-a" and again["kept"] == {newest: ["last snapshot",
                                                                   NEWEST_GOOD_REASON]}

    # due, but "far" lacks the index prune wrote: nothing is deleted there yet
    later = utcnow() + dt.timedelta(days=2)
    waiting = retention(stage, now=later)
    assert waiting.ok and waiting.deleted_elsewhere == 0 and waiting.pending == len(removed)
    assert removed <= set(keys(stage, "far"))
    # one object comes back to the pruned store (a later backup wrote the same bytes)
    back = sorted(key for key in removed if key.startswith("data/"))[0]
    raw(stage, "dc-a").put(back, raw(stage, "far").read(back))
    copy_all(stage, "dc-a")
    done = retention(stage, now=later)
    assert done.ok and done.dropped == 1 and done.deleted_elsewhere == len(removed) - 1
    assert set(keys(stage, "far")) == set(keys(stage, "dc-a"))
    with stage.catalog.session() as session:
        assert set(session.scalars(sa.select(Tombstone.key))) == removed - {back}
    check_ok(stage, "far")


def source_files(root) -> dict[str, bytes]:
    return {str(path.relative_to(root)): path.read_bytes() for path in root.rglob("*.bin")}


def test_a_backup_that_dedups_into_pruned_packs_keeps_them(tmp_path, restic_binary):
    stage = make_stage(tmp_path, restic_binary=restic_binary, retention="{keep_within: 7d}",
                       policy_extra="prune: {delete_delay: 1h}\n",
                       stores=[StoreSetup("dc-a", "region-a", directory=tmp_path / "a"),
                               StoreSetup("far", "region-b", directory=tmp_path / "b")])
    stage.init("dc-a")
    stage.write_files(3, seed="old-")
    old_files = source_files(stage.source)
    old = backup_everywhere(stage, time=utcnow() - dt.timedelta(days=30))
    for path in stage.source.rglob("old-*.bin"):
        path.unlink()
    stage.write_files(3, seed="new-")
    backup_everywhere(stage)

    first = retention(stage)
    assert first.ok and first.forgotten == [old] and first.checked == []
    with stage.catalog.session() as session:
        pruned = set(session.scalars(sa.select(Tombstone.key)))
    pruned_data = {key for key in pruned if key.startswith("data/")}
    assert pruned_data and pruned <= set(keys(stage, "far"))

    # the racing backup: through "far", which still has the indexes prune replaced, of
    # the same files the forgotten snapshot held: it dedups into the pruned packs
    for relative, data in old_files.items():
        (stage.source / relative).write_bytes(data)
    racing = stage.backup("far")
    stage.report(racing, {"dc-a": False, "far": True})
    replicate(stage.catalog, stage.master_key, stage.config)
    assert not pruned & set(keys(stage, "dc-a"))  # replication brought none of them back
    assert not stage.restic.check(stage.repository("dc-a")).ok  # the hazard is real

    # "far" has lost the pack of the old files' data meanwhile. Before the delay, the
    # check runs all the same (a new snapshot needs pruned objects now): what can come
    # back does, the check still fails, and an alert is raised
    lost = max(pruned_data, key=lambda key: keys(stage, "far")[key])
    lost_bytes = raw(stage, "far").read(lost)
    raw(stage, "far").delete(lost)
    before = keys(stage, "far")
    early = retention(stage, now=utcnow() + dt.timedelta(minutes=30))
    assert not early.ok and early.checked == ["dc-a"] and early.deleted_elsewhere == 0
    assert early.resurrected == len(pruned) - 2  # all but the lost pack and the snapshot
    assert f"restic check on dc-a fails after bringing back {early.resurrected}" \
        in early.errors[0] and lost[-64:] in early.errors[0]
    # once due, nothing leaves "far" while the check fails
    stuck = retention(stage, now=utcnow() + dt.timedelta(hours=2))
    assert not stuck.ok and stuck.checked == ["dc-a"] and stuck.resurrected == 0
    assert stuck.deleted_elsewhere == 0 and stuck.pending == 2
    assert keys(stage, "far") == before
    with stage.catalog.session() as session:
        (alert,) = session.scalars(sa.select(Alert).where(Alert.kind == "retention_failed"))
        assert alert.resolved_at is None

    raw(stage, "far").put(lost, lost_bytes)
    later = retention(stage, now=utcnow() + dt.timedelta(hours=2))

    assert later.ok, later.errors
    assert later.checked == ["dc-a"] and later.forgotten == []
    # every pruned pack and index is back on "dc-a" and still on "far"; the forgotten
    # snapshot's own file alone has gone, and stays gone
    assert later.resurrected == 1 and later.deleted_elsewhere == 1
    assert keys(stage, "far") == keys(stage, "dc-a")
    assert pruned - {f"snapshots/{old}"} <= set(keys(stage, "dc-a"))
    assert f"snapshots/{old}" not in keys(stage, "far")
    dc_a = stage.store_row("dc-a").id
    with stage.catalog.session() as session:
        assert not set(session.scalars(sa.select(Tombstone.key).where(
            Tombstone.done_at.is_(None))))
        first_back, entry = session.scalars(sa.select(AuditEntry).where(
            AuditEntry.action == "retention.resurrect").order_by(AuditEntry.id))
        assert session.get(Alert, alert.id).resolved_at is not None
        reasons = [entry.details.get("reason", "") for entry in session.scalars(
            sa.select(AuditEntry).where(AuditEntry.action == "escrow.unseal"))]
        ledger = set(session.scalars(sa.select(StoreObject.key).where(
            StoreObject.store_id == dc_a)))
    assert entry.details["objects"] == later.resurrected and entry.details["store"] == "dc-a"
    assert first_back.details["objects"] == early.resurrected
    assert entry.details["snapshots"] == [racing]
    assert sum("restic check on dc-a" in reason for reason in reasons) == 3  # one a run
    assert pruned_data <= ledger
    for name in stage.stores:
        check_ok(stage, name)
    restored = tmp_path / "restored"
    stage.restic.restore(stage.repository("dc-a"), racing, restored)
    (tree,) = [path for path in restored.rglob("source") if path.is_dir()]
    assert source_files(tree) == source_files(stage.source)
    assert set(old_files) < set(source_files(tree))


def backup_everywhere(stage, *, time=None) -> str:
    """A snapshot of the source as it is, copied to every store and reported."""
    snapshot = stage.backup("dc-a", time=time)
    copy_all(stage, "dc-a")
    stage.report(snapshot)
    return snapshot
