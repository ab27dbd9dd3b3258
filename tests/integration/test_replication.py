"""Replication on real components: SeaweedFS stores (one killed and restarted), real
restic repositories, the catalog on SQLite and PostgreSQL, and the ``drd replicate``
command line."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys

import pytest
import sqlalchemy as sa

from drd.catalog.models import AuditEntry, Replica, SnapshotCopy, StoreObject
from drd.catalog.models import Store as StoreRow
from drd.cli.main import main
from drd.devstores import start_seaweed
from drd.errors import UserError
from drd.ledger import expected_sha256
from drd.replication.run import replicate
from tests.integration.staging import StoreSetup, make_stage

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def drd(capsys, *args: str) -> tuple[int, str, str]:
    """Run the ``drd`` console script in this process: (exit status, stdout, stderr)."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def by_store(report) -> dict:
    return {result.store: result for result in report.stores}


def replica(stage, store: str) -> Replica:
    with stage.catalog.session() as session:
        return session.scalar(sa.select(Replica).join(StoreRow, Replica.store_id == StoreRow.id)
                              .where(StoreRow.name == store))


def copy_states(stage, store: str) -> list[str]:
    with stage.catalog.session() as session:
        return list(session.scalars(sa.select(SnapshotCopy.state).join(StoreRow)
                                    .where(StoreRow.name == store)))


def test_a_store_down_during_a_backup_catches_up_after_it_returns(
        tmp_path, seaweed, restic_binary, capsys):
    # The catalog side runs on PostgreSQL too in the tests below; this one, the slowest,
    # on SQLite only. "far" has Object Lock: what it receives carries the retention.
    first, second = seaweed(2)
    stage = make_stage(tmp_path, restic_binary=restic_binary, object_lock_days=2,
                       stores=[StoreSetup("dc-a", "region-a", first, "bucket-a"),
                               StoreSetup("dc-b", "region-a", first, "bucket-b"),
                               StoreSetup("far", "region-b", second, "bucket-c",
                                          object_lock=True)])
    stage.init("dc-a")
    stage.copy_all("dc-a")
    second.kill()
    stage.write_files(30)
    snapshot = stage.backup("dc-a")
    source, mirror = stage.raw_store("dc-a"), stage.raw_store("dc-b")
    for key in set(stage.keys("dc-a")) - set(stage.keys("dc-b")):
        mirror.put(key, source.read(key))
    stage.report(snapshot, {"dc-a": True, "dc-b": True, "far": False})

    report = replicate(stage.catalog, stage.master_key, stage.config)
    results = by_store(report)
    assert not report.ok
    assert results["dc-a"].ok and results["dc-b"].ok
    assert not results["far"].ok and not results["far"].listed
    assert "far" in results["far"].errors[0]
    assert replica(stage, "dc-a").watermark_at is not None
    assert replica(stage, "far").last_error
    assert copy_states(stage, "far") == ["missing"]

    restarted = start_seaweed(second.data_dir, name=second.name)
    try:
        assert restarted.endpoint == second.endpoint
        lacking = set(stage.keys("dc-a")) - set(stage.keys("far"))
        before = dt.datetime.now(dt.UTC)
        report = replicate(stage.catalog, stage.master_key, stage.config)
        assert report.ok, report.as_dict()
        far = stage.raw_store("far")
        for key in lacking:
            retain_until = far.head(key).retain_until
            assert retain_until is not None, key
            assert before + dt.timedelta(days=2) <= retain_until + dt.timedelta(minutes=1)
            assert retain_until <= dt.datetime.now(dt.UTC) + dt.timedelta(days=2)
        assert by_store(report)["far"].objects_copied == len(lacking)
        assert stage.keys("far") == stage.keys("dc-a") == stage.keys("dc-b")
        assert stage.restic.check(stage.repository("far"), read_data=True).ok
        caught_up = replica(stage, "far")
        assert caught_up.watermark_at is not None and caught_up.last_error is None
        assert (caught_up.lag_objects, caught_up.lag_bytes) == (0, 0)
        assert copy_states(stage, "far") == ["present"]
        with stage.catalog.session() as session:
            far_rows = session.scalar(sa.select(sa.func.count()).select_from(StoreObject)
                                      .join(StoreRow).where(StoreRow.name == "far",
                                                            StoreObject.state == "present"))
        assert far_rows == len(stage.keys("far"))

        # (b) a rerun copies nothing
        again = replicate(stage.catalog, stage.master_key, stage.config)
        assert again.ok and again.objects_copied == 0

        # only the stores named are brought up to date; unknown names are refused
        only = replicate(stage.catalog, stage.master_key, stage.config, stores=["far"])
        assert [result.store for result in only.stores] == ["far"] and only.ok
        with pytest.raises(UserError, match="nosuch"):
            replicate(stage.catalog, stage.master_key, stage.config, stores=["nosuch"])

        # (c) the command line
        status, out, _ = drd(capsys, "--home", str(stage.home), "replicate", "--json")
        assert status == 0
        document = json.loads(out)
        assert document["ok"] and document["objects_copied"] == 0
        assert {entry["store"] for entry in document["stores"]} == {"dc-a", "dc-b", "far"}
        status, _, err = drd(capsys, "--home", str(stage.home), "replicate", "nosuch")
        assert status == 2 and "no system named 'nosuch'" in err
    finally:
        restarted.kill()


