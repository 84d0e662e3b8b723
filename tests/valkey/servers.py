"""Valkey/Redis servers for the tests: the session's shared server, and private
``redis-server`` processes that a test may kill, restart and pause.

Nothing here imports redis-py at import time: the root conftest imports this module
for every run, ``--wfe-db=memory`` ones included.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

LOOPBACK = "127.0.0.1"
READY_TIMEOUT = 20.0
"""Seconds a starting server may take to answer PING (it replays its AOF first)."""


def find_server_binary() -> str | None:
    """``$WFE_TEST_VALKEY_SERVER``, else ``valkey-server`` or ``redis-server`` on PATH."""
    return (
        os.environ.get("WFE_TEST_VALKEY_SERVER")
        or shutil.which("valkey-server")
        or shutil.which("redis-server")
    )


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def _pings(port: int) -> bool:
    """Whether a server on ``port`` answers PING (not LOADING, not refusing)."""
    try:
        with socket.create_connection((LOOPBACK, port), timeout=1.0) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class ServerProcess:
    """A private ``redis-server`` (or ``valkey-server``) on a loopback port, its data in
    ``directory`` (append-only file, fsync on every write, no snapshots), so that
    :meth:`kill` then :meth:`start` keeps every acknowledged write."""

    def __init__(self, directory: Path, binary: str) -> None:
        self.directory = directory
        self.binary = binary
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.paused = False

    def url(self, prefix: str = "wfe") -> str:
        return f"redis://{LOOPBACK}:{self.port}/0?prefix={quote(prefix, safe='')}"

    def start(self) -> None:
        """Start (again) on the same port and directory; return once it answers PING."""
        assert self.process is None, "already running"
        self.directory.mkdir(parents=True, exist_ok=True)
        log = self.directory / "server.log"
        # Start and stop from one thread: Popen is not meant to be shared between
        # threads, and tests call these from the event loop's thread only.
        self.process = subprocess.Popen(
            [
                self.binary,
                "--bind", LOOPBACK,
                "--port", str(self.port),
                "--dir", str(self.directory),
                "--appendonly", "yes",
                "--appendfsync", "always",
                "--save", "",
                "--daemonize", "no",
                "--logfile", str(log),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + READY_TIMEOUT
        while not _pings(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.kill()
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                raise RuntimeError(f"{self.binary} did not start on {self.port}:\n{tail}")
            time.sleep(0.02)

    def _signal(self, signum: signal.Signals) -> None:
        assert self.process is not None, "not running"
        self.process.send_signal(signum)

    def stop(self) -> None:
        """Shut down gracefully (SIGTERM) and wait for the process to end."""
        if self.process is not None:
            self.resume()
            self._signal(signal.SIGTERM)
            self.process.wait(timeout=30)
            self.process = None

    def kill(self) -> None:
        """SIGKILL, as a crash: only what is in the append-only file survives."""
        if self.process is not None:
            self._signal(signal.SIGKILL)
            self.process.wait(timeout=30)
            self.process, self.paused = None, False

    def pause(self) -> None:
        """SIGSTOP: connections stay open, nothing is answered until :meth:`resume`."""
        self._signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        if self.paused:
            self._signal(signal.SIGCONT)
            self.paused = False


class SessionValkey:
    """The session's shared Valkey/Redis (``$WFE_TEST_VALKEY_URL``): tests get a key
    prefix of their own and their keys are deleted afterwards; other runs may share the
    server, so only keys under this session's prefixes are ever deleted."""

    def __init__(self, url: str) -> None:
        self.base_url = url
        self.unavailable: str | None = None
        self._checked = False

    async def require(self) -> str:
        """The server's URL; skip the test if it cannot be reached (fail if ``CI``)."""
        if not self._checked:
            self._checked = True
            self.unavailable = await self._probe()
        if self.unavailable is not None:
            if os.environ.get("CI"):
                pytest.fail(f"{self.unavailable} (CI is set: Valkey tests must run)")
            pytest.skip(self.unavailable)
        return self.base_url

    async def _probe(self) -> str | None:
        try:
            from wfe_valkey.connection import ConnectionPolicy, connect
        except ImportError as exc:
            return f"redis-py is not installed ({exc}): pip install -e '.[dev]'"
        client = connect(self.base_url, ConnectionPolicy(connect_timeout=2.0, retries=0))
        try:
            await client.ping()
        except Exception as exc:
            return f"no Valkey/Redis at {self.base_url}: {exc!r}"
        finally:
            await client.aclose()
        return None

    @staticmethod
    def new_prefix() -> str:
        return f"wfe-test-{uuid.uuid4().hex[:12]}"

    def url(self, prefix: str) -> str:
        return f"{self.base_url}{'&' if '?' in self.base_url else '?'}prefix={prefix}"

    async def delete_prefix(self, prefix: str) -> None:
        """Delete every key under ``prefix:``."""
        from wfe_valkey.connection import connect

        client = connect(self.base_url)
        try:
            keys = [key async for key in client.scan_iter(match=f"{prefix}:*", count=500)]
            for start in range(0, len(keys), 500):
                await client.delete(*keys[start : start + 500])
        finally:
            await client.aclose()


VALKEY = SessionValkey(os.environ.get("WFE_TEST_VALKEY_URL", "redis://127.0.0.1:6379/0"))


@contextlib.contextmanager
def server_process(directory: Path) -> Iterator[ServerProcess]:
    """A started private server, always killed at the end."""
    binary = find_server_binary()
    if binary is None:
        reason = "no valkey-server or redis-server on PATH (or $WFE_TEST_VALKEY_SERVER)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (CI is set: Valkey tests must run)")
        pytest.skip(reason)
    server = ServerProcess(directory, binary)
    server.start()
    try:
        yield server
    finally:
        server.kill()
