"""Keyless verification and self-heal on real stores: SeaweedFS buckets, a directory,
a real restic repository, SQLite and PostgreSQL catalogs.

Objects are damaged behind drd's back, as rot or an operator's mistake would: bytes
replaced through boto3 under the same key, objects deleted, files overwritten.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import secrets
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
import sqlalchemy as sa
from botocore.config import Config as BotoConfig

from drd.catalog.models import Alert, AuditEntry, SnapshotCopy, StoreObject, System
from drd.catalog.models import Store as StoreRow
from drd.cli.main import main
from drd.confirmation.run import confirm_reports
from drd.restic import Repository, Restic
from drd.secrets import Secret
from drd.services.agents import AgentIdentity
from drd.services.protocol import SnapshotReport, StoreCopyReport
from drd.services.snapshots import record_report
from drd.verification import coverage_report, verify
from drd.verification.select import LedgerEntry, coverage
from tests.integration.staging import StoreSetup, make_stage

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@dataclass(frozen=True)
class Template:
    """A restic repository of fs1 with three snapshots (so: three packs), made once."""

    directory: Path
    password: Secret
    snapshots: list[Any]


@pytest.fixture(scope="module")
def template(tmp_path_factory, restic_binary) -> Template:
    root = tmp_path_factory.mktemp("verification-template")
    source = root / "source"
    password = Secret(secrets.token_urlsafe(24))
    repository = Repository(url=str(root / "repository"), password=password)
    restic = Restic(restic_binary)
    restic.init(repository)
    for backup in range(3):
        folder = source / f"d{backup}"
        folder.mkdir(parents=True)
        for index in range(10):
            (folder / f"f{index}.bin").write_bytes(secrets.token_bytes(30_000))
        restic.backup(repository, [source], host="fs1")
    return Template(root / "repository", password, restic.snapshots(repository))


def stage_with_copies(tmp_path, server, restic_binary, template, database_url=None,
                      lock_days=0):
    """fs1's repository (the template) in stores ``a`` and ``b`` (buckets on one
    server) and ``c`` (a directory): three identical copies, its snapshots reported.
    With ``lock_days``, ``a`` is a lock-enabled bucket and the policy locks that long."""
    suffix = uuid.uuid4().hex[:8]
    stage = make_stage(tmp_path, database_url=database_url, restic_binary=restic_binary,
                       object_lock_days=lock_days,
                       stores=[StoreSetup("a", "r1", server, f"va-{suffix}",
                                          object_lock=bool(lock_days)),
                               StoreSetup("b", "r1", server, f"vb-{suffix}"),
                               StoreSetup("c", "r2", directory=tmp_path / "store-c")])
    stage.password = template.password
    objects = {path.relative_to(template.directory).as_posix(): path.read_bytes()
               for path in sorted(template.directory.rglob("*")) if path.is_file()}
    for name in stage.stores:
        store = stage.raw_store(name)
        store.create_if_missing()
        for key, data in objects.items():
            store.put(key, data)
    stage.record("config", objects["config"])  # as enrollment records it
    with stage.catalog.session() as session:
        system_id = session.scalar(sa.select(System.id).where(System.name == "fs1"))
    agent = AgentIdentity(system_id=system_id, system="fs1", department="parks", token_id=0)
    for snapshot in template.snapshots:
        record_report(stage.catalog, agent, SnapshotReport(
            report_id=str(uuid.uuid4()), snapshot_id=snapshot.id, time=snapshot.time,
            hostname=snapshot.hostname, paths=list(snapshot.paths), tags=[],
            tree=snapshot.tree, files=10, bytes=300_000, duration_seconds=1.0,
            stores={name: StoreCopyReport(complete=True, missing_objects=0)
                    for name in stage.stores}))
    # the daemon's confirmation: every store holds them, so they count
    confirmed = confirm_reports(stage.catalog, stage.master_key, "fs1")
    assert len(confirmed.confirmed) == len(template.snapshots)
    return stage


def s3_client(server):
    return boto3.client("s3", endpoint_url=server.endpoint, aws_access_key_id=server.access_key,
                        aws_secret_access_key=server.secret_key, region_name="us-east-1",
                        config=BotoConfig(s3={"addressing_style": "path"}))


def replace_bytes(stage, store: str, key: str, data: bytes) -> None:
    """Put ``data`` under ``key`` of fs1's repository in ``store``, behind drd's back."""
    setup = stage.stores[store]
    if setup.directory is not None:
        (setup.directory / "parks" / "fs1" / key).write_bytes(data)
        return
    raw = stage.raw_store(store).unwrap()
    s3_client(setup.server).put_object(Bucket=raw.bucket, Key=f"{raw.prefix}/{key}", Body=data)


def delete_object(stage, store: str, key: str) -> None:
    setup = stage.stores[store]
    if setup.directory is not None:
        (setup.directory / "parks" / "fs1" / key).unlink()
        return
    raw = stage.raw_store(store).unwrap()
    s3_client(setup.server).delete_object(Bucket=raw.bucket, Key=f"{raw.prefix}/{key}")


def read(stage, store: str, key: str) -> bytes:
    return stage.raw_store(store).read(key)


def data_keys(stage, store: str = "a") -> list[str]:
    return sorted(key for key in stage.keys(store) if key.startswith("data/"))


def rows(stage, **where) -> list[StoreObject]:
    with stage.catalog.session() as session:
        query = sa.select(StoreObject)
        for name, value in where.items():
            query = query.where(getattr(StoreObject, name) == value)
        return list(session.scalars(query))


def audit(stage, action: str) -> list[AuditEntry]:
    with stage.catalog.session() as session:
        return list(session.scalars(sa.select(AuditEntry).where(AuditEntry.action == action)))


def open_alerts(stage) -> list[Alert]:
    with stage.catalog.session() as session:
        return list(session.scalars(sa.select(Alert).where(Alert.resolved_at.is_(None))))


# -- (a) corrupt, healed ------------------------------------------------------------------


def test_corrupt_objects_are_found_and_healed(tmp_path, seaweed_session, restic_binary,
                                              template, database_url):
    stage = stage_with_copies(tmp_path, seaweed_session, restic_binary, template, database_url)
    pack = data_keys(stage)[0]
    index = sorted(k for k in stage.keys("a") if k.startswith("index/"))[0]
    good_pack, good_index = read(stage, "a", pack), read(stage, "a", index)
    replace_bytes(stage, "b", pack, b"rot" * 1000)          # healed server-side from a
    replace_bytes(stage, "c", index, good_index[:-1] + b"!")  # a file: healed streamed

    report = verify(stage.catalog, stage.master_key, stage.config, full=True)

    assert report.ok, report.as_dict()
    assert {(f.store, f.key) for f in report.corrupt} == {("b", pack), ("c", index)}
    assert {(f.store, f.key, f.source) for f in report.healed} == {("b", pack, "a"),
                                                                   ("c", index, "a")}
    assert read(stage, "b", pack) == good_pack and read(stage, "c", index) == good_index
    assert report.objects_verified == sum(len(stage.keys(s)) for s in "abc") - 2
    heals = {entry.target: entry.details for entry in audit(stage, "object.heal")}
    assert heals[f"b:fs1/{pack}"]["reason"] == "corrupt"
    assert heals[f"b:fs1/{pack}"]["source"] == "a"
    assert f"c:fs1/{index}" in heals
    assert all(row.state == "present" and row.verified_at is not None
               for row in rows(stage))
    # the database's sums agree with the pure function over the rows
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=3)
    for name, summed in coverage_report(stage.catalog, now=later).items():
        entries = [LedgerEntry(key=row.key, size=row.size, first_seen_at=row.first_seen_at,
                               verified_at=row.verified_at, state=row.state)
                   for row in rows(stage, store_id=stage.store_row(name).id)]
        assert summed == coverage(entries, later)
        assert summed.ratio == 1.0 and summed.oldest_unverified >= dt.timedelta(days=3)
    assert coverage_report(stage.catalog, now=later + dt.timedelta(days=30))["a"].ratio == 0
    # each store alone is a sound restic repository again
    assert stage.restic.check(stage.repository("b")).ok
    assert stage.restic.check(stage.repository("c")).ok
    # and a second run finds nothing wrong
    again = verify(stage.catalog, stage.master_key, stage.config, full=True)
    assert again.ok and not again.corrupt and not again.healed


def test_healing_on_a_locked_bucket_writes_a_new_locked_version(
        tmp_path, seaweed_session, restic_binary, template):
    stage = stage_with_copies(tmp_path, seaweed_session, restic_binary, template, lock_days=2)
    pack = data_keys(stage)[0]
    good = read(stage, "b", pack)
    replace_bytes(stage, "a", pack, b"rot")
    before = dt.datetime.now(dt.UTC)

    report = verify(stage.catalog, stage.master_key, stage.config, stores=["a"], full=True)

    assert report.ok and [f.key for f in report.healed] == [pack]
    bucket = stage.raw_store("a").unwrap()
    assert bucket.read(pack) == good
    retain_until = bucket.head(pack).retain_until
    assert retain_until is not None, bucket.head(pack)
    # S3 keeps retentions to the second
    assert before + dt.timedelta(days=2, seconds=-1) <= retain_until <= \
        dt.datetime.now(dt.UTC) + dt.timedelta(days=2)
    # the rotten version stays in the bucket, under the good one
    versions = [v for v in bucket.list_versions(pack) if not v.is_delete_marker]
    assert len(versions) >= 3  # the original, the rot, the healed copy
    (entry,) = audit(stage, "object.heal")
    assert entry.details["retain_until"].startswith(retain_until.strftime("%Y-%m-%dT%H:%M"))


# -- (b) missing, replaced ----------------------------------------------------------------


def test_a_deleted_object_is_replaced(tmp_path, seaweed_session, restic_binary, template):
    stage = stage_with_copies(tmp_path, seaweed_session, restic_binary, template)
    first = verify(stage.catalog, stage.master_key, stage.config, full=True)
    assert first.ok and first.objects_verified > 0
    pack = data_keys(stage)[-1]
    snapshot_file = next(k for k in stage.keys("a") if k.startswith("snapshots/"))
    wanted = read(stage, "a", pack), read(stage, "a", snapshot_file)
    delete_object(stage, "b", pack)
    delete_object(stage, "c", snapshot_file)

    report = verify(stage.catalog, stage.master_key, stage.config, stores=["b", "c"],
                    budget_bytes=1)

    assert report.ok, report.as_dict()
    assert {(f.store, f.key) for f in report.missing} == {("b", pack), ("c", snapshot_file)}
    assert {(f.store, f.key, f.reason) for f in report.healed} == {
        ("b", pack, "missing"), ("c", snapshot_file, "missing")}
    assert (read(stage, "b", pack), read(stage, "c", snapshot_file)) == wanted
    (row,) = rows(stage, key=pack, store_id=stage.store_row("b").id)
    assert row.state == "present" and row.verified_at is not None
    assert stage.restic.check(stage.repository("c")).ok


# -- (c) lost -----------------------------------------------------------------------------


def test_an_object_corrupt_everywhere_is_lost_then_recovered(tmp_path, seaweed_session,
                                                             restic_binary, template,
                                                             database_url):
    stage = stage_with_copies(tmp_path, seaweed_session, restic_binary, template, database_url)
    pack = data_keys(stage)[0]
    good = read(stage, "a", pack)
    for store in "abc":
        replace_bytes(stage, store, pack, b"rot everywhere " + store.encode())

    report = verify(stage.catalog, stage.master_key, stage.config, full=True)

    assert not report.ok
    assert sorted(f.store for f in report.lost) == ["a", "b", "c"]
    assert f"a:fs1/{pack} lost" in report.as_dict()["problems"][0]
    assert not report.healed
    assert {row.state for row in rows(stage, key=pack)} == {"lost"}
    with stage.catalog.session() as session:
        states = set(session.scalars(sa.select(SnapshotCopy.state)))
    assert states == {"damaged"}
    alerts = [alert for alert in open_alerts(stage) if alert.kind == "damage"]
    assert {(a.kind, a.details["store"], a.details["key"]) for a in alerts} == {
        ("damage", store, pack) for store in "abc"}
    # every copy's bytes changed: someone who can write there, or the medium
    assert {(a.details["store"], a.details["key"]) for a in open_alerts(stage)
            if a.kind == "tamper"} == {(store, pack) for store in "abc"}
    assert "fs1" in alerts[0].message and pack in alerts[0].message
    assert len(audit(stage, "object.lost")) == 3

    # still lost on a second run: reported again, no new audit lines
    again = verify(stage.catalog, stage.master_key, stage.config, full=True)
    assert len(again.lost) == 3 and len(audit(stage, "object.lost")) == 3

    # an operator puts the right bytes back into one store: the others heal from it
    replace_bytes(stage, "c", pack, good)
    healed = verify(stage.catalog, stage.master_key, stage.config, full=True)
    assert healed.ok, healed.as_dict()
    assert sorted(f.store for f in healed.healed) == ["a", "b"]
    assert {f.source for f in healed.healed} <= {"a", "c"}
    assert read(stage, "a", pack) == read(stage, "b", pack) == good
    # nothing lost any more; the tamper alerts wait for a person
    assert {alert.kind for alert in open_alerts(stage)} == {"tamper"}
    with stage.catalog.session() as session:  # nothing lost any more: not damaged either
        states = set(session.scalars(sa.select(SnapshotCopy.state)))
    assert "damaged" not in states and states <= {"present", "missing"}


# -- interrupted runs, a store that cannot be read ----------------------------------------


def test_a_stopped_run_keeps_its_work_and_a_store_down_heals_nothing_wrongly(
        tmp_path, seaweed_session, restic_binary, template):
    stage = stage_with_copies(tmp_path, seaweed_session, restic_binary, template)
    asked = []

    def stop_soon() -> bool:
        asked.append(1)
        return len(asked) > 3

    stopped = verify(stage.catalog, stage.master_key, stage.config, stores=["a"], full=True,
                     should_stop=stop_soon, parallel=1)
    assert stopped.stopped and stopped.ok
    verified = [row for row in rows(stage, store_id=stage.store_row("a").id)
                if row.verified_at is not None]
    assert 0 < len(verified) < len(stage.keys("a"))
    # a rerun picks up the rest (never verified first) and ends at full coverage
    rest = verify(stage.catalog, stage.master_key, stage.config, stores=["a"],
                  budget_bytes=1)
    assert not {f.key for f in rest.corrupt}
    assert rest.runs[0].objects_verified >= 1

    # store c cannot be read: objects corrupt on a and b are not healed -- and not lost
    pack = data_keys(stage)[0]
    for store in "ab":
        replace_bytes(stage, store, pack, b"rot")
    directory = stage.stores["c"].directory
    directory.rename(directory.with_name("store-c-away"))
    report = verify(stage.catalog, stage.master_key, stage.config, full=True)
    assert not report.ok and not report.lost and not report.healed
    assert sorted(f.store for f in report.unhealed) == ["a", "b"]
    assert "cannot list the store" in report.runs[2].errors[0]
    assert {alert.kind for alert in open_alerts(stage)} == {"tamper"}  # not lost: no damage
    assert "lost" not in {row.state for row in rows(stage, key=pack)}

    directory.with_name("store-c-away").rename(directory)
    healed = verify(stage.catalog, stage.master_key, stage.config, stores=["a", "b"])
    # the corrupt rows come first in a budgeted run, so no --full is needed
    assert healed.ok and sorted(f.store for f in healed.healed) == ["a", "b"]
    assert {f.source for f in healed.healed} <= {"a", "c"}
    assert read(stage, "a", pack) == read(stage, "c", pack)


# -- (d) budgets and coverage -------------------------------------------------------------


def test_a_small_budget_reads_unverified_objects_first_and_coverage_rises(
        tmp_path, seaweed_session, restic_binary, template):
    stage = stage_with_copies(tmp_path, seaweed_session, restic_binary, template)
    total = sum(stage.keys("a").values())
    budget = total // 5
    with stage.catalog.session() as session:
        session.execute(sa.update(StoreRow).where(StoreRow.name == "a")
                        .values(verify_budget_bytes=budget))
    clock = [dt.datetime.now(dt.UTC)]
    ratios = []
    for _ in range(8):
        before = {row.key for row in rows(stage, store_id=stage.store_row("a").id)
                  if row.verified_at is None}
        report = verify(stage.catalog, stage.master_key, stage.config, stores=["a"],
                        now=lambda: clock[0])
        (run,) = report.runs
        assert run.budget_bytes == budget  # the store's own budget, all fs1's
        assert run.ok and run.objects_verified >= 1
        read_now = {row.key for row in rows(stage, store_id=stage.store_row("a").id)
                    if row.verified_at == clock[0]}
        # never verified objects come first: one is read again only once all are read
        if read_now - before:
            assert before <= read_now
        ratios.append(report.coverage["a"].ratio)
        clock[0] += dt.timedelta(days=1)
        if ratios[-1] == 1.0:
            break
    assert ratios == sorted(ratios) and ratios[-1] == 1.0 and len(ratios) >= 3
    assert ratios[0] < 0.5
    assert coverage_report(stage.catalog, now=clock[0])["a"].ratio == 1.0
    # the other stores were never read
    assert coverage_report(stage.catalog)["b"].ratio is None


# -- (e) the command line -----------------------------------------------------------------


def drd(*args, home, check):
    """Run drd in a subprocess, as a shell would; assert its exit status."""
    environment = {k: v for k, v in os.environ.items()
                   if not k.startswith(("AWS_", "DRD_HOME", "DRD_MASTER"))}
    environment["DRD_HOME"] = str(home)
    result = subprocess.run([sys.executable, "-m", "drd.cli.main", *args], env=environment,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == check, (result.returncode, result.stdout, result.stderr)
    return result


def drd_here(capsys, *args, home, check):
    """Run drd in this process (cheaper than a subprocess); return (stdout, stderr)."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_status:
        main(["--home", str(home), *args])
    captured = capsys.readouterr()
    assert exit_status.value.code == check, (captured.out, captured.err)
    return captured.out, captured.err


