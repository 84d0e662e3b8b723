"""Running the Alembic migrations in ``migrations/`` programmatically.

Each run happens inside one write transaction of the :class:`~wfe_sql.database.Database`
(``BEGIN IMMEDIATE`` on SQLite, plus the dialect's migration lock, e.g. a transaction
advisory lock on PostgreSQL), so hosts starting together on an empty database migrate
one after another: the first creates the schema, the others find it current.
"""

from __future__ import annotations

from collections.abc import Callable

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Connection

import migrations
from wfe_sql.connection import SqlConnection
from wfe_sql.database import Database
from wfe_sql.schema import VERSION_TABLE


def alembic_config(connection: Connection, *, render_as_batch: bool) -> Config:
    """An Alembic config for the packaged migrations, running on ``connection``."""
    config = Config()
    config.set_main_option("script_location", migrations.SCRIPT_LOCATION)
    config.attributes["connection"] = connection
    config.attributes["render_as_batch"] = render_as_batch
    return config


async def _run(db: Database, what: str, action: Callable[[Config], None]) -> None:
    """Run an Alembic command in one serialised write transaction."""
    batch = db.dialect.migration_batch_mode

    def run(connection: Connection) -> None:
        action(alembic_config(connection, render_as_batch=batch))

    async def work(conn: SqlConnection) -> None:
        await db.dialect.prepare_migration(conn)
        await conn.run_sync(run)

    await db.write(what, work)


async def upgrade(db: Database, revision: str = "head") -> None:
    """Upgrade the schema to ``revision`` (the latest by default)."""
    await _run(db, f"upgrade the schema to {revision}", lambda c: command.upgrade(c, revision))


async def downgrade(db: Database, revision: str) -> None:
    """Downgrade the schema to ``revision`` (``"base"`` drops every wfe table)."""
    await _run(db, f"downgrade the schema to {revision}", lambda c: command.downgrade(c, revision))


async def current_revision(db: Database) -> str | None:
    """The revision the database is at, or ``None`` before the first migration."""

    def read(connection: Connection) -> str | None:
        context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
        return context.get_current_revision()

    return await db.read("read the schema revision", lambda conn: conn.run_sync(read))
