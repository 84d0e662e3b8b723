"""YAML workflows: a loader, ``${{ }}`` interpolation, shell and Deno step executors.

``load_workflow(path, config={})`` returns a definition to register with a host; the
file format is described in the README ("YAML workflows") and SPEC §6.
"""

from wfe_yaml.data import YamlData
from wfe_yaml.loader import SOURCE_KIND, load_source, load_workflow, load_workflow_text

__all__ = ["SOURCE_KIND", "YamlData", "load_source", "load_workflow", "load_workflow_text"]
