"""The step bodies a YAML file compiles to: shell commands and Deno scripts.

Bodies hold only the step's parsed settings, so one instance serves every attempt.
Run-time values reach a shell as environment variables (``shell_splice``), never as
command text; Deno scripts read the data with ``Wfe.getData()``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from wfe_core.context import StepContext
from wfe_core.result import ExecutionResult
from wfe_core.step import StepBody
from wfe_yaml.data import YamlData
from wfe_yaml.deno import denied_permission, run_deno
from wfe_yaml.process import ProcessResult
from wfe_yaml.schema import DenoConfig, ShellConfig, StepSpec
from wfe_yaml.shell import run_shell
from wfe_yaml.shell_splice import splice
from wfe_yaml.templates import EXPRESSION, TemplateError, as_text, lookup, parse_ref, refs_in


class CommandFailed(Exception):
    """A shell command or Deno script ended with a non-zero exit code."""

    def __init__(self, result: ProcessResult, reason: str) -> None:
        self.result = result
        super().__init__(reason)


def render(text: str, data: Mapping[str, Any]) -> str:
    """``text`` with each ``${{ … }}`` replaced by its value, for data-only places
    (environment values, working directories), where text cannot become code."""
    return EXPRESSION.sub(lambda m: as_text(lookup(parse_ref(m.group(1)), data)), text)


class YamlStep(StepBody):
    """What shell and Deno steps share: environment, outputs, failure reporting."""

    def __init__(self, spec: StepSpec, workflow_env: Mapping[str, str]) -> None:
        self.spec = spec
        self.workflow_env = dict(workflow_env)

    def environment(self, ctx: StepContext[Any], data: Mapping[str, Any]) -> dict[str, str]:
        env = dict(os.environ)
        for name, value in (*self.workflow_env.items(), *self.spec.env.items()):
            env[name] = render(as_text(value), data)
        env.update(
            WFE_WORKFLOW_ID=ctx.workflow_id, WFE_STEP=ctx.step_name, WFE_ATTEMPT=str(ctx.attempt)
        )
        return env

    def finish(self, ctx: StepContext[Any], result: ProcessResult) -> ExecutionResult:
        """Record the outputs in the data; the captured text becomes the step's outcome."""
        data = ctx.data
        assert isinstance(data, YamlData)
        data.set_outputs(self.spec.name, result.outputs)
        return ExecutionResult.outcome(
            {
                "exit_code": result.exit_code,
                "stdout": result.stdout,
                "stderr": result.stderr,
                "truncated": result.stdout_truncated or result.stderr_truncated,
            }
        )

    def is_retryable(self, error: BaseException) -> bool:
        # A missing variable or a quoted heredoc stays wrong however often it is tried.
        return not isinstance(error, TemplateError)


class ShellStep(YamlStep):
    """Runs ``config.run`` with bash (or sh); non-zero exit fails the step."""

    async def run(self, ctx: StepContext[Any]) -> ExecutionResult:
        config = self.spec.settings
        assert isinstance(config, ShellConfig)
        data = ctx.data.model_dump(mode="json")
        values = [as_text(lookup(ref, data)) for ref in refs_in(config.run)]
        try:
            command, variables = splice(config.run, values)
        except ValueError as exc:
            raise TemplateError(str(exc)) from exc
        env = {**self.environment(ctx, data), **variables}
        cwd = None if config.working_directory is None else render(config.working_directory, data)
        result = await run_shell(command, env=env, cwd=cwd, shell=config.shell)
        if result.exit_code != 0:
            raise CommandFailed(result, f"exit code {result.exit_code}: {result.tail()}")
        return self.finish(ctx, result)


class DenoStep(YamlStep):
    """Runs ``config.script`` with Deno under the step's permissions."""

    async def run(self, ctx: StepContext[Any]) -> ExecutionResult:
        config = self.spec.settings
        assert isinstance(config, DenoConfig)
        data = ctx.data.model_dump(mode="json")
        result = await run_deno(
            config.script,
            data=data,
            permissions=config.permissions,
            env=self.environment(ctx, data),
        )
        if result.exit_code != 0:
            denied = denied_permission(result.stderr)
            reason = denied or f"exit code {result.exit_code}: {result.tail()}"
            raise CommandFailed(result, reason)
        return self.finish(ctx, result)
