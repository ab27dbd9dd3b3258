"""The operators' read API (``/v1/status``, systems, stores, drills, jobs, alerts, audit)
and ``backup-now`` on a real catalog (SQLite and PostgreSQL), through the real app.

The catalog is seeded directly with SQLAlchemy (departments parks and roads, systems,
snapshots with copies, signed drills, job runs, an alert), which takes milliseconds
where real backups would take seconds; each caller is a real token.
"""

from __future__ import annotations

import base64
import datetime as dt
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa

from drd.catalog.models import (
    Alert,
    AuditEntry,
    Department,
    Drill,
    Job,
    JobRun,
    Policy,
    Replica,
    Snapshot,
    SnapshotCopy,
    StoreObject,
    System,
    Token,
    Tombstone,
)
from drd.catalog.models import Store as StoreRow
from drd.crypto.signing import verify_file
from drd.services import status, tokens, views
from drd.services.tokens import Principal
from drd.verification import coverage_report
from restore_drills.html import render_html
from restore_drills.report import json_export, sign_report
from tests.integration.test_api_agent import T0, Centre, centre  # noqa: F401
from tests.unit.restore_drills.sample import report as sample_report

pytestmark = pytest.mark.integration

NOW = T0 + dt.timedelta(days=2)
HOUR = dt.timedelta(hours=1)
PARKS = ("fs1", "fs2", "fs3", "fs4")  # fs4 is pending: not enrolled yet


@dataclass
class Seeded:
    centre: Centre
    operator: dict[str, str]
    owner: dict[str, str]
    admin: dict[str, str]
    agent: dict[str, str]
    drills: dict[str, int]

    def get(self, path: str, caller: dict[str, str] | None = None, **params):
        return self.centre.client.get(path, headers=caller or {}, params=params)


def _bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def _snapshot(session, system: System, hours_ago: float, number: int, stores: dict[str, int],
              states: tuple[str, str, str] = ("present", "present", "pending"),
              partial: bool = False) -> Snapshot:
    snapshot = Snapshot(restic_id=f"{system.id:02x}{number:062x}", system_id=system.id,
                        time=NOW - dt.timedelta(hours=hours_ago), hostname=system.name,
                        paths=["/srv"], tags=[], tree="e" * 64, partial=partial,
                        size_bytes=100, file_count=3)
    session.add(snapshot)
    session.flush()
    for store, state in zip(("dc-a", "dc-b", "vault-s3"), states, strict=True):
        session.add(SnapshotCopy(snapshot_id=snapshot.id, store_id=stores[store], state=state))
    return snapshot


