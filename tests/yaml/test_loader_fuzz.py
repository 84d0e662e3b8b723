"""Fuzzing the loader: whatever the text, it returns a definition or a DefinitionError.

Pure unit tests (no backend fixture, so each runs once). Two tests: YAML documents
(random trees biased to the format's own keys, the format's skeleton with doubtful values
in its slots, and mutants of a valid file, so the fuzzer gets past the parser into
validation, the graph, the references and the conditions), dumped with
``yaml.safe_dump``; and raw text full of the characters YAML and ``${{ }}`` care about
(tabs, colons, brackets, anchors and aliases), for the parser and the line bookkeeping.
"""

from __future__ import annotations

import copy
from typing import Any

import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from wfe_core.definition import WorkflowDefinition
from wfe_core.errors import DefinitionError
from wfe_yaml import load_workflow_text

KEYS = [
    "workflow", "id", "version", "steps", "name", "type", "config", "run", "script",
    "depends_on", "depends_on_any", "if", "retry", "timeout", "parallel", "env", "data",
    "on_failure", "attempts", "backoff", "delay", "base", "permissions", "shell",
]  # fmt: skip

WORDS = [
    "A", "B", "shell", "deno", "echo hi", "fail", "continue", "retry_indefinitely",
    "fixed", "exponential", "linear", "10s", "1m30s", "-1", "500ms", "x y", "a.b",
    "${{ config.k }}", "${{ data.x }}", "${{ steps.A.outputs.k }}", "${{ foo }}",
    "${{ steps.B.outputs }}", "data.x == 1", "data.x and not data.y", "len(x)", "",
    "${{", "}}", "1 +", "é",
]  # fmt: skip

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(WORDS),
    st.sampled_from(KEYS),
    st.text(max_size=12),
)
keys = st.one_of(st.sampled_from(KEYS), st.text(max_size=6), st.integers(0, 3), st.booleans())
documents = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(keys, inner, max_size=5),
    ),
    max_leaves=30,
)


names = st.sampled_from(["A", "B", "C", "G", "P", "Z", "bad name", "a.b"])
durations = st.one_of(
    st.sampled_from(["10s", "1m30s", "500ms", "2h", "-1", "soon", ""]),
    st.integers(-1, 100),
    st.floats(allow_nan=True),
)
words = st.one_of(st.sampled_from(WORDS), st.text(max_size=8))
CONDITIONS = [
    "data.x == 1", "data.x and not data.y", "!data.x || data.y != 'a'", "'a' in data.l",
    "${{ steps.A.outputs.k }} == 'ok'", "config.k == 'v'", "config.nope", "len(data.x)",
    "data.x +", "(1).real", "data.x is None", "null", "true && false",
]  # fmt: skip
retries = st.one_of(
    st.integers(-1, 5),
    st.fixed_dictionaries(
        {"attempts": st.integers(0, 5)},
        optional={
            "backoff": st.fixed_dictionaries(
                {"type": st.sampled_from(["fixed", "exponential", "linear", "random"])},
                optional={
                    "delay": durations,
                    "base": durations,
                    "increment": durations,
                    "max": durations,
                    "jitter": st.floats(-1, 2),
                },
            )
        },
    ),
    documents,
)
configs = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "run": words,
            "script": words,
            "timeout": durations,
            "shell": st.sampled_from(["bash", "sh", "zsh"]),
            "working_directory": words,
            "permissions": st.one_of(
                st.fixed_dictionaries({}, optional={"net": documents, "run": st.booleans()}),
                documents,
            ),
        },
    ),
    documents,
)
dependencies = st.one_of(st.lists(names, max_size=3), documents)
step_fields = {
    "type": st.sampled_from(["shell", "deno", "foo"]),
    "depends_on": dependencies,
    "depends_on_any": dependencies,
    "if": st.one_of(st.sampled_from(CONDITIONS), words, documents),
    "retry": retries,
    "timeout": durations,
    "on_failure": st.sampled_from(["fail", "continue", "retry_indefinitely", "explode"]),
    "env": st.dictionaries(st.sampled_from(["A", "B_1", "bad-name"]), documents, max_size=2),
    "description": words,
    "comand": words,
}
steps = st.fixed_dictionaries({"name": names, "config": configs}, optional=step_fields)
groups = st.fixed_dictionaries(
    {"parallel": st.lists(steps, max_size=3)},
    optional={"name": names, "depends_on": dependencies, "depends_on_any": dependencies},
)
# Documents close to valid ones: the file format's skeleton, with values in its slots
# that are often right and often subtly wrong.
near_valid = st.builds(
    lambda workflow: {"workflow": workflow},
    st.fixed_dictionaries(
        {
            "id": st.sampled_from(["flow", "flow", "flow", "a.b", "x:1", "bad id", 3, None]),
            "steps": st.lists(st.one_of(steps, groups, documents), max_size=4),
        },
        optional={
            "version": st.sampled_from([1, 1, 2, 0, "x", "${{ config.k }}"]),
            "env": st.dictionaries(st.sampled_from(["STAGE", "bad-name"]), documents, max_size=2),
            "data": documents,
            "description": words,
        },
    ),
)

