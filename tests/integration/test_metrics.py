"""``GET /metrics`` on a real catalog (SQLite and PostgreSQL): a catalog seeded row by
row (systems, snapshots and copies, replicas with lag, probed stores, a verification
ledger, job runs, drills, alerts), scraped through the app with people's tokens and
parsed back with prometheus-client's own parser."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from drd import __version__
from drd.api.app import create_app
from drd.api.routes.metrics import CatalogCollector, exposed_series
from drd.catalog import Catalog
from drd.catalog.models import (
    Alert,
    Department,
    Drill,
    Job,
    JobRun,
    Policy,
    Replica,
    Snapshot,
    SnapshotCopy,
    Store,
    StoreObject,
    System,
    Token,
    Tombstone,
)
from drd.config import load_config
from drd.services import tokens
from drd.services.centre import initialise, open_catalog, open_master_key
from drd.services.metrics import read_metrics
from drd.verification import coverage_report

pytestmark = pytest.mark.integration

UTC = dt.UTC
T0 = dt.datetime(2026, 12, 2, 10, 0, tzinfo=UTC)
HOUR, DAY = dt.timedelta(hours=1), dt.timedelta(days=1)
AGENT_TOKEN = "agent-token-for-fs1-0123456789abcdef0123456789abcdef"


@dataclass
class Scraper:
    catalog: Catalog
    client: TestClient
    operator: str
    admin: str
    owner: str

    def get(self, token: str | None, **headers: str):
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return self.client.get("/metrics", headers=headers)

    def samples(self, token: str | None = None) -> dict[tuple, float]:
        """``{(sample name, (label pairs...)): value}`` of one scrape."""
        response = self.get(token or self.operator)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/plain; version=")
        return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
                for family in text_string_to_metric_families(response.text)
                for sample in family.samples}


@pytest.fixture
def scraper(tmp_path: Path, database_url: str, monkeypatch) -> Iterator[Scraper]:
    monkeypatch.delenv("DRD_MASTER_PASSPHRASE", raising=False)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    home = tmp_path / "centre"
    initialise(home, database_url)
    config = load_config(home)
    catalog = open_catalog(config)
    made = {role: tokens.create_token(catalog, role=role, now=T0)
            for role in ("operator", "admin")}
    with catalog.session() as session:
        session.add(Department(name="parks"))
    owner = tokens.create_token(catalog, role="owner", departments=["parks"], now=T0)
    app = create_app(catalog, open_master_key(config), config, clock=lambda: T0)
    with TestClient(app) as client:
        yield Scraper(catalog, client, made["operator"].token.reveal(),
                      made["admin"].token.reveal(), owner.token.reveal())
    catalog.dispose()


def _snapshot(system: System, at: dt.datetime, n: int, copies: dict[Store, str]) -> Snapshot:
    return Snapshot(restic_id=f"{n:064x}", system=system, time=at, hostname="h",
                    tree=f"{n:064x}", reported_at=at,
                    copies=[SnapshotCopy(store=store, state=state)
                            for store, state in copies.items()])


def seed(catalog: Catalog) -> None:
    """Two live systems (one inside its RPO, one late), a retired one; three stores
    (reachable, unreachable, never probed); replicas, a ledger, runs, drills, alerts."""
    with catalog.session() as session:
        parks = session.query(Department).filter_by(name="parks").one()
        finance = Department(name="finance")
        hourly = Policy(name="hourly", source_text="", sha256="0" * 64, document={
            "rpo": "1h", "min_copies": 2, "verification": {"period": "7d"}})
        daily = Policy(name="daily", source_text="", sha256="1" * 64,
                       document={"rpo": "1d", "min_copies": 1})
        dc_a = Store(name="dc-a", kind="file", url="file:///a", reachable=True,
                     checked_at=T0 - dt.timedelta(minutes=1))
        dc_b = Store(name="dc-b", kind="file", url="file:///b", reachable=False,
                     checked_at=T0 - dt.timedelta(minutes=2), check_error="connection refused")
        vault = Store(name="vault", kind="s3", url="s3://vault/x")
        fs1 = System(name="fs1", department=parks, policy=hourly, status="enrolled",
                     enrolled_at=T0 - 30 * DAY)
        ledger = System(name="ledger", department=finance, policy=daily, status="enrolled",
                        enrolled_at=T0 - 30 * DAY)
        gone = System(name="gone", department=finance, policy=daily, status="retired")
        session.add_all([finance, hourly, daily, dc_a, dc_b, vault, fs1, ledger, gone])
        session.flush()
        session.add_all([
            # fs1's newest snapshot is in one store only: not durable, so not its last backup
            _snapshot(fs1, T0 - 30 * dt.timedelta(minutes=1), 1,
                      {dc_a: "present", dc_b: "present"}),
            _snapshot(fs1, T0 - 10 * dt.timedelta(minutes=1), 2,
                      {dc_a: "present", dc_b: "pending"}),
            _snapshot(ledger, T0 - 2 * DAY, 3, {dc_a: "present"}),
            _snapshot(gone, T0 - 90 * DAY, 4, {dc_a: "present"}),
            Replica(system_id=fs1.id, store_id=dc_a.id, lag_objects=0, lag_bytes=0),
            Replica(system_id=fs1.id, store_id=dc_b.id, lag_objects=5, lag_bytes=5000,
                    last_error="dc-b: connection refused"),
            Replica(system_id=ledger.id, store_id=dc_b.id, lag_objects=2, lag_bytes=100),
            Replica(system_id=ledger.id, store_id=dc_a.id),  # never measured
        ])
        # the ledger: on dc-a fs1 (7-day period) has 100 of 400 bytes proven within it,
        # ledger (default 30 days) nothing, its object unproven since first seen 20 days
        # ago; a tombstoned object counts for nothing; dc-b holds one fresh proof
        session.add_all([
            StoreObject(store_id=dc_a.id, system_id=fs1.id, key="data/01", size=100,
                        first_seen_at=T0 - 40 * DAY, verified_at=T0 - DAY),
            StoreObject(store_id=dc_a.id, system_id=fs1.id, key="data/02", size=300,
                        first_seen_at=T0 - 40 * DAY, verified_at=T0 - 10 * DAY),
            StoreObject(store_id=dc_a.id, system_id=fs1.id, key="data/03", size=10_000,
                        first_seen_at=T0 - 90 * DAY),
            Tombstone(system_id=fs1.id, key="data/03", pruned_store_id=dc_b.id, removed_at=T0 - DAY,
                      delete_after=T0 + DAY),
            StoreObject(store_id=dc_a.id, system_id=ledger.id, key="data/04", size=600,
                        first_seen_at=T0 - 20 * DAY),
            StoreObject(store_id=dc_b.id, system_id=fs1.id, key="data/01", size=100,
                        first_seen_at=T0 - 40 * DAY, verified_at=T0 - HOUR),
        ])
        replicate = Job(name="replicate:fs1", kind="replicate")
        verify = Job(name="verify:fs1", kind="verify")
        drill = Job(name="drill:fs1", kind="drill")
        session.add_all([replicate, verify, drill])
        session.flush()
        start = T0 - DAY
        for job, seconds, outcome in [(replicate, 2.5, "succeeded"),
                                      (replicate, 100, "succeeded"),
                                      (replicate, 4000, "failed"),
                                      (replicate, None, None),  # still running
                                      (verify, 30, "succeeded"),
                                      (drill, 600, "partial")]:
            finished = start + dt.timedelta(seconds=seconds) if seconds is not None else None
            session.add(JobRun(job_id=job.id, started_at=start, finished_at=finished,
                               outcome=outcome))
        session.add_all([
            Drill(system_id=fs1.id, store_id=dc_a.id, started_at=T0 - 3 * DAY - HOUR,
                  finished_at=T0 - 3 * DAY, passed=True, rto_seconds=120.0),
            Drill(system_id=fs1.id, store_id=dc_a.id, started_at=T0 - DAY - HOUR,
                  finished_at=T0 - DAY, passed=False, rto_seconds=200.0),
            Drill(system_id=fs1.id, store_id=dc_b.id, started_at=T0 - HOUR),  # still running
            Drill(system_id=ledger.id, store_id=dc_a.id, started_at=T0 - 3 * HOUR,
                  finished_at=T0 - 2 * HOUR, passed=True),  # no RTO measured
            Alert(kind="damage", severity="critical", system_id=fs1.id, message="m", opened_at=T0),
            Alert(kind="damage", severity="critical", system_id=ledger.id, message="m",
                  opened_at=T0),
            Alert(kind="store_down", severity="warning", message="m", opened_at=T0),
            Alert(kind="damage", severity="critical", message="m", opened_at=T0 - DAY,
                  resolved_at=T0 - HOUR),
            Token(name="agent-fs1", role="agent", systems=["fs1"],
                  token_hash=Token.hash_token(AGENT_TOKEN)),
        ])


def _key(name: str, **labels: str) -> tuple:
    return (name, tuple(sorted(labels.items())))


def test_a_scrape_reports_the_catalog(scraper: Scraper) -> None:
    seed(scraper.catalog)
    got = scraper.samples()

    def value(name: str, **labels: str) -> float:
        return got[_key(name, **labels)]

    def absent(name: str, **labels: str) -> bool:
        return _key(name, **labels) not in got

    assert [labels for name, labels in got if name == "drd_info"] == [
        (("version", __version__),)]
    fs1 = {"system": "fs1", "department": "parks"}
    ledger = {"system": "ledger", "department": "finance"}
    assert value("drd_system_last_backup_timestamp_seconds", **fs1) == (
        T0 - 30 * dt.timedelta(minutes=1)).timestamp()
    assert value("drd_system_backup_age_seconds", **fs1) == 1800
    assert value("drd_system_rpo_seconds", **fs1) == 3600
    assert value("drd_system_late", **fs1) == 0
    assert value("drd_system_backup_age_seconds", **ledger) == 2 * 86400
    assert value("drd_system_rpo_seconds", **ledger) == 86400
    assert value("drd_system_late", **ledger) == 1
    assert not any(dict(labels).get("system") == "gone" for _, labels in got)  # retired

    assert value("drd_store_up", store="dc-a") == 1
    assert value("drd_store_up", store="dc-b") == 0
    assert absent("drd_store_up", store="vault")  # never probed
    assert value("drd_store_last_check_timestamp_seconds", store="dc-b") == (
        T0 - dt.timedelta(minutes=2)).timestamp()
    assert value("drd_store_replication_lag_objects", store="dc-b") == 7
    assert value("drd_store_replication_lag_bytes", store="dc-b") == 5100
    assert value("drd_store_replication_failing", store="dc-b") == 1
    assert value("drd_store_replication_lag_objects", store="dc-a") == 0
    assert value("drd_store_replication_lag_bytes", store="vault") == 0
    assert value("drd_store_verify_coverage_ratio", store="dc-a") == pytest.approx(0.1)
    assert value("drd_store_oldest_unverified_seconds", store="dc-a") == 20 * 86400
    assert value("drd_store_verify_coverage_ratio", store="dc-b") == 1
    assert value("drd_store_oldest_unverified_seconds", store="dc-b") == 3600
    assert absent("drd_store_verify_coverage_ratio", store="vault")

    assert value("drd_drill_last_success_timestamp_seconds", system="fs1", store="dc-a") == (
        T0 - 3 * DAY).timestamp()
    assert value("drd_drill_last_passed", system="fs1", store="dc-a") == 0
    assert value("drd_drill_rto_seconds", system="fs1", store="dc-a") == 200
    assert not any(dict(labels) == {"system": "fs1", "store": "dc-b"} for _, labels in got)
    assert value("drd_drill_last_passed", system="ledger", store="dc-a") == 1
    assert value("drd_drill_last_success_timestamp_seconds", system="ledger",
                 store="dc-a") == (T0 - 2 * HOUR).timestamp()
    assert absent("drd_drill_rto_seconds", system="ledger", store="dc-a")

    runs = {dict(labels)["job"] + "/" + dict(labels)["outcome"]: count
            for (name, labels), count in got.items() if name == "drd_job_runs_total"}
    assert runs == {"replicate/succeeded": 2, "replicate/failed": 1, "verify/succeeded": 1,
                    "drill/partial": 1}
    buckets = {dict(labels)["le"]: count for (name, labels), count in got.items()
               if name == "drd_job_duration_seconds_bucket"
               and dict(labels)["job"] == "replicate"}
    assert (buckets["1.0"], buckets["5.0"], buckets["60.0"], buckets["300.0"],
            buckets["3600.0"], buckets["7200.0"], buckets["+Inf"]) == (0, 1, 1, 2, 2, 3, 3)
    assert value("drd_job_duration_seconds_count", job="replicate") == 3
    assert value("drd_job_duration_seconds_sum", job="replicate") == pytest.approx(4102.5)
    assert value("drd_job_duration_seconds_sum", job="drill") == pytest.approx(600)

    assert value("drd_open_alerts", kind="damage", severity="critical") == 2
    assert value("drd_open_alerts", kind="store_down", severity="warning") == 1

    # every sample is of a declared family; the admin scrapes the same
    assert {name for name, _ in got} <= exposed_series()
    assert scraper.samples(scraper.admin) == got
    registry = CollectorRegistry(auto_describe=False)  # the collector says the same
    registry.register(CatalogCollector(scraper.catalog, T0))
    assert {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(generate_latest(registry).decode())
            for sample in family.samples} == got

    # each run is counted once across scrapes: the one still going once it finishes, new
    # ones both settled (started a while ago) and not
    with scraper.catalog.session() as session:
        running = session.scalar(sa.select(JobRun).where(JobRun.outcome.is_(None)))
        running.finished_at, running.outcome = T0 - HOUR, "succeeded"
        session.add_all([
            JobRun(job_id=running.job_id, started_at=T0 - 2 * HOUR, finished_at=T0 - HOUR,
                   outcome="failed"),
            JobRun(job_id=running.job_id, started_at=T0 - dt.timedelta(seconds=60),
                   finished_at=T0 - dt.timedelta(seconds=30), outcome="succeeded")])
    for _ in range(2):
        again = scraper.samples()
        assert again[_key("drd_job_runs_total", job="replicate", outcome="succeeded")] == 4
        assert again[_key("drd_job_runs_total", job="replicate", outcome="failed")] == 2
        assert again[_key("drd_job_duration_seconds_count", job="replicate")] == 6
        assert again[_key("drd_job_duration_seconds_bucket", job="replicate",
                          le="60.0")] == 2
        assert again[_key("drd_job_duration_seconds_sum", job="replicate")] == (
            pytest.approx(4102.5 + 23 * 3600 + 3600 + 30))

    # coverage is summed per verification period, not per system, yet agrees with
    # drd verify's report
    readout = read_metrics(scraper.catalog, T0)
    report = coverage_report(scraper.catalog, T0)
    assert {store.name: store.coverage for store in readout.stores
            if store.coverage is not None} == {
        name: coverage for name, coverage in report.items() if coverage.ratio is not None}

    # only a token that reads everything may scrape
    for token, status in [(None, 401), ("not-a-token", 401), (scraper.owner, 403),
                          (AGENT_TOKEN, 403)]:
        response = scraper.get(token)
        assert response.status_code == status, (token, response.text)
        assert set(response.json()) == {"detail"}
        assert "fs1" not in response.text
    assert "operator or admin" in scraper.get(scraper.owner).json()["detail"]


def test_an_empty_catalog_scrapes_to_the_version_alone(scraper: Scraper) -> None:
    got = scraper.samples()
    assert [name for name, _ in got] == ["drd_info"]
    # Prometheus prefers OpenMetrics; it gets the text format, which it reads as well
    response = scraper.get(scraper.operator, accept="application/openmetrics-text;"
                           "version=1.0.0,text/plain;version=0.0.4;q=0.5")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"

