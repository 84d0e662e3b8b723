"""Mistakes in files and on the command line: exit code 2, one paragraph that says
where (file:line when there is a file), no traceback, and nothing written to the store."""

from __future__ import annotations

from pathlib import Path

from wfe import WorkflowClient

from .conftest import Cli, write

GOOD = """\
workflow:
  id: good
  steps:
    - name: Touch
      config: { run: "touch ran" }
"""

FILES = {
    "malformed.yaml": """\
workflow:
  id: malformed
  steps:
    - name: A
      config: { run: "echo" ]
    - name: B
      config: { run: "echo" }
""",
    "bad-type.yaml": """\
workflow:
  id: bad-type
  steps:
    - name: A
      type: python
      config: { run: "echo" }
""",
    "cycle.yaml": """\
workflow:
  id: cycle
  steps:
    - name: A
      depends_on: [B]
      config: { run: "echo a" }
    - name: B
      depends_on: [A]
      config: { run: "echo b" }
""",
    "unknown-config.yaml": """\
workflow:
  id: unknown-config
  steps:
    - name: A
      config: { run: "echo a" }
    - name: B
      config: { run: "echo ${{ config.missing }}" }
""",
}

# (command, what the message must contain)
CASES: list[tuple[list[str], list[str]]] = [
    (["run", "malformed.yaml"], ["malformed.yaml:5", "YAML"]),
    (["run", "bad-type.yaml"], ["bad-type.yaml:5", "python", "'A'"]),
    (["run", "cycle.yaml"], ["cycle.yaml:", "cycle", "A", "B"]),
    (["run", "unknown-config.yaml"], ["unknown-config.yaml:7", "config.missing", "'B'"]),
    (["start", "cycle.yaml"], ["cycle.yaml:", "cycle"]),
    (["worker", "--workflows", "."], ["bad-type.yaml:5"]),  # the first bad file
    (["list", "--status", "bogus"], ["--status", "bogus", "complete"]),
    (["run", "good.yaml", "--data", "{nope"], ["--data", "JSON"]),
    (["run", "good.yaml", "--input", "novalue"], ["--input", "KEY=VALUE", "novalue"]),
    (["publish", "paid", "o-1", "--data", "{nope"], ["--data", "JSON"]),
]


async def test_mistakes_are_reported_and_change_nothing(
    cli: Cli, client: WorkflowClient, tmp_path: Path
) -> None:
    write(tmp_path, "good.yaml", GOOD)
    for name, text in FILES.items():
        write(tmp_path, name, text)
    assert await client.list_workflows() == []

    results = cli.many(*(command for command, _ in CASES))

    for (command, expected), done in zip(CASES, results, strict=True):
        message = done.user_error()
        for text in expected:
            assert text in message, f"{text!r} missing for {command}:\n{done.explain()}"
    assert await client.list_workflows() == []
    assert not (tmp_path / "ran").exists()
