"""Restore drills on real components: restic restores from one SeaweedFS store (or a
directory) into a sandbox, checked against a manifest signed with a real agent key."""

from __future__ import annotations

import datetime as dt
import json
import secrets
import sqlite3

import boto3
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from drd.catalog.models import AuditEntry, Drill, SnapshotManifest, System
from drd.cli.main import cli
from drd.crypto.signing import verify
from drd.errors import UserError
from drd.services.alerts import list_alerts
from restore_drills.report import canonical_bytes
from restore_drills.run import DrillInterrupted, run_drill
from tests.integration.staging import StoreSetup, make_stage

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DRILL_PLAN = """\
drill:
  schedule: "0 3 * * *"
  period: 7d
  checks:
    - name: app-db
      command: ["sqlite3", "{restored}%(source)s/app.db", "PRAGMA integrity_check"]
      expect_stdout: ok
      timeout: 30s
"""


def drill(stage, store=None, **options):
    return run_drill(stage.catalog, stage.master_key, stage.keystore, stage.config,
                     stage.home, stage.system, store=store, **options)


def backed_up(stage, store: str, *, created_meanwhile: bool = False) -> str:
    """Back up the stage's source to ``store``, report it with true counts and a signed
    manifest, and copy it to the other stores. ``created_meanwhile``: a file appears
    after restic read the tree and before the agent hashed it (a busy server)."""
    files = [path for path in stage.source.rglob("*") if path.is_file()]
    snapshot = stage.backup(store)
    stage.report(snapshot, files=len(files), size=sum(path.stat().st_size for path in files))
    if created_meanwhile:
        (stage.source / "late.txt").write_text("written while the backup ran\n")
    stage.sign_manifest(snapshot)
    stage.copy_all(store)
    return snapshot


def write_database(stage) -> None:
    with sqlite3.connect(stage.source / "app.db") as database:
        database.execute("create table t (x)")
        database.executemany("insert into t values (?)", [(i,) for i in range(100)])


@pytest.fixture
def drill_stage(tmp_path, seaweed, restic_binary):
    (server,) = seaweed(1)
    source = tmp_path / "source"
    stage = make_stage(tmp_path, restic_binary=restic_binary,
                       stores=[StoreSetup("dc-a", "region-a", server, "drill-a"),
                               StoreSetup("far", "region-b", server, "drill-b")],
                       policy_extra=DRILL_PLAN % {"source": source})
    stage.server = server
    stage.init("dc-a")
    stage.write_files(12, size=30_000)
    write_database(stage)
    return stage


def test_a_drill_passes_rotates_and_signs_its_report(drill_stage, tmp_path):
    stage = drill_stage
    snapshot = backed_up(stage, "dc-a", created_meanwhile=True)
    far_id = stage.store_row("far").id
    with stage.catalog.session() as session:  # enrolled long enough to be overdue
        system = session.scalar(sa.select(System))
        system.enrolled_at = dt.datetime.now(dt.UTC) - dt.timedelta(days=60)
        # a drill whose process died three days ago, still "running"
        dead = Drill(system_id=system.id, store_id=far_id,
                     snapshot_restic_id=snapshot,
                     started_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=3))
        session.add(dead)
        session.flush()
        dead_id = dead.id

    first = drill(stage)
    report = first.report
    assert first.passed, report["reasons"]
    assert report["store"] == "dc-a"  # never drilled: the first in the policy
    assert report["snapshot"] == snapshot
    assert report["checks"]["negative_control"]["passed"]
    assert "caught" in report["checks"]["negative_control"]["detail"]
    assert report["checks"]["app:app-db"] == {"passed": True,
                                              "detail": report["checks"]["app:app-db"]
                                              ["detail"]}
    assert report["restore"]["files"] == report["restore"]["expected_files"] == 13
    assert "1 changed while the backup ran" in report["checks"]["manifest"]["detail"]
    assert set(report["phases"]) >= {"unseal", "restore", "verify", "manifest", "control",
                                     "checks"}
    assert report["rto_seconds"] == pytest.approx(
        sum(report["phases"][name] for name in ("unseal", "restore", "verify")), abs=0.01)
    assert report["posture"]["copies"] == 2 and report["posture"]["regions"] == 2
    assert not list((stage.home / "drills").iterdir()), "the sandbox was left behind"
    with stage.catalog.session() as session:
        dead = session.get(Drill, dead_id)
        assert dead.passed is False and dead.finished_at is not None

    (late,) = [alert for alert in list_alerts(stage.catalog) if alert.kind == "drill_overdue"]
    assert late.details["stores"] == ["far"]
    second = drill(stage)
    assert second.passed and second.report["store"] == "far"  # rotation
    assert not [alert for alert in list_alerts(stage.catalog) if alert.kind == "drill_overdue"]
    third = drill(stage)
    assert third.report["store"] == "dc-a"

    with stage.catalog.session() as session:
        row = session.get(Drill, first.id)
        verify(stage.keystore.signing_public_key(), canonical_bytes(row.report), row.signature)
        unseals = session.scalars(sa.select(AuditEntry).where(
            AuditEntry.action == "escrow.unseal")).all()
    assert len(unseals) == 3
    assert stage.password.reveal() not in json.dumps(report)

    listed = CliRunner().invoke(cli, ["--home", str(stage.home), "drill", "list", "fs1",
                                      "--json"])
    assert listed.exit_code == 0, listed.output
    assert [entry["store"] for entry in json.loads(listed.output)] == ["dc-a", "far", "dc-a",
                                                                 "far"]  # the dead one


