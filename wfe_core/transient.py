"""The budget every provider retries transient failures within, and how retries are
logged: bounded in tries and in time, with capped exponential back-off plus jitter, so
that a store that stays down ends in a :class:`~wfe_core.errors.ProviderError` instead of
a caller that hangs. (Not to be confused with :class:`wfe_core.retry.RetryPolicy`, which
is how a failing *step* is retried.)"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from tenacity import RetryCallState

from wfe_core.errors import ProviderError


@dataclass(frozen=True)
class TransientRetry:
    """How transient failures of one provider operation are retried."""

    attempts: int = 8
    """Tries in all, the first included."""

    first_wait: float = 0.05
    """Seconds before the second try; doubled for each later one..."""

    max_wait: float = 2.0
    """...up to this cap (plus a random jitter of up to ``first_wait``)."""

    max_elapsed: float = 20.0
    """No new try starts this many seconds after the first one started."""

    def time_budget(self, retry_for: float | None = None) -> float:
        """Seconds after the first try in which a new one may start: ``max_elapsed``,
        or less for an operation that is useless when late (``retry_for``)."""
        return self.max_elapsed if retry_for is None else min(retry_for, self.max_elapsed)


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` is a provider failure that running the operation again may cure."""
    return isinstance(exc, ProviderError) and exc.transient


def log_retry(
    logger: logging.Logger,
    provider: str,
    what: str,
    tries: int,
    delay: float,
    error: BaseException | None,
) -> None:
    """Log that ``what`` failed on try ``tries`` and runs again in ``delay`` seconds:
    after the first try at DEBUG (a blip), after later ones at WARNING."""
    logger.log(
        logging.DEBUG if tries == 1 else logging.WARNING,
        "%s: could not %s (try %d), retrying in %.2fs: %s",
        provider,
        what,
        tries,
        delay,
        error,
    )


def before_sleep_log(
    logger: logging.Logger, provider: str, what: str, *, tries_before: int = 0
) -> Callable[[RetryCallState], None]:
    """:func:`log_retry` as tenacity's ``before_sleep``; ``tries_before`` counts tries
    made before tenacity took over (its own count starts at one)."""

    def before_sleep(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        delay = state.next_action.sleep if state.next_action is not None else 0.0
        log_retry(logger, provider, what, state.attempt_number + tries_before, delay, error)

    return before_sleep
