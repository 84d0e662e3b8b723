"""The data of a YAML workflow: free-form JSON, with the file's defaults and step outputs.

A step's outputs are written twice: at the top level (``${{ data.KEY }}``), so they flow
on as ordinary data, and under ``steps.NAME.outputs.KEY``, so a later step can say which
step's value it means.
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, model_validator

from wfe_yaml.templates import STEPS_KEY


class YamlData(BaseModel):
    """Workflow data of a YAML workflow: any JSON object (keys are the variables)."""

    model_config = ConfigDict(extra="allow")
    defaults: ClassVar[dict[str, Any]] = {}

    @model_validator(mode="before")
    @classmethod
    def _with_defaults(cls, value: Any) -> Any:
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise ValueError(f"workflow data must be a JSON object, got {type(value).__name__}")
        if not isinstance(value.get(STEPS_KEY, {}), dict):
            raise ValueError(f"{STEPS_KEY!r} is reserved for step outputs and must be a mapping")
        return {**copy.deepcopy(cls.defaults), **value}

    def values(self) -> dict[str, Any]:
        """The data as plain JSON values (a copy)."""
        return self.model_dump(mode="json")

    def set_outputs(self, step: str, outputs: dict[str, Any]) -> None:
        """Record a step's outputs at the top level and under ``steps.NAME.outputs``."""
        extra = self.__pydantic_extra__
        assert extra is not None
        if STEPS_KEY in outputs:
            raise ValueError(f"output name {STEPS_KEY!r} is reserved (it holds step outputs)")
        per_step = extra.setdefault(STEPS_KEY, {})
        per_step[step] = {"outputs": dict(outputs)}
        extra.update(outputs)


def data_model(workflow_id: str, defaults: dict[str, Any]) -> type[YamlData]:
    """A data class for one workflow, filling in the file's ``data:`` defaults."""
    name = "".join(part.capitalize() for part in workflow_id.replace(".", "-").split("-"))
    return type(f"{name or 'Yaml'}Data", (YamlData,), {"defaults": copy.deepcopy(defaults)})
