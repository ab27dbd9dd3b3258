"""The catalog's tables, as typed SQLAlchemy 2 models.

Conventions:

- every datetime is timezone-aware UTC (:class:`~drd.catalog.types.UTCDateTime`);
- JSON columns hold plain lists and dicts; assign a new value to change one (in-place
  changes to a list are not tracked);
- secrets are never stored in the clear: a store's secret key is encrypted under the master
  key (``Store.secret_encrypted``), a system's repository password is sealed to the escrow
  key (``System.sealed_password``), an API token is kept only as its SHA-256
  (``Token.token_hash``);
- the audit log (:class:`AuditEntry`) is append-only: the ORM refuses to update or delete
  its rows, and so does the database, by a trigger made in the migration.

The migrations under ``versions/`` (``0001_initial.py``, then each later one) create
exactly these tables; a test compares the two.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    ORMExecuteState,
    Session,
    mapped_column,
    relationship,
)

from drd.catalog.types import UTCDateTime, utcnow
from drd.errors import OperationError
from drd.secrets import Secret

# explicit constraint names: Alembic needs them to alter tables, above all in SQLite's
# batch mode, which rebuilds a table and must find its constraints by name
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

STORE_KINDS = ("s3", "file")
# how the centre makes an agent's own keys for a store (drd.stores.credentials)
CREDENTIAL_BROKERS = ("seaweedfs", "aws-iam", "shared")
CREDENTIAL_STATES = ("pending", "active", "superseded", "disabling", "disabled")
LIVE_CREDENTIAL = "state IN ('pending', 'active')"
SNAPSHOT_COPY_STATES = ("pending", "present", "missing", "damaged", "forgotten")
# a snapshot's ``status`` (drd.confirmation says how a report moves between them); a plain
# string column, checked by the code that writes it
SNAPSHOT_STATES = ("unconfirmed", "active", "rejected", "forgotten")
TOKEN_ROLES = ("admin", "operator", "owner", "agent", "enrollment")
OBJECT_STATES = ("present", "corrupt", "missing", "lost")
WORK_STATES = ("queued", "running", "done", "failed")
JOB_KINDS = ("replicate", "verify", "check", "retention", "drill")
NOTIFICATION_EVENTS = ("opened", "repeated", "resolved")
NOTIFICATION_STATES = ("pending", "sent", "failed")


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dt.datetime: UTCDateTime(), bytes: sa.LargeBinary()}


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(value) for value in values)})"


def _json(nullable: bool = False, default=None) -> Any:
    return mapped_column(sa.JSON(none_as_null=True), nullable=nullable, default=default)


class Department(Base):
    """A department (agency) that owns systems."""

    __tablename__ = "departments"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    systems: Mapped[list[System]] = relationship(back_populates="department")


class Policy(Base):
    """An applied policy: the validated document, the YAML it came from, and its digest.

    ``version`` counts applications of the same name (1 on first apply).
    """

    __tablename__ = "policies"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(unique=True)
    document: Mapped[dict[str, Any]] = _json()
    source_text: Mapped[str] = mapped_column(sa.Text)
    sha256: Mapped[str] = mapped_column(sa.String(64))
    applied_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    version: Mapped[int] = mapped_column(default=1)


class System(Base):
    """A department system backed up by an agent; one restic repository.

    ``status``: ``pending`` (token issued, not enrolled), ``enrolled``, ``retired``.
    ``agent_public_key`` is PEM text; ``sealed_password`` is the restic password sealed to
    the escrow key (:func:`drd.crypto.seal.seal`). ``backup_requested_at`` is set by
    ``drd backup-now`` and cleared by the heartbeat that hands the request to the agent;
    ``last_seen_at`` and ``last_heartbeat`` (what the agent said: versions, last backup,
    spooled reports) come from the newest heartbeat.
    """

    __tablename__ = "systems"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(unique=True)
    department_id: Mapped[int] = mapped_column(sa.ForeignKey("departments.id"), index=True)
    policy_id: Mapped[int | None] = mapped_column(sa.ForeignKey("policies.id"), index=True)
    hostname: Mapped[str | None]
    enrolled_at: Mapped[dt.datetime | None]
    agent_public_key: Mapped[str | None] = mapped_column(sa.Text)
    sealed_password: Mapped[bytes | None]
    status: Mapped[str] = mapped_column(default="pending")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    backup_requested_at: Mapped[dt.datetime | None]
    last_seen_at: Mapped[dt.datetime | None]
    last_heartbeat: Mapped[dict[str, Any] | None] = _json(nullable=True)

    department: Mapped[Department] = relationship(back_populates="systems")
    policy: Mapped[Policy | None] = relationship()


def _default_broker(row: dict[str, Any]) -> str | None:
    """A directory cannot tell agents apart: a file store's keys are always ``shared``."""
    return "shared" if row.get("kind") == "file" else None


