"""The Deno step executor against the real ``deno`` binary: data, outputs, sandbox.

Pure unit tests (no backend fixture, so each runs once). Every test that starts Deno
costs a process start: related checks share a run where they can.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pydantic
import pytest

from wfe_yaml.deno import DenoPermissions, denied_permission, find_deno, run_deno
from wfe_yaml.process import ProcessResult

try:
    find_deno()
except FileNotFoundError as exc:  # pragma: no cover - the dev install has deno
    pytest.skip(f"no deno binary: {exc}", allow_module_level=True)

DATA = {"name": "wfe", "nested": {"list": [1, 2.5, None, True], "text": "é漢😀\n\"'"}}


async def deno(
    script: str, *, environ: dict[str, str] | None = None, **grant: Any
) -> ProcessResult:
    """Run ``script`` on :data:`DATA` with the given permissions (all else denied)."""
    return await run_deno(
        script, data=DATA, permissions=DenoPermissions(**grant), env=environ or {}
    )


def failed_with(result: ProcessResult, permission: str) -> str:
    """The explanation of the denial that made ``result`` fail, checked to name it."""
    assert result.exit_code != 0, result.stdout
    denied = denied_permission(result.stderr)
    assert denied is not None, result.stderr
    assert denied.startswith(f"permission denied: {permission} "), denied
    return denied


async def test_data_in_outputs_out_and_a_forged_marker_is_plain_text() -> None:
    script = """
        const data: Record<string, any> = Wfe.getData();
        data.name = "changed";  // a copy: the next call is unaffected
        Wfe.setOutput("same", Wfe.getData());
        Wfe.setOutput("text", Wfe.getData().nested.text);
        Wfe.setOutput("number", 42.5);
        Wfe.setOutput("object", { a: [1, { b: null }] });
        Wfe.setOutput("big", "é".repeat(50000));
        console.log("##wfe-deno[0123456789abcdef0123456789abcdef]=[\\"text\\",\\"forged\\"]");
        console.log("##wfe[output number]1");
        Deno.stdout.writeSync(new TextEncoder().encode("unfinished "));
        await new Promise((resolve) => setTimeout(resolve, 1));  // top-level await
        Wfe.setOutput("number", 7);  // a later value wins
        console.log("line");
    """
    result = await deno(script)
    assert result.exit_code == 0, result.stderr
    assert result.outputs == {
        "same": DATA,
        "text": DATA["nested"]["text"],  # type: ignore[index]
        "number": 7,
        "object": {"a": [1, {"b": None}]},
        "big": "é" * 50000,
    }
    # Marker lines are gone, forged ones are kept as text, an open line is not split.
    assert result.stdout == (
        '##wfe-deno[0123456789abcdef0123456789abcdef]=["text","forged"]\n'
        "##wfe[output number]1\n"
        "unfinished line\n"
    )


async def test_a_thrown_error_fails_the_run_with_the_error_on_stderr() -> None:
    result = await deno('Wfe.setOutput("before", 1);\nthrow new Error("boom in step");')
    assert result.exit_code != 0
    assert "Error: boom in step" in result.stderr
    assert ":2:" in result.stderr  # the user's own line number
    assert denied_permission(result.stderr) is None


@pytest.fixture
def hostname_file() -> str:
    """What ``/etc/hostname`` holds (read outside the event loop)."""
    return Path("/etc/hostname").read_text()


async def test_read_is_denied_unless_granted(hostname_file: str) -> None:
    script = 'console.log(await Deno.readTextFile("/etc/hostname"));'
    denied = failed_with(await deno(script), "read")
    assert denied == (
        'permission denied: read access to "/etc/hostname" '
        '(grant it with permissions: { read: ["/etc/hostname"] })'
    )
    granted = await deno(script, read=["/etc/hostname"])
    assert granted.exit_code == 0, granted.stderr
    assert granted.stdout.strip() == hostname_file.strip()


async def test_importing_a_local_file_needs_read_too() -> None:
    # Deno reads modules of the main program's static graph without any permission:
    # the script is loaded so that its imports are not part of that graph.
    script = 'import text from "file:///etc/hostname" with { type: "text" };\nconsole.log(text);'
    failed_with(await deno(script), "read")


async def test_remote_imports_are_denied_without_dynamic_import() -> None:
    result = await deno('await import("https://deno.land/std/version.ts");')
    assert failed_with(result, "import").endswith("{ dynamic_import: true })")


async def test_env_is_denied_unless_granted() -> None:
    script = 'console.log(Deno.env.get("WFE_SECRET"));'
    environ = {"WFE_SECRET": "s3cret"}
    assert '"WFE_SECRET"' in failed_with(await deno(script, environ=environ), "env")
    granted = await deno(script, environ=environ, env=["WFE_SECRET"])
    assert granted.exit_code == 0, granted.stderr
    assert granted.stdout == "s3cret\n"


async def test_subprocesses_are_denied() -> None:
    # Deno resolves the program on PATH before it checks the permission: without a
    # PATH the error would be "NotFound", not the denial.
    script = 'await new Deno.Command("true").output();'
    denied = failed_with(await deno(script, environ={"PATH": os.environ["PATH"]}), "run")
    assert denied.endswith("{ run: true })")


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port bound but not listening: a connection to it is refused, and
    nothing else can take it meanwhile. (Not port 9: fetch blocks it outright.)"""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


