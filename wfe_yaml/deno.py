"""The Deno step executor: run a script under Deno's permission sandbox.

A Deno step's script is run by ``deno run -``: the program Deno reads from stdin is a
small loader, generated per run, which defines ``globalThis.Wfe`` and then imports the
user's script as a ``blob:`` module. The detour is deliberate. Deno lets the *initial
static module graph* of the main module read local files without any permission
(``import t from "/etc/passwd" with { type: "text" }``, or a literal ``import("...")``);
a module reached through a computed dynamic import is outside that graph, so every
file it imports needs ``read`` like any other file access. The program never touches
the disk (no read permission on it is needed), the user's line numbers are the ones
in error messages, and the workflow data is embedded in it as a JSON literal.

``Wfe.setOutput(key, value)`` sends the value back on stdout, on lines that start
with a marker holding a random per-run nonce: text a script prints (or echoes from
elsewhere) cannot set or break an output, since it cannot know the nonce. The marker
lines are removed from the captured stdout. A script is trusted with its own outputs
only, so a script that goes out of its way to learn the nonce gains nothing.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import re
import secrets
import shutil
import tempfile
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator

from wfe_yaml.process import ProcessResult, run_process

BASE_FLAGS = ("--no-prompt", "--no-config", "--no-lock", "--ext=js")
"""Flags of every run: never ask for a permission (fail instead), ignore any
``deno.json`` and lock file around the working directory, read the loader as JS."""

INSTALL_HINT = "pip install 'wfe[deno]'"

CHUNK = 16384
"""Characters of an output record per stdout line: well under the capture's line
limit, so a large value cannot be cut by it."""


class DenoPermissions(BaseModel):
    """What a Deno step may do; everything is denied unless granted here.

    The lists map onto Deno's ``--allow-net``, ``--allow-read``, ``--allow-write`` and
    ``--allow-env`` (host[:port], paths, variable names); ``run`` onto ``--allow-run``
    (any program: a subprocess is outside the sandbox); ``dynamic_import`` lets the
    script load remote (``https:``, ``jsr:``, ``npm:``) modules, statically or with
    ``import()``. Local modules need ``read`` for their files either way.
    """

    model_config = ConfigDict(extra="forbid")

    net: list[str] = []
    read: list[str] = []
    write: list[str] = []
    env: list[str] = []
    run: bool = False
    dynamic_import: bool = False

    @field_validator("net", "read", "write", "env")
    @classmethod
    def _check_entries(cls, entries: list[str], info: ValidationInfo) -> list[str]:
        for entry in entries:
            if not entry.strip() or "\0" in entry:
                raise ValueError(f"permissions.{info.field_name}: empty entry {entry!r}")
            if "," in entry:
                # Deno splits its flag values on commas: one entry would become two.
                raise ValueError(
                    f"permissions.{info.field_name}: {entry!r} contains a comma; "
                    "list each entry separately"
                )
        return entries

    def flags(self) -> list[str]:
        """The ``deno run`` flags that grant exactly these permissions."""
        lists = {"net": self.net, "read": self.read, "write": self.write, "env": self.env}
        flags = [f"--allow-{name}={','.join(values)}" for name, values in lists.items() if values]
        if self.run:
            flags.append("--allow-run")
        if self.dynamic_import:
            flags.append("--allow-import")
        else:
            # Deno 2 allows imports from a few hosts (deno.land, jsr.io, esm.sh, ...) by
            # default and fetches npm: packages with no permission at all: without
            # these flags a script could load code and reach the network.
            flags += ["--no-remote", "--no-npm"]
        return flags


def find_deno() -> str:
    """The ``deno`` executable to run.

    ``$WFE_DENO`` when set (a path or a name on ``PATH``), else the binary of the
    ``deno`` PyPI package, else ``deno`` on ``PATH``.

    Raises:
        FileNotFoundError: no Deno was found (the message says how to install it).
    """
    configured = os.environ.get("WFE_DENO")
    if configured:
        found = shutil.which(configured)
        if found is None:
            raise FileNotFoundError(f"WFE_DENO={configured!r} is not an executable")
        return found
    try:
        # Imported by name: the package has no type information, and it is optional.
        path: str = importlib.import_module("deno").find_deno_bin()
    except (ImportError, FileNotFoundError):
        pass
    else:
        return path
    found = shutil.which("deno")
    if found is None:
        raise FileNotFoundError(
            f"Deno steps need the deno binary: {INSTALL_HINT} (or set WFE_DENO to its path)"
        )
    return found


def default_deno_dir() -> str:
    """Deno's cache (``DENO_DIR``) for steps: under the user's cache, else temp."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser(os.path.join("~", ".cache"))
    if not os.path.isabs(base):  # no home directory to expand "~" to
        # Per user: a directory another user made in the shared temp is not writable.
        return os.path.join(tempfile.gettempdir(), f"wfe-deno-{os.getuid()}")
    return os.path.join(base, "wfe", "deno")


