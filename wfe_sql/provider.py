"""The SQL persistence provider and the backend that bundles the SQL providers."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from wfe_core.errors import (
    DefinitionNotFound,
    LeaseLost,
    NotFound,
    ProviderError,
    SourceNotFound,
)
from wfe_core.models import (
    FINISHED_STATUSES,
    Claim,
    DefinitionRecord,
    DefinitionSourceRecord,
    Event,
    EventSubscription,
    ExecutionPointer,
    NewWorkflow,
    StepCommit,
    WorkflowQuery,
    WorkflowRecord,
    WorkflowState,
    WorkflowStatus,
    saved_source_digest,
)
from wfe_core.ports.backend import Backend
from wfe_core.ports.persistence import PersistenceProvider
from wfe_sql import children, definitions, events, migrate, purge, rows, workflows
from wfe_sql import commit as commits
from wfe_sql.batching import Batcher
from wfe_sql.connection import SqlConnection
from wfe_sql.database import Database, RetryPolicy
from wfe_sql.dialect import SqlDialect
from wfe_sql.locks import SqlLock
from wfe_sql.plain_commits import (
    RunSizer,
    apply_plain_commits,
    apply_plain_commits_at_once,
    is_plain,
    plain_run,
)
from wfe_sql.queue import SqlQueue
from wfe_sql.search import SqlSearchIndex

ID_CHUNK = 500
"""Ids per batched read: they travel as one parameter (see ``SqlDialect.in_values``),
so this only keeps each read, and the rows it returns, short."""


T = TypeVar("T")

BATCH_BUDGET = 0.05
"""Seconds after which a group-commit transaction takes no more step commits: on SQLite
the write lock (and, with the driver on the loop's thread, the loop) is held for the
whole transaction, so a batch must stay well inside a lease's renewal interval."""


class SqlPersistence(PersistenceProvider):
    """Workflows, pointers, events and definitions in a SQL database."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._dialect = db.dialect
        self._starts: Batcher[NewWorkflow, tuple[WorkflowRecord, bool]] = Batcher(self._create_many)
        self._commits: Batcher[commits.PreparedCommit, commits.CommitResult] = Batcher(
            self._commit_many
        )
        self._plain_size = RunSizer(BATCH_BUDGET)

    @property
    def database(self) -> Database:
        """The database this provider (and its sibling providers) use."""
        return self._db

    async def migrate(self) -> None:
        """Bring the schema to the latest migration (safe when hosts start together)."""
        await migrate.upgrade(self._db)
        await self._db.sync_clock()

    async def close(self) -> None:
        """Close the listener and every pooled connection."""
        await self._db.close()

    def now_ms(self) -> int:
        """The database clock, estimated since its last reading."""
        return self._db.clock.now_ms()

    async def create_workflow(self, new: NewWorkflow) -> tuple[WorkflowRecord, bool]:
        """Insert a workflow and its first pointers, or return the one with its key.

        Starts that arrive together share a transaction (see :mod:`wfe_sql.batching`),
        except those of a child or with an idempotency key, which take locks or look
        up an earlier start and go one by one (:meth:`create_one`).
        """
        if new.parent_id is not None or new.idempotency_key is not None:
            return await self.create_one(new)
        rows.check_json(new.data, f"data of workflow {new.id}")
        return await self._starts.submit(new)

    async def _create_many(
        self, news: list[NewWorkflow]
    ) -> list[tuple[WorkflowRecord, bool] | BaseException]:
        """One transaction for a batch of plain starts; if it fails for a reason other
        than an unwell database, each start is tried alone, so that only a start that
        cannot be made fails."""
        if len(news) == 1:
            return [await _outcome(self.create_one(news[0]))]

        async def work(conn: SqlConnection) -> list[tuple[WorkflowRecord, bool]]:
            return [(record, True) for record in await self._insert_batch(conn, news)]

        async def landed(conn: SqlConnection) -> list[tuple[WorkflowRecord, bool]] | None:
            found = await workflows.select_workflows_by_id(
                conn, self._dialect, [n.id for n in news], finished_only=False
            )
            by_id = {r.id: r for r in found}
            if len(by_id) < len(news):
                return None  # a batch lands whole or not at all
            return [(by_id[n.id], True) for n in news]

        try:
            made = await self._db.write(f"create {len(news)} workflows", work, reconcile=landed)
        except (ProviderError, SourceNotFound) as exc:
            return await _each_alone(exc, news, self.create_one)
        if any(n.awaits_claim for n in news):
            self._db.signal.set()
        return list(made)

    async def _insert_batch(
        self, conn: SqlConnection, news: list[NewWorkflow]
    ) -> list[WorkflowRecord]:
        started = time.monotonic_ns()
        for digest in sorted({n.source_digest for n in news if n.source_digest is not None}):
            if not await definitions.source_exists(conn, digest):
                raise SourceNotFound(digest)
        made = await workflows.insert_workflows(conn, self._dialect, news)
        self._db.observe_time(made[0].create_time, started)
        for new in news:
            if new.pointers:
                await workflows.insert_pointers(
                    conn, [rows.pointer_values(new.id, p) for p in new.pointers], 0
                )
        if any(n.awaits_claim for n in news):
            await self._dialect.notify_work(conn)
        return made

    async def create_one(self, new: NewWorkflow) -> tuple[WorkflowRecord, bool]:
        """One start in a transaction of its own: insert the workflow and its first
        pointers, or return the one with its key.

        A child (``parent_id`` set) is only created under a RUNNABLE or SUSPENDED
        parent, checked under a share lock on the parent's row (see
        :func:`wfe_sql.children.lock_parent`); a start whose idempotency key is taken
        still returns its workflow after the parent finished.

        A ``source_digest`` must name a stored source. Sources are never deleted, so
        reading it in the transaction suffices (no lock).

        Raises:
            NotFound: ``parent_id`` names no workflow.
            InvalidStateTransition: the parent is finished.
            SourceNotFound: ``source_digest`` names no stored source.
        """
        rows.check_json(new.data, f"data of workflow {new.id}")
        pointers = [rows.pointer_values(new.id, pointer) for pointer in new.pointers]

        async def work(conn: SqlConnection) -> tuple[WorkflowRecord, bool]:
            started = time.monotonic_ns()
            refused = await _refusal(conn, new)
            if refused is not None:
                # The key wins: a retried start finds the workflow it made before (looked
                # up after the parent's lock, so also a twin's).
                if new.idempotency_key is not None:
                    existing = await workflows.select_workflow_by_key(conn, new.idempotency_key)
                    if existing is not None:
                        return existing, False
                raise refused
            record = await workflows.insert_workflow(conn, self._dialect, new)
            if record is None:
                existing = await workflows.select_workflow_by_key(conn, new.idempotency_key or "")
                if existing is None:
                    raise ProviderError(f"workflow id {new.id!r} is already taken")
                return existing, False
            self._db.observe_time(record.create_time, started)
            await workflows.insert_pointers(conn, pointers, 0)
            if new.awaits_claim:
                await self._dialect.notify_work(conn)
            return record, True

        async def landed(conn: SqlConnection) -> tuple[WorkflowRecord, bool] | None:
            # Ids are fresh UUIDs: a row with ours can only be an earlier attempt's.
            record = await workflows.select_workflow(conn, new.id)
            return None if record is None else (record, True)

        # A start with nothing to check or add is one INSERT (then, maybe, the NOTIFY
        # that announces it): it needs no transaction around it. Were the NOTIFY lost
        # with its connection, idle hosts would find the workflow at their next poll.
        single = not (new.parent_id or new.source_digest or new.idempotency_key or pointers)
        record, created = await self._db.write(
            f"create workflow {new.id}", work, reconcile=landed, single=single
        )
        if created and new.awaits_claim:
            self._db.signal.set()
        return record, created

    async def get_workflow(self, workflow_id: str) -> WorkflowRecord:
        """Return the record; raise ``NotFound`` for an unknown or malformed id."""
        record = await self._db.read(
            f"read workflow {workflow_id}",
            lambda conn: workflows.select_workflow(conn, workflow_id),
            single=True,
        )
        if record is None:
            raise NotFound(workflow_id)
        return record

    async def get_workflows(
        self, workflow_ids: Sequence[str], *, finished_only: bool = False
    ) -> list[WorkflowRecord]:
        """The records of those ids that exist (finished ones only, if asked); one read
        per chunk of ids, so that a statement's parameters stay few."""
        ids = list(dict.fromkeys(workflow_ids))
        found: list[WorkflowRecord] = []
        for start in range(0, len(ids), ID_CHUNK):
            chunk = ids[start : start + ID_CHUNK]

            async def work(conn: SqlConnection, chunk: list[str] = chunk) -> list[WorkflowRecord]:
                return await workflows.select_workflows_by_id(
                    conn, self._dialect, chunk, finished_only=finished_only
                )

            found += await self._db.read(f"read {len(chunk)} workflows", work, single=True)
        return found

    async def list_workflows(self, query: WorkflowQuery) -> list[WorkflowRecord]:
        """Records matching the filters, newest first."""
        return await self._db.read(
            "list workflows", lambda conn: workflows.select_workflows(conn, query)
        )

    async def get_pointers(self, workflow_id: str) -> list[ExecutionPointer]:
        """Every pointer of the workflow, oldest first; ``NotFound`` if unknown."""

        async def work(conn: SqlConnection) -> list[ExecutionPointer]:
            if not await workflows.workflow_exists(conn, workflow_id):
                raise NotFound(workflow_id)
            return await workflows.select_pointers(conn, workflow_id)

        return await self._db.read(f"read pointers of workflow {workflow_id}", work)

    async def load_state(self, claim: Claim) -> WorkflowState:
        """Load a claimed workflow; ``LeaseLost`` if the claim's token is stale."""
        return await self._db.read(
            f"load workflow {claim.workflow_id}", lambda conn: commits.load_state(conn, claim)
        )

    async def load_states(self, claims: Sequence[Claim]) -> dict[str, WorkflowState]:
        """The states of the claims still held, in one read (three statements for the
        batch, not per workflow); keyed by workflow id."""
        if not claims:
            return {}
        return await self._db.read(
            f"load {len(claims)} claimed workflows",
            lambda conn: commits.load_states(conn, self._dialect, claims),
        )

    async def commit(self, commit: StepCommit) -> WorkflowStatus:
        """Apply one step transition atomically, fenced by ``(owner, token)``.

        Commits that arrive together share a transaction (group commit, see
        :mod:`wfe_sql.batching`): each is still all-or-nothing, as a fenced-off one
        writes nothing. Commits that take event-key locks (new subscriptions, a
        child's end) go alone, as those locks must come first in their transaction.
        """
        prepared = commits.prepare_commit(commit)
        if prepared.event_keys:
            result = await self._commit_one(prepared)
        else:
            result = await self._commits.submit(prepared)
        return result.status

    async def _commit_one(self, prepared: commits.PreparedCommit) -> commits.CommitResult:
        """One step commit in a transaction of its own (a chunk of one)."""
        commit = prepared.commit
        if self._at_once(prepared):
            [outcome] = await self._commit_at_once([prepared])
        else:
            [outcome] = await self._db.write(
                f"commit a step of workflow {commit.workflow_id}",
                lambda conn: self._commit_chunk(conn, [prepared]),
            )
        if isinstance(outcome, BaseException):
            raise outcome  # LeaseLost: fenced off, nothing written
        if _woke(commit, outcome):
            self._db.signal.set()
        return outcome

    async def _commit_many(
        self, batch: list[commits.PreparedCommit]
    ) -> list[commits.CommitResult | BaseException]:
        """Step commits together, in transactions of at most :data:`BATCH_BUDGET`
        seconds each (so lease renewals, which go first at the write gate, never wait
        long behind a batch, even of slow commits). A fenced-off commit is that item's
        ``LeaseLost`` (it wrote nothing). A failure that retries could not cure is every
        remaining item's; any other (a commit the store refuses) sends each remaining
        commit through a transaction of its own, so only the refused one fails (each
        recognises, by its commit id, whether an earlier try had landed)."""
        if len(batch) == 1:
            return [await _outcome(self._commit_one(batch[0]))]
        # Row locks in id order, as other multi-row writers take them.
        pending = sorted(range(len(batch)), key=lambda i: batch[i].commit.workflow_id)
        outcomes: dict[int, commits.CommitResult | BaseException] = {}
        while pending:
            items = [batch[i] for i in pending]
            try:
                if self._at_once(items[0]):
                    done = await self._commit_at_once(plain_run(items, self._plain_size))
                else:
                    done = await self._db.write(
                        f"commit {len(items)} steps",
                        lambda conn, items=items: self._commit_chunk(conn, items),  # type: ignore[misc]
                    )
            except ProviderError as exc:
                rest = await _each_alone(exc, items, self._commit_one)
                outcomes.update(zip(pending, rest, strict=True))
                break
            outcomes.update(zip(pending, done, strict=False))
            pending = pending[len(done) :]
            if pending:
                await asyncio.sleep(0)  # a renewal due now gets in line at the gate first
        results = [outcomes[i] for i in range(len(batch))]
        if any(_woke(p.commit, o) for p, o in zip(batch, results, strict=True)):
            self._db.signal.set()
        return results

    def _at_once(self, prepared: commits.PreparedCommit) -> bool:
        """Whether the commit (and the plain ones after it) can go as one statement."""
        return self._dialect.writes_in_one_statement and is_plain(prepared)

    async def _commit_at_once(
        self, items: list[commits.PreparedCommit]
    ) -> list[commits.CommitResult | BaseException]:
        """A run of plain commits as one statement, with no transaction around it
        (:func:`apply_plain_commits_at_once`). Running it again after a failure in
        flight is safe with no reconciling: a commit that landed is fenced off by its
        commit id, and found landed."""

        async def work(conn: SqlConnection) -> list[commits.CommitResult | BaseException]:
            started = time.monotonic_ns()
            done = await apply_plain_commits_at_once(conn, self._dialect, items, self._plain_size)
            landed = [o for o in done if isinstance(o, commits.CommitResult)]
            if landed:
                self._db.observe_time(landed[0].db_now, started)
            if any(_woke(p.commit, o) for p, o in zip(items, done, strict=True)):
                await self._dialect.notify_work(conn)
            return done

        what = (
            f"commit a step of workflow {items[0].commit.workflow_id}"
            if len(items) == 1
            else f"commit {len(items)} steps"
        )
        return await self._db.write(what, work, single=True)

    async def _commit_chunk(
        self, conn: SqlConnection, items: list[commits.PreparedCommit]
    ) -> list[commits.CommitResult | BaseException]:
        """Apply commits in order until the time budget is spent (at least one);
        returns the outcomes of those it applied."""
        started, clock = time.monotonic_ns(), time.monotonic()
        done: list[commits.CommitResult | BaseException] = []
        while len(done) < len(items):
            plain = plain_run(items[len(done) :], self._plain_size)
            if len(plain) > 1:
                done += await apply_plain_commits(conn, self._dialect, plain, self._plain_size)
            else:
                try:
                    done.append(await commits.apply_commit(conn, self._dialect, items[len(done)]))
                except LeaseLost as exc:
                    done.append(exc)
            if time.monotonic() - clock > BATCH_BUDGET:
                break
        landed = [o for o in done if isinstance(o, commits.CommitResult)]
        if landed:
            self._db.observe_time(landed[0].db_now, started)
        if any(_woke(p.commit, o) for p, o in zip(items, done, strict=False)):
            await self._dialect.notify_work(conn)
        return done

    async def set_status(
        self,
        workflow_id: str,
        action: str,
        allowed_from: frozenset[WorkflowStatus],
        to: WorkflowStatus,
    ) -> WorkflowRecord:
        """Compare-and-set control operation (suspend/resume/terminate).

        A move to a finished status publishes the workflow's child-finished event if it
        has a parent; a move to TERMINATED also terminates its open descendants. All in
        the one transaction.
        """
        cascade = to is WorkflowStatus.TERMINATED

        async def work(conn: SqlConnection) -> WorkflowRecord:
            started = time.monotonic_ns()
            if to in FINISHED_STATUSES:
                await children.lock_for_finish(conn, self._dialect, workflow_id, cascade=cascade)
            record, db_now = await workflows.set_status(
                conn, self._dialect, workflow_id, action, allowed_from, to
            )
            self._db.observe_time(db_now, started)
            woken = 0
            if to in FINISHED_STATUSES:
                woken = await children.publish_child_finished(conn, self._dialect, record)
            if cascade:
                await children.terminate_descendants(conn, self._dialect, workflow_id)
            if to is WorkflowStatus.RUNNABLE or woken:
                await self._dialect.notify_work(conn)
            return record

        async def landed(conn: SqlConnection) -> WorkflowRecord | None:
            record = await workflows.select_workflow(conn, workflow_id)
            return record if record is not None and record.status is to else None

        record = await self._db.write(f"{action} workflow {workflow_id}", work, reconcile=landed)
        # A finished child may have woken its parent (also after a reconcile, which
        # cannot tell): a spare wake-up costs one poll.
        if to is WorkflowStatus.RUNNABLE or (to in FINISHED_STATUSES and record.parent_id):
            self._db.signal.set()
        return record

    async def purge(self, older_than_ms: int, statuses: frozenset[WorkflowStatus]) -> int:
        """Delete finished workflows completed before the time, with their rows, and
        the events no unfinished workflow can match any more; in bounded batches."""
        finished = statuses & FINISHED_STATUSES
        batch = purge.PURGE_BATCH

        async def purge_workflows(conn: SqlConnection) -> int:
            ids = await purge.select_purgeable(conn, older_than_ms, finished, batch)
            return await purge.delete_workflows(conn, ids) if ids else 0

        async def purge_events(conn: SqlConnection) -> int:
            return await events.delete_unreachable_events(conn, older_than_ms, batch)

        deleted = 0
        while finished:
            count = await self._db.write("purge finished workflows", purge_workflows)
            deleted += count
            if count < batch:
                break
        while await self._db.write("purge old events", purge_events) >= batch:
            pass
        return deleted

    async def publish_event(self, name: str, key: str, data_json: str) -> Event:
        """Store an event and make every subscribed workflow due now, atomically."""
        rows.check_json(data_json, f"data of event {name!r}/{key!r}")

        event_id = uuid.uuid4().hex

        async def work(conn: SqlConnection) -> tuple[Event, int]:
            started = time.monotonic_ns()
            # Before the event row and the row locks of the wake-up: a commit adding a
            # matching subscription then either sees this event or is seen by it.
            await self._dialect.lock_event_keys(conn, [(name, key)])
            event = await events.insert_event(conn, self._dialect, event_id, name, key, data_json)
            self._db.observe_time(event.event_time, started)
            woken = await events.wake_subscribers(conn, event)
            if woken:
                await self._dialect.notify_work(conn)
            return event, woken

        async def landed(conn: SqlConnection) -> tuple[Event, int] | None:
            event = await events.select_event(conn, event_id)
            # Its wake-ups were committed with it; wake this process again to be sure.
            return None if event is None else (event, 1)

        event, woken = await self._db.write(
            f"publish event {name!r}/{key!r}", work, reconcile=landed
        )
        if woken:
            self._db.signal.set()
        return event

    async def find_events(
        self, workflow_id: str, subscriptions: list[EventSubscription]
    ) -> dict[str, Event]:
        """For each subscription, the earliest matching event not yet delivered."""

        async def work(conn: SqlConnection) -> dict[str, Event]:
            found: dict[str, Event] = {}
            for sub in subscriptions:
                event = await events.earliest_undelivered(conn, workflow_id, sub)
                if event is not None:
                    found[sub.id] = event
            return found

        if not subscriptions:
            return {}
        return await self._db.read(f"find events for workflow {workflow_id}", work)

    async def save_definition(
        self, record: DefinitionRecord, source: DefinitionSourceRecord | None = None
    ) -> None:
        """Record (insert or update) a definition a host registered, and store its
        source unless its digest is stored already; in one transaction.

        Raises:
            ProviderError: the source's digest does not match its content or the
                record's ``source_digest``.
            SourceNotFound: ``record.source_digest`` names no stored source.
        """
        saved = record.model_copy(update={"source_digest": saved_source_digest(record, source)})

        async def work(conn: SqlConnection) -> None:
            if source is not None:
                await definitions.insert_source(conn, self._dialect, source)
            elif saved.source_digest is not None and not await definitions.source_exists(
                conn, saved.source_digest
            ):
                raise SourceNotFound(saved.source_digest, record.definition_id, record.version)
            await definitions.upsert_definition(conn, self._dialect, saved)

        await self._db.write(f"save definition {record.definition_id!r}", work)

    async def get_definition(self, definition_id: str, version: int | None) -> DefinitionRecord:
        """The recorded definition (latest version when ``version`` is None)."""
        record = await self._db.read(
            f"read definition {definition_id!r}",
            lambda conn: definitions.select_definition(conn, definition_id, version),
            single=True,
        )
        if record is None:
            raise DefinitionNotFound(definition_id, version)
        return record

    async def get_source(self, digest: str) -> DefinitionSourceRecord:
        """The stored source with this digest; ``SourceNotFound`` if there is none."""
        source = await self._db.read(
            f"read definition source {digest[:12]}",
            lambda conn: definitions.select_source(conn, digest),
        )
        if source is None:
            raise SourceNotFound(digest)
        return source

    async def pinned_definitions(self) -> list[tuple[str, int, str]]:
        """The distinct (definition, version, source digest) of unfinished workflows
        that run against a stored source (an index-only read)."""
        return await self._db.read("list pinned definition sources", definitions.select_pinned)


