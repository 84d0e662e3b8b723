"""Search index port: full-text / attribute search over workflow instances."""

from __future__ import annotations

from typing import Protocol

from wfe_core.models import WorkflowRecord


class SearchIndex(Protocol):
    async def index_workflow(self, record: WorkflowRecord) -> None:
        """Add or refresh one workflow in the index."""
        ...

    async def search(self, text: str, limit: int = 50) -> list[str]:
        """Ids of workflows whose reference, definition or data contain ``text``."""
        ...
