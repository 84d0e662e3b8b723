"""Backend selection for the whole suite: one switch, one registry.

Pick the backends with ``--wfe-db`` (a comma list) or the ``WFE_TEST_DB`` environment
variable; the option wins. The default is ``memory,sqlite``::

    pytest --wfe-db=memory            # only the in-memory providers
    WFE_TEST_DB=sqlite pytest tests/contract

Every test that uses one of the fixtures below runs once per selected backend (the
test id ends in ``[memory]``, ``[sqlite]``, ...):

``backend_name``
    the registry name of the backend under test (``"memory"``, ``"sqlite"``).
``backend_url``
    where that backend lives for this test: a URL of a fresh, empty database (for
    SQLite a real WAL file ``wfe.db`` in ``tmp_path``, never ``:memory:``) or the
    string ``"memory"`` for the in-memory providers (each open of ``"memory"`` is a
    new, separate store; there is nothing to share between processes). Nothing is
    migrated or opened yet: hosts opened on it with ``auto_migrate`` create the schema.
``backend``
    a migrated, empty :class:`~wfe_core.ports.Backend` opened on ``backend_url``,
    closed after the test.

To add a backend, add one entry to :data:`BACKENDS`: a name mapped to a
:class:`BackendKind` of two async factories, ``database(tmp_path)`` (an async context
manager that sets up an empty database for one test, yields its URL and drops it
afterwards) and ``open(url) -> Backend`` (not yet migrated). Nothing else changes:
every test using these fixtures picks it up. For PostgreSQL, ``database`` would copy
a migrated template database (``CREATE DATABASE ... TEMPLATE``) and drop it on exit.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path

import pytest

from wfe_core.ports.backend import Backend
from wfe_core.testing import memory_backend

DEFAULT_BACKENDS = "memory,sqlite"
MEMORY_URL = "memory"


@dataclass(frozen=True)
class BackendKind:
    """How the suite gets a database of one kind for one test."""

    database: Callable[[Path], AbstractAsyncContextManager[str]]
    """An empty database for one test (files under ``tmp_path``): yields its URL."""

    open: Callable[[str], Awaitable[Backend]]
    """Open a backend on a URL ``database`` gave; the caller migrates and closes it."""


@contextlib.asynccontextmanager
async def _memory_database(tmp_path: Path) -> AsyncIterator[str]:
    yield MEMORY_URL


async def _open_memory(url: str) -> Backend:
    # Each open is a fresh store, as each ":memory:" SQLite connection would be.
    return memory_backend()


@contextlib.asynccontextmanager
async def _sqlite_database(tmp_path: Path) -> AsyncIterator[str]:
    # A real file (WAL needs one): ":memory:" would hide locking between connections.
    yield f"sqlite+aiosqlite:///{tmp_path}/wfe.db"


async def _open_sqlite(url: str) -> Backend:
    from wfe_sqlite import open_backend  # imported lazily: --wfe-db=memory needs no SQL

    return open_backend(url)


BACKENDS: dict[str, BackendKind] = {
    "memory": BackendKind(database=_memory_database, open=_open_memory),
    "sqlite": BackendKind(database=_sqlite_database, open=_open_sqlite),
}
"""Every backend the suite knows, by the name ``--wfe-db`` selects it with."""


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--wfe-db",
        default=None,
        help=(
            "comma list of backends to test against, of "
            f"{', '.join(BACKENDS)} (default: $WFE_TEST_DB or {DEFAULT_BACKENDS})"
        ),
    )


def selected_backends(config: pytest.Config) -> list[str]:
    """The backend names chosen by ``--wfe-db`` / ``WFE_TEST_DB``, validated."""
    raw = config.getoption("--wfe-db") or os.environ.get("WFE_TEST_DB") or DEFAULT_BACKENDS
    names = [name.strip() for name in raw.split(",") if name.strip()]
    unknown = [name for name in names if name not in BACKENDS]
    if unknown or not names:
        raise pytest.UsageError(
            f"--wfe-db={raw!r}: unknown backend(s) {unknown}; known: {', '.join(BACKENDS)}"
        )
    return list(dict.fromkeys(names))


def pytest_configure(config: pytest.Config) -> None:
    selected_backends(config)  # a typo fails the run at once, not per test


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend_name" in metafunc.fixturenames:
        names = selected_backends(metafunc.config)
        metafunc.parametrize("backend_name", names, ids=names)


async def _open_migrated(name: str, url: str) -> Backend:
    backend = await BACKENDS[name].open(url)
    try:
        await backend.persistence.migrate()
    except BaseException:
        await backend.close()
        raise
    return backend


@pytest.fixture
async def backend_url(backend_name: str, tmp_path: Path) -> AsyncIterator[str]:
    """An empty database of the backend under test: a URL, or ``"memory"``."""
    async with BACKENDS[backend_name].database(tmp_path) as url:
        yield url


@pytest.fixture
async def backend(backend_name: str, backend_url: str) -> AsyncIterator[Backend]:
    """A migrated, empty backend of the kind under test, closed after the test."""
    opened = await _open_migrated(backend_name, backend_url)
    try:
        yield opened
    finally:
        await opened.close()
