"""The wfe tables as SQLAlchemy Core objects: the one definition the migrations must equal.

Alembic (``migrations/``) is the only thing that creates or changes the schema; a test
proves that upgrading an empty database yields exactly this metadata.

Conventions:

* every time is ``BIGINT`` epoch milliseconds taken from the database clock;
* workflow data, event data, definition schemas and pointers are JSON text, so
  providers never import user models and a pointer round-trips exactly;
* ``next_execution = 0`` means "due now"; ``NULL`` means "not due until an event".
"""

from __future__ import annotations

import sqlalchemy as sa

from wfe_core.models import WorkflowStatus

metadata = sa.MetaData()

RUNNABLE_SQL: sa.ColumnElement[str] = sa.literal_column(
    f"'{WorkflowStatus.RUNNABLE.value}'", type_=sa.Text
)
"""The RUNNABLE status as an SQL literal: a bound parameter would stop SQLite from
proving that a query implies the partial index ``ix_wfe_workflows_due``."""

UNFINISHED_SQL: tuple[sa.ColumnElement[str], ...] = (
    RUNNABLE_SQL,
    sa.literal_column(f"'{WorkflowStatus.SUSPENDED.value}'", type_=sa.Text),
)
"""RUNNABLE and SUSPENDED as SQL literals, for the partial index ``ix_wfe_workflows_pinned``
(literals for the same reason as :data:`RUNNABLE_SQL`)."""

FINISHED_SQL: tuple[sa.ColumnElement[str], ...] = tuple(
    sa.literal_column(f"'{status.value}'", type_=sa.Text)
    for status in (WorkflowStatus.COMPLETE, WorkflowStatus.FAILED, WorkflowStatus.TERMINATED)
)
"""COMPLETE, FAILED and TERMINATED as SQL literals: ``NOT IN`` these fences a statement
that drives from another index (``IN`` :data:`UNFINISHED_SQL` would invite the status
index)."""

_STATUS_VALUES = ", ".join(f"'{status.value}'" for status in WorkflowStatus)

