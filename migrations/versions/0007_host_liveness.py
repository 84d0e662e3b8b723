"""How long a host may go without a heartbeat before it counts as gone.

Hosts renew their heartbeat at their own cadence (a fraction of their own lease), so a
reader cannot judge liveness by its own settings: each host records the silence after
which it must be presumed dead.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-22

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the nullable column (NULL: a reader falls back to its own lease)."""
    op.add_column("wfe_hosts", sa.Column("stale_after_ms", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    """Drop what upgrade added."""
    with op.batch_alter_table("wfe_hosts") as batch:
        batch.drop_column("stale_after_ms")
