"""Which daemon leads (schedules), and the catalog's record of running daemons.

- PostgreSQL: the leader holds a session-level advisory lock
  (``pg_try_advisory_lock``) on a connection of its own, kept for the daemon's life.
  When the process dies its connection closes and the server frees the lock; followers
  try again every second or two, so another daemon leads within seconds. The lock's
  key is derived from the catalog's schema (:func:`advisory_key`), so catalogs in
  different schemas of one database have leaders of their own.
- SQLite: an exclusive ``flock`` on ``<catalog file>.daemon.lock``. A second daemon on
  the same catalog file does not refuse to start: it runs as a follower (it executes
  queued work and takes the lock when the first daemon stops or dies).

The ``daemons`` rows (:func:`register`, :func:`beat`, :func:`unregister`) say which
daemons run, since when, whether each leads, and when it was last alive.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import logging
import os
import socket
import uuid
from pathlib import Path

import sqlalchemy as sa

from drd.catalog import Catalog
from drd.catalog.models import Daemon
from drd.catalog.types import utcnow

log = logging.getLogger(__name__)

ADVISORY_NAMESPACE = b"drd-leader:"


def advisory_key(schema: str) -> int:
    """The advisory lock key of the catalog in ``schema``: a signed 64-bit integer."""
    digest = hashlib.sha256(ADVISORY_NAMESPACE + schema.encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def new_daemon_id() -> str:
    """A daemon's id: ``host:pid:random``, at most 64 characters."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Leadership:
    """The right to schedule, held by one daemon of a catalog at a time.

    :meth:`try_acquire` takes it if it is free (True when held, also when held already)
    and checks that a held one is still held; :meth:`release` gives it up. Neither
    raises for a database that went away: that is "not leader".
    """

    def try_acquire(self) -> bool:  # pragma: no cover - interface
        raise NotImplementedError

    def release(self) -> None:  # pragma: no cover - interface
        raise NotImplementedError


class PostgresLeadership(Leadership):
    """Leadership by a PostgreSQL advisory lock on a connection held for the daemon's life."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.connection: sa.Connection | None = None
        self.key: int | None = None
        self.held = False

    def _connect(self) -> sa.Connection:
        connection = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        if self.key is None:
            self.key = advisory_key(connection.scalar(sa.text("SELECT current_schema()")))
        return connection

    def try_acquire(self) -> bool:
        try:
            if self.connection is None:
                self.connection = self._connect()
            if self.held:
                # the lock lives as long as this connection: check it still does
                self.connection.scalar(sa.text("SELECT 1"))
                return True
            self.held = bool(self.connection.scalar(
                sa.text("SELECT pg_try_advisory_lock(:key)"), {"key": self.key}))
            return self.held
        except sa.exc.DBAPIError as error:
            if self.held:
                log.warning("lost the leader's connection to the catalog: %s",
                            " ".join(str(error.orig).split()))
            self._drop()
            return False

    def _drop(self) -> None:
        self.held = False
        if self.connection is not None:
            try:
                self.connection.invalidate()
                self.connection.close()
            except sa.exc.DBAPIError:
                pass
            self.connection = None

    def release(self) -> None:
        if self.connection is not None and self.held:
            try:
                self.connection.scalar(sa.text("SELECT pg_advisory_unlock(:key)"),
                                       {"key": self.key})
            except sa.exc.DBAPIError:
                pass
        self.held = False
        if self.connection is not None:
            try:
                self.connection.close()
            except sa.exc.DBAPIError:
                pass
            self.connection = None


class FileLeadership(Leadership):
    """Leadership by an exclusive ``flock`` on a lock file (a SQLite catalog's)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.descriptor: int | None = None

    def try_acquire(self) -> bool:
        if self.descriptor is not None:
            return True
        descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            return False
        self.descriptor = descriptor
        return True

    def release(self) -> None:
        if self.descriptor is not None:
            fcntl.flock(self.descriptor, fcntl.LOCK_UN)
            os.close(self.descriptor)
            self.descriptor = None


def lock_file(catalog: Catalog, home: Path) -> Path:
    """The leader's lock file of a SQLite catalog: next to its file (in ``home`` for an
    in-memory or URI catalog)."""
    database = catalog.engine.url.database
    if database and database != ":memory:" and not database.startswith("file:"):
        return Path(database).with_name(Path(database).name + ".daemon.lock")
    return home / "catalog.daemon.lock"


def leadership_for(catalog: Catalog, home: Path) -> Leadership:
    """The leadership that fits the catalog's database."""
    if catalog.engine.url.get_backend_name() == "postgresql":
        return PostgresLeadership(catalog.engine)
    return FileLeadership(lock_file(catalog, home))


def register(catalog: Catalog, daemon_id: str, now: dt.datetime | None = None) -> None:
    """Record a starting daemon (not yet leader)."""
    now = now or utcnow()
    with catalog.session() as session:
        session.add(Daemon(id=daemon_id, hostname=socket.gethostname()[:200], pid=os.getpid(),
                           started_at=now, heartbeat_at=now, leader=False))


def beat(catalog: Catalog, daemon_id: str, leader: bool,
         now: dt.datetime | None = None) -> None:
    """Record that ``daemon_id`` is alive, and whether it leads.

    When it leads, any other daemon still marked leader (one that died) is unmarked.
    """
    now = now or utcnow()
    with catalog.session() as session:
        session.execute(sa.update(Daemon).where(Daemon.id == daemon_id)
                        .values(heartbeat_at=now, leader=leader))
        if leader:
            session.execute(sa.update(Daemon).where(Daemon.id != daemon_id,
                                                    Daemon.leader.is_(True))
                            .values(leader=False))


def unregister(catalog: Catalog, daemon_id: str, now: dt.datetime | None = None) -> None:
    """Record a clean stop: ``stopped_at`` set, no longer leader."""
    now = now or utcnow()
    with catalog.session() as session:
        session.execute(sa.update(Daemon).where(Daemon.id == daemon_id)
                        .values(stopped_at=now, heartbeat_at=now, leader=False))
