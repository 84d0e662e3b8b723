"""Many plain step commits in a handful of statements, whatever their number.

A group commit (see :mod:`wfe_sql.batching`) that applied its commits one by one would
still send two or three statements per step, each a round trip and, above all, a pass
through SQLAlchemy's execution machinery: that was where a busy host spent its time.
A *plain* commit writes only its workflow row and its pointers (no subscriptions,
deliveries, errors or event-key locks, which are rarer and keep the one-by-one path of
:func:`wfe_sql.commit.apply_commit`). Plain commits go together:

1. one fenced ``UPDATE … FROM`` the batch's rows writes every workflow row whose
   lease is still held, after locking them in id order (as renewals and other group
   commits do, so they never deadlock), and returns those it wrote;
2. the commits it did not write are looked up one by one (already landed, or
   ``LeaseLost``: fenced off, nothing written);
3. one ``UPDATE … FROM`` overwrites the updated pointers of the written commits and
   one INSERT appends their new ones.

Each commit stays all-or-nothing: a fenced-off one writes no pointer either, and a
failure of any statement fails the transaction (the caller then tries each commit
alone, see ``SqlPersistence._commit_many``).

A statement cannot be cut short, so how many commits one set of statements takes is
sized from what they have cost so far (:class:`RunSizer`): a group transaction stays
within its time budget even when commits are slow (a slow disk, a trigger), and lease
renewals never wait long behind it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from wfe_core.errors import LeaseLost, ProviderError
from wfe_core.models import FINISHED_STATUSES, WorkflowStatus
from wfe_sql import children
from wfe_sql.commit import CommitResult, PreparedCommit, landed_commit, workflow_changes
from wfe_sql.connection import SqlConnection
from wfe_sql.dialect import SqlDialect, rows_param
from wfe_sql.schema import FINISHED_SQL, pointers, workflows
from wfe_sql.statements import prepared
from wfe_sql.workflows import append_pointers, locked_in_id_order

_COMMIT_COLUMNS: tuple[tuple[str, sa.types.TypeEngine[Any]], ...] = (
    ("id", sa.Text()),
    ("owner", sa.Text()),
    ("token", sa.BigInteger()),
    ("commit_id", sa.Text()),
    ("data", sa.Text()),
    ("error", sa.Text()),
    ("status", sa.Text()),
    ("next_execution", sa.BigInteger()),
    ("complete_time", sa.BigInteger()),
    ("finishing", sa.Integer()),
    ("release", sa.Integer()),
)

_POINTER_COLUMNS: tuple[tuple[str, sa.types.TypeEngine[Any]], ...] = (
    ("id", sa.Text()),
    ("workflow_id", sa.Text()),
    ("step_id", sa.Integer()),
    ("step_name", sa.Text()),
    ("status", sa.Text()),
    ("body", sa.Text()),
)


class RunSizer:
    """How many plain commits to write with one set of statements.

    Each of the three statements has a cost per row it writes (workflow rows, updated
    pointers, new pointers), a moving average of what the statements took. A run takes
    commits while their predicted cost fits in ``budget`` seconds (at least one, at
    most ``most``). A cost not measured yet counts as ``budget / first``, so at most
    ``first`` rows of a new kind go in before it is known: a slow statement (a slow
    disk, a trigger) is learned from a small run, not suffered in a large one. While
    commits are too slow to go two together, costs decay by ``DECAY`` each time they
    keep a run to one, so a cheaper period is found again by a run of two.
    """

    KINDS = ("rows", "updated", "new")
    DECAY = 0.9

    def __init__(self, budget: float, most: int = 200, first: int = 8) -> None:
        self._budget = budget
        self._most = most
        self._unknown = budget / first
        self._cost: dict[str, float] = {}  # seconds per row, by statement

    def take(self, items: Sequence[PreparedCommit]) -> int:
        """How many of ``items`` (the head of a plain run) to apply together."""
        spent = 0.0
        for taken, item in enumerate(items[: self._most]):
            rows = (1, len(item.updated_pointers), len(item.new_pointers))
            spent += sum(
                count * self._cost.get(kind, self._unknown)
                for kind, count in zip(self.KINDS, rows, strict=True)
            )
            if spent > self._budget and taken > 0:
                if taken == 1:
                    self._decay()
                return taken
        return min(len(items), self._most)

    def observe(self, kind: str, seconds: float, rows: int) -> None:
        """A statement of ``kind`` wrote ``rows`` rows in ``seconds``."""
        if rows:
            cost = seconds / rows
            known = self._cost.get(kind)
            self._cost[kind] = cost if known is None else (known + cost) / 2

    def _decay(self) -> None:
        for kind in self._cost:
            self._cost[kind] *= self.DECAY


def plain_run(items: Sequence[PreparedCommit], sizer: RunSizer) -> list[PreparedCommit]:
    """The plain commits at the head of ``items``, of distinct workflows, as many as
    ``sizer`` takes: those to apply together."""
    run: list[PreparedCommit] = []
    seen: set[str] = set()
    for item in items:
        if not is_plain(item) or item.commit.workflow_id in seen:
            break
        seen.add(item.commit.workflow_id)
        run.append(item)
    return run[: sizer.take(run)] if run else run


def is_plain(item: PreparedCommit) -> bool:
    """Whether the commit writes only its workflow row and pointers."""
    commit = item.commit
    return not (
        item.event_keys
        or commit.new_subscriptions
        or commit.removed_subscriptions
        or commit.delivered_events
        or commit.errors
        or commit.has_subscriptions
    )


def _update_rows_statement(dialect: SqlDialect) -> sa.Update:
    """The fenced update of many workflow rows, each from its own row of ``:commits``.

    A column a commit leaves alone comes as NULL and keeps its stored value (data,
    error, status), as in :func:`wfe_sql.commit.update_workflow`.
    """
    now = dialect.now_ms()
    v = dialect.rows_table("commits", _COMMIT_COLUMNS).c
    w = workflows.c
    fence = [
        w.id == v.id,
        w.lease_owner == v.owner,
        w.lease_token == v.token,
        # Not "IN (unfinished)": SQLite would then drive the update from the status
        # index, reading every unfinished workflow for each batch row.
        w.status.not_in(FINISHED_SQL),
        w.last_commit.is_distinct_from(v.commit_id),
    ]
    if dialect.locks_rows:
        fence.append(w.id.in_(locked_in_id_order(dialect)))
    releasing = v.release == 1
    return (
        sa.update(workflows)
        .where(*fence)
        .values(
            data=sa.func.coalesce(v.data, w.data),
            error=sa.func.coalesce(v.error, w.error),
            status=sa.func.coalesce(v.status, w.status),
            next_execution=v.next_execution,
            last_commit=v.commit_id,
            recoveries=0,
            complete_time=sa.case(
                (v.finishing == 1, sa.func.coalesce(v.complete_time, now)),
                else_=w.complete_time,
            ),
            lease_owner=sa.case((releasing, sa.null()), else_=w.lease_owner),
            lease_expires_at=sa.case((releasing, sa.null()), else_=w.lease_expires_at),
        )
        .returning(w.id, w.status, now.label("db_now"), w.parent_id)
    )


def _update_pointers_statement(dialect: SqlDialect) -> sa.Update:
    v = dialect.rows_table("pointers", _POINTER_COLUMNS).c
    return (
        sa.update(pointers)
        .where(pointers.c.id == v.id, pointers.c.workflow_id == v.workflow_id)
        .values(step_id=v.step_id, step_name=v.step_name, status=v.status, body=v.body)
        .returning(pointers.c.id)
    )


def _commit_row(item: PreparedCommit) -> dict[str, Any]:
    commit = item.commit
    values, finishing = workflow_changes(commit, item.commit_id)
    return {
        "id": commit.workflow_id,
        "owner": commit.owner,
        "token": commit.token,
        "commit_id": item.commit_id,
        "data": values.get("data"),
        "error": values.get("error"),
        "status": values.get("status"),
        "next_execution": values["next_execution"],
        "complete_time": values.get("complete_time"),
        "finishing": int(finishing),
        "release": int("lease_owner" in values),
    }


async def apply_plain_commits(
    conn: SqlConnection,
    dialect: SqlDialect,
    items: Sequence[PreparedCommit],
    sizer: RunSizer,
) -> list[CommitResult | BaseException]:
    """Apply plain commits of distinct workflows, sorted by workflow id; their outcomes
    in order (a fenced-off commit's is ``LeaseLost``).

    Raises:
        ProviderError: an updated pointer was never stored (nothing may be committed).
    """
    stmt = prepared(dialect, "update_workflows", lambda: _update_rows_statement(dialect))
    params = {"commits": rows_param([_commit_row(item) for item in items])}
    if dialect.locks_rows:
        params["ids"] = dialect.values_param([item.commit.workflow_id for item in items])
    began = time.monotonic()
    written = {row.id: row for row in await conn.execute(stmt, params)}
    sizer.observe("rows", time.monotonic() - began, len(items))
    outcomes: list[CommitResult | BaseException] = []
    for item in items:
        row = written.get(item.commit.workflow_id)
        if row is None:
            landed = await landed_commit(conn, dialect, item)
            outcomes.append(landed or LeaseLost(item.commit.workflow_id, item.commit.token))
            continue
        status = WorkflowStatus(row.status)
        woke = False
        if status in FINISHED_STATUSES and row.parent_id is not None:
            # As apply_commit does for a parent it was not told of (has_parent unset).
            woke = await children.publish_child_finished_of(conn, dialect, row.id) > 0
        outcomes.append(
            CommitResult(
                status=status,
                db_now=int(row.db_now),
                due=item.commit.next_execution is not None,
                woke=woke,
            )
        )
    await _write_pointers(
        conn, dialect, [item for item in items if item.commit.workflow_id in written], sizer
    )
    return outcomes


async def _write_pointers(
    conn: SqlConnection, dialect: SqlDialect, items: Sequence[PreparedCommit], sizer: RunSizer
) -> None:
    updated = [values for item in items for values in item.updated_pointers]
    if updated:
        stmt = prepared(dialect, "update_pointers", lambda: _update_pointers_statement(dialect))
        began = time.monotonic()
        found = set((await conn.execute(stmt, {"pointers": rows_param(updated)})).scalars())
        sizer.observe("updated", time.monotonic() - began, len(updated))
        missing = [values for values in updated if values["id"] not in found]
        if missing:
            raise ProviderError(
                f"cannot update unknown pointer {missing[0]['id']!r} of workflow "
                f"{missing[0]['workflow_id']}"
            )
    new = [values for item in items for values in item.new_pointers]
    began = time.monotonic()
    await append_pointers(conn, dialect, new)
    sizer.observe("new", time.monotonic() - began, len(new))


_NEW_POINTER_COLUMNS = (*_POINTER_COLUMNS, ("offset", sa.Integer()))

MISSING_POINTER = "wfe: a step commit updates a pointer that was never stored; updated: "
"""Starts the error a one-statement commit raises (and so rolls back by) when an
updated pointer is missing, as :func:`_write_pointers` refuses one."""


def _at_once_statement(dialect: SqlDialect) -> sa.Select[Any]:
    """Every write of a run of plain commits as one statement (data-modifying CTEs).

    The fenced row update runs first (``w``); the pointer writes only touch workflows
    it wrote, so a fenced-off commit writes nothing, as in the transaction of
    :func:`apply_plain_commits`. A statement is atomic: an updated pointer that is
    missing makes the final SELECT fail (an integer cast of a message that says so),
    which undoes the whole statement. The cast's input is not a constant, so the
    planner cannot fold it into an error at plan time.
    """
    w = _update_rows_statement(dialect).cte("w")
    written = sa.select(w.c.id)
    u = dialect.rows_table("pointers", _POINTER_COLUMNS)
    up = (
        sa.update(pointers)
        .where(
            pointers.c.id == u.c.id,
            pointers.c.workflow_id == u.c.workflow_id,
            pointers.c.workflow_id.in_(written),
        )
        .values(step_id=u.c.step_id, step_name=u.c.step_name, status=u.c.status, body=u.c.body)
        .returning(pointers.c.id)
        .cte("up")
    )
    n = dialect.rows_table("new", _NEW_POINTER_COLUMNS)
    last = (
        sa.select(sa.func.coalesce(sa.func.max(pointers.c.position), -1))
        .where(pointers.c.workflow_id == n.c.workflow_id)
        .scalar_subquery()
    )
    ins = (
        sa.insert(pointers)
        .from_select(
            ["id", "workflow_id", "step_id", "step_name", "status", "body", "position"],
            sa.select(
                n.c.id,
                n.c.workflow_id,
                n.c.step_id,
                n.c.step_name,
                n.c.status,
                n.c.body,
                last + 1 + n.c.offset,
            ).where(n.c.workflow_id.in_(written)),
        )
        .returning(pointers.c.id)
        .cte("ins")
    )
    updated = sa.select(sa.func.count()).select_from(up).scalar_subquery()
    expected = (
        sa.select(sa.func.count()).select_from(u).where(u.c.workflow_id.in_(written))
    ).scalar_subquery()
    missing = sa.case(
        (
            updated != expected,
            sa.cast(
                sa.literal(MISSING_POINTER)
                + sa.cast(updated, sa.Text)
                + " of "
                + sa.cast(expected, sa.Text),
                sa.Integer,
            ),
        ),
        else_=0,
    )
    inserted = sa.select(sa.func.count()).select_from(ins).scalar_subquery()
    return sa.select(
        w.c.id,
        w.c.status,
        w.c.db_now,
        w.c.parent_id,
        missing.label("missing"),
        inserted.label("inserted"),
    )


async def apply_plain_commits_at_once(
    conn: SqlConnection,
    dialect: SqlDialect,
    items: Sequence[PreparedCommit],
    sizer: RunSizer,
) -> list[CommitResult | BaseException]:
    """:func:`apply_plain_commits` as one statement, for a dialect whose statements
    can write several tables (PostgreSQL): with no transaction around it, a run is
    one round trip instead of five (BEGIN, three statements, COMMIT).

    Only what the statement wrote is certain when it returns; what follows reads or
    announces (a fenced-off commit's landing, a parent's wake-up), so the caller runs
    it as a ``single`` write.
    """
    stmt = prepared(dialect, "commit_at_once", lambda: _at_once_statement(dialect))
    new = [
        {**values, "offset": offset}
        for item in items
        for offset, values in enumerate(item.new_pointers)
    ]
    updated = [values for item in items for values in item.updated_pointers]
    params = {
        "commits": rows_param([_commit_row(item) for item in items]),
        "ids": dialect.values_param([item.commit.workflow_id for item in items]),
        "pointers": rows_param(updated),
        "new": rows_param(new),
    }
    began = time.monotonic()
    written = {row.id: row for row in await conn.execute(stmt, params)}
    unit = (time.monotonic() - began) / (len(items) + len(updated) + len(new))
    for kind, count in zip(RunSizer.KINDS, (len(items), len(updated), len(new)), strict=True):
        sizer.observe(kind, unit * count, count)
    outcomes: list[CommitResult | BaseException] = []
    for item in items:
        row = written.get(item.commit.workflow_id)
        if row is None:
            landed = await landed_commit(conn, dialect, item)
            outcomes.append(landed or LeaseLost(item.commit.workflow_id, item.commit.token))
            continue
        status = WorkflowStatus(row.status)
        woke = False
        if status in FINISHED_STATUSES and row.parent_id is not None:
            # A plain commit is one whose executor knew of no parent (a parent's child
            # commits take event-key locks and the transactional path), so this is not
            # expected; the parent is still told, just after, rather than never.
            woke = await children.publish_child_finished_of(conn, dialect, row.id) > 0
        outcomes.append(
            CommitResult(
                status=status,
                db_now=int(row.db_now),
                due=item.commit.next_execution is not None,
                woke=woke,
            )
        )
    return outcomes