@pytest.fixture
def seeded(centre: Centre) -> Seeded:  # noqa: F811 -- the fixture imported above
    centre.clock.now = NOW
    key = centre.keystore.signing_private_key()
    drills = {}
    with centre.catalog.session() as session:
        policy = session.scalar(sa.select(Policy).where(Policy.name == "fileserver"))
        stores = dict(session.execute(sa.select(StoreRow.name, StoreRow.id)).all())
        parks, roads = Department(name="parks"), Department(name="roads")
        session.add_all([parks, roads])
        session.flush()
        systems = {}
        for name, department in [*((name, parks) for name in PARKS), ("roads-db", roads)]:
            systems[name] = System(name=name, department_id=department.id, policy_id=policy.id,
                                   status="pending" if name == "fs4" else "enrolled",
                                   enrolled_at=None if name == "fs4" else T0)
        session.add_all(systems.values())
        session.flush()
        # fs1: a good backup 30 minutes ago, a newer one held by one store only
        _snapshot(session, systems["fs1"], 5, 1, stores)
        good = _snapshot(session, systems["fs1"], 0.5, 2, stores)
        _snapshot(session, systems["fs1"], 0.2, 3, stores, ("present", "pending", "missing"))
        # fs2: late -- its only good backup is 3 hours old, a newer one partial
        _snapshot(session, systems["fs2"], 3, 1, stores)
        _snapshot(session, systems["fs2"], 0.1, 2, stores, partial=True)
        # fs3 and roads-db: fresh
        _snapshot(session, systems["fs3"], 0.3, 1, stores)
        _snapshot(session, systems["roads-db"], 0.4, 1, stores, ("present", "damaged",
                                                                 "present"))
        session.add(Replica(system_id=systems["fs1"].id, store_id=stores["vault-s3"],
                            watermark_at=NOW - HOUR, lag_objects=3, lag_bytes=3000))
        for name, passed in (("fs1", True), ("roads-db", False)):
            drill = Drill(system_id=systems[name].id, store_id=stores["dc-b"],
                          snapshot_restic_id=good.restic_id, started_at=NOW - 2 * HOUR,
                          finished_at=NOW - HOUR, passed=passed, rto_seconds=12.5,
                          rpo_seconds=1800.0)
            session.add(drill)
            session.flush()
            drill.report = sample_report(id=drill.id, system=name, passed=passed,
                                         store="dc-b", reasons=[] if passed else ["manifest"])
            drill.signature = sign_report(key, drill.report)
            drills[name] = drill.id
        for name, outcome in (("fs1", "failed"), ("roads-db", "succeeded")):
            job = Job(name=f"replicate:{name}", kind="replicate", system_id=systems[name].id)
            session.add(job)
            session.flush()
            session.add(JobRun(job_id=job.id, system_id=systems[name].id,
                               started_at=NOW - HOUR, finished_at=NOW - HOUR,
                               outcome=outcome, error="store dc-b timed out"
                               if outcome == "failed" else None))
        session.add(Alert(kind="damage", severity="critical", system_id=systems["roads-db"].id,
                          store_id=stores["dc-b"], open_key="damage:roads", message="damage",
                          opened_at=NOW - HOUR, last_seen_at=NOW - HOUR))
        session.add(Token(name="agent:fs3", role="agent", token_hash=Token.hash_token("fs3-a"),
                          departments=["parks"], systems=["fs3"]))
    before = NOW - HOUR

    def token(**options) -> dict[str, str]:
        return _bearer(tokens.create_token(centre.catalog, now=before, **options).token.reveal())

    return Seeded(centre=centre, operator=token(role="operator", name="night"),
                  owner=token(role="owner", name="parks-owner", departments=["parks"]),
                  admin=token(role="admin", name="root"), agent=_bearer("fs3-a"),
                  drills=drills)


def _names(response) -> list[str]:
    assert response.status_code == 200, response.text
    return [item.get("name") or item.get("system") for item in response.json()["items"]]


def _walk(seeded: Seeded, path: str, caller: dict[str, str], **params) -> list[dict]:
    """Every item of a list, one item per page."""
    items, cursor, pages = [], None, 0
    while True:
        query = {"limit": 1, **params} | ({"cursor": cursor} if cursor else {})
        page = seeded.get(path, caller, **query)
        assert page.status_code == 200, page.text
        items += page.json()["items"]
        cursor, pages = page.json()["next"], pages + 1
        if cursor is None:
            assert pages <= len(items) + 1
            return items


