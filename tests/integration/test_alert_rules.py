"""The alert rules on a real catalog (SQLite and PostgreSQL): one evaluation pass opens
the alerts that hold, a pass after the facts changed resolves them; the store probe
against a real S3 server (SeaweedFS) and one that is down; an agent's heartbeat with
``last_failure``; ``drd alerts check``."""

from __future__ import annotations

import datetime as dt
import json
import socket
import threading
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from agents import service as agent_service
from agents.backup import BackupResult
from agents.home import AgentHome
from agents.service import last_failure
from drd.alerting.evaluate import run_rules
from drd.alerting.probe import ProbeResult, probe_stores
from drd.alerting.rules import RuleSettings
from drd.catalog import Catalog, migrate
from drd.catalog.models import (
    Alert,
    Department,
    Drill,
    Replica,
    Snapshot,
    SnapshotCopy,
    System,
)
from drd.catalog.models import Store as StoreRow
from drd.config import CONFIG_FILE, load_config
from drd.crypto.masterkey import MasterKey
from drd.daemon.watch import Watch
from drd.secrets import Secret
from drd.services import alerts
from drd.services import policies as policy_service
from drd.services import stores as store_service
from drd.services.centre import initialise, open_catalog
from drd.stores.url import StoreSpec
from tests.integration.test_api_agent import T0, Agent, centre  # noqa: F401 - a fixture
from tests.integration.test_tokens import drd

pytestmark = pytest.mark.integration

NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
POLICY = """\
policy: fileserver
schedule: "0 * * * *"
sources: [{{path: /srv/share}}]
stores: [dc-a, vault]
min_copies: 1
allow_shared_credentials: true
retention: {{keep_last: 7, keep_daily: 14, keep_weekly: 8}}
object_lock_days: {lock}
rpo: 1h
rto: 4h
drill: {{schedule: "0 3 * * *", period: 30d}}
"""


@pytest.fixture
def catalog(database_url: str) -> Catalog:
    migrate(database_url)
    with Catalog(database_url) as catalog:
        yield catalog


def _apply(catalog: Catalog, tmp_path: Path, lock: int) -> None:
    path = tmp_path / "fileserver.yaml"
    path.write_text(POLICY.format(lock=lock))
    policy_service.apply(catalog, [path], store_service.store_regions(catalog))


def _open(catalog: Catalog) -> dict[str, alerts.AlertView]:
    return {(view.kind, view.system, view.store): view for view in alerts.list_alerts(catalog)}


