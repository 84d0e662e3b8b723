"""The graceful-shutdown API of WorkflowHost: request_stop, wait_for_shutdown,
cancel_running, stop(timeout=0), install_signal_handlers and state.

Hosts here hold leases of 30 s, far longer than any wait in these tests: a workflow
another host finishes within a few seconds was handed over by an explicit release, not
by its lease running out.
"""

from __future__ import annotations

import asyncio
import os
import signal
import uuid

import pytest
from pydantic import BaseModel

from wfe import ShuttingDown, WorkflowBuilder, WorkflowHost, WorkflowStatus
from wfe.events import StepEvent, WorkflowFailed

LEASE = 30.0
HANDOVER = 10.0
"""Seconds another host may take to finish a handed-over workflow: a third of the lease."""


class Data(BaseModel):
    runs: int = 0
    first: int = 0
    second: int = 0


class Blocker:
    """A step body that blocks (until cancelled) the first time it runs for a workflow
    and finishes on any later run; it records what it saw."""

    def __init__(self) -> None:
        self.blocked: list[str] = []  # workflows whose first run is blocked right now
        self.attempts: list[tuple[str, int]] = []
        self.cancelled: list[str] = []

    def body(self):
        async def blocking(ctx):
            first = all(wid != ctx.workflow_id for wid, _ in self.attempts)
            self.attempts.append((ctx.workflow_id, ctx.attempt))
            if first:
                self.blocked.append(ctx.workflow_id)
                try:
                    await asyncio.sleep(3600)
                except asyncio.CancelledError:
                    self.cancelled.append(ctx.workflow_id)
                    raise
            ctx.data.runs += 1

        return blocking

    def flow(self, definition_id: str = "blocking"):
        """A quick step, then the blocking one (so the blocking step's pointer is stored
        before it runs)."""

        async def before(ctx):
            ctx.data.first = 1

        return (
            WorkflowBuilder(definition_id, data=Data)
            .start_with(before, name="before")
            .then(self.body(), name="block")
            .build()
        )

    async def wait_blocked(self, count: int = 1) -> None:
        for _ in range(1000):
            if len(self.blocked) >= count:
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"only {len(self.blocked)} of {count} steps started")


def step_events(host: WorkflowHost) -> list[tuple[str, str, int]]:
    """Collect (event, step, attempt) of every step event this host publishes."""
    seen: list[tuple[str, str, int]] = []

    def collect(event):
        if isinstance(event, StepEvent | WorkflowFailed):
            seen.append(
                (
                    type(event).__name__,
                    getattr(event, "step_name", ""),
                    getattr(event, "attempt", 0),
                )
            )

    host.subscribe(collect)
    return seen


async def until(predicate, message: str) -> None:
    for _ in range(1000):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for: {message}")


async def test_request_stop_lets_an_in_flight_step_finish(make_host):
    entered = asyncio.Event()

    async def short_step(ctx):
        entered.set()
        await asyncio.sleep(0.3)
        ctx.data.runs = 1

    host = make_host(lease=LEASE)
    host.register(WorkflowBuilder("short", data=Data).start_with(short_step).build())
    assert host.state == "new"
    await host.start()
    assert host.state == "running"
    wid = await host.start_workflow("short", {})
    await asyncio.wait_for(entered.wait(), 10)

    assert host.request_stop(timeout=10) is None  # returns at once, the stop goes on
    assert host.state == "stopping"
    await host.wait_for_shutdown(timeout=10)

    assert host.state == "stopped"
    record = await host.backend.persistence.get_workflow(wid)
    assert record.status is WorkflowStatus.COMPLETE
    assert record.lease_owner is None


async def test_a_stopping_host_starts_no_new_step_and_hands_the_next_one_over(make_host):
    """The in-flight step commits; the next one runs on another host, at once."""
    entered, finish = asyncio.Event(), asyncio.Event()

    async def first(ctx):
        entered.set()
        await finish.wait()
        ctx.data.first = 1

    async def second(ctx):
        ctx.data.second = 1

    flow = (
        WorkflowBuilder("two", data=Data)
        .start_with(first, name="first")
        .then(second, name="second")
        .build()
    )
    a, b = make_host(lease=LEASE), make_host(lease=LEASE)
    a.register(flow)
    b.register(flow)
    a_events, b_events = step_events(a), step_events(b)
    await a.start()
    wid = await a.start_workflow("two", {})
    await asyncio.wait_for(entered.wait(), 10)
    await b.start()  # idle: the workflow is A's until A lets it go

    a.request_stop(timeout=LEASE)
    finish.set()
    await a.wait_for_shutdown(timeout=HANDOVER)  # not the whole timeout: nothing was left
    done = await b.wait_for_completion(wid, HANDOVER)
    await b.stop()

    assert done.status is WorkflowStatus.COMPLETE
    assert (done.data.first, done.data.second) == (1, 1)
    assert a_events == [("StepStarted", "first", 1), ("StepCompleted", "first", 1)]
    assert b_events == [("StepStarted", "second", 1), ("StepCompleted", "second", 1)]