def test_each_token_sees_what_its_role_and_scope_allow(seeded: Seeded) -> None:
    roads_drill = seeded.drills["roads-db"]
    read_paths = ["/v1/status", "/v1/systems", "/v1/systems/fs1", "/v1/systems/fs1/snapshots",
                  "/v1/stores", "/v1/drills", f"/v1/drills/{roads_drill}",
                  f"/v1/drills/{roads_drill}/report", "/v1/jobs", "/v1/alerts", "/v1/audit"]
    for path in read_paths:
        refused = seeded.get(path)
        assert refused.status_code == 401, (path, refused.text)
        assert refused.json()["detail"]
    assert seeded.centre.client.post("/v1/systems/fs1/backup-now").status_code == 401

    # operators read everything
    everything = [*PARKS, "roads-db"]
    assert _names(seeded.get("/v1/systems", seeded.operator)) == everything
    assert _names(seeded.get("/v1/status", seeded.operator)) == everything
    assert [drill["system"] for drill in seeded.get("/v1/drills", seeded.operator)
            .json()["items"]] == ["roads-db", "fs1"]
    assert seeded.get("/v1/systems/roads-db", seeded.operator).json()["department"] == "roads"
    unknown = seeded.get("/v1/systems/nowhere", seeded.operator)
    assert unknown.status_code == 404 and "nowhere" in unknown.json()["detail"]
    assert seeded.get("/v1/drills/999999", seeded.operator).status_code == 404
    assert seeded.get("/v1/audit", seeded.operator).status_code == 200

    # the owner of parks: parks' systems in every list, 403 for roads' by name or id
    owner = seeded.owner
    assert _names(seeded.get("/v1/systems", owner)) == list(PARKS)
    status = seeded.get("/v1/status", owner).json()
    assert _names(seeded.get("/v1/status", owner)) == list(PARKS)
    assert status["counts"]["systems"] == 4 and status["counts"]["alerts"]["critical"] == 0
    assert [d["system"] for d in seeded.get("/v1/drills", owner).json()["items"]] == ["fs1"]
    assert [r["system"] for r in seeded.get("/v1/jobs", owner).json()["items"]] == ["fs1"]
    assert seeded.get("/v1/alerts", owner).json()["items"] == []
    for path in ["/v1/systems/roads-db", "/v1/systems/roads-db/snapshots",
                 f"/v1/drills/{roads_drill}", f"/v1/drills/{roads_drill}/report",
                 "/v1/systems/nowhere", "/v1/drills/999999", "/v1/stores", "/v1/audit"]:
        refused = seeded.get(path, owner)
        assert refused.status_code == 403, (path, refused.text)
        assert "roads" not in refused.json()["detail"] or "roads-db" in path
    assert seeded.get("/v1/drills", owner, system="roads-db").status_code == 403
    # an agent's token: its own system only
    assert _names(seeded.get("/v1/systems", seeded.agent)) == ["fs3"]
    assert seeded.get("/v1/systems/fs1", seeded.agent).status_code == 403

    # backup-now: owners of the system and admins; operators and agents read only
    client = seeded.centre.client
    assert client.post("/v1/systems/roads-db/backup-now", headers=owner).status_code == 403
    assert client.post("/v1/systems/fs1/backup-now",
                       headers=seeded.operator).status_code == 403
    assert client.post("/v1/systems/fs3/backup-now", headers=seeded.agent).status_code == 403
    assert client.post("/v1/systems/nowhere/backup-now",
                       headers=seeded.admin).status_code == 404
    assert client.post("/v1/systems/fs4/backup-now", headers=owner).status_code == 409
    accepted = client.post("/v1/systems/fs1/backup-now", headers=owner)
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["system"] == "fs1"
    assert seeded.get("/v1/systems/fs1", owner).json()["backup_requested"] is True
    assert client.post("/v1/systems/roads-db/backup-now",
                       headers=seeded.admin).status_code == 202
    with seeded.centre.catalog.session() as session:
        trail = session.execute(sa.select(AuditEntry.actor, AuditEntry.target).where(
            AuditEntry.action == "system.backup_now").order_by(AuditEntry.id)).all()
    assert [tuple(entry) for entry in trail] == [("token:parks-owner", "fs1"),
                                                ("token:root", "roads-db")]
    audit = seeded.get("/v1/audit", seeded.operator, action="system.backup_now").json()
    assert [entry["actor"] for entry in audit["items"]] == ["token:root", "token:parks-owner"]
    assert len(seeded.get("/v1/audit", seeded.operator, action="token.").json()["items"]) == 3


