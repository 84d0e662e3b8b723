"""The definitions a host has registered, by (id, version)."""

from __future__ import annotations

from wfe_core.definition import WorkflowDefinition
from wfe_core.errors import DefinitionError


class Registry:
    def __init__(self) -> None:
        self._by_key: dict[tuple[str, int], WorkflowDefinition] = {}

    def add(self, definition: WorkflowDefinition) -> bool:
        """Register; True if new. The same id/version with other content is an error."""
        if not isinstance(definition, WorkflowDefinition):
            raise DefinitionError(
                f"register() takes a built WorkflowDefinition, got "
                f"{type(definition).__name__} (did you forget .build()?)"
            )
        key = (definition.id, definition.version)
        existing = self._by_key.get(key)
        if existing is None:
            self._by_key[key] = definition
            return True
        if existing is definition or existing.fingerprint == definition.fingerprint:
            return False
        raise DefinitionError(
            f"version {definition.version} is already registered with "
            "different steps; give the changed workflow a new version",
            definition_id=definition.id,
        )

    def get(self, definition_id: str, version: int | None = None) -> WorkflowDefinition | None:
        if version is not None:
            return self._by_key.get((definition_id, version))
        versions = [v for (d, v) in self._by_key if d == definition_id]
        return self._by_key[(definition_id, max(versions))] if versions else None

    def keys(self) -> list[tuple[str, int]]:
        return list(self._by_key)

    def all(self) -> list[WorkflowDefinition]:
        return list(self._by_key.values())