async def _refusal(conn: SqlConnection, new: NewWorkflow) -> Exception | None:
    """Why ``new`` may not be created, or ``None``: its parent is missing or finished
    (the parent's row is share-locked first, see :func:`children.lock_parent`), or its
    source is not stored (a plain read: sources are never deleted)."""
    if new.parent_id is not None:
        refused = await children.lock_parent(conn, new.parent_id)
        if refused is not None:
            return refused
    digest = new.source_digest
    if digest is not None and not await definitions.source_exists(conn, digest):
        return SourceNotFound(digest, new.definition_id, new.version)
    return None


async def _outcome(call: Awaitable[T]) -> T | BaseException:
    """The result of ``call``, or the exception it raised (for one item of a batch)."""
    try:
        return await call
    except Exception as exc:
        return exc


Item = TypeVar("Item")


async def _each_alone(
    exc: Exception, items: list[Item], one: Callable[[Item], Awaitable[T]]
) -> list[T | BaseException]:
    """After a batch failed: the failure is every item's if the database is unwell
    (retries could not cure it; trying each alone would only take longer), else each
    item runs alone, so that only the one the store refuses fails."""
    if isinstance(exc, ProviderError) and exc.transient:
        return [exc] * len(items)
    return [await _outcome(one(item)) for item in items]


def _woke(commit: StepCommit, outcome: commits.CommitResult | BaseException) -> bool:
    """Whether a landed commit left work for a host (see :func:`_makes_work`)."""
    if not isinstance(outcome, commits.CommitResult):
        return False
    return _makes_work(commit, outcome) or outcome.woke


def _makes_work(commit: StepCommit, result: commits.CommitResult) -> bool:
    """Whether a commit left the workflow for any host to claim (released, runnable, due)."""
    return commit.release and result.status is WorkflowStatus.RUNNABLE and result.due


def open_sql_backend(dialect: SqlDialect, retry: RetryPolicy | None = None) -> Backend:
    """The providers of one database, sharing one engine, clock and wake-up signal;
    ``retry`` says how transient failures are retried (the default suits most uses)."""
    db = Database(dialect, retry)
    return Backend(
        persistence=SqlPersistence(db),
        queue=SqlQueue(db),
        lock=SqlLock(db),
        search=SqlSearchIndex(db),
    )
