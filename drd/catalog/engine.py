"""Engines for the catalog database: SQLite (a file) or PostgreSQL (psycopg 3).

SQLite connections get foreign keys on, write-ahead logging (readers do not block the
writer), a busy timeout, and real transactions: Python's ``sqlite3`` would otherwise run
DDL and SELECTs outside any transaction, so a failed migration or a failed command could
leave part of its work behind. PostgreSQL connections are checked before use
(``pool_pre_ping``), so a restarted server costs a reconnect, not a failed command.
"""

from __future__ import annotations

import sqlalchemy as sa

from drd.errors import OperationError, UserError
from drd.secrets import mask

SQLITE_BUSY_TIMEOUT_MS = 30_000


def make_engine(url: str | sa.URL) -> sa.Engine:
    """Return an engine for the catalog at ``url``; no connection is made yet.

    ``postgresql://`` means ``postgresql+psycopg://``. URL query options such as
    ``?options=-csearch_path%3Dschema`` are passed to the driver as they are. Raises
    :class:`UserError` for a malformed URL or a database other than SQLite or PostgreSQL.
    """
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError:
        raise UserError(f"not a database URL: {mask(str(url))}") from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        # hide_parameters: a failing statement's values (hashes, sealed passwords) must
        # not reach a log line or an exception message
        engine = sa.create_engine(parsed, hide_parameters=True)
        sa.event.listen(engine, "connect", _configure_sqlite_connection)
        sa.event.listen(engine, "begin", _begin_sqlite_transaction)
        return engine
    if backend == "postgresql":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        return sa.create_engine(parsed, pool_pre_ping=True, hide_parameters=True)
    raise UserError(
        f"unsupported catalog database {display_url(parsed)}: use sqlite:///PATH "
        "or postgresql+psycopg://USER@HOST/DB"
    )


def display_url(url: str | sa.URL) -> str:
    """``url`` with its password replaced, for messages and logs."""
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return mask(str(url))


def unreachable(url: str | sa.URL, error: sa.exc.DBAPIError) -> OperationError:
    """An :class:`OperationError` for a database that cannot be reached or used.

    The message names the URL without its password and the driver's reason, also with
    the password masked.
    """
    password = sa.make_url(url).password if not isinstance(url, sa.URL) else url.password
    reason = " ".join(str(error.orig).split())
    return OperationError(
        f"cannot use the catalog database {display_url(url)}: "
        f"{mask(reason, [password] if password else [])}"
    )


def _configure_sqlite_connection(dbapi_connection, connection_record) -> None:
    # let SQLAlchemy emit BEGIN (see _begin_sqlite_transaction), not sqlite3's legacy mode
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
    finally:
        cursor.close()


READ_ONLY = "drd_read_only"
"""Execution option of :meth:`drd.catalog.Catalog.read_session`'s connections."""


def _begin_sqlite_transaction(connection: sa.Connection) -> None:
    # IMMEDIATE takes the write lock at the start: a transaction that reads and then
    # writes can otherwise fail with "database is locked" when another writer committed
    # in between, which busy_timeout cannot wait out. A read-only session begins
    # DEFERRED: in WAL mode it reads a consistent snapshot without the lock, so the
    # API's readers neither wait for writers nor for each other.
    if connection.get_execution_options().get(READ_ONLY):
        connection.exec_driver_sql("BEGIN DEFERRED")
    else:
        connection.exec_driver_sql("BEGIN IMMEDIATE")
