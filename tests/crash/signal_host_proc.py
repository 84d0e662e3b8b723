"""A wfe host process that stops on signals through ``install_signal_handlers``.

Run with the repository root as the working directory::

    python -m tests.crash.signal_host_proc --db URL --history PATH --lease 30 \
        --poll 0.1 --stop-timeout 1 [--hold-step 3]

It registers ``crashflow`` exactly as :mod:`tests.crash.host_proc` does (same steps,
same history lines), so a ``host_proc`` process can take its workflows over. Unlike
``host_proc``, SIGTERM and SIGINT go straight to the host's own handlers: the first
begins a graceful stop (``--stop-timeout`` seconds for in-flight steps), a second
cancels the steps still running. The process prints ``READY`` once the host has started,
waits for the host to stop, logs "process exiting" and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

from wfe import WorkflowHost

from .host_proc import (
    CRASHFLOW_STEPS,
    Behaviour,
    InflightCounter,
    chain,
    exit_when_orphaned,
    step_name,
)

log = logging.getLogger("tests.crash.signal_host_proc")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.crash.signal_host_proc")
    parser.add_argument("--db", required=True, help="database URL")
    parser.add_argument("--history", required=True, help="JSON-lines file of step starts/ends")
    parser.add_argument("--lease", type=float, required=True, help="lease in seconds")
    parser.add_argument("--poll", type=float, required=True, help="poll interval in seconds")
    parser.add_argument(
        "--stop-timeout", type=float, required=True, help="seconds in-flight steps get on SIGTERM"
    )
    parser.add_argument(
        "--hold-step", type=int, default=None, help="crashflow step number that blocks forever"
    )
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    behaviour = Behaviour(
        args.history,
        InflightCounter(None, slow_call=args.lease / 3),
        hold_step=step_name(args.hold_step),
        slow_step=None,
        slow_seconds=0.0,
        block_step=None,
        release_file=None,
    )
    host = WorkflowHost.from_url(
        args.db, lease=args.lease, poll_interval=args.poll, log_events=False
    )
    host.subscribe(behaviour.committed)
    host.register(chain("crashflow", CRASHFLOW_STEPS, behaviour.step))
    orphan_watch = asyncio.create_task(exit_when_orphaned(os.getppid()))
    try:
        async with host:
            host.install_signal_handlers(timeout=args.stop_timeout)
            log.info("host %s (pid %d) started on %s", host.host_id, os.getpid(), args.db)
            print("READY", flush=True)
            await host.wait_for_shutdown()
    finally:
        orphan_watch.cancel()
    log.info("process exiting: host %s is %s", host.host_id, host.state)


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
