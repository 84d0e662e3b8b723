"""``wfe worker --workflows DIR``: a host serving every YAML workflow of a folder.

It also finishes runs whose file was edited or deleted since they started: their
definitions are rebuilt from the copies stored with them.
"""

from __future__ import annotations

from pathlib import Path

from wfe.cli.inputs import UsageError
from wfe.cli.leases import release_dead_local_leases
from wfe.host import WorkflowHost
from wfe_core.definition import WorkflowDefinition
from wfe_yaml import load_workflow


def load_folder(folder: str, config: dict[str, str]) -> list[WorkflowDefinition]:
    """Every ``*.yaml``/``*.yml`` of ``folder`` (not recursive), loaded and checked."""
    path = Path(folder)
    if not path.is_dir():
        raise UsageError(f"--workflows {folder!r} is not a folder")
    files = sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
    definitions = [load_workflow(p, config) for p in files]
    seen: dict[tuple[str, int], Path] = {}
    for file, definition in zip(files, definitions, strict=True):
        key = (definition.id, definition.version)
        if key in seen:
            raise UsageError(
                f"{file} and {seen[key]} both define {definition.id} v{definition.version}"
            )
        seen[key] = file
    return definitions


async def serve(host: WorkflowHost, definitions: list[WorkflowDefinition]) -> int:
    """Run until SIGINT/SIGTERM (a second signal cancels running steps)."""
    for definition in definitions:
        host.register(definition)
    host.install_signal_handlers()
    released = await release_dead_local_leases(host)
    if released:
        print(f"took over {released} workflow(s) from hosts of this machine that died")
    names = ", ".join(f"{d.id} v{d.version}" for d in definitions) or "nothing from the folder"
    print(f"worker {host.host_id} serving {names} (and stored runs); Ctrl-C stops", flush=True)
    await host.wait_for_shutdown()
    print("worker stopped")
    return 0
