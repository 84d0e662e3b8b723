"""Definitions built from a text source (a YAML file) keep that source in the store:
``wfe_definition_sources``, and the digest of the source each definition and each
workflow was made from, so a workflow resumes against its own copy.

Revision ID: 0004
Revises: 0003
Create Date: 2025-12-09

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Literals, not parameters: SQLite proves that a query implies a partial index only
# from the same literal terms (see wfe_sql.schema.PINNED_WHERE).
PINNED_WHERE = "source_digest IS NOT NULL AND status IN ('RUNNABLE', 'SUSPENDED')"


def upgrade() -> None:
    """Create ``wfe_definition_sources``; add the nullable ``source_digest`` to
    ``wfe_workflows`` (with the partial index ``ix_wfe_workflows_pinned``) and to
    ``wfe_definitions``."""
    op.create_table(
        "wfe_definition_sources",
        sa.Column("digest", sa.Text(), primary_key=True),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("config", sa.Text(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
    )
    op.add_column("wfe_workflows", sa.Column("source_digest", sa.Text(), nullable=True))
    op.add_column("wfe_definitions", sa.Column("source_digest", sa.Text(), nullable=True))
    op.create_index(
        "ix_wfe_workflows_pinned",
        "wfe_workflows",
        ["definition_id", "version", "source_digest", "status"],
        sqlite_where=sa.text(PINNED_WHERE),
        postgresql_where=sa.text(PINNED_WHERE),
    )


def downgrade() -> None:
    """Drop the index, the columns (SQLite refuses to drop an indexed column: index
    first), then the table."""
    op.drop_index("ix_wfe_workflows_pinned", table_name="wfe_workflows")
    op.drop_column("wfe_definitions", "source_digest")
    op.drop_column("wfe_workflows", "source_digest")
    op.drop_table("wfe_definition_sources")
