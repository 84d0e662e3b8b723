"""What the scale benchmarks share: databases, host subprocesses, waiting, reporting.

The SQL here is read-only counting for verification (the public API has no count), and
creating/dropping whole benchmark databases; the engine itself is driven only through
``wfe``'s public API.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import sqlite3
import sys
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from wfe import WorkflowClient, WorkflowHost, WorkflowStatus

CHUNK = 500
"""Workflows started (or events published) concurrently: bounded, so the client's
connection pool queues them instead of the event loop holding 100,000 coroutines."""


class BenchError(Exception):
    """A lost or failed workflow, a dead host or a timeout: the run is invalid."""


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run(main: Callable[[], Awaitable[dict[str, Any] | None]]) -> None:
    """Run ``main``; print its result as the last stdout line; exit 1 on ``BenchError``
    or when the result lists ``errors``. SIGTERM cancels ``main`` so that its cleanup
    (killing host subprocesses) runs."""

    async def guarded() -> dict[str, Any] | None:
        task = asyncio.current_task()
        assert task is not None

        def on_sigterm() -> None:
            say(f"SIGTERM received (pid {os.getpid()}): cleaning up")
            task.cancel()

        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, on_sigterm)
        return await main()

    try:
        result = asyncio.run(guarded())
    except BenchError as exc:
        say(f"FAILED: {exc}")
        sys.exit(1)
    except KeyboardInterrupt:
        say("FAILED: interrupted (SIGINT)")
        sys.exit(1)
    except asyncio.CancelledError:
        say("FAILED: cancelled")
        traceback.print_exc()  # where, in case no signal explains it
        sys.exit(1)
    if result is not None:
        print(json.dumps(result), flush=True)
        if result.get("errors"):
            say("FAILED: " + "; ".join(result["errors"]))
            sys.exit(1)


# -- databases ---------------------------------------------------------------------------


def backend_of(url: str) -> str:
    scheme = url.split("://", 1)[0].split("+", 1)[0].lower()
    if scheme in ("postgresql", "postgres"):
        return "postgres"
    if scheme == "sqlite":
        return "sqlite"
    raise BenchError(f"unsupported database URL {url!r}: use postgresql://… or sqlite:///…")


def _sqlite_path(url: str) -> Path:
    return Path(url.split(":///", 1)[1].split("?", 1)[0])


def _pg_dsn(url: str, database: str | None = None) -> tuple[str, str]:
    """(an asyncpg DSN, the database name); wfe's query options are not asyncpg's."""
    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    return urlunsplit(("postgresql", parts.netloc, f"/{database or name}", "", "")), name


def derived_url(base: str, suffix: str) -> str:
    """``base`` with ``suffix`` appended to its database name (or SQLite file stem)."""
    if backend_of(base) == "sqlite":
        path = _sqlite_path(base)
        return f"sqlite:///{path.with_name(path.stem + suffix + path.suffix)}"
    parts = urlsplit(base)
    return urlunsplit(parts._replace(path=parts.path.rstrip("/") + suffix))


async def fresh_database(url: str) -> None:
    """Drop and recreate the database at ``url`` (a benchmark's own, derived name)."""
    await drop_database(url)
    if backend_of(url) == "postgres":
        await _pg_admin(url, "CREATE DATABASE {}")


async def drop_database(url: str) -> None:
    if backend_of(url) == "sqlite":
        _unlink_sqlite(_sqlite_path(url))
        return
    await _pg_admin(url, "DROP DATABASE IF EXISTS {} WITH (FORCE)")


def _unlink_sqlite(path: Path) -> None:
    for extra in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{extra}").unlink(missing_ok=True)


async def _pg_admin(url: str, statement: str) -> None:
    import asyncpg

    dsn, name = _pg_dsn(url, "postgres")[0], _pg_dsn(url)[1]
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise BenchError(f"refusing to create or drop a database named {name!r}")
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(statement.format(f'"{name}"'))
    finally:
        await conn.close()


async def sql_rows(url: str, query: str) -> list[tuple[Any, ...]]:
    """Rows of a read-only query (verification only: the API has no count)."""
    if backend_of(url) == "sqlite":

        def read() -> list[tuple[Any, ...]]:
            conn = sqlite3.connect(f"file:{_sqlite_path(url)}?mode=ro", uri=True, timeout=30)
            try:
                return list(conn.execute(query))
            finally:
                conn.close()

        return await asyncio.to_thread(read)
    import asyncpg

    conn = await asyncpg.connect(_pg_dsn(url)[0])
    try:
        return [tuple(r) for r in await conn.fetch(query)]
    finally:
        await conn.close()


async def status_counts(url: str) -> dict[str, int]:
    rows = await sql_rows(url, "SELECT status, count(*) FROM wfe_workflows GROUP BY status")
    return {str(status): int(n) for status, n in rows}


async def verify_all_complete(url: str, client: WorkflowClient, n: int) -> None:
    """Every one of the ``n`` workflows is COMPLETE, and there are no others."""
    left = await client.list_workflows(status=WorkflowStatus.RUNNABLE, limit=1)
    if left:
        raise BenchError(f"workflow {left[0].id} is still RUNNABLE")
    counts = await status_counts(url)
    if counts.get("COMPLETE", 0) != n or sum(counts.values()) != n:
        raise BenchError(f"expected {n} COMPLETE workflows, found {counts}")


async def start_many(client: WorkflowClient, definition_id: str, items: Iterable[Any]) -> list[str]:
    """Start one workflow per item, :data:`CHUNK` at a time; returns the ids."""
    items, ids, last = list(items), [], time.monotonic()
    for at in range(0, len(items), CHUNK):
        chunk = items[at : at + CHUNK]
        ids += await asyncio.gather(*(client.start_workflow(definition_id, d) for d in chunk))
        if time.monotonic() - last > 5:
            say(f"  started {len(ids)}/{len(items)}")
            last = time.monotonic()
    return ids


# -- host subprocesses -------------------------------------------------------------------


def emit(message: dict[str, Any]) -> None:
    """A line for the parent (host side)."""
    print(json.dumps(message), flush=True)


async def serve(host: WorkflowHost, progress: Callable[[], dict[str, Any]]) -> None:
    """Host side: start, report READY and then ``progress()`` twice a second on stdout
    until SIGTERM (or the parent dies), then stop gracefully."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    parent = os.getppid()
    await host.start()
    emit({"ready": True, "pid": os.getpid(), "host_id": host.host_id})
    try:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)
            emit({"progress": progress()})
            if os.getppid() != parent:
                break  # the parent died without cleaning up: do not linger
    finally:
        await host.stop()


class HostProcess:
    """Parent side: one ``--serve`` subprocess and the last progress it reported."""

    def __init__(self, module: str, args: list[str]) -> None:
        self.module, self.args = module, args
        self.progress: dict[str, Any] = {}
        self.pid = 0
        self._proc: asyncio.subprocess.Process | None = None
        self._ready = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", self.module, "--serve", *self.args, stdout=asyncio.subprocess.PIPE
        )
        self.pid = self._proc.pid
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        async for line in self._proc.stdout:
            with contextlib.suppress(ValueError):
                message = json.loads(line)
                if message.get("ready"):
                    self._ready.set()
                elif "progress" in message:
                    self.progress = message["progress"]

    @property
    def exited(self) -> bool:
        return self._proc is None or self._proc.returncode is not None

    async def wait_ready(self, timeout: float) -> None:
        assert self._proc is not None
        waiter = asyncio.create_task(self._ready.wait())
        died = asyncio.create_task(self._proc.wait())
        await asyncio.wait([waiter, died], timeout=timeout, return_when="FIRST_COMPLETED")
        waiter.cancel()
        died.cancel()
        if not self._ready.is_set():
            raise BenchError(f"host process {self.pid} did not start within {timeout:g}s")

    async def stop(self, timeout: float = 60.0) -> None:
        """SIGTERM (a graceful host stop); SIGKILL and fail if it takes too long."""
        if self._proc is None or self._proc.returncode is not None:
            return
        self._proc.terminate()
        try:
            await asyncio.wait_for(self._proc.wait(), timeout)
        except TimeoutError:
            self.kill()
            raise BenchError(f"host process {self.pid} did not stop within {timeout:g}s") from None
        if self._reader is not None:
            await self._reader
        if self._proc.returncode != 0:
            raise BenchError(f"host process {self.pid} exited with {self._proc.returncode}")

    def kill(self) -> None:
        if self._proc is not None and self._proc.returncode is None:
            self._proc.kill()

    async def reap(self) -> None:
        if self._proc is not None:
            self.kill()
            await self._proc.wait()


@contextlib.asynccontextmanager
async def host_processes(hosts: Sequence[HostProcess]) -> AsyncIterator[Sequence[HostProcess]]:
    """Kill whichever of ``hosts`` still runs when the block exits, however it exits."""
    try:
        yield hosts
    finally:
        for host in hosts:
            await asyncio.shield(host.reap())


async def wait_until(
    done: Callable[[], bool],
    timeout: float,
    what: str,
    status: Callable[[], str],
    hosts: Sequence[HostProcess] = (),
) -> float:
    """Wait (checking 20 times a second) until ``done()``; returns the monotonic time it
    was seen. Fails on timeout, on ``failed`` progress or when a host process dies."""
    deadline, last = time.monotonic() + timeout, time.monotonic()
    while not done():
        now = time.monotonic()
        dead = [h.pid for h in hosts if h.exited]
        if dead:
            raise BenchError(f"host process {dead} died while waiting for {what}: {status()}")
        if any(h.progress.get("failed") for h in hosts):
            raise BenchError(f"workflows FAILED while waiting for {what}: {status()}")
        if now > deadline:
            raise BenchError(f"timed out after {timeout:g}s waiting for {what}: {status()}")
        if now - last >= 5:
            say(f"  {what}: {status()}")
            last = now
        await asyncio.sleep(0.05)
    return time.monotonic()


def memory_of(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of ``pid`` in MB."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    rss, hwm = (int(fields[name].split()[0]) / 1024 for name in ("VmRSS", "VmHWM"))
    return rss, hwm