async def test_a_step_past_the_timeout_is_cancelled_unrecorded_and_resumed_elsewhere(make_host):
    blocker = Blocker()
    flow = blocker.flow()
    a = make_host(lease=LEASE)
    a.register(flow)
    a_events = step_events(a)
    await a.start()
    wid = await a.start_workflow("blocking", {})
    await blocker.wait_blocked()

    a.request_stop(timeout=0.2)
    await a.wait_for_shutdown(timeout=HANDOVER)

    assert blocker.cancelled == [wid]
    record = await a.backend.persistence.get_workflow(wid)
    assert record.status is WorkflowStatus.RUNNABLE
    assert record.lease_owner is None, "the lease was released, not left to expire"
    pointers = {p.step_name: p for p in await a.backend.persistence.get_pointers(wid)}
    block = pointers["block"]
    assert (block.attempt, block.error) == (1, None), "a cancellation is not a failure"
    assert not block.ended
    # StepStarted of "block" and nothing after it: no StepFailed, StepRetrying, ...
    assert a_events == [
        ("StepStarted", "before", 1),
        ("StepCompleted", "before", 1),
        ("StepStarted", "block", 1),
    ]

    b = make_host(lease=LEASE)
    b.register(flow)
    b_events = step_events(b)
    async with b:
        done = await b.wait_for_completion(wid, HANDOVER)
    assert done.status is WorkflowStatus.COMPLETE and done.data.runs == 1
    assert blocker.attempts == [(wid, 1), (wid, 1)]
    assert b_events == [("StepStarted", "block", 1), ("StepCompleted", "block", 1)]
    record = await b.backend.persistence.get_workflow(wid)
    assert record.lease_token == 2, "A's claim, then B's: no expiry in between"
    assert record.recoveries == 0, "a released workflow is not a crash recovery"


async def test_cancel_running_cuts_a_graceful_stop_short(make_host):
    blocker = Blocker()
    flow = blocker.flow()
    a = make_host(lease=LEASE)
    a.register(flow)
    await a.start()
    ids = [await a.start_workflow("blocking", {}) for _ in range(3)]
    await blocker.wait_blocked(3)

    a.request_stop(timeout=3600)
    with pytest.raises(TimeoutError):
        await a.wait_for_shutdown(timeout=0.2)
    assert a.state == "stopping" and blocker.cancelled == []
    assert await a.cancel_running() == 3
    await a.wait_for_shutdown(timeout=HANDOVER)

    assert a.state == "stopped"
    assert sorted(blocker.cancelled) == sorted(ids)
    b = make_host(lease=LEASE)
    b.register(flow)
    async with b:
        for wid in ids:
            assert (await b.wait_for_completion(wid, HANDOVER)).status is WorkflowStatus.COMPLETE
    assert sorted(blocker.attempts) == sorted([(wid, 1) for wid in ids] * 2)


async def test_cancel_running_on_a_running_host_restarts_the_step(make_host):
    blocker = Blocker()
    async with make_host(lease=LEASE) as host:
        host.register(blocker.flow())
        wid = await host.start_workflow("blocking", {})
        await blocker.wait_blocked()
        assert await host.cancel_running() == 1
        assert host.state == "running"
        done = await host.wait_for_completion(wid, HANDOVER)
        # The completion is visible in the store a moment before its run unwinds.
        for _ in range(200):
            if not host._worker.runs:
                break
            await asyncio.sleep(0.01)
        assert await host.cancel_running() == 0
    assert done.status is WorkflowStatus.COMPLETE and done.data.runs == 1
    assert blocker.cancelled == [wid]
    assert blocker.attempts == [(wid, 1), (wid, 1)]


async def test_stop_with_zero_timeout_cancels_at_once(make_host):
    blocker = Blocker()
    host = make_host(lease=LEASE)
    host.register(blocker.flow())
    await host.start()
    wid = await host.start_workflow("blocking", {})
    await blocker.wait_blocked()

    await asyncio.wait_for(host.stop(timeout=0), HANDOVER)

    assert host.state == "stopped"
    assert blocker.cancelled == [wid]
    record = await host.backend.persistence.get_workflow(wid)
    assert record.status is WorkflowStatus.RUNNABLE and record.lease_owner is None


async def test_stop_zero_hurries_a_stop_already_under_way(make_host):
    blocker = Blocker()
    host = make_host(lease=LEASE)
    host.register(blocker.flow())
    await host.start()
    await host.start_workflow("blocking", {})
    await blocker.wait_blocked()

    host.request_stop(timeout=3600)
    await asyncio.wait_for(host.stop(timeout=0), HANDOVER)
    assert host.state == "stopped" and len(blocker.cancelled) == 1