_LOADER = r"""const source = __SOURCE__;
const dataText = __DATA__;
{
  const mark = __MARK__;
  const chunk = __CHUNK__;
  const stringify = JSON.stringify;
  const parse = JSON.parse;
  const encoder = new TextEncoder();
  const writeSync = Deno.stdout.writeSync.bind(Deno.stdout);
  // ASCII only (\u escapes are valid JSON): a record may be cut anywhere.
  const ascii = (text) =>
    text.replace(/[^\x20-\x7e]/g, (c) => "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0"));
  const emit = (text) => {
    let bytes = encoder.encode(text);
    while (bytes.length > 0) bytes = bytes.subarray(writeSync(bytes));
  };
  const setOutput = (key, value) => {
    if (typeof key !== "string" || key === "") {
      throw new TypeError("Wfe.setOutput: the key must be a non-empty string");
    }
    const valueText = stringify(value);
    if (valueText === undefined) {
      throw new TypeError(`Wfe.setOutput(${stringify(key)}, ...): the value is not JSON`);
    }
    const record = ascii(`[${stringify(key)},${valueText}]`);
    // A bare marker line first: it ends a line the script may have left unfinished.
    let lines = mark + "\n";
    for (let at = 0; at < record.length; at += chunk) {
      const more = at + chunk < record.length;
      lines += mark + (more ? "+" : "=") + record.slice(at, at + chunk) + "\n";
    }
    emit(lines);
  };
  const Wfe = Object.freeze({ getData: () => parse(dataText), setOutput });
  Object.defineProperty(globalThis, "Wfe", { value: Wfe, enumerable: true });
}
await import(URL.createObjectURL(new Blob([source], { type: "application/typescript" })));
"""


def _program(script: str, data: Any, mark: str) -> str:
    """The loader Deno runs: the prelude, the data and the script as JS literals."""
    try:
        data_text = json.dumps(data, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"the data given to a Deno script must be JSON: {exc}") from exc
    # JSON strings are valid JS string literals; ASCII-escaped, nothing can end them.
    literals = {
        "__SOURCE__": json.dumps(script),
        "__DATA__": json.dumps(data_text),
        "__MARK__": json.dumps(mark),
        "__CHUNK__": str(CHUNK),
    }
    return re.sub("|".join(literals), lambda m: literals[m.group(0)], _LOADER)


class _OutputChannel:
    """The stdout line filter that collects ``Wfe.setOutput`` records."""

    def __init__(self, mark: str) -> None:
        self.mark = mark
        self.outputs: dict[str, Any] = {}
        self._parts: list[str] = []

    def __call__(self, line: str) -> bool:
        if not line.startswith(self.mark):
            return False
        kind, part = line[len(self.mark) : len(self.mark) + 1], line[len(self.mark) + 1 :]
        if kind == "+":
            self._parts.append(part)
        elif kind == "=":
            text, self._parts = "".join([*self._parts, part]), []
            self._record(text)
        else:  # the bare marker that starts a record
            self._parts = []
        return True

    def _record(self, text: str) -> None:
        try:
            key, value = json.loads(text)
        except ValueError:
            return  # a record cut short (the capture dropped part of it): no output
        self.outputs[key] = value

    def clean(self, stdout: str) -> str:
        """``stdout`` without the bare markers that ended a line the script left open."""
        return stdout.replace(self.mark + "\n", "")


