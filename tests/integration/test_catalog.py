"""The catalog on a real database: every test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import datetime as dt
import secrets
import sqlite3
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from drd.catalog import Catalog, audit, head_revision, make_engine, migrate, schema_version
from drd.catalog.models import (
    AuditEntry,
    AuditLogIsAppendOnly,
    Base,
    Department,
    Drill,
    Job,
    JobRun,
    Policy,
    Snapshot,
    SnapshotCopy,
    Store,
    System,
    Token,
)
from drd.crypto.masterkey import MasterKey
from drd.errors import OperationError, UserError
from drd.secrets import Secret

pytestmark = pytest.mark.integration

UTC = dt.UTC
PLUS_TWO = dt.timezone(dt.timedelta(hours=2))
T0 = dt.datetime(2024, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
RESTIC_ID = "a" * 64
TREE = "b" * 64
MIGRATIONS = Path(__file__).parents[2] / "drd" / "catalog" / "migrations" / "versions"
TABLES = {"departments", "policies", "systems", "stores", "snapshots", "snapshot_copies",
          "jobs", "job_runs", "drills", "tokens", "audit_entries", "snapshot_manifests",
          "store_credentials", "recorded_objects"}


@pytest.fixture
def catalog(database_url):
    migrate(database_url)
    catalog = Catalog(database_url)
    yield catalog
    catalog.dispose()


def _populate(catalog: Catalog) -> dict[str, int]:
    """One row of every model, linked; returns their ids."""
    with catalog.session() as session:
        department = Department(name="public-works", created_at=T0)
        policy = Policy(name="fileserver", document={"policy": "fileserver", "min_copies": 2},
                        source_text="policy: fileserver\n", sha256="c" * 64, applied_at=T0)
        system = System(name="fs1", department=department, policy=policy, hostname="fs1.city",
                        enrolled_at=T0, agent_public_key="-----BEGIN PUBLIC KEY-----",
                        sealed_password=b"\x01sealed", status="enrolled", created_at=T0)
        store_a = Store(name="dc-a", kind="s3", url="s3://bucket/drd", endpoint="https://s3.a",
                        region="region-1", object_lock=True, access_key_id="AKIA",
                        secret_encrypted=b"\x01ciphertext", created_at=T0)
        store_b = Store(name="dc-b", kind="file", url="file:///srv/drd", region="region-2")
        snapshot = Snapshot(restic_id=RESTIC_ID, system=system, time=T0, hostname="fs1",
                            paths=["/srv/share"], tags=["drd"], tree=TREE, size_bytes=2**40,
                            file_count=12, reported_at=T0)
        copy = SnapshotCopy(snapshot=snapshot, store=store_a, state="present", verified_at=T0)
        job = Job(name="replicate:fs1:dc-b", kind="replicate", system_id=None,
                  schedule="0 * * * *", next_run_at=T0)
        session.add_all([department, policy, system, store_a, store_b, snapshot, copy, job])
        session.flush()
        job.system_id, job.store_id = system.id, store_b.id
        run = JobRun(job=job, system_id=system.id, store_id=store_b.id, started_at=T0,
                     finished_at=T0 + dt.timedelta(minutes=3), outcome="succeeded",
                     bytes_processed=5 * 2**30, error=None)
        drill = Drill(system_id=system.id, store_id=store_a.id, snapshot_id=snapshot.id,
                      snapshot_restic_id=RESTIC_ID, started_at=T0, finished_at=T0,
                      passed=True, rto_seconds=12.5, rpo_seconds=3600.0,
                      report={"checks": [{"name": "app-db", "passed": True}]},
                      signature=b"\x02" * 64)
        token = Token(name="ops", role="operator", token_hash=Token.hash_token("t" * 43),
                      departments=["public-works"], systems=[], created_at=T0)
        session.add_all([run, drill, token])
        entry = audit.record(session, "cli:root", "store.add", "dc-a", region="region-1")
        session.flush()
        return {"department": department.id, "policy": policy.id, "system": system.id,
                "store_a": store_a.id, "store_b": store_b.id, "snapshot": snapshot.id,
                "copy": copy.id, "job": job.id, "run": run.id, "drill": drill.id,
                "token": token.id, "audit": entry.id}


def _count(catalog: Catalog, model) -> int:
    with catalog.session() as session:
        return session.scalar(sa.select(sa.func.count()).select_from(model))


# -- migrations -----------------------------------------------------------------------


def test_migrate_creates_every_table_at_the_head_revision(database_url):
    revision = migrate(database_url)

    newest = max(path.name[:4] for path in MIGRATIONS.glob("[0-9][0-9][0-9][0-9]_*.py"))
    assert revision == head_revision() == newest
    engine = make_engine(database_url)
    try:
        assert schema_version(engine) == revision
        assert TABLES | {"alembic_version"} <= set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_migrate_twice_changes_nothing(catalog, database_url):
    ids = _populate(catalog)

    assert migrate(database_url) == head_revision()
    with catalog.session() as session:
        assert session.get(System, ids["system"]).name == "fs1"
        assert session.scalar(sa.select(sa.func.count()).select_from(AuditEntry)) == 1


def test_the_migration_matches_the_models(catalog):
    with catalog.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)

    assert differences == []


def test_ddl_is_transactional_so_a_failed_migration_leaves_nothing(catalog):
    with pytest.raises(RuntimeError):
        with catalog.engine.begin() as connection:
            connection.execute(sa.text("CREATE TABLE half_done (id INTEGER)"))
            raise RuntimeError("migration step failed")

    assert "half_done" not in sa.inspect(catalog.engine).get_table_names()


# -- the session ------------------------------------------------------------------------


def test_a_failed_session_writes_nothing(catalog):
    with pytest.raises(RuntimeError):
        with catalog.session() as session:
            session.add(Department(name="parks"))
            session.flush()
            audit.record(session, "cli:root", "department.add", "parks")
            session.flush()
            raise RuntimeError("the command failed after writing")

    assert _count(catalog, Department) == 0
    assert _count(catalog, AuditEntry) == 0


def test_a_constraint_violation_rolls_back_the_whole_session(catalog):
    with catalog.session() as session:
        session.add(Department(name="parks"))

    with pytest.raises(sa.exc.IntegrityError):
        with catalog.session() as session:
            session.add(Department(name="libraries"))
            session.flush()
            session.add(Department(name="parks"))

    with catalog.session() as session:
        assert session.scalars(sa.select(Department.name)).all() == ["parks"]


def test_a_read_session_reads_beside_a_writer_and_refuses_to_write(catalog):
    with catalog.session() as session:
        session.add(Department(name="parks"))
    with catalog.session() as writer:  # holds SQLite's write lock until the block ends
        writer.add(Department(name="roads"))
        writer.flush()
        started = time.monotonic()
        with catalog.read_session() as reader:  # neither waits for it nor sees it
            assert reader.scalars(sa.select(Department.name)).all() == ["parks"]
        assert time.monotonic() - started < 1
    with pytest.raises(OperationError, match="read-only"):
        with catalog.read_session() as reader:
            reader.add(Department(name="libraries"))
    assert _count(catalog, Department) == 2


def test_objects_stay_readable_after_the_session(catalog):
    with catalog.session() as session:
        department = Department(name="parks")
        session.add(department)

    assert department.name == "parks" and department.id is not None


# -- models -----------------------------------------------------------------------------


def test_every_model_round_trips(catalog):
    ids = _populate(catalog)

    with catalog.session() as session:
        system = session.get(System, ids["system"])
        assert (system.name, system.department.name, system.policy.name) == (
            "fs1", "public-works", "fileserver")
        assert system.sealed_password == b"\x01sealed" and system.enrolled_at == T0
        assert session.get(Policy, ids["policy"]).document == {
            "policy": "fileserver", "min_copies": 2}
        store = session.get(Store, ids["store_a"])
        assert (store.kind, store.object_lock, store.secret_encrypted) == (
            "s3", True, b"\x01ciphertext")
        other = session.get(Store, ids["store_b"])
        assert (other.object_lock, other.endpoint, other.secret_encrypted) == (False, None, None)
        snapshot = session.get(Snapshot, ids["snapshot"])
        assert (snapshot.restic_id, snapshot.paths, snapshot.tags, snapshot.size_bytes) == (
            RESTIC_ID, ["/srv/share"], ["drd"], 2**40)
        assert [(c.store.name, c.state, c.verified_at) for c in snapshot.copies] == [
            ("dc-a", "present", T0)]
        job = session.get(Job, ids["job"])
        assert (job.system_id, job.store_id, job.next_run_at) == (
            ids["system"], ids["store_b"], T0)
        run = session.get(JobRun, ids["run"])
        assert (run.job.name, run.outcome, run.bytes_processed) == (
            "replicate:fs1:dc-b", "succeeded", 5 * 2**30)
        drill = session.get(Drill, ids["drill"])
        assert (drill.passed, drill.rto_seconds, drill.signature) == (True, 12.5, b"\x02" * 64)
        assert drill.report["checks"][0]["name"] == "app-db"
        token = session.get(Token, ids["token"])
        assert (token.departments, token.systems, token.expires_at) == (
            ["public-works"], [], None)
        entry = session.get(AuditEntry, ids["audit"])
        assert (entry.actor, entry.action, entry.target, entry.details) == (
            "cli:root", "store.add", "dc-a", {"region": "region-1"})


def test_defaults_are_filled_in(catalog):
    with catalog.session() as session:
        department = Department(name="parks")
        system = System(name="web1", department=department)
        session.add(system)
    before = dt.datetime.now(UTC)

    with catalog.session() as session:
        system = session.get(System, system.id)
        assert system.status == "pending" and system.policy_id is None
        assert system.created_at.tzinfo is not None and system.created_at <= before


@pytest.mark.parametrize("duplicate", ["department", "system", "store", "policy", "job",
                                       "snapshot", "copy", "token"])
def test_unique_constraints_hold(catalog, duplicate):
    ids = _populate(catalog)
    rows = {
        "department": lambda: Department(name="public-works"),
        "system": lambda: System(name="fs1", department_id=ids["department"]),
        "store": lambda: Store(name="dc-a", kind="file", url="file:///x"),
        "policy": lambda: Policy(name="fileserver", document={}, source_text="",
                                 sha256="d" * 64),
        "job": lambda: Job(name="replicate:fs1:dc-b", kind="replicate"),
        "snapshot": lambda: Snapshot(restic_id=RESTIC_ID, system_id=ids["system"], time=T0,
                                     hostname="fs1", tree=TREE),
        "copy": lambda: SnapshotCopy(snapshot_id=ids["snapshot"], store_id=ids["store_a"]),
        "token": lambda: Token(name="other", role="admin", token_hash=Token.hash_token("t" * 43)),
    }

    with pytest.raises(sa.exc.IntegrityError):
        with catalog.session() as session:
            session.add(rows[duplicate]())


def test_the_same_snapshot_id_may_exist_for_two_systems(catalog):
    ids = _populate(catalog)

    with catalog.session() as session:
        other = System(name="fs2", department_id=ids["department"])
        session.add(other)
        session.flush()
        session.add(Snapshot(restic_id=RESTIC_ID, system_id=other.id, time=T0, hostname="fs2",
                             tree=TREE))


@pytest.mark.parametrize("row", ["store kind", "copy state", "token role", "short restic id",
                                 "missing department"])
def test_check_and_foreign_key_constraints_hold(catalog, row):
    ids = _populate(catalog)
    rows = {
        "store kind": lambda: Store(name="x", kind="ftp", url="ftp://x"),
        "copy state": lambda: SnapshotCopy(snapshot_id=ids["snapshot"],
                                           store_id=ids["store_b"], state="fine"),
        "token role": lambda: Token(name="x", role="root", token_hash="e" * 64),
        "short restic id": lambda: Snapshot(restic_id="abc", system_id=ids["system"],
                                            time=T0, hostname="fs1", tree=TREE),
        "missing department": lambda: System(name="orphan", department_id=10_000),
    }

    with pytest.raises(sa.exc.IntegrityError):
        with catalog.session() as session:
            session.add(rows[row]())


def test_deleting_a_snapshot_removes_its_copies_and_keeps_its_drills(catalog):
    ids = _populate(catalog)

    with catalog.engine.begin() as connection:
        connection.execute(sa.text("DELETE FROM snapshots WHERE id = :id"),
                           {"id": ids["snapshot"]})

    assert _count(catalog, SnapshotCopy) == 0
    with catalog.session() as session:
        drill = session.get(Drill, ids["drill"])
        assert drill.snapshot_id is None and drill.snapshot_restic_id == RESTIC_ID


# -- time -------------------------------------------------------------------------------


def test_datetimes_come_back_timezone_aware_in_utc(catalog):
    local = dt.datetime(2024, 6, 1, 12, 30, 15, 250000, tzinfo=PLUS_TWO)
    with catalog.session() as session:
        session.add(Department(name="parks", created_at=local))

    with catalog.session() as session:
        stored = session.scalars(sa.select(Department.created_at)).one()

    assert stored == local
    assert stored.utcoffset() == dt.timedelta(0) and stored.hour == 10


def test_datetimes_compare_and_sort_by_instant(catalog):
    ids = _populate(catalog)
    times = [T0 + dt.timedelta(hours=1), (T0 + dt.timedelta(hours=2)).astimezone(PLUS_TWO),
             (T0 - dt.timedelta(hours=1)).astimezone(PLUS_TWO)]
    with catalog.session() as session:
        for number, time in enumerate(times):
            session.add(Snapshot(restic_id=f"{number}" * 64, system_id=ids["system"], time=time,
                                 hostname="fs1", tree=TREE))

    with catalog.session() as session:
        newer = session.scalars(
            sa.select(Snapshot.time).where(Snapshot.time > T0.astimezone(PLUS_TWO))
            .order_by(Snapshot.time)
        ).all()

    assert newer == sorted(times[:2])


def test_a_naive_datetime_is_refused(catalog):
    with pytest.raises(sa.exc.StatementError, match="naive datetime"):
        with catalog.session() as session:
            session.add(Department(name="parks", created_at=dt.datetime(2024, 1, 1)))

    assert _count(catalog, Department) == 0


# -- the audit log ----------------------------------------------------------------------


def _audit_rows(catalog: Catalog) -> list[tuple]:
    with catalog.engine.connect() as connection:
        return connection.execute(
            sa.text("SELECT id, actor, action, target FROM audit_entries ORDER BY id")
        ).all()


def test_audit_record_appends_in_the_callers_transaction(catalog):
    with catalog.session() as session:
        entry = audit.record(session, "token:ops", "escrow.unseal", "fs1", reason="drill 7")

    assert entry.at.tzinfo is not None
    assert _audit_rows(catalog) == [(entry.id, "token:ops", "escrow.unseal", "fs1")]


def test_audit_details_must_be_json(catalog):
    with pytest.raises(TypeError, match="JSON"):
        with catalog.session() as session:
            audit.record(session, "cli:root", "store.add", "dc-a", key=Secret("x"))


@pytest.mark.parametrize("change", ["attribute", "delete", "bulk update", "bulk delete"])
def test_the_orm_refuses_to_rewrite_the_audit_log(catalog, change):
    ids = _populate(catalog)
    before = _audit_rows(catalog)

    with pytest.raises(AuditLogIsAppendOnly):
        with catalog.session() as session:
            entry = session.get(AuditEntry, ids["audit"])
            if change == "attribute":
                entry.actor = "mallory"
            elif change == "delete":
                session.delete(entry)
            elif change == "bulk update":
                session.execute(sa.update(AuditEntry).values(actor="mallory"))
            else:
                session.execute(sa.delete(AuditEntry))

    assert _audit_rows(catalog) == before


@pytest.mark.parametrize("statement", [
    "UPDATE audit_entries SET actor = 'mallory'",
    "DELETE FROM audit_entries",
    "DELETE FROM audit_entries WHERE id = (SELECT max(id) FROM audit_entries)",
])
def test_the_database_refuses_to_rewrite_the_audit_log(catalog, statement):
    _populate(catalog)
    before = _audit_rows(catalog)

    with pytest.raises(sa.exc.IntegrityError, match="append-only"):
        with catalog.engine.begin() as connection:
            connection.execute(sa.text(statement))

    assert _audit_rows(catalog) == before


def test_the_database_refuses_to_empty_the_audit_log(catalog):
    _populate(catalog)
    # SQLite has no TRUNCATE; its DELETE without WHERE skips row triggers only when a
    # table has none, so on SQLite the DELETE trigger covers this
    statement = {"postgresql": "TRUNCATE audit_entries", "sqlite": "DELETE FROM audit_entries"}

    with pytest.raises(sa.exc.IntegrityError, match="append-only"):
        with catalog.engine.begin() as connection:
            connection.execute(sa.text(statement[catalog.engine.dialect.name]))

    assert len(_audit_rows(catalog)) == 1


def test_the_audit_log_still_accepts_new_entries(catalog):
    _populate(catalog)
    with catalog.engine.begin() as connection:
        connection.execute(sa.text(
            "INSERT INTO audit_entries (at, actor, action, details) "
            "VALUES (CURRENT_TIMESTAMP, 'raw', 'raw.insert', '{}')"
        ))

    assert len(_audit_rows(catalog)) == 2


# -- secrets at rest --------------------------------------------------------------------


def _raw_rows(catalog: Catalog, table: str) -> list[tuple]:
    with catalog.engine.connect() as connection:
        return [tuple(row) for row in connection.execute(sa.text(f"SELECT * FROM {table}"))]


def test_a_token_row_holds_no_plaintext_token(catalog):
    token = Secret(secrets.token_urlsafe(32))
    with catalog.session() as session:
        session.add(Token(name="ops", role="operator", token_hash=Token.hash_token(token)))

    (row,) = _raw_rows(catalog, "tokens")
    assert all(token.reveal() not in str(value) for value in row)
    with catalog.session() as session:
        found = session.scalars(
            sa.select(Token).where(Token.token_hash == Token.hash_token(token.reveal()))
        ).one()
    assert found.name == "ops"


def test_a_store_secret_is_stored_as_ciphertext(catalog):
    master_key = MasterKey.generate()
    secret = b"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    with catalog.session() as session:
        session.add(Store(name="dc-a", kind="s3", url="s3://b/p", access_key_id="AKIA",
                          secret_encrypted=master_key.encrypt(secret, "store:dc-a")))

    (row,) = _raw_rows(catalog, "stores")
    stored = next(bytes(value) for value in row if isinstance(value, bytes | memoryview))
    assert secret not in stored and secret.decode() not in str(row)
    assert master_key.decrypt(stored, "store:dc-a") == secret


# -- engine and check -------------------------------------------------------------------


def test_sqlite_connections_enforce_foreign_keys_and_use_wal(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'catalog.sqlite'}")
    try:
        with engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30_000
    finally:
        engine.dispose()


def test_check_passes_on_a_migrated_catalog(catalog):
    assert catalog.check() == head_revision()


def test_check_says_run_drd_init_on_an_empty_database(database_url):
    with Catalog(database_url) as catalog:
        with pytest.raises(UserError, match="drd init"):
            catalog.check()


def test_check_does_not_create_a_missing_sqlite_file(tmp_path):
    path = tmp_path / "absent.sqlite"

    with Catalog(f"sqlite:///{path}") as catalog:
        with pytest.raises(UserError, match="drd init"):
            catalog.check()
    assert not path.exists()


def test_check_on_an_empty_sqlite_file_says_not_initialised(tmp_path):
    path = tmp_path / "empty.sqlite"
    sqlite3.connect(path).close()

    with Catalog(f"sqlite:///{path}") as catalog:
        with pytest.raises(UserError, match="not initialised"):
            catalog.check()


def test_check_refuses_a_catalog_from_a_newer_drd(catalog):
    with catalog.engine.begin() as connection:
        connection.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))

    with pytest.raises(OperationError, match="newer drd"):
        catalog.check()


def test_an_unreachable_database_is_an_operation_error_without_the_password():
    url = "postgresql+psycopg://drd:hunter2-secret@127.0.0.1:1/catalog?connect_timeout=3"

    with Catalog(url) as catalog:
        with pytest.raises(OperationError) as caught:
            catalog.check()
        message = str(caught.value)
        assert "hunter2-secret" not in message and "127.0.0.1:1" in message
        with pytest.raises(OperationError):
            with catalog.session() as session:
                session.execute(sa.text("SELECT 1"))
    with pytest.raises(OperationError) as caught:
        migrate(url)
    assert "hunter2-secret" not in str(caught.value)


@pytest.mark.parametrize("url", ["mysql://u@h/db", "not a url", "mongodb://h/db"])
def test_unsupported_urls_are_user_errors(url):
    with pytest.raises(UserError):
        make_engine(url)


def test_a_bare_postgresql_url_uses_psycopg_3():
    engine = make_engine("postgresql://postgres@127.0.0.1/test")

    assert engine.url.drivername == "postgresql+psycopg"
    assert engine.dialect.driver == "psycopg"
