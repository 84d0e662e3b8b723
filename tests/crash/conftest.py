"""Fixtures for the crash tests: a shareable database URL, host processes that are
always killed at teardown, and a client that is always closed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .procs import HostProc


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