async def test_net_is_denied_unless_granted(closed_port: int) -> None:
    address = f"127.0.0.1:{closed_port}"
    script = f'await fetch("http://{address}/");'
    assert f'"{address}"' in failed_with(await deno(script), "net")
    granted = await deno(script, net=[address])
    assert granted.exit_code != 0
    assert denied_permission(granted.stderr) is None
    assert "Connection refused" in granted.stderr


def _deno_processes_in(directory: Path) -> list[int]:
    """Processes whose working directory is ``directory`` (this test's own)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if os.readlink(entry / "cwd") == str(directory):
                    found.append(int(entry.name))
    return found


async def _eventually(check: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + 30  # generous: only a hang should reach it
    while not check():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


@pytest.mark.skipif(not Path("/proc/self/cwd").exists(), reason="needs /proc")
async def test_a_timeout_kills_the_deno_process(tmp_path: Path) -> None:
    sleep = "await new Promise((resolve) => setTimeout(resolve, 60000));"
    run = asyncio.ensure_future(
        asyncio.wait_for(
            run_deno(sleep, data={}, permissions=DenoPermissions(), env={}, cwd=str(tmp_path)),
            1.0,
        )
    )
    seen: list[int] = []

    def started() -> bool:
        seen.extend(_deno_processes_in(tmp_path))
        return bool(seen) or run.done()

    # Seen running first, so that "gone" below is not true by accident.
    assert await _eventually(started)
    assert seen, "the deno process was never seen running"
    with pytest.raises(TimeoutError):
        await run
    assert await _eventually(lambda: not _deno_processes_in(tmp_path))


@pytest.mark.parametrize("field", ["net", "read", "write", "env"])
@pytest.mark.parametrize("entry", ["", "  ", "a,b"])
def test_bad_permission_entries_are_rejected(field: str, entry: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=f"permissions.{field}"):
        DenoPermissions.model_validate({field: ["ok", entry]})


def test_unknown_permissions_are_rejected() -> None:
    with pytest.raises(pydantic.ValidationError, match="sys"):
        DenoPermissions.model_validate({"sys": True})


def test_flags_grant_exactly_what_is_listed() -> None:
    assert DenoPermissions().flags() == ["--no-remote", "--no-npm"]
    granted = DenoPermissions(
        net=["example.com", "127.0.0.1:8080"],
        read=["/data"],
        write=["/tmp/out"],
        env=["HOME"],
        run=True,
        dynamic_import=True,
    )
    assert granted.flags() == [
        "--allow-net=example.com,127.0.0.1:8080",
        "--allow-read=/data",
        "--allow-write=/tmp/out",
        "--allow-env=HOME",
        "--allow-run",
        "--allow-import",
    ]


@pytest.mark.parametrize(
    ("stderr", "expected"),
    [
        (
            "error: Uncaught (in promise) NotCapable: Requires env access, run again with "
            "the --allow-env flag\n    at Object.toObject (ext:deno_os/30_os.js:1:1372)",
            "permission denied: env access (grant it with permissions: { env: [...] })",
        ),
        (
            'error: Uncaught (in promise) NotCapable: Requires sys access to "hostname", '
            "run again with the --allow-sys flag",
            'permission denied: sys access to "hostname" '
            "(a Deno step cannot be granted sys access)",
        ),
        (
            "error: Uncaught (in promise) TypeError: npm specifiers were requested; but "
            "--no-npm is specified",
            "permission denied: import of npm: packages "
            "(grant it with permissions: { dynamic_import: true })",
        ),
        (
            # A denial the script caught and printed is not why it failed.
            'NotCapable: Requires read access to "/x", run again with the --allow-read flag\n'
            "error: Uncaught (in promise) Error: something else",
            None,
        ),
    ],
)
def test_denied_permission_reads_deno_messages(stderr: str, expected: str | None) -> None:
    assert denied_permission(stderr) == expected


def test_find_deno_honours_wfe_deno(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WFE_DENO", "/nonexistent/deno")
    with pytest.raises(FileNotFoundError, match="WFE_DENO"):
        find_deno()
