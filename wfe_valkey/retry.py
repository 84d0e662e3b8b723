"""Whole operations against Valkey retried when they fail transiently, within a budget.

redis-py re-sends a single command a few times on a broken connection (see
:mod:`wfe_valkey.connection`); this layer is for the failures that outlast that: a
restart that takes seconds, ``LOADING`` while the server reads its data back, ``BUSY``.
Tries are bounded in number and in time, with capped exponential back-off and jitter,
so that a server that stays down ends in a :class:`~wfe_core.errors.ProviderError`
instead of a caller that hangs. Every operation retried here must have the same effect
when it runs twice (its first try may have landed with the reply lost).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential,
    wait_random,
)

from wfe_core.errors import ProviderError
from wfe_core.transient import TransientRetry, before_sleep_log, is_transient
from wfe_valkey.errors import valkey_errors

logger = logging.getLogger(__name__)

T = TypeVar("T")


VALKEY_RETRY = TransientRetry(attempts=6, first_wait=0.1, max_wait=2.0, max_elapsed=15.0)
"""The default budget: a Valkey restart takes seconds, and redis-py has already re-sent
the command a few times before a failure reaches this layer."""


async def run(
    what: str,
    operation: Callable[[], Awaitable[T]],
    policy: TransientRetry,
    *,
    retry_for: float | None = None,
    deadline: float | None = None,
) -> T:
    """Run ``operation`` with its errors translated, again while they are transient.

    Args:
        what: the operation, for messages and logs ("renew lock 'cleanup'").
        operation: sends the commands; safe to run twice.
        policy: the retry budget.
        retry_for: start no new try after this many seconds (at most the policy's
            ``max_elapsed``): for operations that are useless when late.
        deadline: give up after this many seconds even within a try (a paused
            server can hold a reply for a whole socket timeout per re-send).

    Raises:
        ProviderError: the last failure, or a transient one if ``deadline`` passed.
    """
    elapsed = policy.time_budget(retry_for)
    retrying = AsyncRetrying(
        retry=retry_if_exception(is_transient),
        stop=stop_after_attempt(max(policy.attempts, 1)) | stop_after_delay(max(elapsed, 0.0)),
        wait=wait_exponential(multiplier=policy.first_wait, max=policy.max_wait)
        + wait_random(0, policy.first_wait),
        before_sleep=before_sleep_log(logger, "valkey", what),
        reraise=True,
    )

    async def attempt() -> T:
        with valkey_errors(what):
            return await operation()

    if deadline is None:
        return await retrying(attempt)
    try:
        async with asyncio.timeout(deadline):
            return await retrying(attempt)
    except TimeoutError as exc:
        raise ProviderError(
            f"valkey: could not {what}: no answer within {deadline:.2f}s", transient=True
        ) from exc
