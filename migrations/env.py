"""Alembic environment of the wfe schema.

wfe runs migrations programmatically (:mod:`wfe_sql.migrate`): the caller opens the
transaction (a write transaction that also serialises concurrent migrators) and hands
its connection over in ``config.attributes["connection"]``. Run from the ``alembic``
command line instead, the environment opens an engine from ``sqlalchemy.url``.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from wfe_sql.schema import VERSION_TABLE, metadata

config = context.config


def run_with(connection: Connection) -> None:
    """Configure Alembic on ``connection`` and run the migrations in its transaction."""
    batch = config.attributes.get("render_as_batch")
    if batch is None:
        # Command-line use: no dialect object to ask; SQLite needs batch mode.
        batch = connection.dialect.name == "sqlite"
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        render_as_batch=bool(batch),
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_from_url(url: str) -> None:
    """Open an engine on ``url`` and migrate through it (command-line use)."""
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(run_with)
    finally:
        await engine.dispose()


def run_offline() -> None:
    """Emit the migration SQL instead of running it (``alembic upgrade --sql``)."""
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
elif (connection := config.attributes.get("connection")) is not None:
    run_with(connection)
else:
    asyncio.run(run_from_url(config.get_main_option("sqlalchemy.url") or ""))