def test_status_says_what_is_wrong_system_by_system(seeded: Seeded) -> None:
    status = seeded.get("/v1/status", seeded.operator).json()
    assert status["verdict"] == "critical"  # fs2 is late, roads-db has a critical alert
    assert status["counts"] == {
        "systems": 5, "enrolled": 4, "pending": 1, "late": 1,
        "alerts": {"critical": 1, "warning": 0}, "stores": {"up": 0, "down": 0, "unknown": 3}}
    systems = {item["name"]: item for item in status["items"]}
    fs1, fs2 = systems["fs1"], systems["fs2"]
    assert not fs1["late"] and fs1["age_seconds"] == 1800 and fs1["rpo_seconds"] == 3600
    assert fs1["last_good_snapshot"]["time"].startswith(f"{NOW - HOUR / 2:%Y-%m-%dT%H:%M}")
    assert fs2["late"] and fs2["age_seconds"] == 3 * 3600
    assert fs1["snapshots"] == 3
    stores = {store["store"]: store for store in fs1["stores"]}
    assert [stores[name]["newest"] for name in ("dc-a", "dc-b", "vault-s3")] == [
        "present", "pending", "missing"]  # the newest snapshot's copies
    assert stores["vault-s3"]["lag_objects"] == 3 and stores["vault-s3"]["watermark_at"]
    assert stores["dc-a"]["copies"] is None  # counted on the system's page alone
    drill = fs1["last_drill"]
    assert drill["passed"] is True and drill["rto_seconds"] == 12.5
    assert drill["rto_target_seconds"] == 4 * 3600 and drill["rpo_target_seconds"] == 3600
    assert systems["roads-db"]["open_alerts"] == 1 and systems["fs4"]["last_good_snapshot"] is None

    page = seeded.get("/v1/systems/fs1", seeded.operator).json()
    assert page["last_good_snapshot"] == fs1["last_good_snapshot"]
    copies = {store["store"]: store["copies"] for store in page["stores"]}
    assert [copies[name]["present"] for name in ("dc-a", "dc-b", "vault-s3")] == [3, 2, 0]
    assert (copies["vault-s3"]["pending"], copies["vault-s3"]["missing"]) == (2, 1)
    assert [{**store, "copies": None} for store in page["stores"]] == fs1["stores"]
    snapshots = seeded.get("/v1/systems/fs1/snapshots", seeded.operator).json()["items"]
    assert [snapshot["good"] for snapshot in snapshots] == [False, True, True]  # newest first
    assert snapshots[0]["copies"] == {"dc-a": "present", "dc-b": "pending",
                                      "vault-s3": "missing"}
    # the owner's verdict covers its own systems: fs2 is late
    assert seeded.get("/v1/status", seeded.owner).json()["verdict"] == "critical"
    roads = seeded.get("/v1/status", seeded.operator, department="roads").json()
    assert roads["counts"]["late"] == 0 and roads["counts"]["alerts"]["critical"] == 1
    stores = seeded.get("/v1/stores", seeded.operator).json()["items"]
    assert [(s["name"], s["state"], s["lag_objects"]) for s in stores] == [
        ("dc-a", "unknown", 0), ("dc-b", "unknown", 0), ("vault-s3", "unknown", 3)]
    failed = seeded.get("/v1/jobs", seeded.operator, outcome="failed").json()["items"]
    assert [(run["system"], run["kind"]) for run in failed] == [("fs1", "replicate")]
    assert seeded.get("/v1/jobs", seeded.operator, kind="drill").json()["items"] == []
    assert len(seeded.get("/v1/alerts", seeded.operator, state="all").json()["items"]) == 1


def test_lists_page_without_repeats_filter_by_department_and_refuse_bad_parameters(
        seeded: Seeded) -> None:
    walked = _walk(seeded, "/v1/systems", seeded.operator)
    assert [item["name"] for item in walked] == [*PARKS, "roads-db"]
    assert [item["name"] for item in _walk(seeded, "/v1/status", seeded.owner)] == list(PARKS)
    snapshots = _walk(seeded, "/v1/systems/fs1/snapshots", seeded.operator)
    assert len({snapshot["id"] for snapshot in snapshots}) == 3
    assert [snapshot["time"] for snapshot in snapshots] == sorted(
        (snapshot["time"] for snapshot in snapshots), reverse=True)
    assert len(_walk(seeded, "/v1/drills", seeded.operator)) == 2
    assert len(_walk(seeded, "/v1/jobs", seeded.operator)) == 2
    with seeded.centre.catalog.session() as session:
        entries = session.scalar(sa.select(sa.func.count()).select_from(AuditEntry))
    assert [entry["id"] for entry in _walk(seeded, "/v1/audit", seeded.operator)] == list(
        range(entries, 0, -1))
    assert len(_walk(seeded, "/v1/stores", seeded.operator)) == 3

    assert _names(seeded.get("/v1/systems", seeded.operator, department="roads")) == ["roads-db"]
    both = seeded.centre.client.get("/v1/systems?department=roads&department=parks",
                                    headers=seeded.operator)
    assert len(_names(both)) == 5
    assert _names(seeded.get("/v1/systems", seeded.owner, department="roads")) == []
    assert [d["system"] for d in seeded.get("/v1/drills", seeded.operator,
                                            department="parks").json()["items"]] == ["fs1"]

    systems_cursor = seeded.get("/v1/systems", seeded.operator, limit=1).json()["next"]
    for params, reason in [({"limit": 0}, "limit"), ({"limit": 501}, "limit"),
                           ({"limit": "many"}, "limit"), ({"cursor": "!!"}, "cursor"),
                           ({"cursor": "WzEsMiwzXQ"}, "cursor"),
                           ({"department": "Not A Name"}, "department")]:
        refused = seeded.get("/v1/systems", seeded.operator, **params)
        assert refused.status_code == 422, (params, refused.text)
        assert reason in refused.json()["detail"]
    # a cursor of another list
    refused = seeded.get("/v1/systems/fs1/snapshots", seeded.operator, cursor=systems_cursor)
    assert refused.status_code == 422 and "cursor" in refused.json()["detail"]
    for path, params in [("/v1/jobs", {"kind": "nap"}), ("/v1/alerts", {"state": "closed"}),
                         ("/v1/drills/0", {}), ("/v1/drills/1/report", {"format": "pdf"}),
                         ("/v1/systems/Bad_Name", {})]:
        refused = seeded.get(path, seeded.operator, **params)
        assert refused.status_code == 422, (path, refused.text)