async def test_wait_for_shutdown_times_out_then_returns_once_stopped(make_host):
    blocker = Blocker()
    host = make_host(lease=LEASE)
    host.register(blocker.flow())
    await host.start()
    with pytest.raises(TimeoutError, match="still running"):
        await host.wait_for_shutdown(timeout=0.05)  # waiting does not begin a stop
    assert host.state == "running"
    await host.start_workflow("blocking", {})
    await blocker.wait_blocked()

    host.request_stop(timeout=3600)
    with pytest.raises(TimeoutError, match="still stopping"):
        await host.wait_for_shutdown(timeout=0.2)
    assert host.state == "stopping" and blocker.cancelled == []

    waiters = [asyncio.create_task(host.wait_for_shutdown()) for _ in range(3)]
    host.request_stop(timeout=0)
    await asyncio.wait_for(asyncio.gather(*waiters), HANDOVER)
    await host.wait_for_shutdown(timeout=0)  # already stopped: at once
    assert host.state == "stopped"


async def test_a_second_request_stop_never_restarts_or_delays_the_stop(make_host):
    blocker = Blocker()
    host = make_host(lease=LEASE)
    host.register(blocker.flow())
    await host.start()
    await host.start_workflow("blocking", {})
    await blocker.wait_blocked()

    host.request_stop(timeout=0.2)
    host.request_stop(timeout=3600)  # a longer timeout later must not push the deadline back
    host.request_stop()
    await host.wait_for_shutdown(timeout=HANDOVER)
    assert host.state == "stopped" and len(blocker.cancelled) == 1
    host.request_stop(timeout=1)  # stopped: nothing happens
    await host.stop()
    assert host.state == "stopped"


async def test_a_stopping_host_refuses_new_work_but_serves_client_calls(make_host):
    blocker = Blocker()

    async def noop(ctx):
        pass

    waiting = (
        WorkflowBuilder("waiting", data=Data)
        .start_with(noop)
        .wait_for("go", lambda ctx: "key")
        .then(noop)
        .build()
    )
    host = make_host(lease=LEASE)
    host.register(blocker.flow())
    host.register(waiting)
    await host.start()
    blocked = await host.start_workflow("blocking", {})
    parked = await host.start_workflow("waiting", {})
    await blocker.wait_blocked()

    host.request_stop(timeout=3600)
    with pytest.raises(ShuttingDown, match=r"stopping; start_workflow\('blocking'\)"):
        await host.start_workflow("blocking", {})
    with pytest.raises(ShuttingDown, match="stopping"):
        host.register(WorkflowBuilder("late", data=Data).start_with(noop).build())
    # Client operations still work while the host stops.
    assert (await host.get_workflow(blocked)).status is WorkflowStatus.RUNNABLE
    assert {i.id for i in await host.list_workflows()} == {blocked, parked}
    await host.suspend_workflow(parked)
    await host.resume_workflow(parked)
    assert await host.publish_event("go", "key", {"x": 1})
    await host.terminate_workflow(parked)
    assert (await host.get_workflow(parked)).status is WorkflowStatus.TERMINATED

    host.request_stop(timeout=0)
    await host.wait_for_shutdown(timeout=HANDOVER)
    with pytest.raises(ShuttingDown, match="stopped"):
        await host.start_workflow("blocking", {})


async def test_a_host_that_closed_its_store_says_so(backend_name, backend_url):
    url = f"memory://{uuid.uuid4().hex}" if backend_name == "memory" else backend_url
    host = WorkflowHost.from_url(url, lease=LEASE, poll_interval=0.1, log_events=False)

    async def noop(ctx):
        pass

    host.register(WorkflowBuilder("noop", data=Data).start_with(noop).build())
    async with host:
        wid = await host.start_workflow("noop", {})
        await host.wait_for_completion(wid, HANDOVER)
    assert host.state == "stopped"
    for call in (
        lambda: host.get_workflow(wid),
        lambda: host.list_workflows(),
        lambda: host.wait_for_completion(wid, 1),
        lambda: host.publish_event("go", "key"),
        lambda: host.suspend_workflow(wid),
        lambda: host.terminate_workflow(wid),
    ):
        with pytest.raises(ShuttingDown, match="closed its store"):
            await call()
    with pytest.raises(ShuttingDown, match="stopped"):
        await host.start_workflow("noop", {})
    with pytest.raises(ShuttingDown):
        host.install_signal_handlers()
    with pytest.raises(RuntimeError, match="starts once"):
        await host.start()
    await host.wait_for_shutdown(timeout=0)
    await host.stop()


