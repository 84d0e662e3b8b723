"""Workflow data at the seam: typed models inside steps, JSON in the store."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticSerializationError

from wfe_core.errors import InvalidData

DEFAULT_MAX_PAYLOAD_BYTES = 16 * 1024 * 1024


def validation_message(exc: ValidationError, model: type[BaseModel]) -> tuple[str, str | None, Any]:
    """A one-line message naming the first bad field and its value."""
    first = exc.errors()[0]
    field = ".".join(str(part) for part in first.get("loc", ())) or None
    value = first.get("input")
    where = f"field {field!r}" if field else "data"
    text = f"{model.__name__}: {where} = {value!r}: {first.get('msg')}"
    extra = len(exc.errors()) - 1
    return (text + (f" (and {extra} more errors)" if extra else ""), field, value)


def validate(model: type[BaseModel], data: Any) -> BaseModel:
    """Validate a model instance or a JSON-able dict; raise ``InvalidData`` naming the field."""
    if isinstance(data, BaseModel):
        data = to_jsonable(data)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        message, field, value = validation_message(exc, model)
        raise InvalidData(message, field=field, value=value) from exc
    except PydanticSerializationError as exc:
        raise InvalidData(f"{model.__name__}: data is not serializable: {exc}") from exc


def to_jsonable(instance: BaseModel) -> dict[str, Any]:
    """The model as plain JSON types; ``InvalidData`` names a field that cannot be stored."""
    try:
        return instance.model_dump(mode="json")
    except PydanticSerializationError as exc:
        field = _bad_field(instance)
        where = f"field {field!r}" if field else "data"
        raise InvalidData(
            f"{type(instance).__name__}: {where} is not JSON-serializable: {exc}", field=field
        ) from exc


def _bad_field(instance: BaseModel) -> str | None:
    for name in type(instance).model_fields:
        try:
            instance.model_dump(mode="json", include={name})
        except PydanticSerializationError:
            return name
    return None


def encode(data: dict[str, Any], max_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES) -> str:
    """JSON text for the store; ``InvalidData`` when larger than ``max_bytes``."""
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    size = len(text.encode())
    if size > max_bytes:
        raise InvalidData(f"workflow data is {size} bytes, over the {max_bytes}-byte limit")
    return text


def encode_value(value: Any, what: str) -> Any:
    """Check that ``value`` (event or persistence data) survives JSON; return it as JSON."""
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError) as exc:
        raise InvalidData(f"{what} is not JSON-serializable: {exc}") from exc
