"""The catalog's schema version, and migrating a database to the newest one (Alembic).

The migrations live in ``drd/catalog/migrations``; no ``alembic.ini`` is needed. The
revision a database is at is in Alembic's ``alembic_version`` table.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError

from drd.catalog.engine import make_engine, unreachable

MIGRATIONS = Path(__file__).parent / "migrations"

# a PostgreSQL advisory lock key, so that daemons starting together migrate one at a time
_MIGRATION_LOCK = 0x647264_0001


def alembic_config() -> Config:
    """An Alembic configuration pointing at drd's migrations (no ini file)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def head_revision() -> str:
    """The newest revision this drd knows."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "drd ships at least one migration"
    return head


def is_known_revision(revision: str) -> bool:
    """True if ``revision`` is one of this drd's migrations (else a newer drd wrote it)."""
    try:
        return ScriptDirectory.from_config(alembic_config()).get_revision(revision) is not None
    except CommandError:
        return False


def schema_version(engine: sa.Engine) -> str | None:
    """The revision the database is at, or ``None`` if it was never migrated.

    Raises ``sqlalchemy.exc.OperationalError`` if the database cannot be reached.
    """
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def migrate(database_url: str | sa.URL) -> str:
    """Upgrade the catalog at ``database_url`` to the newest schema; return that revision.

    All migrations run in one transaction: on failure nothing is changed (PostgreSQL and
    SQLite both have transactional DDL). Running it again is a no-op. Raises
    :class:`~drd.errors.OperationError` if the database cannot be reached, and
    :class:`~drd.errors.UserError` for a bad URL.
    """
    engine = make_engine(database_url)
    try:
        with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"),
                                   {"key": _MIGRATION_LOCK})
            config = alembic_config()
            # handing Alembic our connection keeps the engine's settings (SQLite pragmas,
            # the URL's query options, which an ini file's interpolation would mangle)
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
        revision = schema_version(engine)
    except (sa.exc.OperationalError, sa.exc.InterfaceError) as error:
        raise unreachable(database_url, error) from None
    finally:
        engine.dispose()
    assert revision is not None
    return revision
