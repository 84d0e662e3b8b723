"""The host's background machinery: claim due workflows, run them, keep their leases.

Three tasks: the poller (claims up to the free capacity, then waits for a wake-up or
``poll_interval``), the renewer (extends every held lease each ``lease/3``; a lease it
cannot extend is abandoned at once), and one task per claimed workflow.

Stopping is two calls: :meth:`Worker.begin_stop` (synchronous, so a signal handler can
make it) stops claiming and starts no new step, and :meth:`Worker.finish_stop` waits for
the in-flight steps until the deadline, then cancels what still runs and releases its
leases.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from wfe.owners import owner_name
from wfe_core.errors import LeaseLost, ProviderError
from wfe_core.executor.run import Resolver, RunServices, WorkflowRun
from wfe_core.models import Claim, StartLease, WorkflowRecord, WorkflowState
from wfe_core.ports import Backend

log = logging.getLogger("wfe.host")

CANCEL_WAIT = 10.0
"""Seconds to wait for cancelled runs to unwind. A step that ignores cancellation (it
catches ``CancelledError`` and goes on) must not hold a shutdown forever: past this, the
run is left behind and its lease expires by itself once the renewer has stopped."""


@dataclass
class WorkerOptions:
    lease: float = 30.0
    poll_interval: float = 1.0
    max_concurrent_workflows: int = 100
    claim_batch: int = 50


class Worker:
    """Claims and runs workflows for one host."""

    def __init__(
        self,
        backend: Backend,
        options: WorkerOptions,
        resolve: Resolver,
        services: RunServices,
        eligible: Callable[[], list[tuple[str, int]]],
        refresh: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.backend = backend
        self.options = options
        self.resolve = resolve
        self.services = services
        self.eligible = eligible
        self.refresh = refresh  # before each poll: may change what ``eligible`` returns
        self.owner = owner_name()
        self.runs: dict[str, tuple[WorkflowRun, asyncio.Task[None]]] = {}
        self._alive: set[asyncio.Task[None]] = set()  # run tasks, until done (unwinding too)
        self._poller: asyncio.Task[None] | None = None
        self._renewer: asyncio.Task[None] | None = None
        self._claiming = False
        self._reserved = 0  # slots held for workflows being started leased to this host
        self._timers: list[asyncio.TimerHandle] = []
        self._states: dict[str, WorkflowState] = {}  # loaded with the last claim batch
        self._suspect: str | None = None  # a recovered workflow running alone
        self._draining = False  # waiting for runs to finish so a suspect can run alone
        self._deadline: float | None = None  # loop time when a stop cancels what runs
        self._deadline_moved: asyncio.Future[None] | None = None  # wakes the drain

    def start(self) -> None:
        self._claiming = True
        self._poller = asyncio.create_task(self._poll(), name="wfe-poller")
        self._renewer = asyncio.create_task(self._renew(), name="wfe-renewer")

    async def stop(self, timeout: float) -> None:
        """:meth:`begin_stop` then :meth:`finish_stop`."""
        self.begin_stop(timeout)
        await self.finish_stop()

    def begin_stop(self, timeout: float) -> None:
        """Stop claiming and starting steps; in-flight steps get ``timeout`` seconds.

        Callable again: a shorter timeout brings the deadline forward, a longer one
        never pushes it back (a second signal must be able to hurry a stop, nothing
        may slow one down).
        """
        deadline = asyncio.get_running_loop().time() + max(timeout, 0.0)
        if self._deadline is not None and deadline >= self._deadline:
            return
        self._deadline = deadline
        if self._deadline_moved is not None and not self._deadline_moved.done():
            self._deadline_moved.set_result(None)
        self._claiming = False
        for run, _ in self.runs.values():
            # The run stops after its in-flight steps commit, releasing its lease with
            # the next step due now, so another host goes on at once.
            run.halted = True
        self.backend.queue.wake()

    async def finish_stop(self) -> None:
        """Wait for in-flight steps until the deadline; cancel and release the rest."""
        assert self._deadline is not None, "begin_stop first"
        await self._drain()
        cancelled = await self.cancel_running()
        if cancelled:
            log.info("cancelled %d workflow runs still in flight at the stop deadline", cancelled)
        await self._stop_poller()
        if self._renewer is not None:
            # Only now: a step finishing within the grace period still needs its lease.
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
        for timer in self._timers:
            timer.cancel()

    async def _drain(self) -> None:
        """Wait until no run is left or the deadline (which may move closer) passes."""
        loop = asyncio.get_running_loop()
        while self._alive:
            assert self._deadline is not None
            remaining = self._deadline - loop.time()
            if remaining <= 0:
                return
            self._deadline_moved = loop.create_future()
            await asyncio.wait(
                [*self._alive, self._deadline_moved],
                timeout=remaining,
                return_when=asyncio.FIRST_COMPLETED,
            )

    async def _stop_poller(self) -> None:
        """Let the poller see the stop by itself: cancelled inside a claim, it would drop
        leases it had just taken, and they would hold their workflows until expiry.
        (A claim that lands after the stop began is released by ``_dispatch``.)"""
        if self._poller is None:
            return
        self.backend.queue.wake()
        await asyncio.wait([self._poller], timeout=CANCEL_WAIT)
        self._poller.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._poller

    async def cancel_running(self) -> int:
        """Cancel every workflow run of this host now; returns how many were cancelled.

        Each cancelled run releases its lease (its workflow is due at once and resumes
        from its last committed step) unless the lease was already lost. Returns once
        the runs have unwound and released, so the store may be closed right after.
        """
        # A run that already gave its lease up is only unwinding, and one being cancelled
        # is releasing inside a shield (a second cancel would stop us waiting for it).
        running = [
            task for run, task in self.runs.values() if not run.released and not task.cancelling()
        ]
        cancelled = sum(1 for task in running if task.cancel())
        tasks = [*self._alive, *(task for _, task in self.runs.values())]
        if not tasks:
            return 0
        _, stuck = await asyncio.wait(set(tasks), timeout=CANCEL_WAIT)
        for workflow_id, (run, task) in list(self.runs.items()):
            if task.done():
                # Cancelled before its first step: its body never ran, so neither did
                # the cleanup in _execute that releases the lease.
                self.runs.pop(workflow_id, None)
                await self._release(run.claim)
        if stuck:
            log.error(
                "%d workflow runs ignored cancellation for %gs (a step that swallows "
                "CancelledError?); left behind, their leases expire by themselves: %s",
                len(stuck),
                CANCEL_WAIT,
                ", ".join(sorted(task.get_name() for task in stuck)),
            )
        return cancelled

    async def _poll(self) -> None:
        queue = self.backend.queue
        while self._claiming:
            await self._refresh()
            limit = self._batch_size() if self._may_claim() else 0
            claims = await self._claim_and_dispatch(limit) if limit else []
            if claims and len(claims) == limit:
                continue  # a full batch: there is probably more
            await queue.wait_for_work(self.options.poll_interval)

    async def _refresh(self) -> None:
        if self.refresh is None:
            return
        try:
            await self.refresh()
        except Exception:
            # The poller must outlive it: claiming what it claimed before is still right.
            log.exception("refreshing the definitions to claim failed; keeping the last set")

    def reserve(self, definition_id: str, version: int) -> StartLease | None:
        """A lease to create a workflow of this definition with, holding a slot for it
        until :meth:`adopt`; ``None`` when this host would not claim it now (stopping,
        no free slot, a suspect running alone, or a definition it does not serve)."""
        if (
            not self._claiming
            or self._suspect is not None
            or self._draining
            or self._batch_size() == 0
            or (definition_id, version) not in self.eligible()
        ):
            return None
        self._reserved += 1
        return StartLease(owner=self.owner, seconds=self.options.lease)

    async def adopt(self, record: WorkflowRecord | None) -> bool:
        """Run a workflow created with a lease from :meth:`reserve` (frees that slot;
        ``None``: the start failed). A fresh workflow needs no claim and no read: its
        state is its record, with no pointers yet. Returns whether it runs here."""
        self._reserved -= 1
        claim = None if record is None else Claim.of_created(record)
        if record is None or claim is None or claim.owner != self.owner:
            return False  # not created leased to us: an earlier start with its key
        if not self._claiming:
            await self._release(claim)  # the stop began meanwhile: hand it on now
            return False
        self._spawn(claim, WorkflowState(record=record, pointers=[]))
        return True

    def _batch_size(self) -> int:
        free = self.options.max_concurrent_workflows - len(self.runs) - self._reserved
        return max(0, min(free, self.options.claim_batch))

    def _may_claim(self) -> bool:
        """Not while a suspect runs alone, nor while runs drain to make room for one."""
        if self._suspect is not None or (self._draining and self.runs):
            return False
        self._draining = False
        return self._batch_size() > 0 and bool(self.eligible())

    async def _claim_and_dispatch(self, limit: int) -> list[Claim]:
        # The slots asked for stay reserved until the claims run, so that starts made
        # meanwhile (see reserve) cannot take them too.
        self._reserved += limit
        try:
            claims = await self._claim(limit)
            if claims:
                await self._dispatch(claims)
            return claims
        finally:
            self._reserved -= limit

    async def _claim(self, limit: int) -> list[Claim]:
        try:
            claims = await self.backend.queue.claim(
                self.owner, limit, self.options.lease, self.eligible()
            )
        except ProviderError as exc:
            log.warning("claiming failed, retrying after the poll interval: %s", exc)
            return []
        await self._load(claims)
        return claims

    async def _load(self, claims: list[Claim]) -> None:
        """Read the claimed workflows in one batch, instead of one read per run."""
        self._states = {}
        if not claims:
            return
        try:
            self._states = await self.backend.persistence.load_states(claims)
        except ProviderError as exc:
            log.debug(
                "batch load of %d claims failed; each run reads its own: %s", len(claims), exc
            )

    async def _dispatch(self, claims: list[Claim]) -> None:
        """Run the claims; a suspect (its last host died holding it) runs alone.

        A poison step that kills its process would otherwise take down every workflow
        the host holds and count against all of them. A suspect runs only on a host
        that holds nothing else; the other claims go back at once (no recovery counted).
        """
        if not self._claiming:
            # Claimed while the stop began: hand them straight back.
            for claim in claims:
                await self._release(claim)
            return
        suspects = [c for c in claims if c.recoveries > 0]
        if not suspects:
            for claim in claims:
                if claim.workflow_id not in self.runs:
                    self._spawn(claim)
            return
        keep = suspects[0] if not self.runs else None
        for claim in claims:
            if claim is not keep:
                await self._release(claim)
        if keep is None:
            self._draining = True
            log.info(
                "a recovered workflow is waiting to run alone; draining %d runs", len(self.runs)
            )
            return
        log.info(
            "running recovered workflow %s alone (recovery %d)", keep.workflow_id, keep.recoveries
        )
        self._suspect = keep.workflow_id
        self._spawn(keep)

    def _spawn(self, claim: Claim, state: WorkflowState | None = None) -> None:
        # A claim missing from the batch was lost meanwhile: its run finds out itself.
        state = state or self._states.pop(claim.workflow_id, None)
        run = WorkflowRun(claim, self.resolve, self.services, state)
        task = asyncio.create_task(self._execute(run), name=f"wfe-run-{claim.workflow_id}")
        self.runs[claim.workflow_id] = (run, task)
        self._alive.add(task)
        task.add_done_callback(self._alive.discard)

    async def _execute(self, run: WorkflowRun) -> None:
        claim = run.claim
        try:
            await run.run()
            self._arm_timer(run.next_wake)
        except LeaseLost:
            log.warning(
                "lease lost, abandoning workflow %s (token %d)",
                claim.workflow_id,
                claim.token,
                exc_info=log.isEnabledFor(logging.DEBUG),
            )
        except asyncio.CancelledError:
            # Forgotten before the release: once released, the poller may claim the
            # workflow again at once, and would skip a claim for a run it still lists.
            self._forget(run)
            if not run.released:
                await asyncio.shield(self._release(claim))
            raise
        except Exception:
            # The lease is left to expire: a prompt retry of a broken run would loop hot.
            log.exception(
                "run of workflow %s failed; it will be retried after its lease", claim.workflow_id
            )
        finally:
            if self._forget(run):
                self.backend.queue.wake()

    def _forget(self, run: WorkflowRun) -> bool:
        """Drop a finished run; returns whether the poller should look for work now:
        when this run's slot was what kept it from claiming (all slots taken, a suspect
        running alone, runs draining for one). Otherwise a wake-up would only cost an
        empty claim."""
        entry = self.runs.get(run.workflow_id)
        if entry is None or entry[0] is not run:
            return False
        blocked = (
            len(self.runs) >= self.options.max_concurrent_workflows
            or self._suspect is not None
            or self._draining
        )
        del self.runs[run.workflow_id]
        if self._suspect == run.workflow_id:
            self._suspect = None
        return blocked

    async def _release(self, claim: Claim) -> None:
        try:
            await self.backend.queue.release(claim)
        except ProviderError as exc:
            log.warning(
                "could not release workflow %s; it frees up when its lease expires: %s",
                claim.workflow_id,
                exc,
            )

    def _arm_timer(self, next_wake: int | None) -> None:
        """Wake the poller when this run's next stored timer is due."""
        if not next_wake or not self._claiming:
            return
        delay = (next_wake - self.services.persistence.now_ms()) / 1000
        if 0 < delay < self.options.poll_interval:
            loop = asyncio.get_running_loop()
            self._timers = [t for t in self._timers if not t.cancelled()]
            self._timers.append(loop.call_later(delay + 0.001, self.backend.queue.wake))

    async def _renew(self) -> None:
        interval = self.options.lease / 3
        last_ok = time.monotonic()
        while True:
            await asyncio.sleep(interval)
            claims = [run.claim for run, _ in self.runs.values()]
            if not claims:
                last_ok = time.monotonic()
                continue
            try:
                renewed = {
                    c.workflow_id
                    for c in await self.backend.queue.renew(claims, self.options.lease)
                }
                last_ok = time.monotonic()
            except ProviderError as exc:
                log.warning("lease renewal failed: %s", exc)
                if time.monotonic() - last_ok < self.options.lease * 0.8:
                    continue
                renewed = set()  # self-fence: our leases may be gone by now
            for claim in claims:
                if claim.workflow_id not in renewed:
                    self._abandon(claim)

    def _abandon(self, claim: Claim) -> None:
        entry = self.runs.get(claim.workflow_id)
        if entry is None or entry[0].claim.token != claim.token:
            return
        if entry[0].released or entry[0].committing:
            # Our own commit gave the lease up (the renewal found it free), or one is
            # being written and will find out for itself: not a loss. Had another host
            # taken the workflow, the next renewal would still see it.
            return
        log.warning("lease lost, abandoning workflow %s (token %d)", claim.workflow_id, claim.token)
        entry[0].released = True  # nothing to release: the lease is not ours any more
        entry[1].cancel()
