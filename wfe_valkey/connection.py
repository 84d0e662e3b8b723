"""The redis-py client wfe talks to Valkey/Redis with, set up to ride out a server
restart or a short pause.

Each command that fails on a broken connection or a timeout is sent again by redis-py
itself on a fresh connection, a few times with exponential back-off and jitter, so a
restart costs the callers a short wait instead of an error. The budget is kept small on
purpose: the providers retry whole operations above it (:mod:`wfe_valkey.retry`) with a
budget sized for each operation, e.g. a lease renewal that is useless once late.
Re-sending is safe for every command wfe sends: each script is written to have the same
effect when run twice (see :mod:`wfe_valkey.lock`).

Idle pooled connections are pinged before use once ``health_check_interval`` has
passed, so a connection the server (or a firewall) dropped meanwhile is replaced before
a command is lost on it.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import EqualJitterBackoff
from redis.exceptions import ConnectionError, TimeoutError

from wfe_valkey.url import ValkeyUrl, parse_url


@dataclass(frozen=True)
class ConnectionPolicy:
    """Timeouts and command-level retries of one client."""

    connect_timeout: float = 5.0
    """Seconds to open a connection (a server that is down fails at once anyway)."""

    read_timeout: float = 10.0
    """Seconds to wait for a reply. Every wfe command answers at once; this only bounds
    how long a paused server holds a caller before the command is retried."""

    retries: int = 3
    """Times a command is sent again after a connection error or a timeout."""

    backoff_base: float = 0.05
    """Seconds before the first re-send; doubled for each later one, with jitter..."""

    backoff_cap: float = 1.0
    """...up to this many seconds."""

    health_check_interval: int = 15
    """An idle connection is pinged before use after this many seconds."""


def connect(url: str | ValkeyUrl, policy: ConnectionPolicy | None = None) -> Redis:
    """A client for ``url`` (nothing connects until the first command).

    Replies are bytes (``decode_responses`` is off): keys and values wfe writes are
    ASCII or UTF-8 and the providers decode what they read.

    Raises:
        ValueError: the URL is malformed (see :func:`wfe_valkey.url.parse_url`).
    """
    where = parse_url(url) if isinstance(url, str) else url
    policy = policy or ConnectionPolicy()
    retry = Retry(
        EqualJitterBackoff(cap=policy.backoff_cap, base=policy.backoff_base), policy.retries
    )
    return Redis(
        host=where.host,
        port=where.port,
        unix_socket_path=where.path,  # when set, host and port are unused
        ssl=where.tls,
        db=where.db,
        username=where.username,
        password=where.password,
        socket_timeout=policy.read_timeout,
        socket_connect_timeout=policy.connect_timeout,
        retry=retry,
        retry_on_error=[ConnectionError, TimeoutError],
        health_check_interval=policy.health_check_interval,
        client_name="wfe",
    )
