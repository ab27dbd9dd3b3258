"""Reports are claims: a snapshot an agent reports counts once the stores hold it.

A centre (SQLite, then PostgreSQL) with two SeaweedFS stores (one server each, two
regions, ``min_copies: 2``), a real restic repository of ``fs1`` in both, and the agent
API served by the real app
(FastAPI's ``TestClient``) with an agent token of ``fs1``. An invented snapshot id
reported with a time a few minutes ahead must not become the system's latest: restore,
status, drills and retention keep using the real one, and the daemon's confirmation
step (run by the system's replication job, as a worker runs it) rejects it with a
``forged_report`` alert. A real report counts once that step has seen it in the stores.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import subprocess
import sys
import threading
import time
import uuid

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from drd.api.app import create_app
from drd.catalog.models import AuditEntry, Snapshot, SnapshotCopy, Token
from drd.catalog.models import Store as StoreRow
from drd.daemon import queue
from drd.daemon.workers import RunningItems, Worker
from drd.devstores import start_many_in
from drd.retention.decide import NEWEST_GOOD_REASON
from drd.retention.run import plan_retention
from drd.secrets import Secret
from drd.services import alerts as alert_service
from drd.services import snapshots as snapshot_service
from drd.services import status as status_service
from drd.services.tokens import create_token
from restore_drills.plan import choose_restore_point
from restore_drills.records import load_subject
from tests.integration.conftest import _need_weed
from tests.integration.staging import StoreSetup, make_stage

pytestmark = [pytest.mark.integration, pytest.mark.slow]

AGENT_TOKEN = "agent-token-of-fs1-" + "x" * 24


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    _need_weed()
    started = start_many_in([(tmp_path_factory.mktemp("seaweed"), f"confirm-{index}")
                             for index in range(2)])
    yield started
    for server in started:
        server.kill()


@pytest.fixture
def stage(tmp_path, servers, restic_binary, database_url):
    bucket = f"confirm-{secrets.token_hex(4)}"
    # Object Lock: what a policy over SeaweedFS stores asks for (their agents' own keys
    # cannot be refused an overwrite there)
    made = make_stage(tmp_path, restic_binary=restic_binary, object_lock_days=1,
                      database_url=database_url,
                      stores=[StoreSetup("dc-a", "region-a", servers[0], f"{bucket}-a",
                                         object_lock=True),
                              StoreSetup("far", "region-b", servers[1], f"{bucket}-b",
                                         object_lock=True)])
    made.init("dc-a")
    made.write_files(count=12, size=4_000)
    made.copy_all("dc-a")
    with made.catalog.session() as session:
        session.add(Token(name="agent-fs1", role="agent", systems=["fs1"],
                          token_hash=Token.hash_token(Secret(AGENT_TOKEN))))
    yield made
    made.catalog.dispose()


def client_of(stage, token: str) -> TestClient:
    return TestClient(create_app(stage.catalog, stage.master_key, stage.config),
                      headers={"Authorization": f"Bearer {token}"})


def post_report(stage, body: dict) -> None:
    with client_of(stage, AGENT_TOKEN) as client:
        response = client.post("/v1/agent/snapshots", json=body)
    assert response.status_code == 201, response.text


def run_daemon(stage) -> list[str]:
    """Run what the reports queued, as a daemon's worker does; the job names run."""
    worker = Worker("worker-1", catalog=stage.catalog, daemon_id="daemon-test",
                    config=stage.config, master_key=stage.master_key,
                    keystore=stage.keystore, stopping=threading.Event(),
                    running=RunningItems())
    ran = []
    while (claimed := queue.claim(stage.catalog, "daemon-test", worker.lease)) is not None:
        worker.run_item(claimed)
        ran.append(claimed.job_name)
    return ran


def restic_snapshot(stage, snapshot_id: str, store: str = "dc-a"):
    (found,) = [s for s in stage.restic.snapshots(stage.repository(store))
                if s.id == snapshot_id]
    return found


