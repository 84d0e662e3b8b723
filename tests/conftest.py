"""Backend selection for the whole suite: one switch, one registry.

Pick the backends with ``--wfe-db`` (a comma list) or the ``WFE_TEST_DB`` environment
variable; the option wins. The default is ``memory,sqlite,postgres,postgres+valkey``::

    pytest --wfe-db=memory            # only the in-memory providers
    WFE_TEST_DB=sqlite pytest tests/contract

PostgreSQL is found at ``$WFE_TEST_POSTGRES_URL`` (default
``postgresql://postgres@127.0.0.1:5432/postgres``, a role that may create databases).
If it cannot be reached, its tests are skipped with the reason printed at the end of
the run, unless the ``CI`` environment variable is set: then they fail.

``postgres+valkey`` is PostgreSQL with its lock and queue in Valkey/Redis: the test database's
URL carries ``?valkey=<server>&valkey_prefix=<one per test>`` (so the URL option of
``wfe_postgres.open_backend`` is what wires it). The server is ``$WFE_TEST_VALKEY_URL``
(default ``redis://127.0.0.1:6379/0``), skipped or failed like PostgreSQL when absent;
each test's keys are deleted afterwards. It runs only the tests it concerns
(``tests/contract/``, ``tests/valkey/``, and the crash tests of several hosts and of a
killed host, ``tests/crash/test_multi_host.py`` and ``test_kill9.py``: see
``BackendKind.only``); elsewhere it would repeat the PostgreSQL runs.

Every test that uses one of the fixtures below runs once per selected backend (the
test id ends in ``[memory]``, ``[sqlite]``, ...):

``backend_name``
    the registry name of the backend under test (``"memory"``, ``"sqlite"``,
    ``"postgres"``, ``"postgres+valkey"``).
``backend_url``
    where that backend lives for this test: a URL of a fresh database with no
    workflows in it (for SQLite a real WAL file ``wfe.db`` in ``tmp_path``, never
    ``:memory:``, not created yet; for PostgreSQL a database of its own, copied from a
    migrated template, so its schema is already at head) or the string ``"memory"``
    for the in-memory providers (each open of ``"memory"`` is a new, separate store;
    there is nothing to share between processes). Nothing is opened yet: hosts opened
    on it with ``auto_migrate`` create the schema, or find it current.
``backend``
    a migrated, empty :class:`~wfe_core.ports.Backend` opened on ``backend_url``,
    closed after the test.
``sql_backend_name``
    like ``backend_name``, over the selected SQL backends only (``tests/sql``).
``postgres_server``
    the session's :class:`PostgresServer`, for tests that need a database of their own
    (``database(migrated=False)`` gives an empty one); ``require_postgres`` is the same
    for PostgreSQL-only tests, skipped unless ``postgres`` is selected.

To add a backend, add one entry to :data:`BACKENDS`: a name mapped to a
:class:`BackendKind` of two async factories, ``database(tmp_path)`` (an async context
manager that sets up an empty database for one test, yields its URL and drops it
afterwards) and ``open(url) -> Backend`` (not yet migrated), ``sql=True`` if the
``tests/sql`` tests apply to it, and ``only`` to limit it to some test paths. Nothing
else changes:
every test using these fixtures picks it up. PostgreSQL's ``database`` copies a
migrated template database made once per session (``CREATE DATABASE ... TEMPLATE``,
far quicker than migrating each test's database) and drops the copy on exit.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import os
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest

from wfe import WorkflowClient
from wfe_core.ports.backend import Backend
from wfe_core.testing import memory_backend

from .valkey.servers import VALKEY

DEFAULT_BACKENDS = "memory,sqlite,postgres,postgres+valkey"
MEMORY_URL = "memory"


@dataclass(frozen=True)
class BackendKind:
    """How the suite gets a database of one kind for one test."""

    database: Callable[[Path], AbstractAsyncContextManager[str]]
    """An empty database for one test (files under ``tmp_path``): yields its URL."""

    open: Callable[[str], Awaitable[Backend]]
    """Open a backend on a URL ``database`` gave; the caller migrates and closes it."""

    sql: bool = False
    """A SQL database (the ``tests/sql`` tests, parametrized by ``sql_backend_name``,
    run on it too)."""

    only: tuple[str, ...] = ()
    """Test paths, relative to the root directory, that this kind parametrizes (a
    directory ends with ``/``); empty: every test."""

    def applies_to(self, path: str) -> bool:
        """Whether the tests in ``path`` (relative, ``/``-separated) run on this kind."""
        return not self.only or any(
            path.startswith(only) if only.endswith("/") else path == only for only in self.only
        )


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


class PostgresServer:
    """The session's PostgreSQL: a database of its own for each test.

    The first test that needs one makes a migrated template database (once per
    session, named for this process); each test then gets a copy of it (or an empty
    database, for migration tests), dropped when the test ends. Copying and dropping
    cost disk writes, not Python time, so they happen in two background threads: a
    couple of copies are made ahead of the tests that will take them, and drops do not
    hold up the next test. The template and any unused copy are dropped at the end of
    the session. Only databases this session made are ever dropped: other runs may
    share the server.
    """

    AHEAD = 2
    """Template copies kept ready."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.template: str | None = None
        self.unavailable: str | None = None
        self._lock = threading.Lock()
        self._workers: concurrent.futures.ThreadPoolExecutor | None = None
        self._ready: collections.deque[concurrent.futures.Future[str]] = collections.deque()
        self._drops: list[concurrent.futures.Future[None]] = []

    def url(self, database: str) -> str:
        """The URL of ``database`` on this server (the driver-less form users write)."""
        from sqlalchemy.engine import make_url

        return make_url(self.admin_url).set(database=database).render_as_string(False)

    async def _execute(self, *statements: str) -> None:
        import asyncpg

        conn = await asyncpg.connect(self.admin_url, timeout=5)
        try:
            for statement in statements:
                await conn.execute(statement)
        finally:
            await conn.close()

    def _run(self, *statements: str) -> None:
        """Run statements from a worker thread (each with an event loop of its own)."""
        asyncio.run(self._execute(*statements))

    async def _make_template(self, name: str) -> None:
        from wfe_postgres import open_backend

        await self._execute(f'CREATE DATABASE "{name}"')
        backend = open_backend(self.url(name))
        try:
            await backend.persistence.migrate()
        finally:
            await backend.close()
        # Nobody may connect to it any more: a connection would make copies fail.
        await self._execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')

    def _ensure_template(self) -> str:
        """The template's name, made on first use (in a thread: it runs its own loop)."""
        with self._lock:
            if self.template is None and self.unavailable is None:
                name = f"wfe_test_template_{os.getpid()}_{uuid.uuid4().hex[:6]}"
                try:
                    asyncio.run(self._make_template(name))
                    self.template = name
                    self._workers = concurrent.futures.ThreadPoolExecutor(
                        2, thread_name_prefix="wfe-test-pg"
                    )
                except (OSError, ImportError) as exc:
                    self.unavailable = f"no PostgreSQL at {self.admin_url}: {exc!r}"
            if self.template is None:
                reason = self.unavailable or "no template database"
                if os.environ.get("CI"):
                    pytest.fail(f"{reason} (CI is set: PostgreSQL tests must run)")
                pytest.skip(reason)
            return self.template

    def _copy(self, template: str) -> str:
        name = f"wfe_t_{uuid.uuid4().hex[:16]}"
        self._run(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        return name

    def _next_copy(self, template: str) -> concurrent.futures.Future[str]:
        """The oldest copy under way (or a new one), and the queue topped up again."""
        assert self._workers is not None
        with self._lock:
            while len(self._ready) < self.AHEAD + 1:
                self._ready.append(self._workers.submit(self._copy, template))
            return self._ready.popleft()

    @contextlib.asynccontextmanager
    async def database(self, *, migrated: bool = True) -> AsyncIterator[str]:
        """A database of its own for one test (a template copy, or empty): its URL."""
        template = await asyncio.to_thread(self._ensure_template)
        if migrated:
            name = await asyncio.wrap_future(self._next_copy(template))
        else:
            name = f"wfe_t_{uuid.uuid4().hex[:16]}"
            await self._execute(f'CREATE DATABASE "{name}"')
        try:
            yield self.url(name)
        finally:
            # FORCE: connections a test's host processes left behind do not block it.
            self._drop_later(name)

    def _drop_later(self, name: str) -> None:
        assert self._workers is not None
        drop = f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'
        with self._lock:
            self._drops.append(self._workers.submit(self._run, drop))

    def finish(self) -> None:
        """At the end of the session: finish the drops, drop unused copies and the
        template, stop the threads."""
        with self._lock:
            workers, self._workers = self._workers, None
            template, self.template = self.template, None
            ready, drops = list(self._ready), list(self._drops)
            self._ready.clear()
            self._drops.clear()
        if workers is None:
            return
        try:
            for future in drops:
                future.result()
            names = [future.result() for future in ready]
            if template is not None:
                names.append(template)
            for name in names:
                self._run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            workers.shutdown(wait=True)


POSTGRES = PostgresServer(
    os.environ.get("WFE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
)


@pytest.fixture(scope="session")
def postgres_server() -> PostgresServer:
    """The session's PostgreSQL (for tests that need databases of their own)."""
    return POSTGRES


@pytest.fixture
def require_postgres(request: pytest.FixtureRequest) -> PostgresServer:
    """For PostgreSQL-only tests: skip them unless ``postgres`` is a selected backend."""
    if "postgres" not in selected_backends(request.config):
        pytest.skip("postgres is not among the selected backends (--wfe-db)")
    return POSTGRES


@contextlib.asynccontextmanager
async def _postgres_database(tmp_path: Path) -> AsyncIterator[str]:
    async with POSTGRES.database(migrated=True) as url:
        yield url


async def _open_postgres(url: str) -> Backend:
    from wfe_postgres import open_backend  # imported lazily: only postgres runs need asyncpg

    return open_backend(url)


@contextlib.asynccontextmanager
async def _postgres_valkey_database(tmp_path: Path) -> AsyncIterator[str]:
    valkey = await VALKEY.require()
    prefix = VALKEY.new_prefix()
    async with POSTGRES.database(migrated=True) as url:
        try:
            yield f"{url}?valkey={quote(valkey, safe='')}&valkey_prefix={prefix}"
        finally:
            await VALKEY.delete_prefix(prefix)


BACKENDS: dict[str, BackendKind] = {
    "memory": BackendKind(database=_memory_database, open=_open_memory),
    "sqlite": BackendKind(database=_sqlite_database, open=_open_sqlite, sql=True),
    "postgres": BackendKind(database=_postgres_database, open=_open_postgres, sql=True),
    "postgres+valkey": BackendKind(
        database=_postgres_valkey_database,
        open=_open_postgres,  # the URL's valkey= option puts the lock in Valkey
        only=(
            "tests/contract/",
            "tests/valkey/",
            "tests/crash/test_multi_host.py",
            "tests/crash/test_kill9.py",
        ),
    ),
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


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    POSTGRES.finish()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if POSTGRES.unavailable is not None:
        terminalreporter.write_line(
            f"PostgreSQL tests were skipped: {POSTGRES.unavailable}", yellow=True
        )
    if VALKEY.unavailable is not None:
        terminalreporter.write_line(f"Valkey tests were skipped: {VALKEY.unavailable}", yellow=True)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend_name" in metafunc.fixturenames:
        path = metafunc.definition.path.relative_to(metafunc.config.rootpath).as_posix()
        selected = selected_backends(metafunc.config)
        names = [name for name in selected if BACKENDS[name].applies_to(path)]
        if names:
            metafunc.parametrize("backend_name", names, ids=names)
        else:  # say why, rather than pytest's "empty parameter set"
            skipped = [
                pytest.param(
                    name,
                    id=name,
                    marks=pytest.mark.skip(
                        reason=f"{name} runs only in {', '.join(BACKENDS[name].only)}"
                    ),
                )
                for name in selected
            ]
            metafunc.parametrize("backend_name", skipped)
    if "sql_backend_name" in metafunc.fixturenames:
        names = [name for name in selected_backends(metafunc.config) if BACKENDS[name].sql]
        metafunc.parametrize("sql_backend_name", names, ids=names)


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
def db_url(backend_name: str, backend_url: str) -> str:
    """The backend under test's URL for other processes (host processes, ``wfe``
    commands); the in-memory store lives inside one process, so its tests skip."""
    if backend_name == "memory":
        pytest.skip("the in-memory store lives inside one process; other processes cannot share it")
    return backend_url


@pytest.fixture
async def client(db_url: str) -> AsyncIterator[WorkflowClient]:
    """A client on the test's shareable database (it executes nothing), always closed."""
    opened = WorkflowClient.from_url(db_url)
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
async def backend(backend_name: str, backend_url: str) -> AsyncIterator[Backend]:
    """A migrated, empty backend of the kind under test, closed after the test."""
    opened = await _open_migrated(backend_name, backend_url)
    try:
        yield opened
    finally:
        await opened.close()
