"""Helpers for tests that run wfe hosts as real processes and send them real signals.

* :class:`HostProc`: ``python -m tests.crash.host_proc ...`` in its own session (its
  own process group, so ``os.killpg`` reaches it and anything it spawned), started
  and awaited until it prints ``READY``; stderr goes to a log file.
* :func:`kill9`, :func:`pause`, :func:`resume`, :func:`pause_quiescent`: the faults.
* :func:`read_history`: the JSON lines the hosts' steps wrote.
* :func:`wait_until`: poll a condition with a deadline (correctness waits, never
  timing assertions).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import os
import select
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from .host_proc import INFLIGHT_FORMAT

REPO_ROOT = Path(__file__).resolve().parents[2]
"""The working directory of host processes: ``tests`` must be importable from it."""

READY_TIMEOUT = 30.0


class HostProc:
    """One host process. Create with :meth:`start`; :meth:`cleanup` always kills it."""

    def __init__(self, name: str, args: Sequence[str], log_path: Path) -> None:
        self.name = name
        self.args = list(args)
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None, f"{self.name} was never started"
        return self.proc.pid

    @classmethod
    async def start(
        cls,
        name: str,
        *,
        db: str,
        history: Path,
        lease: float,
        poll: float,
        log_dir: Path,
        extra: Sequence[str] = (),
        registry: list[HostProc] | None = None,
    ) -> HostProc:
        """Spawn a host and wait for its ``READY``; ``registry`` (the test's cleanup
        list) gets it before anything can fail, so it is killed whatever happens."""
        args = [
            sys.executable,
            "-m",
            "tests.crash.host_proc",
            "--db",
            db,
            "--history",
            str(history),
            "--lease",
            str(lease),
            "--poll",
            str(poll),
            *extra,
        ]
        host = cls(name, args, log_dir / f"{name}.stderr.log")
        if registry is not None:
            registry.append(host)
        host._spawn()
        await host._await_ready(READY_TIMEOUT)
        return host

    def _spawn(self) -> None:
        with open(self.log_path, "wb") as stderr:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                self.args,
                cwd=REPO_ROOT,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=stderr,
                start_new_session=True,
            )

    async def _await_ready(self, timeout: float) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        seen = b""
        deadline = time.monotonic() + timeout
        while b"READY\n" not in seen:
            readable, _, _ = select.select([fd], [], [], 0)
            if readable:
                chunk = os.read(fd, 4096)
                if not chunk:
                    raise AssertionError(
                        f"{self.name} exited before READY (rc={self.proc.wait()}):\n{self.stderr()}"
                    )
                seen += chunk
                continue
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} not READY after {timeout:g}s:\n{self.stderr()}")
            await asyncio.sleep(0.02)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stderr(self) -> str:
        """Everything the host logged so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def signal_group(self, signum: int) -> None:
        """Send ``signum`` to the host's process group (no-op once it is reaped)."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signum)

    async def wait_exit(self, timeout: float) -> int:
        """The exit code, once the process has exited within ``timeout`` seconds."""
        assert self.proc is not None
        proc = self.proc
        await wait_until(
            lambda: proc.poll() is not None,
            timeout,
            f"{self.name} still running after {timeout:g}s",
        )
        return proc.returncode

    def cleanup(self) -> None:
        """Kill the whole process group if still running, reap it, close the pipe."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def host_starter(
    db: str, history: Path, log_dir: Path, registry: list[HostProc], *, lease: float, poll: float
) -> Callable[..., Awaitable[HostProc]]:
    """``await start(name, *extra_args)``: a host on the test's database, history file
    and cleanup list, with the given lease and poll interval."""

    async def start(name: str, *extra: str) -> HostProc:
        return await HostProc.start(
            name,
            db=db,
            history=history,
            lease=lease,
            poll=poll,
            log_dir=log_dir,
            registry=registry,
            extra=list(extra),
        )

    return start


def kill9(host: HostProc) -> None:
    """SIGKILL the host's process group and reap it."""
    assert host.proc is not None
    os.killpg(host.pid, signal.SIGKILL)
    host.proc.wait()


def process_state(pid: int) -> str:
    """The state letter from ``/proc/PID/stat`` (``T`` = stopped); ``""`` if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return ""
    return stat.rsplit(")", 1)[1].split()[0]  # the name in parentheses may hold spaces


async def pause(host: HostProc) -> None:
    """SIGSTOP the host's process group and wait until the kernel reports it stopped."""
    os.killpg(host.pid, signal.SIGSTOP)
    await wait_until(
        lambda: process_state(host.pid) in ("T", "t", ""), 5.0, f"{host.name} did not stop"
    )
    assert process_state(host.pid), f"{host.name} died instead of stopping:\n{host.stderr()}"


async def resume(host: HostProc) -> None:
    """SIGCONT the host's process group and wait until it runs again."""
    os.killpg(host.pid, signal.SIGCONT)
    await wait_until(
        lambda: process_state(host.pid) not in ("T", "t"), 5.0, f"{host.name} did not continue"
    )


def read_inflight(path: Path) -> int:
    """The number of backend calls in progress in a host started with ``--inflight``."""
    (value,) = struct.unpack(INFLIGHT_FORMAT, path.read_bytes()[: struct.calcsize(INFLIGHT_FORMAT)])
    return int(value)


async def pause_quiescent(host: HostProc, inflight: Path, attempts: int = 200) -> None:
    """Pause the host at a moment when it has no backend call in progress.

    A process frozen inside a database transaction keeps its locks (SQLite's write
    lock, Postgres row locks) and blocks every other host until it is continued, which
    is not the fault under test. So: stop it, look at its in-flight counter, and if a
    call was in progress let it run a moment and try again.
    """
    for _ in range(attempts):
        await pause(host)
        if read_inflight(inflight) == 0:
            return
        await resume(host)
        await asyncio.sleep(0.005)
    raise AssertionError(f"{host.name} never paused outside a backend call in {attempts} attempts")


def read_history(path: Path) -> list[dict[str, Any]]:
    """Every record the hosts' step bodies wrote, in file order."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.splitlines() if line.strip()]


async def wait_until(
    predicate: Callable[[], bool | Awaitable[bool]],
    timeout: float,
    message: str | Callable[[], str] = "condition",
    interval: float = 0.02,
) -> None:
    """Poll ``predicate`` (sync or async) until true; ``AssertionError`` after ``timeout``.

    ``message`` may be a function, called only on failure (to show what a process had
    printed by then)."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            what = message if isinstance(message, str) else message()
            raise AssertionError(f"timed out after {timeout:g}s waiting for: {what}")
        await asyncio.sleep(interval)