# A valid file using every feature, and one to three mutations of it: each mutation
# replaces, deletes or adds one value somewhere, so most mutants fail one check deep
# inside the loader (graph, references, conditions) rather than at the first key.
VALID: dict[str, Any] = {
    "workflow": {
        "id": "everything",
        "version": 2,
        "env": {"STAGE": "${{ config.k }}", "LEVEL": 3},
        "data": {"x": 1, "l": ["a"]},
        "steps": [
            {"name": "A", "retry": 2, "config": {"run": "echo ${{ data.x }}", "timeout": "5s"}},
            {
                "name": "G",
                "depends_on": ["A"],
                "parallel": [
                    {"name": "P", "if": "data.x == 1 && 'a' in data.l", "config": {"run": "p"}},
                    {
                        "name": "Q",
                        "type": "deno",
                        "retry": {"attempts": 3, "backoff": {"type": "linear", "increment": 1}},
                        "config": {"script": "Wfe.setOutput('k', 1)", "permissions": {"net": []}},
                    },
                ],
            },
            {
                "name": "B",
                "depends_on_any": ["G"],
                "on_failure": "continue",
                "env": {"K": "${{ steps.Q.outputs.k }}"},
                "if": "${{ steps.P.outputs.k }} != 'x'",
                "config": {"run": "echo ${{ steps.A.outputs.k }}", "shell": "sh"},
            },
        ],
    }
}


def _places(node: Any, at: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path in ``node`` (the root included)."""
    found = [at]
    if isinstance(node, dict):
        for key, value in node.items():
            found += _places(value, (*at, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _places(value, (*at, index))
    return found


def _mutate(document: Any, mutations: list[tuple[int, str, Any, Any]]) -> Any:
    document = copy.deepcopy(document)
    for choice, action, key, value in mutations:
        places = _places(document)
        at = places[choice % len(places)]
        if not at:
            document = value if action == "replace" else document
            continue
        parent: Any = document
        for part in at[:-1]:
            parent = parent[part]
        target = parent[at[-1]]
        if action == "delete":
            del parent[at[-1]]
        elif action == "replace":
            parent[at[-1]] = value
        elif isinstance(target, dict):
            target[key] = value
        elif isinstance(target, list):
            target.insert(choice % (len(target) + 1), value)
    return document


mutants = st.builds(
    _mutate,
    st.just(VALID),
    st.lists(
        st.tuples(
            st.integers(0, 10**6),
            st.sampled_from(["replace", "delete", "add"]),
            keys,
            st.one_of(scalars, st.sampled_from(CONDITIONS), documents),
        ),
        min_size=1,
        max_size=3,
    ),
)

TEXT_PIECES = [
    "workflow:", "  ", "\t", "\n", "- ", ": ", "id: x", "steps:", "name: A", "config:",
    "run: echo", "{", "}", "[", "]", ",", "${{", "}}", "config.k", "&a ", "*a", "<<: *a",
    "!!python/object:os.system", "!!binary", "|", ">", "'", '"', "#", "---", "...",
    "? ", "%YAML 1.1", "\ufeff", "\x00", "\x85", "depends_on: [A]", "if: ", "é",
]  # fmt: skip
texts = st.lists(st.one_of(st.sampled_from(TEXT_PIECES), st.text(max_size=5)), max_size=40).map(
    "".join
)

FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def loads_or_refuses(text: str, config: dict[str, Any] | None = None) -> None:
    """The loader's whole contract on bad input: a definition or a DefinitionError."""
    try:
        definition = load_workflow_text(text, config, path="fuzz.yaml")
    except DefinitionError as exc:
        assert str(exc).startswith("fuzz.yaml"), str(exc)
        return
    assert isinstance(definition, WorkflowDefinition)


@FUZZ
@given(
    st.one_of(documents, near_valid, mutants),
    st.one_of(st.just({"k": "v"}), st.dictionaries(st.sampled_from(["k", "x"]), scalars)),
)
def test_any_yaml_document_loads_or_raises_definition_error(
    document: Any, config: dict[str, Any]
) -> None:
    loads_or_refuses(yaml.safe_dump(document, allow_unicode=True), config)


@FUZZ
@given(texts)
@example("workflow: &a [*a]")
@example("a: &a {b: *a}\nworkflow: *a\n")
@example("\t- x")
@example("\x1f")  # found by the fuzzer: PyYAML refused it before parsing began
def test_any_text_loads_or_raises_definition_error(text: str) -> None:
    loads_or_refuses(text, {"k": "v"})
