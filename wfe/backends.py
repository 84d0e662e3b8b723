"""Find the backend for a database URL by its scheme; providers are imported lazily.

Built in: ``sqlite`` (``sqlite:///file`` or ``sqlite+aiosqlite:///file``), ``postgresql``
(when ``wfe_postgres`` is installed) and ``memory://`` (in-process, for tests). A third
party adds a backend through the ``wfe.backends`` entry-point group: the entry point is
a callable taking the URL and returning a :class:`~wfe_core.ports.Backend`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import cast

from wfe_core.errors import ProviderError
from wfe_core.ports import Backend

BackendFactory = Callable[[str], Backend]

_BUILT_IN = {
    "sqlite": "wfe_sqlite:open_backend",
    "postgresql": "wfe_postgres:open_backend",
    "postgres": "wfe_postgres:open_backend",
    "memory": "wfe.backends:open_memory",
}

_MEMORY: dict[str, Backend] = {}


def open_memory(url: str) -> Backend:
    """``memory://NAME``: an in-process store shared by every host and client in this
    process that opens the same name (for tests and prototypes; nothing is durable)."""
    from wfe_core.testing import memory_backend

    name = url.split("://", 1)[1]
    if name not in _MEMORY:
        _MEMORY[name] = memory_backend()
    return _MEMORY[name]


def scheme_of(url: str) -> str:
    if "://" not in url:
        raise ProviderError(f"not a database URL: {url!r} (expected e.g. sqlite:///wfe.db)")
    return url.split("://", 1)[0].split("+", 1)[0].lower()


def open_backend(url: str) -> Backend:
    """Open the providers for ``url``.

    Raises:
        ProviderError: unknown scheme, or the backend's package is not installed.
    """
    scheme = scheme_of(url)
    target = _BUILT_IN.get(scheme)
    if target is None:
        found = [ep for ep in entry_points(group="wfe.backends") if ep.name == scheme]
        if not found:
            raise ProviderError(f"no wfe backend for URL scheme {scheme!r} in {url!r}")
        return cast(BackendFactory, found[0].load())(url)
    module_name, attr = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        extra = {"postgresql": "postgres", "postgres": "postgres"}.get(scheme, scheme)
        raise ProviderError(
            f"backend {scheme!r} needs the '{extra}' extra: pip install 'wfe[{extra}]' ({exc})"
        ) from exc
    return cast(BackendFactory, getattr(module, attr))(url)
