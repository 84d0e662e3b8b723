"""Fixtures for the Valkey/Redis tests.

``valkey_url``
    the session's server (``$WFE_TEST_VALKEY_URL``, default
    ``redis://127.0.0.1:6379/0``) with a key prefix of the test's own
    (``...?prefix=wfe-test-<hex>``); every key under it is deleted after the test. If
    the server cannot be reached the test is skipped, with the reason printed at the
    end of the run, unless ``CI`` is set: then it fails.
``pg_url``
    a migrated PostgreSQL database of the test's own (skipped unless a PostgreSQL
    backend is selected), for tests that combine it with Valkey themselves.
``valkey_server``
    a private ``redis-server`` process on a free loopback port, its data in
    ``tmp_path`` (append-only file, fsync always), which the test may ``kill()``,
    ``stop()``, ``start()`` again (same port, same data), ``pause()`` and ``resume()``;
    ``url(prefix)`` gives its URL. Always killed after the test. Skipped (failed in CI)
    when no server binary is found.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from ..conftest import POSTGRES, selected_backends
from .servers import VALKEY, ServerProcess, server_process


@pytest.fixture
async def valkey_url() -> AsyncIterator[str]:
    """The session server's URL with a fresh key prefix, cleaned up afterwards."""
    await VALKEY.require()
    prefix = VALKEY.new_prefix()
    try:
        yield VALKEY.url(prefix)
    finally:
        await VALKEY.delete_prefix(prefix)


@pytest.fixture
def valkey_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A private server process this test may kill, restart and pause."""
    with server_process(tmp_path / "valkey") as server:
        yield server


@pytest.fixture
async def pg_url(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """A migrated PostgreSQL database of its own, when a PostgreSQL backend is selected."""
    if not {"postgres", "postgres+valkey"} & set(selected_backends(request.config)):
        pytest.skip("no PostgreSQL backend among the selected backends (--wfe-db)")
    async with POSTGRES.database(migrated=True) as url:
        yield url
