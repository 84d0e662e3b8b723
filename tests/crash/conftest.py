"""Fixtures for the crash tests: a shareable database URL, host processes that are
always killed at teardown, and a client that is always closed."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from wfe import WorkflowClient

from .procs import HostProc


@pytest.fixture
def db_url(backend_name: str, backend_url: str) -> str:
    """The backend under test's URL; in-memory stores cannot be shared by processes."""
    if backend_name == "memory":
        pytest.skip("the in-memory store lives inside one process; host processes cannot share it")
    return backend_url


@pytest.fixture
def history(tmp_path: Path) -> Path:
    """The JSON-lines file every host's step bodies append to."""
    return tmp_path / "history.jsonl"


@pytest.fixture
def host_procs() -> Iterator[list[HostProc]]:
    """The test's host processes; each is killed (SIGKILL to its group) and reaped at
    teardown, whether the test passed or not."""
    procs: list[HostProc] = []
    yield procs
    for proc in procs:
        proc.cleanup()


@pytest.fixture
async def client(db_url: str) -> AsyncIterator[WorkflowClient]:
    """A client on the test's database (it executes nothing)."""
    opened = WorkflowClient.from_url(db_url)
    try:
        yield opened
    finally:
        await opened.close()
