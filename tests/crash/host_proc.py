"""A wfe host in its own process, for the crash tests.

Run with the repository root as the working directory::

    python -m tests.crash.host_proc --db URL --history PATH --lease 1 --poll 0.1 \
        [--hold-step 3] [--slow-step 3 --slow-seconds 2] [--inflight PATH]

It registers two chain workflows whose steps each add 1 to ``data.n``:

* ``crashflow``: steps s1..s5;
* ``multiflow``: steps s1..s3;
* ``poisonflow``: one step that kills its own process every time it runs;
* ``eachflow``: a sequential ``for_each`` (``--hold-item N`` blocks on item N);
* ``sagaflow``, ``parentflow`` and ``childflow``: see :mod:`tests.crash.compound_flows`.

Every step body appends a JSON line to the history file when it starts and just before
it returns (``{"host": pid, "step": name, "event": "start"|"end", "attempt": n,
"wf": id}``), and a "committed" line once the step's commit has landed (from the
``StepCompleted`` lifecycle event), flushed and fsynced, so the record survives a
kill -9 of this process.
``--hold-step N`` makes step sN block forever after its "start" line (to be killed or
paused there); ``--slow-step N --slow-seconds S`` makes sN sleep S seconds after its
"start" line and then finish normally. ``--step-delay S`` makes every multiflow step
sleep a random 0..S seconds first. ``--block-step N --release-file PATH`` makes
sN, once this process has no backend call in progress, block the whole event loop
(lease renewal included, as a long GC pause or a CPU-bound step would) until PATH
exists, and then finish normally and commit.

The process counts the backend calls (persistence, queue, lock) it has in progress and
logs each one slower than a third of the lease (the renewal interval) as "slow backend
call". ``--inflight PATH`` publishes that count in an 8-byte file shared through
``mmap``. A test that pauses the process reads it to know whether the pause froze a database
transaction (which would hold locks that block every other host until the process is
continued). A step commit the store refuses with ``LeaseLost`` is logged as
"commit fenced off".

The process prints ``READY`` once the host has started and runs until SIGTERM (or
SIGINT), which stops the host gracefully (``host.stop(timeout=5)``) and exits 0. It
exits by itself if the process that started it goes away.
Logging goes to stderr at INFO, so "lease lost, abandoning" warnings show there.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import inspect
import json
import logging
import mmap
import os
import random
import signal
import struct
import sys
import time
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from wfe import StepContext, WorkflowBuilder, WorkflowDefinition, WorkflowHost
from wfe.events import StepCompleted
from wfe_core.errors import LeaseLost

from .compound_flows import saga_flow, sub_workflow_flows

CRASHFLOW_STEPS = ("s1", "s2", "s3", "s4", "s5")
MULTIFLOW_STEPS = ("s1", "s2", "s3")
INFLIGHT_FORMAT = "<q"
"""The ``--inflight`` file holds one little-endian signed 64-bit counter."""

log = logging.getLogger("tests.crash.host_proc")


class Counter(BaseModel):
    n: int = 0


class Behaviour:
    """What the steps do besides counting; set from the command line."""

    def __init__(
        self,
        history: str,
        inflight: InflightCounter,
        *,
        hold_step: str | None,
        slow_step: str | None,
        slow_seconds: float,
        block_step: str | None,
        release_file: str | None,
        step_delay: float = 0.0,
    ) -> None:
        self.history = history
        self.inflight = inflight
        self.hold_step = hold_step
        self.slow_step = slow_step
        self.slow_seconds = slow_seconds
        self.block_step = block_step
        self.release_file = release_file
        self.step_delay = step_delay
        self.hold_item: int | None = None

    def committed(self, event: object) -> None:
        """Lifecycle subscriber: a StepCompleted is published only after its commit
        landed, so a "committed" line proves the step must never start again."""
        if isinstance(event, StepCompleted):
            self.write(
                {
                    "host": os.getpid(),
                    "step": event.step_name,
                    "event": "committed",
                    "attempt": event.attempt,
                    "wf": event.workflow_id,
                }
            )

    def record(self, ctx: StepContext[Counter], event: str) -> None:
        self.write(
            {
                "host": os.getpid(),
                "step": ctx.step_name,
                "event": event,
                "attempt": ctx.attempt,
                "wf": ctx.workflow_id,
            }
        )

    def write(self, fields: dict[str, Any]) -> None:
        line = json.dumps(fields)
        fd = os.open(self.history, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (line + "\n").encode())  # one write: lines of hosts never interleave
            os.fsync(fd)
        finally:
            os.close(fd)

    async def step(self, ctx: StepContext[Counter]) -> None:
        self.record(ctx, "start")
        if ctx.step_name == self.hold_step and ctx.definition_id == "crashflow":
            await asyncio.sleep(3600)  # killed or paused here
        if ctx.step_name == self.slow_step and ctx.definition_id == "crashflow":
            await asyncio.sleep(self.slow_seconds)
        if ctx.step_name == self.block_step and ctx.definition_id == "crashflow":
            await self.block_loop()
        if self.step_delay and ctx.definition_id == "multiflow":
            await asyncio.sleep(random.uniform(0, self.step_delay))
        ctx.data.n += 1
        self.record(ctx, "end")

    async def block_loop(self) -> None:
        """Freeze the event loop until the release file exists, from a moment when no
        backend call is in progress (so no transaction and no lock is held meanwhile)."""
        assert self.release_file is not None, "--block-step needs --release-file"
        while self.inflight.value:
            await self.inflight.idle.wait()
        # No await from the check to the end of the block: nothing else in this process
        # runs meanwhile, and no backend call is half done.
        log.info("blocking the event loop until %s exists", self.release_file)
        block_until_exists(self.release_file)
        log.info("event loop released")


def block_until_exists(path: str) -> None:
    """Deliberately blocking wait (called from the event loop to freeze it)."""
    while not os.path.exists(path):
        time.sleep(0.01)


def chain(
    definition_id: str, steps: tuple[str, ...], body: Callable[..., Any]
) -> WorkflowDefinition:
    """A chain of ``body`` under the step names ``steps``, on :class:`Counter` data."""
    builder = WorkflowBuilder(definition_id, version=1, data=Counter)
    builder = builder.start_with(body, name=steps[0])
    for name in steps[1:]:
        builder = builder.then(body, name=name)
    return builder.build()


class InflightCounter:
    """Backend calls in progress; with a path, also in a file other processes can read."""

    def __init__(self, path: str | None, slow_call: float) -> None:
        self.slow_call = slow_call
        self.value = 0
        self.idle = asyncio.Event()
        self.idle.set()
        self._map: mmap.mmap | None = None
        if path is not None:
            with open(path, "wb") as f:
                f.write(struct.pack(INFLIGHT_FORMAT, 0))
            with open(path, "r+b") as f:  # the mapping stays valid after the close
                self._map = mmap.mmap(f.fileno(), struct.calcsize(INFLIGHT_FORMAT))

    def add(self, delta: int) -> None:
        self.value += delta
        if self.value:
            self.idle.clear()
        else:
            self.idle.set()
        if self._map is not None:
            self._map[:] = struct.pack(INFLIGHT_FORMAT, self.value)

    def instrument(self, provider: object, skip: frozenset[str] = frozenset()) -> None:
        """Count every public coroutine method of ``provider`` while it runs."""
        for name in dir(type(provider)):
            if name.startswith("_") or name in skip:
                continue
            method = getattr(provider, name, None)
            if method is not None and inspect.iscoroutinefunction(method):
                setattr(provider, name, self._counted(method))

    def _counted(self, method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.add(1)
            started = time.monotonic()
            try:
                return await method(*args, **kwargs)
            finally:
                self.add(-1)
                took = time.monotonic() - started
                if took > self.slow_call:
                    log.warning(
                        "slow backend call: %s took %.2fs (%d in progress)",
                        method.__qualname__,
                        took,
                        self.value,
                    )

        return counted


def log_fenced_commits(persistence: Any) -> None:
    """Log every step commit the store refuses because the lease token is stale."""
    commit = persistence.commit

    @functools.wraps(commit)
    async def fenced(*args: Any, **kwargs: Any) -> Any:
        try:
            return await commit(*args, **kwargs)
        except LeaseLost as exc:
            log.warning("commit fenced off: %s", exc)
            raise

    persistence.commit = fenced


async def exit_when_orphaned(parent: int) -> None:
    """Die with the test run: its own session shields this process from the signals
    that kill a test runner's process group, so a runner killed without cleanup (CI
    timeout, kill -9) would otherwise leave hosts behind."""
    while True:
        await asyncio.sleep(1.0)
        if os.getppid() != parent:
            break
    log.error("the test process %d is gone; exiting", parent)
    os._exit(3)


class Items(BaseModel):
    items: list[int] = []
    visited: dict[str, int] = {}
    after: int = 0


def each_flow(behaviour: Behaviour) -> WorkflowDefinition:
    """``eachflow``: a sequential for_each over ``items`` (step "visit", which honours
    ``--hold-item``), then a step "after"."""

    async def visit(ctx: StepContext[Items]) -> None:
        behaviour.write(
            {
                "host": os.getpid(),
                "step": f"visit:{ctx.item}",
                "event": "start",
                "attempt": ctx.attempt,
                "wf": ctx.workflow_id,
            }
        )
        if ctx.item == behaviour.hold_item:
            await asyncio.sleep(3600)  # killed here
        ctx.data.visited[str(ctx.item)] = ctx.item * 10

    async def after(ctx: StepContext[Items]) -> None:
        ctx.data.after += 1

    return (
        WorkflowBuilder("eachflow", version=1, data=Items)
        .for_each(
            lambda ctx: ctx.data.items, lambda b: b.start_with(visit, name="visit"), parallel=False
        )
        .then(after, name="after")
        .build()
    )


async def poison_step(ctx: StepContext[Counter]) -> None:
    """A step that kills its own process every time it runs (a poison workflow)."""
    log.warning("poison step of %s: exiting the process", ctx.workflow_id)
    os._exit(1)


def step_name(number: int | None) -> str | None:
    return None if number is None else f"s{number}"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.crash.host_proc")
    parser.add_argument("--db", required=True, help="database URL")
    parser.add_argument("--history", required=True, help="JSON-lines file of step starts/ends")
    parser.add_argument("--lease", type=float, required=True, help="lease in seconds")
    parser.add_argument("--poll", type=float, required=True, help="poll interval in seconds")
    parser.add_argument(
        "--hold-step",
        type=int,
        default=None,
        help="crashflow step number that blocks forever after starting",
    )
    parser.add_argument(
        "--slow-step",
        type=int,
        default=None,
        help="crashflow step number that sleeps --slow-seconds",
    )
    parser.add_argument("--slow-seconds", type=float, default=2.0)
    parser.add_argument(
        "--block-step",
        type=int,
        default=None,
        help="crashflow step number that blocks the event loop",
    )
    parser.add_argument(
        "--release-file", default=None, help="the blocked step goes on once this file exists"
    )
    parser.add_argument(
        "--max-recoveries", type=int, default=5, help="the host's max_recovery_attempts"
    )
    parser.add_argument(
        "--hold-item", type=int, default=None, help="eachflow's visit of this item blocks"
    )
    parser.add_argument(
        "--hold-undo", default=None, help="sagaflow's compensation of this booking blocks"
    )
    parser.add_argument(
        "--hold-child-step", default=None, help="childflow's step of this name blocks"
    )
    parser.add_argument(
        "--step-delay",
        type=float,
        default=0.0,
        help="multiflow steps sleep a random 0..this many seconds",
    )
    parser.add_argument(
        "--inflight", default=None, help="file counting this process's backend calls in progress"
    )
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    inflight = InflightCounter(args.inflight, slow_call=args.lease / 3)
    behaviour = Behaviour(
        args.history,
        inflight,
        hold_step=step_name(args.hold_step),
        slow_step=step_name(args.slow_step),
        slow_seconds=args.slow_seconds,
        block_step=step_name(args.block_step),
        release_file=args.release_file,
        step_delay=args.step_delay,
    )
    behaviour.hold_item = args.hold_item
    host = WorkflowHost.from_url(
        args.db,
        lease=args.lease,
        poll_interval=args.poll,
        log_events=False,
        max_recovery_attempts=args.max_recoveries,
    )
    backend = host.backend
    log_fenced_commits(backend.persistence)
    inflight.instrument(backend.persistence)
    inflight.instrument(backend.queue, skip=frozenset({"wait_for_work"}))
    inflight.instrument(backend.lock)
    if backend.search is not None:
        inflight.instrument(backend.search)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    host.subscribe(behaviour.committed)
    orphan_watch = asyncio.create_task(exit_when_orphaned(os.getppid()))
    host.register(chain("crashflow", CRASHFLOW_STEPS, behaviour.step))
    host.register(chain("multiflow", MULTIFLOW_STEPS, behaviour.step))
    host.register(chain("poisonflow", ("poison",), poison_step))
    host.register(each_flow(behaviour))
    host.register(saga_flow(behaviour.write, args.hold_undo))
    for definition in sub_workflow_flows(behaviour.write, args.hold_child_step):
        host.register(definition)
    try:
        await host.start()
        log.info("host %s (pid %d) started on %s", host.host_id, os.getpid(), args.db)
        print("READY", flush=True)
        await stop.wait()
        log.info("stopping host %s", host.host_id)
    finally:
        orphan_watch.cancel()
        await host.stop(timeout=5)
    log.info("host %s stopped", host.host_id)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s",
    )
    asyncio.run(serve(parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