async def test_wait_for_completion_survives_the_stop_of_its_host(make_host):
    """A caller waiting on a stopping host gets the result another host produces, not a
    CancelledError out of nowhere."""
    blocker = Blocker()
    flow = blocker.flow()
    a, b = make_host(lease=LEASE), make_host(lease=LEASE)
    a.register(flow)
    b.register(flow)
    await a.start()
    wid = await a.start_workflow("blocking", {})
    await blocker.wait_blocked()
    waiter = asyncio.create_task(a.wait_for_completion(wid, 2 * HANDOVER))

    await a.stop(timeout=0.1)
    await b.start()
    done = await asyncio.wait_for(waiter, 2 * HANDOVER)
    assert done.status is WorkflowStatus.COMPLETE


async def test_a_never_started_host_stops(make_host):
    host = make_host(lease=LEASE)
    host.request_stop()
    assert host.state == "stopping"
    await host.wait_for_shutdown(timeout=HANDOVER)
    assert host.state == "stopped"
    with pytest.raises(RuntimeError, match="starts once"):
        await host.start()


def test_request_stop_outside_the_event_loop_says_how(make_host_sync):
    host = make_host_sync()
    with pytest.raises(RuntimeError, match="call_soon_threadsafe"):
        host.request_stop()
    with pytest.raises(ValueError, match="timeout"):
        host.request_stop(timeout=-1)


@pytest.fixture
def make_host_sync():
    from wfe_core.testing import memory_backend

    return lambda: WorkflowHost(memory_backend(), lease=LEASE, log_events=False)


async def test_signals_stop_gracefully_then_force_cancel_then_restore(make_host):
    """First signal: graceful stop; second: cancel what runs; then the handler that was
    there before is back. SIGUSR1 stands in for SIGTERM (the test runner's own
    SIGTERM must keep killing it)."""
    blocker = Blocker()
    flow = blocker.flow()
    caught: list[int] = []
    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: caught.append(signum))
    try:
        before = signal.getsignal(signal.SIGUSR1)
        a = make_host(lease=LEASE)
        a.register(flow)
        await a.start()
        wid = await a.start_workflow("blocking", {})
        await blocker.wait_blocked()
        remove = a.install_signal_handlers(timeout=3600, signals=(signal.SIGUSR1,))
        assert callable(remove)

        os.kill(os.getpid(), signal.SIGUSR1)
        await until(lambda: a.state == "stopping", "the first signal begins the stop")
        with pytest.raises(TimeoutError):
            await a.wait_for_shutdown(timeout=0.2)
        assert blocker.cancelled == [], "the first signal lets running steps go on"

        os.kill(os.getpid(), signal.SIGUSR1)
        await a.wait_for_shutdown(timeout=HANDOVER)
        assert blocker.cancelled == [wid]
        assert caught == [], "the host's handler took both signals"
        assert signal.getsignal(signal.SIGUSR1) is before, "the previous handler is back"
        os.kill(os.getpid(), signal.SIGUSR1)
        await until(lambda: caught == [signal.SIGUSR1], "the previous handler runs again")

        b = make_host(lease=LEASE)
        b.register(flow)
        async with b:
            assert (await b.wait_for_completion(wid, HANDOVER)).status is WorkflowStatus.COMPLETE
    finally:
        signal.signal(signal.SIGUSR1, previous)


async def test_signal_handlers_are_removed_when_the_host_stops(make_host):
    host = make_host(lease=LEASE)
    await host.start()
    before = signal.getsignal(signal.SIGUSR2)
    host.install_signal_handlers(signals=(signal.SIGUSR2,))
    assert signal.getsignal(signal.SIGUSR2) is not before
    await host.stop()
    assert signal.getsignal(signal.SIGUSR2) is before


async def test_a_cancellation_the_body_turns_into_an_error_is_still_no_failure(make_host):
    """A body that catches the cancellation and raises something else (cleanup code
    often does) is still cancelled: no error stored, no retry, the attempt unchanged."""
    blocked = asyncio.Event()

    async def converts(ctx):
        if ctx.data.runs == 0 and not blocked.is_set():
            blocked.set()
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                raise RuntimeError("cleanup after cancel went wrong") from None
        ctx.data.runs += 1

    async def before(ctx):
        ctx.data.first = 1

    flow = (
        WorkflowBuilder("converting", data=Data)
        .start_with(before, name="before")  # so c's pointer is stored before it runs
        .then(converts, name="c")
        .build()
    )
    host = make_host(lease=LEASE)
    host.register(flow)
    events = step_events(host)
    await host.start()
    wid = await host.start_workflow("converting", {})
    await asyncio.wait_for(blocked.wait(), HANDOVER)
    await host.stop(timeout=0)

    pointers = {p.step_name: p for p in await host.backend.persistence.get_pointers(wid)}
    assert (pointers["c"].attempt, pointers["c"].error, pointers["c"].ended) == (1, None, False)
    assert events[-1] == ("StepStarted", "c", 1)