def test_the_verify_command(tmp_path, seaweed_session, restic_binary, template, capsys):
    stage = stage_with_copies(tmp_path, seaweed_session, restic_binary, template)
    home = stage.home
    pack = data_keys(stage)[0]
    replace_bytes(stage, "b", pack, b"rot")

    result = drd("verify", "fs1", "--full", "--json", home=home, check=0)
    document = json.loads(result.stdout)
    assert document["ok"] is True and document["healed"] == 1
    assert document["runs"][1]["healed"][0]["key"] == pack
    assert {s["store"] for s in document["stores"]} == {"a", "b", "c"}
    assert all(s["coverage"] == 1.0 for s in document["stores"])
    assert "\r" not in result.stderr  # no progress bar without a terminal

    out, _ = drd_here(capsys, "verify", "--store", "c", "--budget", "1K", home=home, check=0)
    read_count = int(re.match(r"fs1 on c: read (\d+) objects", out).group(1))
    assert read_count < len(stage.keys("c")) and "coverage 100.0%" in out

    out, _ = drd_here(capsys, "status", "--json", home=home, check=0)
    coverage = {s["store"]: s for s in json.loads(out)["stores"]}
    assert coverage["a"]["coverage"] == 1.0
    assert coverage["a"]["oldest_unverified_seconds"] < 600
    assert coverage["a"]["bytes_tracked"] == sum(stage.keys("a").values())

    for store in "abc":
        replace_bytes(stage, store, pack, b"gone " + store.encode())
    out, _ = drd_here(capsys, "verify", "--store", "a", "--full", "--json", home=home,
                      check=1)
    assert json.loads(out)["lost"] == 1
    out, _ = drd_here(capsys, "verify", "--store", "a", "--full", home=home, check=1)
    assert f"LOST {pack}" in out

    assert "no system named" in drd_here(capsys, "verify", "nope", home=home, check=2)[1]
    assert "no store named" in drd_here(capsys, "verify", "--store", "z", home=home,
                                        check=2)[1]
    assert "--budget" in drd_here(capsys, "verify", "--budget", "lots", home=home,
                                  check=2)[1]

    drd_here(capsys, "store", "set", "a", "--verify-budget", "2M", home=home, check=0)
    assert stage.store_row("a").verify_budget_bytes == 2 << 20
    drd_here(capsys, "store", "set", "a", "--verify-budget", "auto", home=home, check=0)
    assert stage.store_row("a").verify_budget_bytes is None
    drd_here(capsys, "store", "set", "a", "--verify-budget", "-3", home=home, check=2)
    drd_here(capsys, "store", "set", "zz", "--verify-budget", "1G", home=home, check=2)
