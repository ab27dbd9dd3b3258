"""What a run does (its plan), what it reports, and what --json prints: pure."""

from __future__ import annotations

from datetime import UTC, datetime

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agents.backup import (
    BackupResult,
    SnapshotResult,
    plan_backup,
    run_tag,
    snapshot_report,
)
from agents.commands import command_environment, describe
from agents.manifest import sign_manifest
from agents.target import StoreState, TargetOutcome
from drd.restic import BackupSummary
from drd.restic.commands import backup_command
from drd.services.protocol import SnapshotReport
from policies.schema import Policy

RUN = "3f0c7f38-5d3e-4a8e-9d0b-8d7f1c3e2a11"
SNAPSHOT = "0d75d4202c7c41e2637dcc8ddf696e430e53a6884aed1a751bcd339a0d19e41a"
TREE = "1" * 64


def policy(**changes) -> Policy:
    document = {
        "policy": "fileserver", "schedule": "0 * * * *",
        "sources": [{"path": "/srv/share", "exclude": ["*.tmp", "cache/"]},
                    {"path": "/etc"},
                    {"command": ["sqlite3", "/srv/app.db", ".dump"], "filename": "app.sql"}],
        "before": [["/usr/local/bin/freeze", "--all"]], "after": [["/usr/local/bin/thaw"]],
        "stores": ["dc-a", "dc-b", "region-b"], "min_copies": 2, "retention": {"keep_last": 3},
        "rpo": "1h", "rto": "4h", "manifest": {"sample_percent": 50},
    }
    document.update(changes)
    return Policy.model_validate(document)


def test_the_plan_holds_one_path_backup_and_one_dump_per_command_source():
    plan = plan_backup(policy(), run_id=RUN, host="fs1")
    assert plan.paths == ("/srv/share", "/etc")
    assert plan.excludes == ("/srv/share/**/*.tmp", "/srv/share/**/cache")
    assert [source.filename for source in plan.commands] == ["app.sql"]
    assert plan.before == (("/usr/local/bin/freeze", "--all"),)
    assert plan.after == (("/usr/local/bin/thaw",),)
    assert plan.tags == (f"drd-run:{RUN}",) == (run_tag(RUN),)
    assert plan.sample_percent == 50


def test_the_restic_command_of_a_plan():
    plan = plan_backup(policy(), run_id=RUN, host="fs1")
    assert backup_command(plan.paths, plan.excludes, plan.tags, plan.host) == (
        "backup", "--json", "--exclude", "/srv/share/**/*.tmp",
        "--exclude", "/srv/share/**/cache", "--tag", f"drd-run:{RUN}", "--host", "fs1",
        "--", "/srv/share", "/etc")
    dump = backup_command(tags=plan.tags, host=plan.host,
                          stdin_filename=plan.commands[0].filename)
    assert dump == ("backup", "--json", "--stdin", "--stdin-filename", "app.sql",
                    "--tag", f"drd-run:{RUN}", "--host", "fs1")


def test_a_policy_of_commands_only_has_no_path_backup():
    plan = plan_backup(policy(sources=[{"command": ["pg_dump"], "filename": "db.sql"}]),
                       run_id=RUN, host="fs1")
    assert plan.paths == () and plan.excludes == ()


def result_with_two_snapshots() -> BackupResult:
    started = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)
    outcome = TargetOutcome(durable=True, min_copies=2, stores={
        "dc-a": StoreState(complete=True),
        "region-b": StoreState(complete=False, missing_objects=2,
                               missing=("data/ab/ab12", "index/cd34")),
    })
    summary = BackupSummary(snapshot_id=SNAPSHOT, short_id=SNAPSHOT[:8],
                            total_files_processed=5204, total_bytes_processed=444_000_000,
                            total_duration=9.4)
    paths = SnapshotResult(SNAPSHOT, "paths", ("/srv/share",), summary=summary,
                           time=started, tree=TREE, paths=("/srv/share",),
                           tags=(run_tag(RUN),))
    paths.manifest = sign_manifest(Ed25519PrivateKey.generate(), {"snapshot_id": SNAPSHOT})
    dump = SnapshotResult("2" * 64, "command", ("/app.sql",),
                          summary=BackupSummary(snapshot_id="2" * 64, short_id="22222222",
                                                total_files_processed=1,
                                                total_bytes_processed=10),
                          time=started, tree="3" * 64)
    return BackupResult(run_id=RUN, started=started, duration_seconds=12.5,
                        snapshots=[paths, dump], outcome=outcome)


def test_the_snapshot_report_fits_the_protocol():
    result = result_with_two_snapshots()
    report = snapshot_report(result, result.snapshots[0], "fs1.parks.city")
    parsed = SnapshotReport.model_validate(report)  # the centre's own model
    assert parsed.snapshot_id == SNAPSHOT and parsed.tree == TREE
    assert report["time"] == "2026-12-02T10:00:00Z"
    assert report["files"] == 5204 and report["bytes"] == 444_000_000
    assert report["duration_seconds"] == 9.4
    assert report["tags"] == [f"drd-run:{RUN}"] and report["paths"] == ["/srv/share"]
    assert report["stores"]["region-b"] == {"complete": False, "missing_objects": 2,
                                            "missing": ["data/ab/ab12", "index/cd34"]}
    assert report["manifest_sha256"] == result.snapshots[0].manifest.sha256
    assert report["partial"] is False
    dump = snapshot_report(result, result.snapshots[1], "fs1.parks.city")
    SnapshotReport.model_validate(dump)
    assert dump["paths"] == ["/app.sql"] and dump["manifest_sha256"] is None
    assert dump["report_id"] != report["report_id"]
    # the report id is the snapshot's: a second delivery of the same report is a duplicate
    assert snapshot_report(result, result.snapshots[0], "x")["report_id"] == report["report_id"]


def test_the_json_of_a_run():
    result = result_with_two_snapshots()
    document = result.as_dict()
    assert document["ok"] is True
    assert document["snapshot_id"] == SNAPSHOT
    assert document["time"] == "2026-12-02T10:00:00Z"
    assert document["stores"] == {"dc-a": True, "region-b": False}
    assert document["files"] == 5205 and document["bytes"] == 444_000_010
    assert document["duration_seconds"] == 12.5
    assert [s["kind"] for s in document["snapshots"]] == ["paths", "command"]
    result.problems.append("before command x failed")
    assert result.as_dict()["ok"] is False
    assert result.failure() == "backup failed: before command x failed"


def test_the_commands_environment_carries_no_secrets():
    parent = {"PATH": "/usr/bin", "HOME": "/root", "RESTIC_PASSWORD": "p",
              "AWS_SECRET_ACCESS_KEY": "k", "DRD_MASTER_PASSPHRASE": "m", "LANG": "C"}
    assert command_environment(parent) == {"PATH": "/usr/bin", "HOME": "/root", "LANG": "C"}
    assert describe(["pg_dump", "-Fc", "db"]) == "pg_dump -Fc db"
    assert describe(["x" * 200]).endswith("...") and len(describe(["x" * 200])) == 120
