"""Source loaders: rebuild a workflow definition from the text it was built from.

A definition built from a file (a YAML workflow, say) carries a
:class:`~wfe_core.definition.DefinitionSource`; hosts store that source with the
definition and stamp its digest on every workflow started from it. A workflow then
resumes against its stored copy, whatever happened to the file since: when the
definition a host has registered for the workflow's id and version was built from
another text (the file was edited), or the host registered none, the host rebuilds the
definition from the stored text with the loader of the source's ``kind``.

Loaders are found by kind, first among those given to :func:`register_source_loader`,
then in the ``wfe.sources`` entry-point group (the entry point's name is the kind, its
value a :data:`SourceLoader`)::

    [project.entry-points."wfe.sources"]
    yaml = "my_package.loader:from_source"
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points
from typing import Any, cast

from wfe_core.definition import WorkflowDefinition
from wfe_core.errors import DefinitionError
from wfe_core.models import DefinitionSourceRecord

log = logging.getLogger("wfe.sources")

ENTRY_POINT_GROUP = "wfe.sources"
"""The entry-point group loaders are found in (name: the kind)."""

SourceLoader = Callable[[str, dict[str, Any]], WorkflowDefinition]
"""``loader(text, config)``: the definition built from a stored source's text, with
``config`` its load-time values. It may raise any exception for a text it cannot build
(the workflows that run against that source are then FAILED with the error)."""

_loaders: dict[str, SourceLoader] = {}
_entry_points: dict[str, EntryPoint] | None = None
_lock = threading.Lock()


def register_source_loader(kind: str, loader: SourceLoader) -> None:
    """Use ``loader`` to rebuild definitions from stored sources of ``kind``.

    It takes precedence over an entry point of the same name; registering a kind again
    replaces its loader (process-wide: every host of the process uses it).

    Args:
        kind: the ``DefinitionSource.kind`` the loader reads (``"yaml"``, say).
        loader: ``loader(text, config) -> WorkflowDefinition``.
    """
    if not kind:
        raise ValueError("a source kind is a non-empty string")
    with _lock:
        _loaders[kind] = loader


def unregister_source_loader(kind: str) -> None:
    """Forget the loader :func:`register_source_loader` gave ``kind`` (an entry point
    of that name, if any, applies again). Unknown kinds are ignored."""
    with _lock:
        _loaders.pop(kind, None)


def has_source_loader(kind: str) -> bool:
    """Whether a loader for ``kind`` is registered or installed (imports nothing)."""
    with _lock:
        return kind in _loaders or kind in _installed()


def source_loader(kind: str) -> SourceLoader | None:
    """The loader of ``kind``, or ``None`` if none is registered or installed.

    Raises:
        DefinitionError: the entry point of ``kind`` cannot be imported.
    """
    with _lock:
        loader = _loaders.get(kind)
        entry = _installed().get(kind)
    if loader is not None or entry is None:
        return loader
    try:
        return cast(SourceLoader, entry.load())
    except Exception as exc:
        raise DefinitionError(
            f"the loader of definition sources of kind {kind!r} ({entry.value}, entry point "
            f"group {ENTRY_POINT_GROUP!r}) cannot be imported: {exc!r}"
        ) from exc


def load_source(
    source: DefinitionSourceRecord, definition_id: str, version: int
) -> WorkflowDefinition:
    """Rebuild the definition ``definition_id`` v``version`` from its stored source.

    Raises:
        DefinitionError: no loader for the source's kind, the loader failed, or it
            built something else than that definition (its message says which).
    """
    what = f"stored source {source.digest[:12]} (kind {source.kind!r})"
    loader = source_loader(source.kind)
    if loader is None:
        raise DefinitionError(
            f"cannot rebuild the definition from its {what}: no loader for that kind "
            f"(install the package that provides it, entry point group {ENTRY_POINT_GROUP!r})",
            definition_id=definition_id,
        )
    try:
        definition = loader(source.text, dict(source.config))
    except Exception as exc:
        raise DefinitionError(
            f"cannot rebuild the definition from its {what}: {exc}", definition_id=definition_id
        ) from exc
    if not isinstance(definition, WorkflowDefinition):
        raise DefinitionError(
            f"the loader of {what} returned {type(definition).__name__}, not a WorkflowDefinition",
            definition_id=definition_id,
        )
    if (definition.id, definition.version) != (definition_id, version):
        raise DefinitionError(
            f"the {what} builds {definition.id!r} v{definition.version}, "
            f"not v{version} of this workflow",
            definition_id=definition_id,
        )
    return definition


def _installed() -> dict[str, EntryPoint]:
    """The loaders' entry points by kind, read once per process (under ``_lock``)."""
    global _entry_points
    if _entry_points is None:
        _entry_points = {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
    return _entry_points


__all__ = [
    "ENTRY_POINT_GROUP",
    "SourceLoader",
    "has_source_loader",
    "load_source",
    "register_source_loader",
    "source_loader",
    "unregister_source_loader",
]
