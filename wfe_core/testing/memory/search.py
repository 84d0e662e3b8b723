"""In-memory search index: substring search over reference, definition and data."""

from __future__ import annotations

from wfe_core.models import WorkflowRecord
from wfe_core.ports.search import SearchIndex
from wfe_core.testing.memory.state import copy_record


class MemorySearchIndex(SearchIndex):
    """A :class:`~wfe_core.ports.SearchIndex` that matches case-insensitive substrings.

    Results come in the order workflows were first indexed.
    """

    def __init__(self) -> None:
        self._records: dict[str, WorkflowRecord] = {}

    async def index_workflow(self, record: WorkflowRecord) -> None:
        """Add or refresh one workflow."""
        self._records[record.id] = copy_record(record)

    async def search(self, text: str, limit: int = 50) -> list[str]:
        """Ids of workflows whose reference, definition id or data contain ``text``."""
        needle = text.casefold()
        hits = [
            record.id
            for record in self._records.values()
            if any(
                needle in field.casefold()
                for field in (record.reference or "", record.definition_id, record.data)
            )
        ]
        return hits[: max(limit, 0)]
