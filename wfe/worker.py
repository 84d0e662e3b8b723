"""The host's background machinery: claim due workflows, run them, keep their leases.

Three tasks: the poller (claims up to the free capacity, then waits for a wake-up or
``poll_interval``), the renewer (extends every held lease each ``lease/3``; a lease it
cannot extend is abandoned at once), and one task per claimed workflow.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from wfe_core.errors import LeaseLost, ProviderError
from wfe_core.executor.run import Resolver, RunServices, WorkflowRun
from wfe_core.models import Claim
from wfe_core.ports import Backend

log = logging.getLogger("wfe.host")


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
    ) -> None:
        self.backend = backend
        self.options = options
        self.resolve = resolve
        self.services = services
        self.eligible = eligible
        self.owner = f"host-{uuid.uuid4().hex[:12]}"
        self.runs: dict[str, tuple[WorkflowRun, asyncio.Task[None]]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._claiming = False
        self._timers: list[asyncio.TimerHandle] = []
        self._suspect: str | None = None  # a recovered workflow running alone
        self._draining = False  # waiting for runs to finish so a suspect can run alone

    def start(self) -> None:
        self._claiming = True
        self._tasks = [
            asyncio.create_task(self._poll(), name="wfe-poller"),
            asyncio.create_task(self._renew(), name="wfe-renewer"),
        ]

    async def stop(self, timeout: float) -> None:
        """Stop claiming, let runs finish within ``timeout``, then cancel and release them."""
        self._claiming = False
        self.backend.queue.wake()
        running = [task for _, task in self.runs.values()]
        if running:
            await asyncio.wait(running, timeout=timeout)
        for _, task in list(self.runs.values()):
            task.cancel()
        for _, task in list(self.runs.values()):
            with contextlib.suppress(BaseException):
                await task
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for timer in self._timers:
            timer.cancel()

    async def _poll(self) -> None:
        queue = self.backend.queue
        while self._claiming:
            claims = await self._claim() if self._may_claim() else []
            if claims:
                await self._dispatch(claims)
            if claims and len(claims) == self._batch_size():
                continue  # a full batch: there is probably more
            await queue.wait_for_work(self.options.poll_interval)

    def _batch_size(self) -> int:
        free = self.options.max_concurrent_workflows - len(self.runs)
        return max(0, min(free, self.options.claim_batch))

    def _may_claim(self) -> bool:
        """Not while a suspect runs alone, nor while runs drain to make room for one."""
        if self._suspect is not None or (self._draining and self.runs):
            return False
        self._draining = False
        return self._batch_size() > 0 and bool(self.eligible())

    async def _claim(self) -> list[Claim]:
        try:
            return await self.backend.queue.claim(
                self.owner, self._batch_size(), self.options.lease, self.eligible()
            )
        except ProviderError as exc:
            log.warning("claiming failed, retrying after the poll interval: %s", exc)
            return []

    async def _dispatch(self, claims: list[Claim]) -> None:
        """Run the claims; a suspect (its last host died holding it) runs alone.

        A poison step that kills its process would otherwise take down every workflow
        the host holds and count against all of them. A suspect runs only on a host
        that holds nothing else; the other claims go back at once (no recovery counted).
        """
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

    def _spawn(self, claim: Claim) -> None:
        run = WorkflowRun(claim, self.resolve, self.services)
        task = asyncio.create_task(self._execute(run), name=f"wfe-run-{claim.workflow_id}")
        self.runs[claim.workflow_id] = (run, task)

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
            if not run.released:
                await asyncio.shield(self._release(claim))
            raise
        except Exception:
            # The lease is left to expire: a prompt retry of a broken run would loop hot.
            log.exception(
                "run of workflow %s failed; it will be retried after its lease", claim.workflow_id
            )
        finally:
            self.runs.pop(claim.workflow_id, None)
            if self._suspect == claim.workflow_id:
                self._suspect = None
            self.backend.queue.wake()

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
        log.warning("lease lost, abandoning workflow %s (token %d)", claim.workflow_id, claim.token)
        entry[0].released = True  # nothing to release: the lease is not ours any more
        entry[1].cancel()
