"""The shell step executor: run a command with bash or sh, collect its outputs.

A stdout line ``##wfe[output NAME]VALUE`` sets the step output ``NAME`` to the string
``VALUE`` (the rest of the line, verbatim, possibly empty); a later line for the same
name overrides an earlier one. The lines stay in the captured stdout.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from wfe_yaml.process import LineFilter, ProcessResult, run_process

OUTPUT_LINE = re.compile(r"##wfe\[output ([A-Za-z_][A-Za-z0-9_-]*)\](.*)", re.DOTALL)
"""A stdout line that sets an output: group 1 is the name, group 2 the value."""

SHELLS: Mapping[str, tuple[str, ...]] = {
    # -e and pipefail: a failing command anywhere, even mid-pipeline, fails the step
    # instead of being hidden by the commands after it; no profile or rc file, so the
    # user's dotfiles cannot change what a step does.
    "bash": ("bash", "--noprofile", "--norc", "-eo", "pipefail", "-c"),
    "sh": ("sh", "-e", "-c"),
}
"""The shells a step may name, and the argv that runs a command with each."""


def output_filter(outputs: dict[str, Any]) -> LineFilter:
    """A stdout line filter that records ``##wfe[output NAME]VALUE`` lines in ``outputs``.

    The filter keeps every line in the captured stdout (returns False): seeing the
    output lines there makes a step easier to debug.
    """

    def record(line: str) -> bool:
        match = OUTPUT_LINE.fullmatch(line)
        if match is not None:
            outputs[match.group(1)] = match.group(2)
        return False

    return record


async def run_shell(
    command: str, *, env: Mapping[str, str], cwd: str | None = None, shell: str = "bash"
) -> ProcessResult:
    """Run a shell command in its own process group and capture what it leaves.

    Args:
        command: the script, passed to the shell with ``-c``.
        env: the whole environment of the process (nothing is inherited).
        cwd: the working directory; the current one when None.
        shell: ``"bash"`` (with ``-e -o pipefail``) or ``"sh"`` (with ``-e``).

    Returns:
        The exit code, the tails of stdout and stderr, and the outputs set by
        ``##wfe[output NAME]VALUE`` lines.

    Raises:
        ValueError: ``shell`` is not one of :data:`SHELLS`.
    """
    if shell not in SHELLS:
        allowed = ", ".join(repr(name) for name in SHELLS)
        raise ValueError(f"unknown shell {shell!r}: a step's shell is one of {allowed}")
    outputs: dict[str, Any] = {}
    return await run_process(
        [*SHELLS[shell], command],
        env=env,
        cwd=cwd,
        line_filter=output_filter(outputs),
        outputs=outputs,
    )