def test_a_corrupt_source_is_refused_and_the_next_pass_replaces_it(tmp_path, restic_binary,
                                                                  database_url):
    stage = make_stage(tmp_path, restic_binary=restic_binary, database_url=database_url,
                       stores=[StoreSetup("one", "region-a", directory=tmp_path / "one"),
                               StoreSetup("two", "region-a", directory=tmp_path / "two"),
                               StoreSetup("three", "region-b", directory=tmp_path / "three")])
    stage.init("one")
    stage.write_files(10)
    stage.backup("one")
    stage.copy_all("one")  # also makes three's repository directory ...
    three = stage.raw_store("three")
    for key in stage.keys("three"):
        three.delete(key)
    # ... but catching up from nothing must create it itself
    (tmp_path / "three" / "parks" / "fs1" / "data").rename(tmp_path / "elsewhere")
    victim = next(key for key in stage.keys("one") if key.startswith("data/"))
    good = stage.raw_store("one").read(victim)
    stage.raw_store("one").put(victim, bytes(reversed(good)))
    assert expected_sha256(victim)

    stage.config.replication_parallel = 2
    report = replicate(stage.catalog, stage.master_key, stage.config)
    results = by_store(report)
    assert results["one"].corrupt_sources == 1 and not results["one"].ok
    assert results["three"].ok and results["two"].ok
    assert stage.raw_store("three").read(victim) == good
    with stage.catalog.session() as session:
        state = session.scalar(sa.select(StoreObject.state).join(StoreRow).where(
            StoreRow.name == "one", StoreObject.key == victim))
    assert state == "corrupt"

    report = replicate(stage.catalog, stage.master_key, stage.config)
    assert report.ok and report.objects_copied == 1
    assert stage.raw_store("one").read(victim) == good
    with stage.catalog.session() as session:
        (entry,) = session.scalars(sa.select(AuditEntry).where(
            AuditEntry.action == "replication.replace"))
    assert entry.target == victim and entry.details["store"] == "one"
    assert stage.restic.check(stage.repository("one"), read_data=True).ok


