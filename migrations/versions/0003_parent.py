"""Workflows record the workflow that started them (sub-workflows), indexed for the
terminate cascade that walks from a parent to its children.

Revision ID: 0003
Revises: 0002
Create Date: 2025-12-02

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add ``wfe_workflows.parent_id`` (nullable: top-level workflows have none) and
    ``ix_wfe_workflows_parent``."""
    op.add_column("wfe_workflows", sa.Column("parent_id", sa.Text(), nullable=True))
    op.create_index("ix_wfe_workflows_parent", "wfe_workflows", ["parent_id"])


def downgrade() -> None:
    """Drop the index, then the column (SQLite refuses to drop an indexed column)."""
    op.drop_index("ix_wfe_workflows_parent", table_name="wfe_workflows")
    op.drop_column("wfe_workflows", "parent_id")