class Store(Base):
    """An object store (S3-compatible bucket and prefix, or a mounted directory).

    ``secret_encrypted`` is the secret access key encrypted with
    :meth:`drd.crypto.masterkey.MasterKey.encrypt` under the context ``store:<name>``;
    the clear secret is never stored. ``checked_at``, ``reachable`` and ``check_error`` are
    the daemon's latest probe of the store (None: never probed). ``credentials`` names the
    broker that makes each system's own keys here (one of :data:`CREDENTIAL_BROKERS`;
    None: not determined yet), ``iam_endpoint`` the IAM API it speaks to when that is not
    the store's own endpoint.
    """

    __tablename__ = "stores"
    __table_args__ = (
        sa.CheckConstraint(_one_of("kind", STORE_KINDS), name="kind"),
        sa.CheckConstraint(f"credentials IS NULL OR {_one_of('credentials', CREDENTIAL_BROKERS)}",
                           name="credentials"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(unique=True)
    kind: Mapped[str]
    url: Mapped[str]
    endpoint: Mapped[str | None]
    region: Mapped[str | None]
    object_lock: Mapped[bool] = mapped_column(default=False)
    access_key_id: Mapped[str | None]
    secret_encrypted: Mapped[bytes | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    verify_budget_bytes: Mapped[int | None] = mapped_column(sa.BigInteger)
    checked_at: Mapped[dt.datetime | None]
    reachable: Mapped[bool | None]
    check_error: Mapped[str | None] = mapped_column(sa.Text)
    credentials: Mapped[str | None] = mapped_column(default=lambda context: _default_broker(
        context.get_current_parameters()))
    iam_endpoint: Mapped[str | None]


class StoreCredential(Base):
    """A key pair that belongs to one system in one store, scoped to its repository prefix.

    ``state`` (one of :data:`CREDENTIAL_STATES`): ``pending`` (to be made: the store was
    unreachable, or the key is being replaced), ``active`` (handed to the agent),
    ``superseded`` (a newer key is active; this one works until the agent confirms the new
    one), ``disabling`` (to be disabled in the store; retried until done), ``disabled``.
    At most one row per system and store is ``pending`` or ``active``. ``principal`` is
    the store's user the key belongs to; ``secret_encrypted`` the secret key under the
    master key (context ``store-credential:<store>:<access key id>``), None for a shared
    broker (the store's own keys) and once disabled. ``reason`` says why a key was
    disabled; ``attempts``, ``next_attempt_at`` and ``last_error`` track the retries of
    making or disabling it.
    """

    __tablename__ = "store_credentials"
    __table_args__ = (
        sa.CheckConstraint(_one_of("state", CREDENTIAL_STATES), name="state"),
        sa.Index(None, "system_id", "store_id"),
        sa.Index(None, "state", "next_attempt_at"),
        # one live key per system and store, whoever races to make it
        sa.Index("ux_store_credentials_live", "system_id", "store_id", unique=True,
                 sqlite_where=sa.text(LIVE_CREDENTIAL), postgresql_where=sa.text(LIVE_CREDENTIAL)),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    system_id: Mapped[int] = mapped_column(sa.ForeignKey("systems.id"))
    store_id: Mapped[int] = mapped_column(sa.ForeignKey("stores.id"))
    state: Mapped[str] = mapped_column(default="pending")
    principal: Mapped[str | None]
    access_key_id: Mapped[str | None]
    secret_encrypted: Mapped[bytes | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    issued_at: Mapped[dt.datetime | None]
    confirmed_at: Mapped[dt.datetime | None]
    superseded_at: Mapped[dt.datetime | None]
    disabled_at: Mapped[dt.datetime | None]
    reason: Mapped[str | None]
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_error: Mapped[str | None] = mapped_column(sa.Text)

    system: Mapped[System] = relationship()
    store: Mapped[Store] = relationship()


class Snapshot(Base):
    """A restic snapshot of a system, as reported by its agent.

    ``restic_id`` is restic's full 64-hex id. ``status`` (one of :data:`SNAPSHOT_STATES`):
    ``unconfirmed`` (reported; the centre has not yet seen it in ``min_copies`` stores),
    ``active`` (confirmed, or written by the centre itself), ``rejected`` (the stores do not
    hold it: never a restore point) or ``forgotten`` (removed by retention; the row stays
    as history). Only ``active`` snapshots count. ``report_id`` is the agent's id of
    the report that brought it (a report delivered twice is recorded once);
    ``manifest_sha256`` is the digest of the manifest's canonical JSON, which arrives
    later (:class:`SnapshotManifest`); ``partial`` is restic's "some files could not be
    read".
    """

    __tablename__ = "snapshots"
    __table_args__ = (
        sa.UniqueConstraint("system_id", "restic_id"),
        sa.CheckConstraint("length(restic_id) = 64", name="restic_id_length"),
        sa.Index(None, "system_id", "time"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    restic_id: Mapped[str] = mapped_column(sa.String(64))
    report_id: Mapped[str | None] = mapped_column(sa.String(36), index=True, unique=True)
    system_id: Mapped[int] = mapped_column(sa.ForeignKey("systems.id"))
    time: Mapped[dt.datetime]
    hostname: Mapped[str]
    paths: Mapped[list[str]] = _json(default=list)
    tags: Mapped[list[str]] = _json(default=list)
    tree: Mapped[str] = mapped_column(sa.String(64))
    size_bytes: Mapped[int | None] = mapped_column(sa.BigInteger)
    file_count: Mapped[int | None] = mapped_column(sa.BigInteger)
    reported_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    status: Mapped[str] = mapped_column(default="active")
    duration_seconds: Mapped[float | None]
    partial: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    manifest_sha256: Mapped[str | None] = mapped_column(sa.String(64))

    system: Mapped[System] = relationship()
    copies: Mapped[list[SnapshotCopy]] = relationship(
        back_populates="snapshot", cascade="all, delete-orphan", passive_deletes=True
    )


class SnapshotCopy(Base):
    """Whether a store holds every object of a snapshot, and when that was last verified.

    ``state`` is one of :data:`SNAPSHOT_COPY_STATES`. ``missing_objects`` counts the
    objects the store lacked when the agent reported the snapshot, and ``missing`` names
    them (restic object paths such as ``data/ab/ab12...``), for the replicator to repair.
    """

    __tablename__ = "snapshot_copies"
    __table_args__ = (
        sa.UniqueConstraint("snapshot_id", "store_id"),
        sa.CheckConstraint(_one_of("state", SNAPSHOT_COPY_STATES), name="state"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    snapshot_id: Mapped[int] = mapped_column(sa.ForeignKey("snapshots.id", ondelete="CASCADE"))
    store_id: Mapped[int] = mapped_column(sa.ForeignKey("stores.id"), index=True)
    state: Mapped[str] = mapped_column(default="pending")
    verified_at: Mapped[dt.datetime | None]
    missing_objects: Mapped[int | None] = mapped_column(sa.BigInteger)
    missing: Mapped[list[str] | None] = _json(nullable=True)

    snapshot: Mapped[Snapshot] = relationship(back_populates="copies")
    store: Mapped[Store] = relationship()


class SnapshotManifest(Base):
    """The signed manifest of a snapshot: path, size, mtime and SHA-256 of its files.

    ``content`` holds the manifest's canonical JSON bytes exactly as the agent signed
    them (see ``docs/agent-protocol.md``), so ``signature`` (Ed25519, by the agent's
    enrolled key) can be checked again at any time; ``sha256`` is their digest.
    ``sealed_head`` is the first 45 bytes of the manifest the agent stored sealed to the
    escrow key (``drd/manifests/<id>.json.sealed``): with ``content`` and the escrow key
    they give that object back byte for byte (:func:`drd.crypto.seal.reseal`), so the
    catalog need not keep the ciphertext too; None where the agent stored the plaintext.
    """

    __tablename__ = "snapshot_manifests"

    id: Mapped[int] = mapped_column(primary_key=True)
    snapshot_id: Mapped[int] = mapped_column(
        sa.ForeignKey("snapshots.id", ondelete="CASCADE"), unique=True
    )
    content: Mapped[bytes]
    sha256: Mapped[str] = mapped_column(sa.String(64))
    signature: Mapped[bytes]
    received_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    sealed_head: Mapped[bytes | None]


class Job(Base):
    """A scheduled unit of work derived from a policy (replicate, verify, retention, drill).

    ``schedule`` is a five-field cron expression in UTC, or ``None`` for on-demand jobs.
    """

    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(unique=True)
    kind: Mapped[str]
    system_id: Mapped[int | None] = mapped_column(sa.ForeignKey("systems.id"), index=True)
    store_id: Mapped[int | None] = mapped_column(sa.ForeignKey("stores.id"), index=True)
    schedule: Mapped[str | None]
    next_run_at: Mapped[dt.datetime | None] = mapped_column(index=True)
    active: Mapped[bool] = mapped_column(default=True, server_default=sa.true())

    runs: Mapped[list[JobRun]] = relationship(back_populates="job")


class JobRun(Base):
    """One run of a job. ``outcome`` is ``None`` while it runs, then e.g. ``succeeded``,
    ``failed`` or ``partial``; ``bytes_processed`` is what it read or copied."""

    __tablename__ = "job_runs"
    __table_args__ = (sa.Index(None, "job_id", "started_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(sa.ForeignKey("jobs.id"))
    system_id: Mapped[int | None] = mapped_column(sa.ForeignKey("systems.id"), index=True)
    store_id: Mapped[int | None] = mapped_column(sa.ForeignKey("stores.id"), index=True)
    started_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[dt.datetime | None]
    outcome: Mapped[str | None]
    bytes_processed: Mapped[int | None] = mapped_column(sa.BigInteger)
    error: Mapped[str | None] = mapped_column(sa.Text)

    job: Mapped[Job] = relationship(back_populates="runs")


class StoreObject(Base):
    """The ledger: one object of a system's repository on one store.

    ``key`` is relative to the repository (``data/ab/ab12...``, ``index/...``,
    ``config``). ``state``: ``present`` (listed on the store), ``corrupt`` (read back
    and its SHA-256 did not match its name), ``missing`` (the store lacks an object that
    another store holds, or it vanished), ``lost`` (no store holds a good copy).
    ``verified_at`` is when its bytes were last read back and found right (None: never);
    ``first_seen_at`` is when drd first saw it on this store.
    """

    __tablename__ = "store_objects"
    __table_args__ = (
        sa.UniqueConstraint("store_id", "system_id", "key"),
        sa.CheckConstraint(_one_of("state", OBJECT_STATES), name="state"),
        sa.Index(None, "store_id", "state", "verified_at"),
        sa.Index(None, "system_id", "key"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    store_id: Mapped[int] = mapped_column(sa.ForeignKey("stores.id"))
    system_id: Mapped[int] = mapped_column(sa.ForeignKey("systems.id"))
    key: Mapped[str] = mapped_column(sa.String(200))
    size: Mapped[int] = mapped_column(sa.BigInteger)
    state: Mapped[str] = mapped_column(default="present")
    first_seen_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    verified_at: Mapped[dt.datetime | None]
    failed_at: Mapped[dt.datetime | None]


class RecordedObject(Base):
    """The SHA-256 and size an object not named by its hash must have in every store.

    Restic names ``data/``, ``index/``, ``snapshots/`` and ``keys/`` objects by their
    SHA-256; ``config``, drd's sealed password (``drd/escrow/password.sealed``) and the
    manifests (``drd/manifests/<id>.json.sealed``, or ``.json`` from older agents, and
    ``.json.sig``) have fixed names, so a copy
    of one is checked against this record, made when the object was first written
    (:func:`drd.recorded.catalog.record_object`), never against the other copies. ``key``
    is relative to the repository, as in :class:`StoreObject`; ``sha256`` and ``size``
    are those of the bytes as stored; ``source`` says where the digest came from (the agent
    at enrollment, the catalog's own bytes, a locked copy in a named store).
    """

    __tablename__ = "recorded_objects"
    __table_args__ = (sa.UniqueConstraint("system_id", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    system_id: Mapped[int] = mapped_column(sa.ForeignKey("systems.id"))
    key: Mapped[str] = mapped_column(sa.String(200))
    sha256: Mapped[str] = mapped_column(sa.String(64))
    size: Mapped[int] = mapped_column(sa.BigInteger)
    source: Mapped[str]
    recorded_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Replica(Base):
    """One system's repository on one store: replication's watermark and lag.

    Every snapshot of the system reported at or before ``watermark_at`` is safe on the
    store: the store held every object that existed then (a replication pass listed all
    the system's stores at ``watermark_at`` and left this one lacking nothing).
    ``lag_objects``/``lag_bytes`` are what it lacked after the last pass (0 when
    complete); ``last_error`` why the last pass could not finish it.
    """

    __tablename__ = "replicas"
    __table_args__ = (sa.UniqueConstraint("system_id", "store_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    system_id: Mapped[int] = mapped_column(sa.ForeignKey("systems.id"))
    store_id: Mapped[int] = mapped_column(sa.ForeignKey("stores.id"), index=True)
    watermark_at: Mapped[dt.datetime | None]
    listed_at: Mapped[dt.datetime | None]
    lag_objects: Mapped[int | None] = mapped_column(sa.BigInteger)
    lag_bytes: Mapped[int | None] = mapped_column(sa.BigInteger)
    last_error: Mapped[str | None] = mapped_column(sa.Text)


class Tombstone(Base):
    """An object that ``restic prune`` removed from a system's repository on one store.

    Replication never copies it back; after ``delete_after`` retention removes it from the
    other stores too (``deleted_from`` names the stores done), unless the pruned store
    holds it again by then (a later backup wrote the same content).
    """

    __tablename__ = "tombstones"
    __table_args__ = (sa.UniqueConstraint("system_id", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    system_id: Mapped[int] = mapped_column(sa.ForeignKey("systems.id"))
    key: Mapped[str] = mapped_column(sa.String(200))
    size: Mapped[int | None] = mapped_column(sa.BigInteger)
    pruned_store_id: Mapped[int] = mapped_column(sa.ForeignKey("stores.id"))
    removed_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    delete_after: Mapped[dt.datetime] = mapped_column(index=True)
    deleted_from: Mapped[list[str]] = _json(default=list)
    done_at: Mapped[dt.datetime | None]


class WorkItem(Base):
    """Queued work: one run of a job, claimed by one daemon at a time.

    ``pending_key`` (unique while set) keeps one queued item per purpose (a second
    "replicate system 5" is not queued while one waits); it is cleared when the item is
    claimed. ``scheduled_for`` with ``job_id`` is unique: a scheduled slot is queued once
    however often the leader changes. A claim lasts until ``lease_until``; the claiming
    daemon extends it while it works, and once it lapses (the daemon died) another
    daemon resumes the item, with the same ``run_id``. ``checkpoint`` is the job's own
    progress record.
    """

    __tablename__ = "work_items"
    __table_args__ = (
        sa.UniqueConstraint("job_id", "scheduled_for"),
        sa.CheckConstraint(_one_of("state", WORK_STATES), name="state"),
        sa.Index(None, "state", "not_before"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(sa.ForeignKey("jobs.id"), index=True)
    kind: Mapped[str]
    system_id: Mapped[int | None] = mapped_column(sa.ForeignKey("systems.id"))
    store_id: Mapped[int | None] = mapped_column(sa.ForeignKey("stores.id"))
    params: Mapped[dict[str, Any]] = _json(default=dict)
    pending_key: Mapped[str | None] = mapped_column(sa.String(200), unique=True)
    scheduled_for: Mapped[dt.datetime | None]
    state: Mapped[str] = mapped_column(default="queued")
    reason: Mapped[str] = mapped_column(default="scheduled")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    not_before: Mapped[dt.datetime] = mapped_column(default=utcnow)
    claimed_by: Mapped[str | None] = mapped_column(sa.String(64))
    lease_until: Mapped[dt.datetime | None]
    attempts: Mapped[int] = mapped_column(default=0)
    run_id: Mapped[int | None] = mapped_column(sa.ForeignKey("job_runs.id"))
    checkpoint: Mapped[dict[str, Any] | None] = _json(nullable=True)
    finished_at: Mapped[dt.datetime | None]


class Daemon(Base):
    """A running (or once running) ``drd serve``: its heartbeat, and whether it leads."""

    __tablename__ = "daemons"

    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    hostname: Mapped[str]
    pid: Mapped[int]
    started_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    heartbeat_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    leader: Mapped[bool] = mapped_column(default=False)
    stopped_at: Mapped[dt.datetime | None]


class Alert(Base):
    """Something an operator must see: damage, a failed check, a failed drill.

    ``open_key`` (unique while set) makes an alert for the same thing repeat as one
    alert (``count`` and ``last_seen_at`` grow); it is cleared when resolved.
    ``notified_at`` is when the alert channels were last told of it (for repeats).
    """

    __tablename__ = "alerts"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(index=True)
    severity: Mapped[str] = mapped_column(default="critical")
    system_id: Mapped[int | None] = mapped_column(sa.ForeignKey("systems.id"), index=True)
    store_id: Mapped[int | None] = mapped_column(sa.ForeignKey("stores.id"))
    open_key: Mapped[str | None] = mapped_column(sa.String(300), unique=True)
    message: Mapped[str] = mapped_column(sa.Text)
    details: Mapped[dict[str, Any]] = _json(default=dict)
    opened_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    count: Mapped[int] = mapped_column(default=1)
    resolved_at: Mapped[dt.datetime | None]
    notified_at: Mapped[dt.datetime | None]


class AlertNotification(Base):
    """The outbox of alert channels: one message about one alert to one channel.

    ``event`` is one of :data:`NOTIFICATION_EVENTS`, ``state`` one of
    :data:`NOTIFICATION_STATES`: ``pending`` until delivered (``sent``) or given up
    (``failed``, after the channel's attempts; ``last_error`` says why). A notifier thread
    delivers them, apart from the jobs that raised the alerts, so an unreachable channel
    never blocks or fails a job.
    """

    __tablename__ = "alert_notifications"
    __table_args__ = (
        sa.CheckConstraint(_one_of("event", NOTIFICATION_EVENTS), name="event"),
        sa.CheckConstraint(_one_of("state", NOTIFICATION_STATES), name="state"),
        sa.Index(None, "state", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    alert_id: Mapped[int] = mapped_column(sa.ForeignKey("alerts.id"), index=True)
    channel: Mapped[str]
    event: Mapped[str]
    state: Mapped[str] = mapped_column(default="pending")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    attempts: Mapped[int] = mapped_column(default=0)
    sent_at: Mapped[dt.datetime | None]
    last_error: Mapped[str | None] = mapped_column(sa.Text)


class Drill(Base):
    """A restore drill of one snapshot from one store, and its signed report.

    ``passed`` is ``None`` while it runs. ``signature`` is the Ed25519 signature of the
    report (:mod:`drd.crypto.signing`). If the snapshot row is ever deleted the drill
    stays, with ``snapshot_id`` set to NULL and ``snapshot_restic_id`` still naming it.
    """

    __tablename__ = "drills"
    __table_args__ = (sa.Index(None, "system_id", "started_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    system_id: Mapped[int] = mapped_column(sa.ForeignKey("systems.id"))
    store_id: Mapped[int] = mapped_column(sa.ForeignKey("stores.id"), index=True)
    snapshot_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("snapshots.id", ondelete="SET NULL"), index=True
    )
    snapshot_restic_id: Mapped[str | None] = mapped_column(sa.String(64))
    started_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[dt.datetime | None]
    passed: Mapped[bool | None]
    rto_seconds: Mapped[float | None]
    rpo_seconds: Mapped[float | None]
    report: Mapped[dict[str, Any] | None] = _json(nullable=True)
    signature: Mapped[bytes | None]


class Token(Base):
    """An API bearer token, kept only as the SHA-256 of its value.

    Tokens are 32 random bytes or more, so a plain SHA-256 is enough: there is nothing to
    guess, and a stolen catalog yields no usable token. ``departments`` and ``systems``
    scope the ``owner`` and ``agent`` roles; ``role`` is one of :data:`TOKEN_ROLES`.
    ``used_at`` is set when a one-time (``enrollment``) token is consumed.
    """

    __tablename__ = "tokens"
    __table_args__ = (sa.CheckConstraint(_one_of("role", TOKEN_ROLES), name="role"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str]
    role: Mapped[str]
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    departments: Mapped[list[str]] = _json(default=list)
    systems: Mapped[list[str]] = _json(default=list)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime | None]
    revoked_at: Mapped[dt.datetime | None]
    used_at: Mapped[dt.datetime | None]

    @staticmethod
    def hash_token(token: Secret | str) -> str:
        """The SHA-256 (hex) of a token's value: what ``token_hash`` holds."""
        value = token.reveal() if isinstance(token, Secret) else token
        return hashlib.sha256(value.encode()).hexdigest()


class AuditEntry(Base):
    """One line of the append-only audit log: who did what to what, and when.

    Write entries with :func:`drd.catalog.audit.record`. Updating or deleting one raises
    :class:`AuditLogIsAppendOnly` (and the database refuses it too).
    """

    __tablename__ = "audit_entries"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str]
    action: Mapped[str] = mapped_column(index=True)
    target: Mapped[str | None]
    details: Mapped[dict[str, Any]] = _json(default=dict)


class AuditLogIsAppendOnly(OperationError):
    """Something tried to change or remove an audit entry."""


@event.listens_for(AuditEntry, "before_update")
def _refuse_update(mapper, connection, target: AuditEntry) -> None:
    raise AuditLogIsAppendOnly(f"audit entry {target.id} cannot be changed: the log is append-only")


@event.listens_for(AuditEntry, "before_delete")
def _refuse_delete(mapper, connection, target: AuditEntry) -> None:
    raise AuditLogIsAppendOnly(f"audit entry {target.id} cannot be deleted: the log is append-only")


@event.listens_for(Session, "do_orm_execute")
def _refuse_bulk_changes(state: ORMExecuteState) -> None:
    # session.execute(update(AuditEntry)) bypasses the mapper events above
    if (state.is_update or state.is_delete) and any(
        mapper.class_ is AuditEntry for mapper in state.all_mappers
    ):
        raise AuditLogIsAppendOnly("audit entries cannot be changed: the log is append-only")