def test_a_drill_report_is_the_signed_export_of_drd_drill_report(seeded: Seeded,
                                                                 tmp_path: Path) -> None:
    drill_id = seeded.drills["fs1"]
    detail = seeded.get(f"/v1/drills/{drill_id}", seeded.owner).json()
    assert detail["passed"] is True and detail["report"]["id"] == drill_id
    with seeded.centre.catalog.session() as session:
        report = session.get(Drill, drill_id).report
    for export_format, expected in [
            ("json", json_export(report)),
            ("html", (render_html(report, [{"id": drill_id, "store": "dc-b",
                                            "started_at": (NOW - 2 * HOUR).isoformat(),
                                            "passed": True, "rto_seconds": 12.5}]) + "\n")
             .encode())]:
        response = seeded.get(f"/v1/drills/{drill_id}/report", seeded.owner,
                              format=export_format)
        assert response.status_code == 200, response.text
        assert response.content == expected
        exported = tmp_path / f"report.{export_format}"
        exported.write_bytes(response.content)
        signature = tmp_path / f"report.{export_format}.sig"
        signature.write_bytes(base64.b64decode(response.headers["X-Drd-Signature"]))
        verify_file(seeded.centre.keystore.signing_public_key(), exported, signature)

    # a row changed after the drill is refused, not signed afresh
    with seeded.centre.catalog.session() as session:
        drill = session.get(Drill, drill_id)
        drill.report = {**drill.report, "passed": False}
    refused = seeded.get(f"/v1/drills/{drill_id}/report", seeded.operator)
    assert refused.status_code == 409 and "signature" in refused.json()["detail"]
    with seeded.centre.catalog.session() as session:
        session.add(Drill(system_id=session.get(Drill, drill_id).system_id,
                          store_id=session.get(Drill, drill_id).store_id, started_at=NOW))
        session.flush()
        running = session.scalar(sa.select(sa.func.max(Drill.id)))
    refused = seeded.get(f"/v1/drills/{running}/report", seeded.operator)
    assert refused.status_code == 409 and "running" in refused.json()["detail"]


