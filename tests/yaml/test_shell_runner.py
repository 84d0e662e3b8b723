"""The shell step executor: exit code, capture, outputs, -e, and killing the group."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from wfe_yaml.process import OUTPUT_LIMIT
from wfe_yaml.shell import output_filter, run_shell
from wfe_yaml.shell_splice import splice

GONE_DEADLINE = 30.0
"""Seconds a killed process may take to disappear; generous, it is not a measurement."""


def environment(**extra: str) -> dict[str, str]:
    return {**os.environ, **extra}


async def wait_gone(pid: int) -> None:
    """Poll until ``pid`` no longer exists; fail after :data:`GONE_DEADLINE`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + GONE_DEADLINE
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        assert loop.time() < deadline, f"process {pid} is still running"
        await asyncio.sleep(0.05)


def written_pid(path: Path) -> int | None:
    """The pid a step wrote to ``path``, or None while the line is incomplete."""
    text = path.read_text() if path.exists() else ""
    return int(text) if text.endswith("\n") else None


async def read_pid(path: Path) -> int:
    """The pid a step wrote to ``path``, once it is there."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + GONE_DEADLINE
    while (pid := written_pid(path)) is None:
        assert loop.time() < deadline, f"{path} was never written"
        await asyncio.sleep(0.05)
    return pid


async def test_exit_code_stdout_and_stderr_are_captured(tmp_path: Path):
    result = await run_shell("echo out; echo err >&2; exit 3", env=environment(), cwd=str(tmp_path))
    assert (result.exit_code, result.stdout, result.stderr) == (3, "out\n", "err\n")
    assert not result.stdout_truncated and not result.stderr_truncated


async def test_the_environment_given_is_the_whole_environment(tmp_path: Path):
    env = {"PATH": os.environ["PATH"], "GREETING": "hi there"}
    result = await run_shell(
        'printf "%s|%s|" "$GREETING" "${HOME-unset}"; pwd', env=env, cwd=str(tmp_path)
    )
    assert result.stdout == f"hi there|unset|{tmp_path}\n"


@pytest.mark.parametrize("shell", ["bash", "sh"])
async def test_output_lines_set_outputs(shell: str, tmp_path: Path):
    script = "\n".join(
        [
            "echo '##wfe[output spaced]a ] b  [c] '",
            "echo '##wfe[output twice]first'",
            "echo '##wfe[output twice]second'",
            "echo '##wfe[output empty]'",
            "echo '##wfe[output with-dash_1]x'",
            "echo 'not at the start ##wfe[output ignored]x'",
            "echo '##wfe[output 9digit]x'",
            "echo '##wfe[output]x'",
        ]
    )
    result = await run_shell(script, env=environment(), cwd=str(tmp_path), shell=shell)
    assert result.exit_code == 0
    assert result.outputs == {
        "spaced": "a ] b  [c] ",
        "twice": "second",
        "empty": "",
        "with-dash_1": "x",
    }
    assert "##wfe[output twice]first\n" in result.stdout  # output lines stay visible


def test_the_output_filter_keeps_every_line():
    outputs: dict[str, object] = {}
    keep_out = output_filter(outputs)
    assert keep_out("##wfe[output a]1") is False
    assert keep_out("plain") is False
    assert outputs == {"a": "1"}


async def test_a_failing_command_stops_the_script(tmp_path: Path):
    result = await run_shell("echo one; false; echo two", env=environment(), cwd=str(tmp_path))
    assert (result.exit_code, result.stdout) == (1, "one\n")


async def test_a_failure_inside_a_pipeline_fails_the_step(tmp_path: Path):
    result = await run_shell(
        "false | cat; echo after", env=environment(), cwd=str(tmp_path), shell="bash"
    )
    assert result.exit_code != 0
    assert "after" not in result.stdout


async def test_sh_stops_at_a_failing_command(tmp_path: Path):
    result = await run_shell(
        "echo one; false; echo two", env=environment(), cwd=str(tmp_path), shell="sh"
    )
    assert (result.exit_code, result.stdout) == (1, "one\n")


async def test_capture_keeps_a_bounded_tail(tmp_path: Path):
    script = (
        "head -c 1048576 /dev/zero | tr '\\0' x | fold -w 99; "
        "head -c 1048576 /dev/zero | tr '\\0' y >&2; echo; echo last"
    )
    result = await run_shell(script, env=environment(), cwd=str(tmp_path))
    assert result.exit_code == 0
    assert result.stdout_truncated and result.stderr_truncated
    assert 0 < len(result.stdout.encode()) <= OUTPUT_LIMIT
    assert 0 < len(result.stderr.encode()) <= OUTPUT_LIMIT
    assert result.stdout.endswith("x\nlast\n")  # the tail is kept: errors come last
    assert set(result.stderr) == {"y"}


async def test_cancellation_kills_background_children(tmp_path: Path):
    step = asyncio.create_task(
        run_shell("sleep 300 & echo $! > pid; sleep 300", env=environment(), cwd=str(tmp_path))
    )
    pid = await read_pid(tmp_path / "pid")
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(step, 0.5)  # as the engine's step timeout does
    await wait_gone(pid)


async def test_a_background_process_left_behind_is_killed(tmp_path: Path):
    # The sleep holds stdout open; the step still ends when the shell does.
    result = await run_shell("sleep 300 & echo $! > pid", env=environment(), cwd=str(tmp_path))
    assert result.exit_code == 0
    pid = written_pid(tmp_path / "pid")
    assert pid is not None
    await wait_gone(pid)


async def test_spliced_values_stay_data(tmp_path: Path):
    value = '"; touch INJECTED; echo "$(touch INJECTED)'
    command, variables = splice(
        'echo "##wfe[output copy]${{ data.x }}"; echo ${{ data.x }}', [value, value]
    )
    result = await run_shell(command, env=environment(**variables), cwd=str(tmp_path))
    assert result.outputs == {"copy": value}
    assert result.stdout.splitlines()[-1] == value
    assert not (tmp_path / "INJECTED").exists()


async def test_an_unknown_shell_is_refused(tmp_path: Path):
    with pytest.raises(ValueError, match=r"unknown shell 'zsh'.*'bash', 'sh'"):
        await run_shell("echo hi", env=environment(), cwd=str(tmp_path), shell="zsh")
