"""Step commits stamp the workflow row with their id, so that a commit retried after
its COMMIT was lost in transit can tell that the first attempt landed.

Revision ID: 0002
Revises: 0001
Create Date: 2025-11-28

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add ``wfe_workflows.last_commit`` (nullable: rows before it have none)."""
    op.add_column("wfe_workflows", sa.Column("last_commit", sa.Text(), nullable=True))


def downgrade() -> None:
    """Drop ``wfe_workflows.last_commit`` (plain ALTER TABLE: SQLite 3.35 or later)."""
    op.drop_column("wfe_workflows", "last_commit")
