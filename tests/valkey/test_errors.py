"""The error seam: redis-py errors become ProviderError, transient or not, with their
cause (no server needed)."""

from __future__ import annotations

import pytest
from redis import exceptions as redis_errors

from wfe_core.errors import ProviderError
from wfe_valkey.errors import is_transient, valkey_errors


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (redis_errors.ConnectionError("Connection refused"), True),
        (redis_errors.TimeoutError("Timeout reading from socket"), True),
        (redis_errors.BusyLoadingError("Redis is loading the dataset in memory"), True),
        (redis_errors.ResponseError("BUSY Redis is busy running a script."), True),
        (redis_errors.TryAgainError("Multiple keys request during rehashing of slot"), True),
        (redis_errors.AuthenticationError("invalid username-password pair"), False),
        (redis_errors.ResponseError("ERR wrong number of arguments for 'get' command"), False),
        (redis_errors.ResponseError("WRONGTYPE Operation against a key"), False),
        (redis_errors.NoScriptError("No matching script."), False),
        (redis_errors.DataError("Invalid input of type: 'dict'"), False),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else str(value),
)
def test_classification(error: redis_errors.RedisError, transient: bool) -> None:
    assert is_transient(error) is transient


def test_the_seam_keeps_the_cause_and_names_the_operation() -> None:
    cause = redis_errors.ConnectionError("Connection refused")

    with pytest.raises(ProviderError) as caught, valkey_errors("acquire lock 'job'"):
        raise cause

    assert caught.value.transient
    assert caught.value.__cause__ is cause
    assert "acquire lock 'job'" in str(caught.value)


def test_a_bare_socket_error_is_transient_too() -> None:
    with pytest.raises(ProviderError) as caught, valkey_errors("renew lock 'job'"):
        raise ConnectionResetError("reset by peer")

    assert caught.value.transient