workflows = sa.Table(
    "wfe_workflows",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("definition_id", sa.Text, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("reference", sa.Text, nullable=True),
    sa.Column("idempotency_key", sa.Text, nullable=True),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("data", sa.Text, nullable=False),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("create_time", sa.BigInteger, nullable=False),
    sa.Column("complete_time", sa.BigInteger, nullable=True),
    sa.Column("next_execution", sa.BigInteger, nullable=True),
    sa.Column("lease_owner", sa.Text, nullable=True),
    sa.Column("lease_token", sa.BigInteger, nullable=False, server_default=sa.text("0")),
    sa.Column("lease_expires_at", sa.BigInteger, nullable=True),
    sa.Column("recoveries", sa.Integer, nullable=False, server_default=sa.text("0")),
    # The id of the last step commit applied: a retry of a commit whose COMMIT was
    # lost in transit finds it here and knows the first attempt landed.
    sa.Column("last_commit", sa.Text, nullable=True),
    # The workflow whose sub-workflow step started this one: its finish publishes
    # CHILD_FINISHED_EVENT, and terminating an ancestor terminates it too.
    sa.Column("parent_id", sa.Text, nullable=True),
    # The stored source (wfe_definition_sources) it runs against; NULL for a definition
    # built in code. No foreign key: create_workflow checks it in its transaction, and
    # sources are never deleted.
    sa.Column("source_digest", sa.Text, nullable=True),
    # The W3C trace context (traceparent) it was started in: its spans join that trace.
    sa.Column("trace_context", sa.Text, nullable=True),
    sa.CheckConstraint(f"status IN ({_STATUS_VALUES})", name="ck_wfe_workflows_status"),
)

# The claim query's index: only RUNNABLE rows, per definition and version in due order,
# so a claim reads its definitions' due rows in order and stops at its limit whatever
# the planner's statistics say. ``status`` leads although it is constant in the index,
# so that SQLite's planner sees an equality match here and does not prefer
# ix_wfe_workflows_status_created plus a sort.
sa.Index(
    "ix_wfe_workflows_due",
    workflows.c.status,
    workflows.c.definition_id,
    workflows.c.version,
    workflows.c.next_execution,
    sqlite_where=workflows.c.status == RUNNABLE_SQL,
    postgresql_where=workflows.c.status == RUNNABLE_SQL,
)
sa.Index("ux_wfe_workflows_idempotency_key", workflows.c.idempotency_key, unique=True)
sa.Index("ix_wfe_workflows_status_created", workflows.c.status, workflows.c.create_time)
sa.Index("ix_wfe_workflows_definition_created", workflows.c.definition_id, workflows.c.create_time)
sa.Index("ix_wfe_workflows_created", workflows.c.create_time)
sa.Index("ix_wfe_workflows_reference", workflows.c.reference)
sa.Index("ix_wfe_workflows_completed", workflows.c.complete_time)
sa.Index("ix_wfe_workflows_parent", workflows.c.parent_id)  # the terminate cascade

PINNED_WHERE: sa.ColumnElement[bool] = sa.and_(
    workflows.c.source_digest.is_not(None), workflows.c.status.in_(UNFINISHED_SQL)
)
"""Unfinished workflows that run against a stored source: the rows of
``ix_wfe_workflows_pinned``, and the filter of the query that lists their sources."""

# Workers that serve stored sources list these every few seconds. Partial, so that
# code-defined and finished workflows cost it nothing, and covering (status too: SQLite
# checks the implied terms again), so that the listing reads the index alone.
sa.Index(
    "ix_wfe_workflows_pinned",
    workflows.c.definition_id,
    workflows.c.version,
    workflows.c.source_digest,
    workflows.c.status,
    sqlite_where=PINNED_WHERE,
    postgresql_where=PINNED_WHERE,
)

pointers = sa.Table(
    "wfe_pointers",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("workflow_id", sa.Text, nullable=False),
    # Order of creation within the workflow: get_pointers returns oldest first.
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("step_id", sa.Integer, nullable=False),
    sa.Column("step_name", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    # The whole ExecutionPointer as JSON; the columns above are copies for queries.
    sa.Column("body", sa.Text, nullable=False),
)
sa.Index(
    "ux_wfe_pointers_workflow_position", pointers.c.workflow_id, pointers.c.position, unique=True
)

events = sa.Table(
    "wfe_events",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("key", sa.Text, nullable=False),
    sa.Column("data", sa.Text, nullable=False),
    sa.Column("event_time", sa.BigInteger, nullable=False),
)
sa.Index("ix_wfe_events_name_key_time", events.c.name, events.c.key, events.c.event_time)
sa.Index("ix_wfe_events_time", events.c.event_time)

subscriptions = sa.Table(
    "wfe_subscriptions",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("workflow_id", sa.Text, nullable=False),
    sa.Column("pointer_id", sa.Text, nullable=False),
    sa.Column("event_name", sa.Text, nullable=False),
    sa.Column("event_key", sa.Text, nullable=False),
    sa.Column("as_of", sa.BigInteger, nullable=False),
)
sa.Index("ix_wfe_subscriptions_name_key", subscriptions.c.event_name, subscriptions.c.event_key)
sa.Index("ix_wfe_subscriptions_workflow", subscriptions.c.workflow_id)

deliveries = sa.Table(
    "wfe_deliveries",
    metadata,
    # The primary key makes a second delivery of one event to one workflow fail.
    sa.Column("workflow_id", sa.Text, primary_key=True),
    sa.Column("event_id", sa.Text, primary_key=True),
    sa.Column("delivered_at", sa.BigInteger, nullable=False),
)

errors = sa.Table(
    "wfe_errors",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("workflow_id", sa.Text, nullable=False),
    sa.Column("pointer_id", sa.Text, nullable=False),
    sa.Column("step_name", sa.Text, nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("error_time", sa.BigInteger, nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("detail", sa.Text, nullable=True),  # the attempt's traceback
)
sa.Index("ix_wfe_errors_workflow", errors.c.workflow_id)

definitions = sa.Table(
    "wfe_definitions",
    metadata,
    sa.Column("definition_id", sa.Text, primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("fingerprint", sa.Text, nullable=False),
    sa.Column("data_schema", sa.Text, nullable=False),
    sa.Column("registered_at", sa.BigInteger, nullable=False),
    # The stored source it was last saved with; NULL for a definition built in code.
    sa.Column("source_digest", sa.Text, nullable=True),
)

definition_sources = sa.Table(
    "wfe_definition_sources",
    metadata,
    # sha256 of kind, text and config (wfe_core.models.source_digest): a row never
    # changes once written, and is never deleted.
    sa.Column("digest", sa.Text, primary_key=True),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("config", sa.Text, nullable=False),  # JSON object of load-time values
    sa.Column("created_at", sa.BigInteger, nullable=False),
)

locks = sa.Table(
    "wfe_locks",
    metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("owner", sa.Text, nullable=True),
    # Kept when the lock is released: the fencing token only ever grows.
    sa.Column("token", sa.BigInteger, nullable=False, server_default=sa.text("0")),
    sa.Column("expires_at", sa.BigInteger, nullable=True),
)

hosts = sa.Table(
    "wfe_hosts",
    metadata,
    sa.Column("host_id", sa.Text, primary_key=True),
    sa.Column("hostname", sa.Text, nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("started_at", sa.BigInteger, nullable=False),
    # Refreshed while the host runs: a stale heartbeat means the host is gone.
    sa.Column("heartbeat_at", sa.BigInteger, nullable=False),
    sa.Column("stopped_at", sa.BigInteger, nullable=True),  # set by a graceful stop
    sa.Column("definitions", sa.Text, nullable=False),  # JSON [[definition_id, version], ...]
    # Silence after which the host counts as gone (it knows its own renewal cadence).
    sa.Column("stale_after_ms", sa.BigInteger, nullable=True),
)
sa.Index("ix_wfe_hosts_heartbeat", hosts.c.heartbeat_at)

actions = sa.Table(
    "wfe_actions",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    # NULL for an action on no one workflow (an event published to whoever waits).
    sa.Column("workflow_id", sa.Text, nullable=True),
    sa.Column("action", sa.Text, nullable=False),
    sa.Column("actor", sa.Text, nullable=False),
    sa.Column("at", sa.BigInteger, nullable=False),
    sa.Column("detail", sa.Text, nullable=False),  # JSON object
)
sa.Index("ix_wfe_actions_workflow_at", actions.c.workflow_id, actions.c.at)

VERSION_TABLE = "wfe_alembic_version"
"""Alembic's version table, named so that it cannot clash with an application's own."""
