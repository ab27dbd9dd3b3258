"""A lock per system, so that retention never runs beside other work on the same system.

Retention's prune removes objects from one store before the catalog records them as
tombstones; a replication or verification pass that listed that store in between would
take the removed objects for lost copies and put them back. So retention holds its
system's lock **exclusively**, and replication, verification and the keyed check hold it
**shared** (they may run together). The lock is taken by the daemon's workers and by the
foreground commands (``drd replicate``, ``drd verify``, ``drd retention run``) alike.

- PostgreSQL: a session-level advisory lock (``pg_try_advisory_lock[_shared]``) on a
  connection of its own, keyed by the catalog's schema and the system's id; it is freed
  when the holder's connection closes, so a daemon that dies frees its locks.
- SQLite: ``flock`` (shared or exclusive) on ``<catalog file>.system-<id>.lock``; the
  kernel frees it when the process dies.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import sqlalchemy as sa

from drd.catalog import Catalog
from drd.errors import OperationError

NAMESPACE = b"drd-system-lock:"
POLL_SECONDS = 0.5
LOCK_WAIT_SECONDS = 600.0
"""How long a foreground command waits for a conflicting run on the same system."""


class SystemBusy(OperationError):
    """Another run holds the system's lock in a conflicting mode."""


def advisory_keys(schema: str, system_id: int) -> tuple[int, int]:
    """The two 32-bit keys of a system's advisory lock in ``schema`` (signed ints)."""
    digest = hashlib.sha256(NAMESPACE + schema.encode()).digest()
    namespace = int.from_bytes(digest[:4], "big", signed=True)
    return namespace, int.from_bytes((system_id & 0xFFFFFFFF).to_bytes(4, "big"), "big",
                                     signed=True)


@contextmanager
def system_lock(catalog: Catalog, system_id: int, system: str, *, exclusive: bool,
                wait: float = 0.0) -> Iterator[None]:
    """Hold ``system``'s lock (exclusive or shared) for the block.

    Waits up to ``wait`` seconds for a conflicting holder, then raises
    :class:`SystemBusy` naming the system.
    """
    with _locks(catalog, [(system_id, system)], exclusive, wait):
        yield


@contextmanager
def _locks(catalog: Catalog, systems: list[tuple[int, str]], exclusive: bool,
           wait: float) -> Iterator[None]:
    url = catalog.engine.url
    if url.get_backend_name() == "postgresql":
        with _postgres_locks(catalog.engine, systems, exclusive, wait):
            yield
        return
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        yield  # a catalog without a file has one process
        return
    with ExitStack() as stack:
        for system_id, system in systems:
            stack.enter_context(_file_lock(Path(f"{database}.system-{system_id}.lock"),
                                           system, exclusive, wait))
        yield


def _busy(system: str, exclusive: bool) -> SystemBusy:
    if exclusive:
        return SystemBusy(f"system {system!r} is busy (replication or verification is "
                          "running): retention waits for it")
    return SystemBusy(f"system {system!r} is busy (retention is running): try again "
                      "when it is done")


@contextmanager
def _postgres_locks(engine: sa.Engine, systems: list[tuple[int, str]], exclusive: bool,
                    wait: float) -> Iterator[None]:
    # one connection holds every lock of the block: one per system would drain the pool
    suffix = "" if exclusive else "_shared"
    connection = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    held: list[tuple[int, int]] = []
    try:
        schema = connection.scalar(sa.text("SELECT current_schema()"))
        for system_id, system in systems:
            keys = advisory_keys(schema, system_id)
            deadline = time.monotonic() + wait
            while not connection.scalar(
                    sa.text(f"SELECT pg_try_advisory_lock{suffix}(:a, :b)"),
                    {"a": keys[0], "b": keys[1]}):
                if time.monotonic() >= deadline:
                    raise _busy(system, exclusive)
                time.sleep(POLL_SECONDS)
            held.append(keys)
        yield
    finally:
        try:
            for keys in reversed(held):
                connection.execute(sa.text(f"SELECT pg_advisory_unlock{suffix}(:a, :b)"),
                                   {"a": keys[0], "b": keys[1]})
        finally:
            connection.close()  # the server frees whatever is still held


@contextmanager
def _file_lock(path: Path, system: str, exclusive: bool, wait: float) -> Iterator[None]:
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        mode = (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(descriptor, mode)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise _busy(system, exclusive) from None
                time.sleep(POLL_SECONDS)
        try:
            yield
        finally:
            fcntl.flock(descriptor, fcntl.LOCK_UN)
    finally:
        os.close(descriptor)


def enrolled_systems(catalog: Catalog, names: list[str] | None = None
                     ) -> list[tuple[int, str]]:
    """``(id, name)`` of the systems named (or of every system), by id."""
    from drd.catalog.models import System

    with catalog.session() as session:
        query = sa.select(System.id, System.name).order_by(System.id)
        if names is not None:
            query = query.where(System.name.in_(names))
        return [(row.id, row.name) for row in session.execute(query)]


@contextmanager
def systems_locked(catalog: Catalog, names: list[str] | None, *, exclusive: bool,
                   wait: float) -> Iterator[None]:
    """Hold the lock of every system named (None: all) for the block, in id order."""
    with _locks(catalog, enrolled_systems(catalog, names), exclusive, wait):
        yield