async def run_deno(
    script: str,
    *,
    data: Any,
    permissions: DenoPermissions,
    env: Mapping[str, str],
    cwd: str | None = None,
) -> ProcessResult:
    """Run a JavaScript/TypeScript script with Deno, under ``permissions``.

    The script sees ``Wfe.getData()`` (a fresh copy of ``data`` on each call) and
    ``Wfe.setOutput(key, value)`` (any JSON value); it may use top-level ``await``.
    An uncaught error ends the process with a non-zero exit code and the error on
    stderr (:func:`denied_permission` explains a refused permission). Cancelling the
    call kills the process.

    Args:
        script: the user's code (TypeScript syntax is accepted, types are not checked).
        data: the workflow data, JSON-serialisable.
        permissions: what the script may do; nothing else is allowed.
        env: the whole environment of the process; the script reads only the
            variables its ``env`` permission names. ``NO_COLOR`` is set, and
            ``DENO_DIR`` (Deno's cache) unless ``env`` has it.
        cwd: the working directory; the current one when None.

    Returns:
        The exit code, the tails of stdout (without the output records) and stderr,
        and the outputs.

    Raises:
        FileNotFoundError: no Deno binary (see :func:`find_deno`).
        ValueError: ``data`` is not JSON.
    """
    mark = f"##wfe-deno[{secrets.token_hex(16)}]"
    program = _program(script, data, mark)
    process_env = {"DENO_DIR": default_deno_dir(), **env}
    process_env.update(NO_COLOR="1", DENO_NO_UPDATE_CHECK="1")
    channel = _OutputChannel(mark)
    result = await run_process(
        [find_deno(), "run", *BASE_FLAGS, *permissions.flags(), "-"],
        env=process_env,
        cwd=cwd,
        line_filter=channel,
        outputs=channel.outputs,
        stdin_data=program.encode(),
    )
    return dataclasses.replace(result, stdout=channel.clean(result.stdout))


_DENIED = re.compile(
    r'Requires (?P<kind>[a-z]+) access(?: to (?P<target>"(?:[^"\\]|\\.)*"|<[A-Z]+>))?'
    r", run again with the --allow-[a-z]+ flag"
)
_NO_REMOTE = re.compile(r'A remote specifier was requested: (?P<target>"[^"]*"), but --no-remote')
_NO_NPM = "npm specifiers were requested; but --no-npm is specified"
_LISTS = ("read", "write", "net", "env")
_FLAGS = {"run": "run: true", "import": "dynamic_import: true"}


def _grant_hint(kind: str, target: str | None) -> str:
    """How a step grants ``kind`` access, or why it cannot."""
    if kind in _LISTS:
        entry = target if target is not None and target.startswith('"') else "..."
        return f"grant it with permissions: {{ {kind}: [{entry}] }}"
    if kind in _FLAGS:
        return f"grant it with permissions: {{ {_FLAGS[kind]} }}"
    return f"a Deno step cannot be granted {kind} access"


def denied_permission(stderr: str) -> str | None:
    """Explain a permission Deno refused, from the stderr of a failed run.

    Returns:
        For example ``permission denied: read access to "/etc/hostname" (grant it
        with permissions: { read: ["/etc/hostname"] })``; None when the failure was
        not a refused permission.
    """
    # The last "error:" block is the one that ended the process; a denial the script
    # caught and printed earlier is not why it failed.
    start = stderr.rfind("\nerror: ") + 1
    text = stderr[start:]
    if match := _DENIED.search(text):
        kind, target = match.group("kind"), match.group("target")
        what = f"{kind} access" + ("" if target is None else f" to {target}")
        if kind == "import":
            what = f"import from {target}"
        return f"permission denied: {what} ({_grant_hint(kind, target)})"
    hint = _grant_hint("import", None)
    if match := _NO_REMOTE.search(text):
        return f"permission denied: import of {match.group('target')} ({hint})"
    if _NO_NPM in text:
        return f"permission denied: import of npm: packages ({hint})"
    return None