def test_a_wrong_vote_on_sizes_never_overwrites_the_good_copy(tmp_path, restic_binary,
                                                              seaweed):
    # two buckets of one server: a server-side copy would be possible, and with two
    # stores a size conflict is a tie that the policy's first store wins
    (server,) = seaweed(1)
    stage = make_stage(tmp_path, restic_binary=restic_binary,
                       stores=[StoreSetup("one", "region-a", server, "bucket-one"),
                               StoreSetup("two", "region-b", server, "bucket-two")])
    stage.init("one")
    stage.write_files(4)
    stage.backup("one")
    stage.copy_all("one")
    victim = next(key for key in stage.keys("one") if key.startswith("data/"))
    good = stage.raw_store("two").read(victim)
    stage.raw_store("one").put(victim, good[: len(good) // 2])  # rot in the first store

    report = replicate(stage.catalog, stage.master_key, stage.config)
    assert not report.ok
    assert stage.raw_store("two").read(victim) == good  # the good copy is untouched
    assert by_store(report)["one"].corrupt_sources == 1  # found out on the way
    # known corrupt now, the rotten copy no longer votes: the next pass replaces it
    assert replicate(stage.catalog, stage.master_key, stage.config).ok
    assert stage.raw_store("one").read(victim) == stage.raw_store("two").read(victim) == good


def test_a_stopped_pass_keeps_what_it_copied_and_the_rerun_finishes(tmp_path, restic_binary,
                                                                   database_url):
    stage = make_stage(tmp_path, restic_binary=restic_binary, database_url=database_url,
                       stores=[StoreSetup("one", "region-a", directory=tmp_path / "one"),
                               StoreSetup("two", "region-b", directory=tmp_path / "two")])
    stage.init("one")
    stage.write_files(40)
    stage.backup("one")
    total = len(stage.keys("one"))
    stage.config.replication_parallel = 1
    events, asked = [], []

    def should_stop() -> bool:  # not before the first objects, then at once
        asked.append(True)
        return len(asked) > 1

    partial = replicate(stage.catalog, stage.master_key, stage.config,
                        progress=events.append, should_stop=should_stop)
    assert partial.stopped and not partial.ok
    assert 0 < partial.objects_copied < total
    assert events and events[-1].files_done == partial.objects_copied
    assert not any(key.startswith("snapshots/") for key in stage.keys("two"))
    with stage.catalog.session() as session:
        rows = session.scalar(sa.select(sa.func.count()).select_from(StoreObject).join(StoreRow)
                              .where(StoreRow.name == "two"))
    assert rows == partial.objects_copied

    rest = replicate(stage.catalog, stage.master_key, stage.config)
    assert rest.ok and partial.objects_copied + rest.objects_copied == total
    assert stage.keys("two") == stage.keys("one")



KILLED_PASS = """
import os, signal, sys
from pathlib import Path
import drd.replication.run as run
from drd.config import load_config
from drd.services.centre import open_catalog, open_master_key

run.CHECKPOINT_OBJECTS = 2
config = load_config(Path(sys.argv[1]))
config.replication_parallel = 1

def progress(event):
    if event.files_done >= int(sys.argv[2]):
        os.kill(os.getpid(), signal.SIGKILL)

run.replicate(open_catalog(config), open_master_key(config), config, progress=progress)
"""


def test_a_pass_killed_mid_way_is_finished_by_the_next_one(tmp_path, restic_binary):
    stage = make_stage(tmp_path, restic_binary=restic_binary,
                       stores=[StoreSetup("one", "region-a", directory=tmp_path / "one"),
                               StoreSetup("two", "region-b", directory=tmp_path / "two")])
    stage.init("one")
    stage.write_files(40)
    stage.backup("one")
    total = stage.keys("one")
    environment = {key: value for key, value in os.environ.items()
                   if not key.startswith(("DRD_HOME", "DRD_MASTER"))}
    killed = subprocess.run([sys.executable, "-c", KILLED_PASS, str(stage.home), "5"],
                            env=environment, capture_output=True, text=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    landed = stage.keys("two")
    assert 5 <= len(landed) < len(total)
    assert not any(key.startswith("snapshots/") for key in landed)
    with stage.catalog.session() as session:
        ledger = set(session.scalars(sa.select(StoreObject.key).join(StoreRow)
                                     .where(StoreRow.name == "two")))
    assert ledger and ledger <= set(landed)  # checkpoints, and never ahead of the store

    rest = replicate(stage.catalog, stage.master_key, stage.config)
    assert rest.ok and by_store(rest)["two"].objects_copied == len(total) - len(landed)
    assert stage.keys("two") == total
    assert stage.restic.check(stage.repository("two")).ok
