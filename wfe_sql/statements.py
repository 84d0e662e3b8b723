"""Hot statements, built once per dialect and reused with bound parameters.

Building an SQLAlchemy statement and computing its cache key costs more, per call, than
running it on SQLite; a statement object built once keeps its cache key, so its later
executions go straight to the compiled form.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

T = TypeVar("T")

_built: weakref.WeakKeyDictionary[Any, dict[Hashable, Any]] = weakref.WeakKeyDictionary()


def prepared(dialect: object, key: Hashable, build: Callable[[], T]) -> T:
    """The statement ``build()`` makes for ``dialect``, built on the first call for
    ``key`` and reused after (forgotten with the dialect)."""
    statements = _built.get(dialect)
    if statements is None:
        statements = _built[dialect] = {}
    try:
        return statements[key]  # type: ignore[no-any-return]
    except KeyError:
        statement = statements[key] = build()
        return statement
