"""Model-based test of the in-memory queue, lock and fenced commits (RELIABILITY R17).

Hypothesis drives random interleavings of claim, renew, release, clock advances
(lease expiry), commits with old and new tokens, purge and lock operations, and
compares every answer with a few-line reference model: who owns what, which tokens
are current, which commits succeed. Memory only, with a FakeClock.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    rule,
)

from wfe_core.errors import LeaseLost
from wfe_core.models import Claim, Lease, NewWorkflow, StepCommit, WorkflowStatus
from wfe_core.testing import FakeClock, memory_backend

T = TypeVar("T")
OWNERS = st.sampled_from(["h1", "h2", "h3"])
LOCK_NAMES = st.sampled_from(["cleanup", "scheduler"])
LEASE_S = st.sampled_from([1, 5, 10])
ADVANCE_S = st.sampled_from([0.5, 1, 4, 11])
ELIGIBLE = [("flow", 1)]


@dataclass
class RefWorkflow:
    seq: int
    next_execution: int | None
    finished_at: int | None = None
    owner: str | None = None
    token: int = 0
    expires: int | None = None
    recoveries: int = 0
    commits: int = 0

    def holds(self, owner: str, token: int) -> bool:
        return (self.owner, self.token) == (owner, token)


@dataclass
class RefLock:
    owner: str | None = None
    token: int = 0
    expires: int | None = None


class ProviderModel(RuleBasedStateMachine):
    claims = Bundle("claims")
    leases = Bundle("leases")

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.clock = FakeClock()
        self.backend = memory_backend(self.clock)
        self.workflows: dict[str, RefWorkflow] = {}
        self.locks: dict[str, RefLock] = {}
        self.created = 0

    def teardown(self) -> None:
        self.loop.close()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    @property
    def now(self) -> int:
        return self.clock.now_ms()

    @initialize()
    def start_with_three_workflows(self) -> None:
        for _ in range(3):
            self.create(delay_s=0)

    @rule(delay_s=st.sampled_from([0, 2]))
    def create(self, delay_s: int) -> None:
        workflow_id = f"wf-{self.created}"
        next_execution = self.now + delay_s * 1000
        new = NewWorkflow(
            id=workflow_id,
            definition_id="flow",
            version=1,
            data=json.dumps({"commits": 0}),
            next_execution=next_execution,
        )
        record, created = self.run(self.backend.persistence.create_workflow(new))
        assert created and record.next_execution == next_execution
        self.workflows[workflow_id] = RefWorkflow(self.created, next_execution)
        self.created += 1

    @rule(seconds=ADVANCE_S)
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule(target=claims, owner=OWNERS, limit=st.integers(0, 3), lease_s=LEASE_S)
    def claim(self, owner: str, limit: int, lease_s: int) -> Any:
        now = self.now
        due = sorted(
            (
                (w.next_execution, w.seq, wid)
                for wid, w in self.workflows.items()
                if w.finished_at is None
                and w.next_execution is not None
                and w.next_execution <= now
                and (w.owner is None or (w.expires is not None and w.expires <= now))
            ),
        )
        expected = []
        for _, _, wid in due[:limit]:
            w = self.workflows[wid]
            w.recoveries += w.owner is not None
            w.owner, w.token, w.expires = owner, w.token + 1, now + lease_s * 1000
            expected.append(Claim(wid, owner, w.token, w.expires, now, w.recoveries))

        got = self.run(self.backend.queue.claim(owner, limit, lease_s, ELIGIBLE))

        assert got == expected
        return multiple(*got)

    @rule(held=st.lists(claims, max_size=3, unique=True), lease_s=LEASE_S)
    def renew(self, held: list[Claim], lease_s: int) -> None:
        expected = []
        for claim in held:
            w = self.workflows.get(claim.workflow_id)
            if w is not None and w.holds(claim.owner, claim.token):
                w.expires = self.now + lease_s * 1000
                expected.append((claim.workflow_id, claim.token, w.expires))

        got = self.run(self.backend.queue.renew(held, lease_s))

        assert [(c.workflow_id, c.token, c.expires_at) for c in got] == expected

    @rule(claim=claims)
    def release(self, claim: Claim) -> None:
        w = self.workflows.get(claim.workflow_id)
        if w is not None and w.holds(claim.owner, claim.token):
            w.owner, w.expires, w.next_execution = None, None, self.now
        self.run(self.backend.queue.release(claim))

    @rule(claim=claims, then=st.sampled_from(["sleep", "wait", "release", "finish"]))
    def commit(self, claim: Claim, then: str) -> None:
        w = self.workflows.get(claim.workflow_id)
        allowed = w is not None and w.finished_at is None and w.holds(claim.owner, claim.token)
        commit = StepCommit(
            workflow_id=claim.workflow_id,
            owner=claim.owner,
            token=claim.token,
            data=json.dumps({"commits": w.commits + 1 if w else -1}),
            status=WorkflowStatus.COMPLETE if then == "finish" else None,
            next_execution={"sleep": self.now + 1_000, "wait": None}.get(then, self.now),
            release=then == "release",
        )
        try:
            self.run(self.backend.persistence.commit(commit))
        except LeaseLost:
            assert not allowed, f"a commit with the current lease was fenced off: {claim}"
            return
        assert allowed and w is not None, f"a stale commit got through: {claim}"
        w.commits += 1
        w.recoveries = 0  # a commit is progress: the crash-loop count starts over
        w.next_execution = commit.next_execution
        if then == "finish":
            w.finished_at, w.next_execution = self.now, None
        if then in ("finish", "release"):
            w.owner, w.expires = None, None

    @rule()
    def purge(self) -> None:
        doomed = [
            wid
            for wid, w in self.workflows.items()
            if w.finished_at is not None and w.finished_at < self.now
        ]
        statuses = frozenset({WorkflowStatus.COMPLETE})
        assert self.run(self.backend.persistence.purge(self.now, statuses)) == len(doomed)
        for wid in doomed:
            del self.workflows[wid]

    @rule(target=leases, name=LOCK_NAMES, owner=OWNERS, ttl_s=LEASE_S)
    def acquire(self, name: str, owner: str, ttl_s: int) -> Any:
        ref = self.locks.setdefault(name, RefLock())
        free = ref.owner is None or ref.owner == owner or (ref.expires or 0) <= self.now
        expected = None
        if free:
            ref.owner, ref.token, ref.expires = owner, ref.token + 1, self.now + ttl_s * 1000
            expected = Lease(name, owner, ref.token, ref.expires)

        got = self.run(self.backend.lock.acquire(name, owner, ttl_s))

        assert got == expected
        return multiple() if got is None else got

    @rule(lease=leases, ttl_s=LEASE_S)
    def renew_lock(self, lease: Lease, ttl_s: int) -> None:
        ref = self.locks[lease.name]
        held = (ref.owner, ref.token) == (lease.owner, lease.token)
        try:
            renewed = self.run(self.backend.lock.renew(lease, ttl_s))
        except LeaseLost:
            assert not held, f"the current holder lost its lock on renew: {lease}"
            return
        assert held, f"a stale lease was renewed: {lease}"
        ref.expires = self.now + ttl_s * 1000
        assert renewed == Lease(lease.name, lease.owner, lease.token, ref.expires)

    @rule(lease=leases)
    def release_lock(self, lease: Lease) -> None:
        ref = self.locks[lease.name]
        if (ref.owner, ref.token) == (lease.owner, lease.token):
            ref.owner, ref.expires = None, None
        self.run(self.backend.lock.release(lease))

    @invariant()
    def store_matches_the_model(self) -> None:
        records = {
            wid: self.run(self.backend.persistence.get_workflow(wid)) for wid in self.workflows
        }
        for wid, w in self.workflows.items():
            r = records[wid]
            assert (r.lease_owner, r.lease_token, r.lease_expires_at) == (
                w.owner,
                w.token,
                w.expires,
            )
            assert (r.recoveries, r.next_execution) == (w.recoveries, w.next_execution)
            assert r.complete_time == w.finished_at
            assert json.loads(r.data) == {"commits": w.commits}
        state = self.backend.persistence.state  # type: ignore[attr-defined]
        assert set(state.workflows) == set(self.workflows)
        for name, ref in self.locks.items():
            row = state.locks[name]
            assert (row.owner, row.token, row.expires_at) == (ref.owner, ref.token, ref.expires)


ProviderModel.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestProviderModel = ProviderModel.TestCase