def test_a_corrupt_pack_in_one_store_fails_its_drill_and_names_the_files(drill_stage):
    stage = drill_stage
    backed_up(stage, "dc-a")
    s3 = boto3.client("s3", endpoint_url=stage.server.endpoint, region_name="region-b",
                      aws_access_key_id=stage.server.access_key,
                      aws_secret_access_key=stage.server.secret_key)
    packs = s3.list_objects_v2(Bucket="drill-b", Prefix="parks/fs1/data/")["Contents"]
    pack = max(packs, key=lambda item: item["Size"])  # file data, not trees
    body = bytearray(s3.get_object(Bucket="drill-b", Key=pack["Key"])["Body"].read())
    body[len(body) // 3] ^= 0xFF
    s3.put_object(Bucket="drill-b", Key=pack["Key"], Body=bytes(body))

    bad = drill(stage, "far")
    assert not bad.passed
    assert not bad.report["checks"]["restic_verify"]["passed"]
    assert bad.report["affected_files"], bad.report
    assert all(path.startswith(str(stage.source)) for path in bad.report["affected_files"])
    assert any("far" in reason or "restore" in reason for reason in bad.report["reasons"])
    (alert,) = [alert for alert in list_alerts(stage.catalog) if alert.kind == "drill_failed"]
    assert (alert.system, alert.store) == ("fs1", "far")

    good = drill(stage, "dc-a")  # the other copy is untouched: reading nothing from far
    assert good.passed, good.report["reasons"]

    result = CliRunner().invoke(cli, ["--home", str(stage.home), "drill", "run", "fs1",
                                      "--store", "far", "--json"])
    assert result.exit_code == 1, result.output
    summary = json.loads(result.output)
    assert summary["passed"] is False and summary["store"] == "far"
    for key in ("id", "system", "snapshot", "rto_seconds", "rpo_seconds", "checks", "phases"):
        assert key in summary


def test_a_failing_application_check_or_a_bad_manifest_signature_fails(drill_stage):
    stage = drill_stage
    (stage.source / "app.db").write_bytes(secrets.token_bytes(4096))  # not a database
    backed_up(stage, "dc-a")
    broken = drill(stage, "dc-a")
    assert not broken.passed
    assert not broken.report["checks"]["app:app-db"]["passed"]
    assert broken.report["checks"]["manifest"]["passed"]  # the bytes are what was saved

    with stage.catalog.session() as session:
        row = session.scalars(sa.select(SnapshotManifest)).one()
        manifest = json.loads(row.content)
        manifest["files"][0]["sha256"] = "0" * 64
        row.content = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    forged = drill(stage, "far")
    assert not forged.passed
    check = forged.report["checks"]["manifest_signature"]
    assert not check["passed"] and "does not verify" in check["detail"]

    with pytest.raises(UserError, match="not kept in store 'nowhere'"):
        drill(stage, "nowhere")


def test_a_store_that_cannot_be_read_is_a_failed_drill(tmp_path, restic_binary):
    stage = make_stage(tmp_path, restic_binary=restic_binary,
                       stores=[StoreSetup("near", "region-a", directory=tmp_path / "near"),
                               StoreSetup("away", "region-b", directory=tmp_path / "away")])
    stage.init("near")
    stage.write_files(3)
    backed_up(stage, "near")
    with pytest.raises(DrillInterrupted):  # the daemon stopping: no verdict, no alert
        drill(stage, "near", should_stop=lambda: True)
    assert not [alert for alert in list_alerts(stage.catalog) if alert.kind == "drill_failed"]
    assert not list((stage.home / "drills").iterdir())
    with stage.catalog.session() as session:  # not an attempt: nothing recorded
        assert session.scalars(sa.select(Drill)).all() == []

    for path in sorted((tmp_path / "away").rglob("*"), reverse=True):
        if path.is_file():
            path.unlink()
    outcome = drill(stage, "away")
    assert not outcome.passed
    assert "away" in outcome.report["reasons"][0]
    assert outcome.report["checks"]["restic_verify"]["passed"] is False
    assert len(outcome.report["reasons"]) == 1  # said once, by the check that stopped it
    assert outcome.report["rto_seconds"] is None  # no restore, no recovery time
    with stage.catalog.session() as session:
        assert session.get(Drill, outcome.id).passed is False


def test_the_daemon_drills_each_store_in_turn_and_alerts_on_a_failure(tmp_path, database_url,
                                                                      restic_binary):
    import threading

    from drd.catalog.models import Job, JobRun, System, WorkItem
    from drd.catalog.types import utcnow
    from drd.daemon import queue
    from drd.daemon.jobs import sync_jobs
    from drd.daemon.workers import RunningItems, Worker

    source = tmp_path / "source"
    stage = make_stage(tmp_path, database_url=database_url, restic_binary=restic_binary,
                       stores=[StoreSetup("near", "region-a", directory=tmp_path / "near"),
                               StoreSetup("away", "region-b", directory=tmp_path / "away")],
                       policy_extra=DRILL_PLAN % {"source": source})
    stage.init("near")
    stage.write_files(4)
    write_database(stage)
    backed_up(stage, "near")
    worker = Worker("w1", catalog=stage.catalog, daemon_id="d1", config=stage.config,
                    master_key=stage.master_key, keystore=stage.keystore,
                    stopping=threading.Event(), running=RunningItems())

    def scheduled_drill():
        with stage.catalog.session() as session:
            queue.request(session, "drill", session.scalar(sa.select(System.id)), "schedule")
        # what is queued runs (the snapshot's report queued a replication too)
        while (claimed := queue.claim(stage.catalog, "d1", dt.timedelta(seconds=60))):
            worker.run_item(claimed)
        with stage.catalog.session() as session:
            item = session.scalars(sa.select(WorkItem).join(Job).where(Job.kind == "drill")
                                   .order_by(WorkItem.id.desc())).first()
            return item.state, session.get(JobRun, item.run_id)

    with stage.catalog.session() as session:
        sync_jobs(session, utcnow())
        job = session.scalar(sa.select(Job).where(Job.kind == "drill"))
        assert (job.name, job.schedule, job.store_id) == ("drill:fs1", "0 3 * * *", None)

    state, run = scheduled_drill()
    assert (state, run.outcome) == ("done", "succeeded"), run.error
    for pack in (tmp_path / "away").rglob("data/*/*"):
        pack.chmod(0o600)
        pack.write_bytes(b"rot" + pack.read_bytes()[3:])
    state, run = scheduled_drill()
    assert run.outcome == "failed" and state == "failed"  # not retried: the alert is the news
    assert "away" in run.error
    assert [drill.store for drill in list_drills_of(stage)] == ["away", "near"]
    (alert,) = [alert for alert in list_alerts(stage.catalog) if alert.kind == "drill_failed"]
    assert alert.store == "away"
    stage.catalog.dispose()


def list_drills_of(stage):
    from restore_drills.records import list_drills

    return list_drills(stage.catalog, stage.system)
