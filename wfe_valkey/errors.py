"""The one seam where redis-py errors become :class:`wfe_core.errors.ProviderError`.

Callers of the Valkey providers never see a redis-py exception. Each error keeps its
cause (``raise ... from``) and is marked transient when running the operation again
later can succeed: the connection broke or timed out (a restart, a pause, a network
blip; redis-py already re-sent the command a few times), or the server answered with
an error code that means "not now": ``LOADING`` (reading its data after a restart),
``BUSY`` (a script is running too long), ``TRYAGAIN`` (a cluster slot is moving).
Authentication failures are connection errors to redis-py but permanent here: retrying
a wrong password only delays the message.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from redis import exceptions as redis_errors

from wfe_core.errors import ProviderError

_TRANSIENT_CODES = frozenset({"BUSY", "LOADING", "TRYAGAIN"})
"""Error codes (the reply's first word) of refusals that end by themselves."""

_PERMANENT_CONNECTION_ERRORS = (
    redis_errors.AuthenticationError,
    redis_errors.AuthorizationError,
)


def is_transient(exc: redis_errors.RedisError) -> bool:
    """Whether the operation that raised ``exc`` may succeed if run again later."""
    if isinstance(exc, _PERMANENT_CONNECTION_ERRORS):
        return False
    if isinstance(
        exc,
        redis_errors.ConnectionError | redis_errors.TimeoutError | redis_errors.TryAgainError,
    ):
        return True  # BusyLoadingError (LOADING) is a ConnectionError
    if isinstance(exc, redis_errors.ResponseError):
        return _error_code(exc) in _TRANSIENT_CODES
    return False


def _error_code(exc: redis_errors.ResponseError) -> str:
    """The code the server put first in its error reply (``BUSY``, ``ERR``...).

    redis-py turns the codes it knows into exception classes (``LOADING`` into
    ``BusyLoadingError``) and leaves the others, ``BUSY`` among them, at the start of
    the message.
    """
    message = str(exc.args[0]) if exc.args else ""
    return message.split(" ", 1)[0]


@contextmanager
def valkey_errors(what: str) -> Iterator[None]:
    """Turn redis-py errors raised inside the block into ``ProviderError``.

    Args:
        what: the operation, for the message ("acquire lock 'cleanup'").

    Raises:
        ProviderError: ``transient`` as :func:`is_transient` says, the redis-py error
            as its ``__cause__``.
    """
    try:
        yield
    except redis_errors.RedisError as exc:
        raise ProviderError(
            f"valkey: could not {what}: {type(exc).__name__}: {exc}",
            transient=is_transient(exc),
        ) from exc
    except OSError as exc:
        # redis-py wraps socket errors in its ConnectionError; a bare one (from TLS set-up,
        # say) still means the server could not be reached for now.
        raise ProviderError(
            f"valkey: could not {what}: server unreachable: {exc!r}", transient=True
        ) from exc