def report_body(snapshot, *, time: dt.datetime | None = None,
                complete: dict[str, bool] | None = None, snapshot_id: str | None = None
                ) -> dict:
    complete = complete or {"dc-a": True, "far": True}
    return {"report_id": str(uuid.uuid4()), "snapshot_id": snapshot_id or snapshot.id,
            "time": (time or snapshot.time).isoformat(), "hostname": "fs1",
            "paths": list(snapshot.paths), "tags": [], "tree": snapshot.tree, "files": 12,
            "bytes": 48_000, "duration_seconds": 1.0,
            "stores": {name: {"complete": done, "missing_objects": 0 if done else 1}
                       for name, done in complete.items()}}


def drd(stage, *args: str, check: int | None = 0) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items()
                   if not k.startswith(("AWS_", "DRD_", "RESTIC_"))}
    environment["DRD_RESTIC"] = stage.config.restic_binary
    result = subprocess.run([sys.executable, "-m", "drd.cli.main", "--home", str(stage.home),
                             *args], env=environment, capture_output=True, text=True,
                            timeout=300)
    if check is not None:
        assert result.returncode == check, (args, result.stdout, result.stderr)
    return result


def statuses(stage) -> dict[str, str]:
    with stage.catalog.session() as session:
        return dict(session.execute(sa.select(Snapshot.restic_id, Snapshot.status)).all())


def copies(stage, snapshot_id: str) -> dict[str, str]:
    with stage.catalog.session() as session:
        return dict(session.execute(
            sa.select(StoreRow.name, SnapshotCopy.state)
            .join(StoreRow, StoreRow.id == SnapshotCopy.store_id)
            .join(Snapshot, Snapshot.id == SnapshotCopy.snapshot_id)
            .where(Snapshot.restic_id == snapshot_id)).all())


def test_an_invented_report_never_becomes_latest_and_is_rejected(stage, tmp_path):
    real_id = stage.backup("dc-a")
    stage.copy_all("dc-a")
    real = restic_snapshot(stage, real_id)
    post_report(stage, report_body(real))
    assert statuses(stage) == {real_id: "unconfirmed"}
    assert run_daemon(stage) == ["replicate:fs1"]
    assert statuses(stage) == {real_id: "active"}
    assert copies(stage, real_id) == {"dc-a": "present", "far": "present"}

    # an invented id, five minutes ahead, "complete" in both stores
    forged_id = secrets.token_hex(32)
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)
    post_report(stage, report_body(real, snapshot_id=forged_id, time=soon))
    assert statuses(stage)[forged_id] == "unconfirmed"

    # restore's latest (and --at) is the real snapshot, byte for byte
    target = tmp_path / "restored"
    summary = json.loads(drd(stage, "restore", "fs1", "--target", str(target),
                             "--json").stdout)
    assert summary["snapshot"] == real_id
    restored = target / stage.source.relative_to("/")
    assert sorted(p.name for p in restored.rglob("*.bin")) == \
        sorted(p.name for p in stage.source.rglob("*.bin"))
    at = json.loads(drd(stage, "restore", "fs1", "--at", "now", "--target",
                        str(tmp_path / "at"), "--json").stdout)
    assert at["snapshot"] == real_id
    # status and RPO, drills and retention count the real one only
    (fs1,) = status_service.system_statuses(stage.catalog)
    assert fs1.last_backup_at == real.time
    assert choose_restore_point(load_subject(stage.catalog, "fs1").snapshots).primary \
        .restic_id == real_id
    plan = plan_retention(stage.catalog, "fs1")
    assert plan.reasons[real_id][-1] == NEWEST_GOOD_REASON
    assert forged_id not in plan.reasons
    # the operator sees it: drd snapshots and the API
    table = drd(stage, "snapshots", "fs1").stdout
    assert any(forged_id[:8] in line and "unconfirmed" in line for line in table.splitlines())
    operator = create_token(stage.catalog, role="operator").token.reveal()
    with client_of(stage, operator) as client:
        page = client.get("/v1/systems/fs1/snapshots").json()
    listed = {item["id"]: item for item in page["items"]}
    assert listed[forged_id]["status"] == "unconfirmed" and not listed[forged_id]["good"]
    assert listed[real_id]["status"] == "active" and listed[real_id]["good"]

    # the daemon looks: no store holds it, so it is rejected, with an alert
    assert run_daemon(stage) == ["replicate:fs1"]
    assert statuses(stage) == {real_id: "active", forged_id: "rejected"}
    assert copies(stage, forged_id) == {}  # the claimed copies are gone
    (alert,) = [a for a in alert_service.list_alerts(stage.catalog)
                if a.kind == "forged_report"]
    assert alert.system == "fs1" and forged_id[:8] in alert.message
    assert alert.severity == "critical"
    assert alert.details["lacking"] == ["dc-a", "far"]
    assert alert.details["claimed"] == {"dc-a": "present", "far": "present"}
    with stage.catalog.session() as session:
        (entry,) = session.scalars(sa.select(AuditEntry).where(
            AuditEntry.action == "snapshot.reject")).all()
    assert entry.target == "fs1" and entry.details["snapshot"] == forged_id
    snapshots = {view.snapshot_id: view for view in
                 snapshot_service.list_snapshots(stage.catalog, "fs1")}
    assert snapshots[forged_id].status == "rejected"
    # still the real one, and a rejected report cannot be named either
    (fs1,) = status_service.system_statuses(stage.catalog)
    assert fs1.last_backup_at == real.time
    said = drd(stage, "restore", "fs1", "--snapshot", forged_id[:10], "--target",
               str(tmp_path / "never"), check=2).stderr
    assert "rejected" in said
    # a second look changes nothing
    assert run_daemon(stage) == []


