"""The child-workflow service a host lends its running steps (ctx.start_workflow and
sub_workflow steps)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from wfe.client import WorkflowClient
from wfe.registry import Registry


class HostChildren:
    """Starts children through the host's client, recording the parent on each."""

    def __init__(self, client: WorkflowClient, registry: Registry) -> None:
        self._client = client
        self._registry = registry

    async def start(
        self,
        definition_id: str,
        data: Any,
        *,
        key: str,
        parent_id: str,
        version: int | None = None,
        reference: str | None = None,
    ) -> str:
        # The client's own start: a stopping host still lets running steps finish,
        # and finishing may mean starting the child they were built to start.
        return await WorkflowClient.start_workflow(
            self._client,
            definition_id,
            data,
            version=version,
            reference=reference,
            idempotency_key=key,
            parent_id=parent_id,
        )

    def data_type(self, definition_id: str, version: int) -> type[BaseModel] | None:
        definition = self._registry.get(definition_id, version)
        return None if definition is None else definition.data_type
