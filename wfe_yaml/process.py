"""Run a step's child process in its own process group, with bounded capture.

Every process a YAML step starts runs in a new session (``start_new_session``), so the
whole group (the shell and whatever it started in the background) can be killed with
one ``killpg``: on timeout or cancellation, and once the main process has exited, so no
orphan keeps running or holds the output pipes open.

A session of its own also means the step would outlive its host: a SIGKILL of the host
(or of the host's process group) does not reach it, and the run resumed elsewhere would
race the orphan. So the step runs under a tiny ``bash`` watcher that holds the read end
of a pipe whose only writer is the host; when the host dies, however it dies, the
kernel closes the pipe, the watcher's ``read`` returns, and it kills the step's whole
process group.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

OUTPUT_LIMIT = 64 * 1024
"""Bytes of stdout and of stderr kept per step (the tail: errors come last)."""

DRAIN_AFTER_EXIT = 2.0
"""Seconds to finish reading the pipes after the main process exited and its group was
killed; a grandchild that left the group and kept the pipe open is not waited for."""

_WATCHER = """\
fd=$1; shift
( read -r -u "$fd" _; kill -KILL 0 ) &
watcher=$!
"$@"
code=$?
kill "$watcher" 2>/dev/null
exit "$code"
"""
"""Runs the step (its arguments) and, beside it, waits for end-of-file on the host's
pipe: the host died, so kill the whole group. Killed with the step's group otherwise."""

_WATCHER_SHELL = shutil.which("bash") or "/bin/bash"  # dash cannot read fds above 9

LineFilter = Callable[[str], bool]
"""Sees each complete stdout line (without its newline); returns True to keep it out of
the captured stdout (a control line such as an output marker)."""


@dataclass(frozen=True)
class ProcessResult:
    """What a finished step process left: exit code, captured text, outputs."""

    exit_code: int
    stdout: str
    stderr: str
    outputs: dict[str, Any] = field(default_factory=dict)
    stdout_truncated: bool = False
    stderr_truncated: bool = False

    def tail(self, chars: int = 2000) -> str:
        """The end of stderr (or stdout when stderr is empty), for error messages."""
        text = self.stderr.strip() or self.stdout.strip()
        return text if len(text) <= chars else "…" + text[-chars:]


class _Tail:
    """The last ``limit`` bytes of a stream."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.buffer = bytearray()
        self.truncated = False

    def add(self, chunk: bytes) -> None:
        self.buffer += chunk
        if len(self.buffer) > self.limit:
            del self.buffer[: len(self.buffer) - self.limit]
            self.truncated = True

    def text(self) -> str:
        return self.buffer.decode("utf-8", errors="replace")


async def _read_stderr(stream: asyncio.StreamReader, sink: _Tail) -> None:
    while chunk := await stream.read(65536):
        sink.add(chunk)


async def _read_stdout(
    stream: asyncio.StreamReader, sink: _Tail, line_filter: LineFilter | None
) -> None:
    pending = b""
    while chunk := await stream.read(65536):
        if line_filter is None:
            sink.add(chunk)
            continue
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            if not line_filter(line.decode("utf-8", errors="replace")):
                sink.add(line + b"\n")
        if len(pending) > sink.limit:  # a huge line without a newline: keep its tail only
            sink.add(pending)
            pending = b""
    if pending and (
        line_filter is None or not line_filter(pending.decode("utf-8", errors="replace"))
    ):
        sink.add(pending)


async def _write_stdin(stream: asyncio.StreamWriter, data: bytes) -> None:
    # Written alongside the readers: a program larger than the pipe buffer would
    # otherwise deadlock against a child blocked on writing its own output.
    try:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            stream.write(data)
            await stream.drain()
    finally:
        stream.close()  # end of input: the child stops waiting for more


def kill_group(pid: int) -> None:
    """SIGKILL the process group led by ``pid``; quiet if it is already gone."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


class _ExitProtocol(asyncio.subprocess.SubprocessStreamProtocol):
    """Tells when the process exits, before its pipes close.

    ``Process.wait()`` on Python 3.11 returns only once stdout and stderr are closed,
    and a background child the step left running keeps them open: waiting for it would
    hang the step until that child ends, and the group would never be killed.
    """

    def __init__(self, exited: asyncio.Future[None], loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(limit=2**16, loop=loop)
        self.exited = exited

    def process_exited(self) -> None:
        super().process_exited()
        if not self.exited.done():
            self.exited.set_result(None)


async def _spawn(
    argv: Sequence[str], *, env: Mapping[str, str], cwd: str | None, stdin: bool
) -> tuple[asyncio.subprocess.Process, asyncio.Future[None]]:
    """Start ``argv`` in a new session; the future resolves when it exits."""
    loop = asyncio.get_running_loop()
    exited: asyncio.Future[None] = loop.create_future()
    lifeline, keep = os.pipe()  # the host holds ``keep`` until the step has exited
    try:
        transport, protocol = await loop.subprocess_exec(
            lambda: _ExitProtocol(exited, loop),
            _WATCHER_SHELL,
            "-c",
            _WATCHER,
            "wfe-step",
            str(lifeline),
            *argv,
            stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=dict(env),
            cwd=cwd,
            start_new_session=True,
            pass_fds=(lifeline,),
        )
    except BaseException:
        os.close(keep)
        raise
    finally:
        os.close(lifeline)
    exited.add_done_callback(lambda _: os.close(keep))
    return asyncio.subprocess.Process(transport, protocol, loop), exited


async def run_process(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: str | None = None,
    line_filter: LineFilter | None = None,
    outputs: dict[str, Any] | None = None,
    limit: int = OUTPUT_LIMIT,
    stdin_data: bytes | None = None,
) -> ProcessResult:
    """Run ``argv`` to its end in a new process group and capture its output.

    Cancellation (the step's timeout, a shutdown, a terminate) kills the whole group
    with SIGKILL before it propagates. ``outputs`` is the dict the ``line_filter``
    fills; it is returned in the result. ``stdin_data``, when given, is written to the
    process's stdin, which is then closed; otherwise stdin is ``/dev/null``.
    """
    process, exited = await _spawn(argv, env=env, cwd=cwd, stdin=stdin_data is not None)
    out, err = _Tail(limit), _Tail(limit)
    assert process.stdout is not None and process.stderr is not None
    pipes = [_read_stdout(process.stdout, out, line_filter), _read_stderr(process.stderr, err)]
    if stdin_data is not None:
        assert process.stdin is not None
        pipes.append(_write_stdin(process.stdin, stdin_data))
    readers = asyncio.gather(*pipes)
    try:
        await exited
        exit_code = process.returncode
        assert exit_code is not None
    except BaseException:
        kill_group(process.pid)
        readers.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(process.wait(), DRAIN_AFTER_EXIT)
        with contextlib.suppress(BaseException):
            await readers
        raise
    kill_group(process.pid)  # background children the step left behind
    try:
        await asyncio.wait_for(asyncio.shield(readers), DRAIN_AFTER_EXIT)
    except TimeoutError:
        readers.cancel()
        with contextlib.suppress(BaseException):
            await readers
    return ProcessResult(
        exit_code=exit_code,
        stdout=out.text(),
        stderr=err.text(),
        outputs=dict(outputs or {}),
        stdout_truncated=out.truncated,
        stderr_truncated=err.truncated,
    )