def test_one_pass_opens_what_holds_and_a_later_pass_resolves_it(catalog: Catalog,
                                                                tmp_path: Path) -> None:
    with catalog.session() as session:
        session.add_all([
            StoreRow(name="dc-a", kind="file", url=f"file://{tmp_path}/dc-a", region="a",
                     reachable=True),
            StoreRow(name="vault", kind="s3", url="s3://vault/x", endpoint="http://v.test",
                     credentials="shared",
                     region="b", object_lock=True, reachable=False,
                     check_error="connection refused", checked_at=NOW)])
    _apply(catalog, tmp_path, lock=7)
    with catalog.session() as session:
        parks = Department(name="parks")
        session.add(parks)
        session.flush()
        fs1 = System(name="fs1", department_id=parks.id, status="enrolled",
                     enrolled_at=NOW - 60 * DAY, policy_id=1,
                     last_heartbeat={"hostname": "fs1", "last_backup_at": None,
                                     "last_failure": {"at": (NOW - DAY).isoformat(),
                                                      "error": "restic: disk full"}})
        session.add(fs1)
        session.flush()
        dc_a, vault = (session.scalar(sa.select(StoreRow.id).where(StoreRow.name == name))
                       for name in ("dc-a", "vault"))
        session.add(Replica(system_id=fs1.id, store_id=vault, lag_objects=5000,
                            lag_bytes=10, watermark_at=NOW - 2 * DAY))
        # an alert of a kind the rules do not own: never resolved by them
        alerts.raise_alert(session, "damage", "fs1: 3 objects lost", system_id=fs1.id,
                           store_id=vault, now=NOW)

    done = run_rules(catalog, RuleSettings(), NOW)
    assert sorted(alert.kind for alert in done.raised) == [
        "backup_failed", "drill_overdue", "object_lock_short", "object_lock_short",
        "replication_lag", "rpo_breached", "store_down"]
    opened = _open(catalog)
    assert "disk full" in opened["backup_failed", "fs1", None].message
    assert "dc-a has no Object Lock" in opened["object_lock_short", None, "dc-a"].message
    assert "fewer than the 14 days" in opened["object_lock_short", None, "vault"].message
    assert opened["store_down", None, "vault"].severity == "critical"
    assert ("damage", "fs1", "vault") in opened

    # the same facts again: nothing new, no repeat counted
    assert run_rules(catalog, RuleSettings(), NOW + dt.timedelta(minutes=1)).raised == []
    assert {view.count for view in alerts.list_alerts(catalog)} == {1}

    # everything put right: a good backup, the store back, replicated, drilled, locked
    later = NOW + dt.timedelta(minutes=10)
    with catalog.session() as session:
        snapshot = Snapshot(restic_id="a" * 64, system_id=fs1.id, time=later,
                            hostname="fs1", tree="b" * 64, reported_at=later)
        session.add(snapshot)
        session.flush()
        session.add(SnapshotCopy(snapshot_id=snapshot.id, store_id=dc_a, state="present"))
        session.execute(sa.update(StoreRow).values(reachable=True, check_error=None,
                                                   object_lock=True))
        session.execute(sa.update(Replica).values(lag_objects=0, lag_bytes=0,
                                                  watermark_at=later))
        session.add_all([Drill(system_id=fs1.id, store_id=store, started_at=later,
                               finished_at=later, passed=True) for store in (dc_a, vault)])
    _apply(catalog, tmp_path, lock=14)
    done = run_rules(catalog, RuleSettings(), later)
    assert done.raised == []
    assert len(done.resolved) == 7
    assert list(_open(catalog)) == [("damage", "fs1", "vault")]


def test_the_probe_records_each_store_and_a_down_one_raises_store_down(
        catalog: Catalog, seaweed_session, tmp_path: Path) -> None:
    master_key = MasterKey.generate()
    server = seaweed_session
    store_service.add_store(catalog, master_key, StoreSpec(
        "dc-a", f"s3://alerts-{uuid.uuid4().hex[:12]}/city", endpoint=server.endpoint,
        region="a"), server.access_key, Secret(server.secret_key))
    with socket.socket() as closed:  # a port nobody listens on: a stopped server
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    with catalog.session() as session:
        session.add(StoreRow(name="dc-b", kind="s3", url="s3://gone/city",
                             endpoint=f"http://127.0.0.1:{port}", region="b",
                             access_key_id="AKIAGONE", secret_encrypted=master_key.encrypt(
                                 b"gone-secret-key", store_service.secret_context("dc-b"))))
    results = {result.name: result for result in probe_stores(catalog, master_key, now=NOW)}
    assert results["dc-a"].reachable and results["dc-a"].error is None
    assert not results["dc-b"].reachable and results["dc-b"].seconds < 10
    assert "\n" not in results["dc-b"].error and "gone-secret-key" not in results["dc-b"].error
    with catalog.session() as session:
        rows = {row.name: row for row in session.scalars(sa.select(StoreRow))}
        assert (rows["dc-a"].reachable, rows["dc-a"].checked_at) == (True, NOW)
        assert rows["dc-b"].reachable is False and rows["dc-b"].check_error

    done = run_rules(catalog, RuleSettings(), NOW)
    assert [(alert.kind, alert.message.split(":")[0]) for alert in done.raised] == [
        ("store_down", "store dc-b is unreachable")]