def test_coverage_and_statuses_agree_with_the_verifier_and_drd_status(seeded: Seeded) -> None:
    catalog = seeded.centre.catalog
    with catalog.session() as session:
        stores = dict(session.execute(sa.select(StoreRow.name, StoreRow.id)).all())
        systems = dict(session.execute(sa.select(System.name, System.id)).all())
        for number, (system, store, size, verified_days_ago) in enumerate([
                ("fs1", "dc-a", 100, 1), ("fs1", "dc-a", 300, None), ("fs1", "dc-b", 50, 40),
                ("roads-db", "dc-a", 1000, 2), ("roads-db", "vault-s3", 10, 1)]):
            session.add(StoreObject(
                store_id=stores[store], system_id=systems[system], key=f"data/{number:064x}",
                size=size, first_seen_at=NOW - dt.timedelta(days=50),
                verified_at=(NOW - dt.timedelta(days=verified_days_ago)
                             if verified_days_ago is not None else None)))
        session.add(Tombstone(system_id=systems["roads-db"], key=f"data/{4:064x}", size=10,
                              pruned_store_id=stores["dc-a"], delete_after=NOW))
    expected = [{"store": name} | value.as_dict()
                for name, value in sorted(coverage_report(catalog, NOW).items())]
    assert status.store_coverage(catalog, NOW) == expected
    assert expected[0]["coverage"] == pytest.approx(1100 / 1400)

    fs1 = {store["store"]: store
           for store in seeded.get("/v1/systems/fs1", seeded.operator).json()["stores"]}
    assert fs1["dc-a"]["coverage"] == 0.25 and fs1["dc-b"]["coverage"] == 0.0
    assert fs1["dc-a"]["oldest_unverified_seconds"] == 50 * 86400
    listed = {store["name"]: store for store in seeded.get("/v1/stores",
                                                           seeded.operator).json()["items"]}
    assert listed["dc-a"]["coverage"] == expected[0]["coverage"]
    assert listed["vault-s3"]["bytes_tracked"] == 0  # the tombstoned object is not counted

    statuses = {entry.system: entry for entry in status.system_statuses(catalog, NOW)}
    assert [name for name in statuses] == [*PARKS, "roads-db"]
    assert statuses["fs2"].late and not statuses["fs1"].late
    assert statuses["fs1"].last_backup_at == NOW - HOUR / 2 and statuses["fs1"].snapshots == 3
    assert status.totals(statuses.values()) == {"systems": 5, "enrolled": 4, "pending": 1,
                                                "late": 1}


def test_status_counts_are_kept_a_few_seconds_then_refreshed(seeded: Seeded) -> None:
    catalog, cache = seeded.centre.catalog, views.SummaryCache(ttl=60, max_stale=300)
    operator = Principal(token_id=0, name="ops", role="operator")
    first, computed_at = cache.counts(catalog, operator, (), NOW)
    assert (first.systems, computed_at) == (5, NOW)
    with catalog.session() as session:
        department = session.scalar(sa.select(Department.id).where(Department.name == "roads"))
        session.add(System(name="roads-2", department_id=department, status="pending"))
    assert cache.counts(catalog, operator, (), NOW)[0].systems == 5  # fresh: kept
    assert cache.counts(catalog, operator, ("roads",), NOW)[0].systems == 2  # another scope
    later = NOW + dt.timedelta(minutes=2)
    stale, computed_at = cache.counts(catalog, operator, (), later)  # refreshed behind
    assert (stale.systems, computed_at) == (5, NOW)
    deadline = time.monotonic() + 10
    while cache.counts(catalog, operator, (), later)[0].systems != 6:
        assert time.monotonic() < deadline, "the background refresh did not happen"
        time.sleep(0.05)
    with catalog.session() as session:
        session.add(System(name="roads-3", department_id=department, status="pending"))
    much_later = NOW + dt.timedelta(hours=1)  # too old to serve: computed in place
    assert cache.counts(catalog, operator, (), much_later) == (
        views.status_counts(catalog, operator, now=much_later), much_later)


def test_a_status_page_is_shared_for_a_few_seconds_then_read_again(seeded: Seeded) -> None:
    catalog, cache = seeded.centre.catalog, views.SummaryCache(page_ttl=5)
    operator = Principal(token_id=0, name="ops", role="operator")

    def names(moment: dt.datetime, **scope) -> list[str]:
        return [item.name for item in views.status_summary(
            catalog, operator, now=moment, cache=cache, **scope).items]

    first = names(NOW)
    with catalog.session() as session:
        department = session.scalar(sa.select(Department.id).where(Department.name == "roads"))
        session.add(System(name="roads-2", department_id=department, status="pending"))
    assert names(NOW) == first  # within page_ttl: the same reading
    assert "roads-2" in names(NOW, limit=50)  # another page (limit) is its own reading
    page = views.status_summary(catalog, operator, now=NOW + dt.timedelta(seconds=20),
                                cache=cache)  # past 3 x page_ttl: read in place
    assert "roads-2" in [item.name for item in page.items]
    assert page.page_read_at == NOW + dt.timedelta(seconds=20)
