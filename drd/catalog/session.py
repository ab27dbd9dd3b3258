"""The one way into the catalog: :class:`Catalog` and its :meth:`Catalog.session`.

Every command, API handler and job opens its catalog work with ``catalog.session()``:
everything done inside commits together when the block ends, or not at all if it
raises -- no failed command leaves a half-written catalog. Work that only reads (the
status API, metrics, the dashboard) may use ``catalog.read_session()`` instead, which
never takes SQLite's write lock and refuses to write.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from drd.catalog.engine import (
    READ_ONLY,
    SQLITE_BUSY_TIMEOUT_MS,
    display_url,
    make_engine,
    unreachable,
)
from drd.catalog.schema import head_revision, is_known_revision, schema_version
from drd.errors import OperationError, UserError

__all__ = ["Catalog", "make_engine"]


class Catalog:
    """The catalog database at ``url`` (see :func:`make_engine` for what URLs work).

    Objects loaded in a session stay usable after it commits (``expire_on_commit`` is
    off), but lazy relationships cannot load once the session is closed: load what you
    need inside the block. Raises :class:`UserError` for a bad URL.
    """

    def __init__(self, url: str | sa.URL) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._readers = sessionmaker(self.engine.execution_options(**{READ_ONLY: True}),
                                     expire_on_commit=False)
        sa.event.listen(self._readers, "before_flush", _refuse_writes)
        # SQLite has one writer at a time. Threads of this process queue for it here,
        # without sleeping; left to SQLite's busy handler they would poll with
        # sleeps of up to 100 ms each, and under concurrent writes (agents' reports, say)
        # most of the time would go to sleeping. Other processes still meet the busy
        # handler. The lock is held from the session's start, so a session must not do
        # slow work (a store listing) before its first statement. Re-entrant, so that a
        # nested session meets SQLite's own lock (and its timeout), not a deadlock here.
        self._writer = (threading.RLock() if self.engine.dialect.name == "sqlite"
                        else None)

    def __repr__(self) -> str:
        return f"Catalog({display_url(self.url)!r})"

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session that commits when the block ends and rolls back if it raises.

        A database that cannot be reached (or SQLite that stays locked) raises
        :class:`OperationError` naming the URL without its password; other database
        errors (``IntegrityError`` for a duplicate name, say) propagate unchanged after
        the rollback.
        """
        with self._writing(), self._open(self._sessions) as session:
            yield session

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """Hold this process's SQLite writer lock for the block (nothing on PostgreSQL)."""
        if self._writer is None:
            yield
            return
        if not self._writer.acquire(timeout=SQLITE_BUSY_TIMEOUT_MS / 1000):
            raise OperationError(
                f"cannot use the catalog database {display_url(self.url)}: another thread "
                f"of this process kept it locked for {SQLITE_BUSY_TIMEOUT_MS // 1000} s")
        try:
            yield
        finally:
            self._writer.release()

    @contextmanager
    def read_session(self) -> Iterator[Session]:
        """A session for reading only: one consistent snapshot of the catalog, without
        SQLite's write lock (readers wait for no writer). Flushing a change in it raises
        :class:`OperationError`; errors are raised as :meth:`session` raises them."""
        with self._open(self._readers) as session:
            yield session

    @contextmanager
    def _open(self, factory: sessionmaker) -> Iterator[Session]:
        session = factory()
        try:
            yield session
            session.commit()
        except (sa.exc.OperationalError, sa.exc.InterfaceError) as error:
            session.rollback()
            raise unreachable(self.url, error) from None
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def check(self) -> str:
        """Check that the catalog is reachable and at this drd's schema; return the revision.

        Raises :class:`OperationError` if the database cannot be reached or was written by
        a newer drd, :class:`UserError` if it was never initialised or needs migrating
        (both say to run ``drd init``). A missing SQLite file is not created.
        """
        where = display_url(self.url)
        if self._sqlite_file_missing():
            raise UserError(f"no catalog at {where}: run `drd init` first (or pass --home)")
        try:
            current = schema_version(self.engine)
        except (sa.exc.OperationalError, sa.exc.InterfaceError) as error:
            raise unreachable(self.url, error) from None
        head = head_revision()
        if current is None:
            raise UserError(f"the catalog at {where} is not initialised: run `drd init` first")
        if current == head:
            return current
        if is_known_revision(current):
            raise UserError(
                f"the catalog at {where} is at schema {current}, this drd needs {head}: "
                "run `drd init` to migrate it"
            )
        raise OperationError(
            f"the catalog at {where} is at schema {current}, unknown to this drd "
            f"(which knows up to {head}): it was written by a newer drd; upgrade drd"
        )

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc_info) -> None:
        self.dispose()

    def _sqlite_file_missing(self) -> bool:
        url = self.engine.url
        if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
            return False
        if url.database.startswith("file:"):  # a sqlite URI: leave it to the driver
            return False
        return not Path(url.database).exists()


def _refuse_writes(session: Session, flush_context, instances) -> None:
    if session.new or session.dirty or session.deleted:
        raise OperationError("a read-only catalog session cannot write: use catalog.session()")
