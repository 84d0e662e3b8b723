"""The shape of a workflow file, as pydantic models: unknown keys and wrong types fail."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    StringConstraints,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)

from wfe_core.retry import Backoff, FailureAction, RetryPolicy
from wfe_yaml.deno import DenoPermissions
from wfe_yaml.durations import parse_duration
from wfe_yaml.templates import STEPS_KEY

NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_-]*$"
"""Step names: they appear in ``steps.NAME.outputs.KEY``, so no dots or spaces."""

Duration = Annotated[float, BeforeValidator(parse_duration)]
Timeout = Annotated[float, BeforeValidator(parse_duration), Field(gt=0)]
Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
EnvName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
EnvValue = str | int | float | bool
Env = dict[EnvName, EnvValue]


def _not_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("a version is a whole number >= 1, not true/false")
    return value


def _condition_text(value: Any) -> Any:
    """``if: true`` / ``if: false`` read as YAML booleans; take them as conditions."""
    return ("true" if value else "false") if isinstance(value, bool) else value


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class BackoffSpec(Strict):
    """``type`` fixed (``delay``), exponential (``base``, doubling) or linear (``increment``)."""

    type: Literal["fixed", "exponential", "linear"] = "exponential"
    delay: Duration | None = None
    base: Duration | None = None
    increment: Duration | None = None
    max: Duration | None = None
    jitter: float = Field(0.0, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _one_step_size(self) -> BackoffSpec:
        wanted = {"fixed": "delay", "exponential": "base", "linear": "increment"}[self.type]
        for name in ("delay", "base", "increment"):
            if name != wanted and getattr(self, name) is not None:
                raise ValueError(f"{self.type} back-off takes '{wanted}', not '{name}'")
        return self

    def to_backoff(self) -> Backoff:
        if self.type == "fixed":
            return Backoff.fixed(1.0 if self.delay is None else self.delay, jitter=self.jitter)
        if self.type == "linear":
            step = 1.0 if self.increment is None else self.increment
            return Backoff.linear(step, self.max, jitter=self.jitter)
        base = 1.0 if self.base is None else self.base
        return Backoff.exponential(base, 60.0 if self.max is None else self.max, jitter=self.jitter)


class RetrySpec(Strict):
    """``retry: 3`` or ``retry: {attempts: 3, backoff: {type: fixed, delay: 2s}}``."""

    attempts: int = Field(ge=1, le=10_000)
    backoff: BackoffSpec = BackoffSpec()

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            return {"attempts": value}
        return value

    def to_policy(self) -> RetryPolicy:
        return RetryPolicy(max_attempts=self.attempts, backoff=self.backoff.to_backoff())


class ShellConfig(Strict):
    """A shell step: ``run`` is the script (bash by default, ``-e -o pipefail``)."""

    run: Annotated[str, StringConstraints(min_length=1)]
    shell: Literal["bash", "sh"] = "bash"
    working_directory: str | None = None
    timeout: Timeout | None = None


class DenoConfig(Strict):
    """A Deno step: ``script`` is JavaScript/TypeScript; ``permissions`` are all denied
    unless listed."""

    script: Annotated[str, StringConstraints(min_length=1)]
    permissions: DenoPermissions = DenoPermissions()
    timeout: Timeout | None = None


StepConfig = ShellConfig | DenoConfig
CONFIG_TYPES: dict[str, type[ShellConfig] | type[DenoConfig]] = {
    "shell": ShellConfig,
    "deno": DenoConfig,
}
FAILURE_ACTIONS = {
    "fail": FailureAction.FAIL_WORKFLOW,
    "continue": FailureAction.CONTINUE,
    "retry_indefinitely": FailureAction.RETRY_INDEFINITELY,
}


class StepSpec(Strict):
    """One step of the file."""

    name: Name
    type: Literal["shell", "deno"] = "shell"
    config: dict[str, Any]
    description: str | None = None
    depends_on: list[Name] = []
    depends_on_any: list[Name] = []
    if_: Annotated[str | None, BeforeValidator(_condition_text)] = Field(None, alias="if")
    retry: RetrySpec | None = None
    on_failure: Literal["fail", "continue", "retry_indefinitely"] = "fail"
    env: Env = {}
    timeout: Timeout | None = None
    _settings: StepConfig | None = PrivateAttr(None)

    @field_validator("config")
    @classmethod
    def _config_fits_type(cls, config: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        # Checked here, not only below, so that its errors are located under ``config``.
        kind = info.data.get("type")
        if kind in CONFIG_TYPES:
            CONFIG_TYPES[kind].model_validate(config)
        return config

    @model_validator(mode="after")
    def _typed_config(self) -> StepSpec:
        self._settings = CONFIG_TYPES[self.type].model_validate(self.config)
        if self.timeout is not None and self._settings.timeout is not None:
            raise ValueError("timeout is given twice: at the step and in its config")
        return self

    @property
    def settings(self) -> StepConfig:
        assert self._settings is not None
        return self._settings

    @property
    def time_limit(self) -> float | None:
        return self.timeout if self.timeout is not None else self.settings.timeout


class GroupSpec(Strict):
    """``parallel:``: steps that run together; the next item waits for all of them."""

    parallel: Annotated[list[StepSpec], Field(min_length=1)]
    name: Name | None = None
    depends_on: list[Name] = []
    depends_on_any: list[Name] = []


def _item_kind(value: Any) -> str:
    return "group" if isinstance(value, dict) and "parallel" in value else "step"


Item = Annotated[
    Annotated[StepSpec, Tag("step")] | Annotated[GroupSpec, Tag("group")],
    Discriminator(_item_kind),
]


class WorkflowSpec(Strict):
    """The ``workflow:`` mapping."""

    id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.:-]*$")]
    version: Annotated[int, BeforeValidator(_not_bool), Field(ge=1, le=2**31 - 1)] = 1
    description: str | None = None
    data: dict[str, Any] = {}

    @field_validator("data")
    @classmethod
    def _steps_is_reserved(cls, value: dict[str, Any]) -> dict[str, Any]:
        if STEPS_KEY in value:
            raise ValueError(f"{STEPS_KEY!r} is reserved: it holds the outputs of the steps")
        return value

    env: Env = {}
    steps: Annotated[list[Item], Field(min_length=1)]


class WorkflowFile(Strict):
    workflow: WorkflowSpec