def test_a_real_report_counts_once_the_stores_hold_it(stage, tmp_path):
    # the fan-out reached dc-a only: the daemon's pass copies the snapshot to far
    snapshot_id = stage.backup("dc-a")
    snapshot = restic_snapshot(stage, snapshot_id)
    post_report(stage, report_body(snapshot, complete={"dc-a": True, "far": False}))
    (fs1,) = status_service.system_statuses(stage.catalog)
    assert fs1.last_backup_at is None  # not before the centre has seen it
    started = time.monotonic()
    assert run_daemon(stage) == ["replicate:fs1"]
    seconds = time.monotonic() - started
    assert statuses(stage) == {snapshot_id: "active"}
    assert copies(stage, snapshot_id) == {"dc-a": "present", "far": "present"}
    (fs1,) = status_service.system_statuses(stage.catalog)
    assert fs1.last_backup_at == snapshot.time
    assert seconds < 30, seconds
    assert not [a for a in alert_service.list_alerts(stage.catalog)
                if a.kind == "forged_report"]


def test_drd_replicate_settles_reports_in_the_foreground(stage):
    snapshot_id = stage.backup("dc-a")
    stage.copy_all("dc-a")
    snapshot = restic_snapshot(stage, snapshot_id)
    post_report(stage, report_body(snapshot))
    forged_id = secrets.token_hex(32)
    post_report(stage, report_body(snapshot, snapshot_id=forged_id))
    output = json.loads(drd(stage, "replicate", "fs1", "--json").stdout)
    (settled,) = output["confirmation"]
    assert settled["confirmed"] == [snapshot_id] and list(settled["rejected"]) == [forged_id]
    assert statuses(stage) == {snapshot_id: "active", forged_id: "rejected"}
    with stage.catalog.session() as session:
        (entry,) = session.scalars(sa.select(AuditEntry).where(
            AuditEntry.action == "snapshot.reject")).all()
    assert entry.actor.startswith("cli:")
