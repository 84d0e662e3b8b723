"""An idle host for the wake-latency benchmark: one workflow whose only step stamps the
wall-clock time it started into the workflow data. Run by ``benchmarks/wake_latency.py``."""

from __future__ import annotations

import argparse
import asyncio
import signal
import time

from pydantic import BaseModel

from wfe import StepContext, WorkflowBuilder, WorkflowHost


class Stamp(BaseModel):
    started_ns: int = 0


async def stamp(ctx: StepContext[Stamp]) -> None:
    ctx.data.started_ns = time.time_ns()


FLOW = WorkflowBuilder("wake", version=1, data=Stamp).start_with(stamp).build()


async def serve(url: str, poll: float) -> None:
    host = WorkflowHost.from_url(url, poll_interval=poll, log_events=False)
    host.register(FLOW)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with host:
        print("READY", flush=True)
        await stop.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True)
    parser.add_argument("--poll", type=float, required=True)
    args = parser.parse_args()
    asyncio.run(serve(args.db, args.poll))