def test_a_heartbeat_with_last_failure_raises_backup_failed(centre) -> None:  # noqa: F811
    agent = Agent(centre, centre.token())
    agent.enroll()
    beat = {"hostname": "fs1.parks.city", "agent_version": "1", "restic_version": "0.17",
            "last_failure": {"at": (T0 - dt.timedelta(minutes=5)).isoformat(),
                             "error": "restic exited 1:\n\tFatal: unable to open repo"}}
    response = agent.post("/v1/agent/heartbeat", beat)
    assert response.status_code == 200, response.text
    done = run_rules(centre.catalog, RuleSettings(), T0)
    (failed,) = [alert for alert in done.raised if alert.kind == "backup_failed"]
    assert failed.message.endswith("failed: restic exited 1: Fatal: unable to open repo")
    # an older agent says nothing of failures: the alert resolves
    del beat["last_failure"]
    assert agent.post("/v1/agent/heartbeat", beat).status_code == 200
    done = run_rules(centre.catalog, RuleSettings(), T0)
    assert [alert.kind for alert in done.resolved] == ["backup_failed"]
    bad = beat | {"last_failure": {"at": "yesterday", "error": "x"}}
    assert agent.post("/v1/agent/heartbeat", bad).status_code == 422


def test_drd_alerts_check_and_the_list_show_the_new_kinds(tmp_path: Path,
                                                          database_url: str) -> None:
    home = tmp_path / "centre"
    initialise(home, database_url)
    catalog = open_catalog(load_config(home))
    with catalog.session() as session:
        session.add(StoreRow(name="vault", kind="file", url=f"file://{tmp_path}/vault",
                             region="b", reachable=False, check_error="no such directory"))
    checked = json.loads(drd("alerts", "check", "--no-probe", "--json", home=home).stdout)
    assert checked["probed"] == [] and checked["resolved"] == []
    assert [alert["kind"] for alert in checked["raised"]] == ["store_down"]
    assert drd("alerts", "check", "--no-probe", home=home).stdout == "no change\n"
    (listed,) = json.loads(drd("alerts", "--json", home=home).stdout)
    assert (listed["kind"], listed["store"]) == ("store_down", "vault")
    assert "store_down" in drd("alerts", home=home).stdout
    with (home / CONFIG_FILE).open("a") as config:
        config.write("alerts: {rules: {probe_interval: 0}}\n")
    refused = drd("alerts", "check", "--no-probe", home=home, check=2)
    assert "alerts.rules.probe_interval: must be longer than zero" in refused.stderr
    catalog.dispose()


def test_the_agent_keeps_its_last_failure_until_a_later_one(tmp_path: Path) -> None:
    home = AgentHome(tmp_path / "agent")
    home.root.mkdir()
    start = dt.datetime(2026, 12, 1, 10, 0, tzinfo=dt.UTC)
    assert last_failure(home) is None
    agent_service._record(home, BackupResult(
        "run-1", start, finished=start + dt.timedelta(minutes=1),
        problems=["store dc-a: https://k:hunter22@s3.test refused", "restic\nexit 1"]))
    failure = last_failure(home)
    assert dt.datetime.fromisoformat(failure["at"]) == start + dt.timedelta(minutes=1)
    assert failure["error"].startswith("store dc-a: https://k:") and "hunter22" not in (
        failure["error"]) and "\n" not in failure["error"]
    agent_service._record(home, BackupResult("run-2", start + DAY, finished=start + DAY))
    assert last_failure(home) == failure  # kept: the centre compares it with the success
    assert home.last_backup()["last_success"]


def test_the_watch_thread_evaluates_on_its_interval_and_stops(catalog: Catalog,
                                                              tmp_path: Path) -> None:
    with catalog.session() as session:
        session.add(StoreRow(name="vault", kind="file", url=f"file://{tmp_path}/vault",
                             region="b", reachable=False, check_error="gone"))
    config = SimpleNamespace(alerts={"rules": {"rules_interval": 0.2}})
    watch = Watch(config, catalog, master_key=None)  # no key: rules only, no probe
    watch.start()
    try:
        deadline = time.monotonic() + 10
        while not alerts.list_alerts(catalog) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        watch.stop()
    assert [view.kind for view in alerts.list_alerts(catalog)] == ["store_down"]


def _file_stores(catalog: Catalog, tmp_path: Path, *names: str) -> None:
    with catalog.session() as session:
        session.add_all([StoreRow(name=name, kind="file", url=f"file://{tmp_path}/{name}",
                                  region="a") for name in names])


