"""Alembic's entry point for drd's catalog migrations.

:func:`drd.catalog.schema.migrate` hands in an open connection
(``config.attributes["connection"]``); a developer running the ``alembic`` command
instead sets ``sqlalchemy.url`` in their own ini file. SQLite gets batch mode, which
rebuilds a table to alter it.
"""

from alembic import context

from drd.catalog.engine import make_engine
from drd.catalog.models import Base
from drd.catalog.types import UTCDateTime

config = context.config


def _render_item(kind: str, item, autogen_context):
    # migrations spell out the plain column type: they must not change when the Python
    # type decorator does
    if kind == "type" and isinstance(item, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def _run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        render_item=_render_item,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=Base.metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(config.get_main_option("sqlalchemy.url"))
    try:
        with engine.begin() as connection:
            _run(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