def test_a_hung_store_and_a_buggy_one_are_down_and_the_others_probed(
        catalog: Catalog, tmp_path: Path) -> None:
    _file_stores(catalog, tmp_path, "fine", "hung", "buggy")
    release = threading.Event()
    calls: list[str] = []

    def probe(row, master_key) -> ProbeResult:
        calls.append(row.name)
        if row.name == "hung":  # a file store on a hung NFS mount
            release.wait(30)
        if row.name == "buggy":
            raise KeyError("https://k:hunter22@s3.test bug")
        return ProbeResult(row.id, row.name, True, None, 0.0)

    try:
        started = time.monotonic()
        results = {result.name: result for result in probe_stores(
            catalog, None, now=NOW, deadline=0.5, probe=probe)}
        assert time.monotonic() - started < 3
        assert results["fine"].reachable
        assert results["hung"].error == "no answer within 0.5 s"
        assert not results["buggy"].reachable and "hunter22" not in results["buggy"].error
        with catalog.session() as session:
            rows = {row.name: row for row in session.scalars(sa.select(StoreRow))}
        assert rows["hung"].reachable is False and rows["hung"].checked_at == NOW
        assert rows["fine"].reachable is True
        # still stuck: not probed again (one stuck thread per store at most)
        again = {result.name: result for result in probe_stores(
            catalog, None, deadline=0.5, probe=probe)}
        assert calls.count("hung") == 1 and not again["hung"].reachable
        assert "earlier probe" in again["hung"].error
    finally:
        release.set()
    time.sleep(0.1)
    assert probe_stores(catalog, None, names=["hung"], deadline=2, probe=probe)[0].reachable


def test_a_stuck_probe_does_not_delay_the_rules_and_a_restart_keeps_one_loop(
        catalog: Catalog, tmp_path: Path) -> None:
    with catalog.session() as session:
        session.add(StoreRow(name="vault", kind="file", url=f"file://{tmp_path}/vault",
                             region="b", reachable=False, check_error="gone"))
    release = threading.Event()
    probing = threading.Event()

    def stuck_probe(catalog, master_key) -> None:
        probing.set()
        release.wait(30)

    config = SimpleNamespace(alerts={"rules": {"rules_interval": 0.2, "probe_interval": 0.2}})
    watch = Watch(config, catalog, master_key=object(), probe=stuck_probe)
    watch.start()
    try:
        assert probing.wait(5)
        deadline = time.monotonic() + 5
        while not alerts.list_alerts(catalog) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [view.kind for view in alerts.list_alerts(catalog)] == ["store_down"]
        first = watch._thread
        watch.stop(timeout=0.01)
        watch.start()  # the loop may not have seen its stop yet: one loop still
        assert watch.running and [thread for thread in threading.enumerate()
                                  if thread.name == "alert-watch"] == [watch._thread]
        assert watch._thread is first or not first.is_alive()
        assert sum(thread.name == "alert-probe" for thread in threading.enumerate()) == 1
    finally:
        release.set()
        watch.stop()
    assert not watch.running


def test_a_pass_opening_an_alert_another_pass_opened_meanwhile_repeats_it(
        catalog: Catalog, tmp_path: Path, database_url: str) -> None:
    if database_url.startswith("sqlite"):
        pytest.skip("SQLite's writers take the lock at BEGIN (IMMEDIATE): no such race")
    with catalog.session() as session:
        session.add(StoreRow(name="vault", kind="file", url=f"file://{tmp_path}/vault",
                             region="b", reachable=False, check_error="gone"))
    meanwhile: list[bool] = []

    def another_pass_commits_first(session, context, instances) -> None:
        # between this pass's look for an open alert and its insert, drd alerts check
        # opens the same alert and commits
        if meanwhile or not any(isinstance(item, Alert) for item in session.new):
            return
        meanwhile.append(True)
        with catalog.session() as other:
            store_id = other.scalar(sa.select(StoreRow.id))
            alerts.raise_alert(other, "store_down", "store vault is unreachable: gone",
                               store_id=store_id, now=NOW)

    sa.event.listen(Session, "before_flush", another_pass_commits_first)
    try:
        done = run_rules(catalog, RuleSettings(), NOW)
    finally:
        sa.event.remove(Session, "before_flush", another_pass_commits_first)
    assert meanwhile
    assert [alert.kind for alert in done.raised] == ["store_down"]
    (view,) = alerts.list_alerts(catalog)
    assert (view.kind, view.count) == ("store_down", 2)
