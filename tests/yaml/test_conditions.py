"""``if:`` conditions: what they evaluate to, and that nothing in them can run code.

Pure unit tests (no backend fixture, so each runs once).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from wfe_yaml.conditions import MAX_DEPTH, parse_condition
from wfe_yaml.templates import TemplateError, UnknownVariable

DATA: dict[str, Any] = {
    "n": 5,
    "name": "wfe",
    "empty": "",
    "ok": True,
    "nothing": None,
    "tags": ["a", "b"],
    "user": {"name": "ada", "age": 36},
    "steps": {"Build": {"outputs": {"status": "ok", "code": 0}}},
}
CONFIG = {"stage": "prod", "limit": 3}


def holds(text: str, data: dict[str, Any] | None = None) -> bool:
    return parse_condition(text, CONFIG).evaluate(DATA if data is None else data)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("data.n == 5", True),
        ("data.n != 5", False),
        ("data.n < 6", True),
        ("data.n <= 4", False),
        ("data.n > 4.5", True),
        ("data.n >= 5", True),
        ("1 < data.n < 10", True),
        ("1 < data.n < 3", False),
        ("data.name == 'wfe'", True),
        ('data.name == "other"', False),
        ("data.user.name == 'ada' and data.user.age > 30", True),
        ("data.n == 1 or data.name == 'wfe'", True),
        ("not data.ok", False),
        ("not (data.n == 1)", True),
        ("data.n == 5 && data.ok", True),
        ("data.n == 1 || !data.ok", False),
        ("!data.ok || data.n != 1", True),
        ("!(data.n == 5)", False),
        ("'a' in data.tags", True),
        ("'z' not in data.tags", True),
        ("data.name in ['wfe', 'other']", True),
        ("data.name in ('x', 'y')", False),
        ("'f' in data.name", True),
        ("'age' in data.user", True),
        ("data.ok == true", True),
        ("data.ok == True", True),
        ("data.ok == false", False),
        ("data.nothing == null", True),
        ("data.nothing == None", True),  # regression: the None literal was refused
        ("data.n > -1", True),
        ("data.name", True),  # truthiness, as in a shell or JavaScript
        ("data.empty", False),
        ("data.nothing", False),
        ("${{ data.n }} == 5", True),
        ("${{ data.user.name }} == 'ada' && ${{ data.ok }}", True),
        ("${{ steps.Build.outputs.status }} == 'ok'", True),
        ("steps.Build.outputs.code == 0", True),
        ("config.stage == 'prod'", True),
        ("${{ config.limit }} > data.n", False),
        ("data.name == 'a && b || !c'", False),  # the symbols inside a literal stay text
        ("'!' != data.name", True),
        ("true", True),
        ("null", False),
    ],
)
def test_evaluation(text: str, expected: bool) -> None:
    assert holds(text) is expected


def test_and_or_stop_at_the_first_deciding_value() -> None:
    # The right side names a variable that does not exist: it is never read.
    assert holds("data.ok or data.nope == 1") is True
    assert holds("not data.ok and data.nope == 1") is False
    with pytest.raises(UnknownVariable):
        holds("data.ok and data.nope == 1")


def test_a_missing_variable_names_itself_and_what_exists() -> None:
    with pytest.raises(UnknownVariable) as info:
        holds("data.nope == 1")
    message = str(info.value)
    assert "${{ data.nope }}" in message
    assert "data has empty, n, name, nothing, ok, steps, tags, user" in message


def test_a_missing_nested_variable_lists_its_parent() -> None:
    with pytest.raises(UnknownVariable, match=r"data\.user has age, name"):
        holds("data.user.email == 'x'")
    with pytest.raises(UnknownVariable, match=r"data\.name is not a mapping"):
        holds("data.name.first == 'x'")


def test_a_missing_step_output_says_which_step_and_output() -> None:
    with pytest.raises(UnknownVariable, match=r"steps\.Build\.outputs has code, status"):
        holds("steps.Build.outputs.missing == 1")
    with pytest.raises(UnknownVariable, match="step 'Deploy' has set no outputs yet"):
        holds("${{ steps.Deploy.outputs.url }} == ''")


def test_values_that_cannot_be_compared_are_a_template_error() -> None:
    with pytest.raises(TemplateError, match="cannot be evaluated") as info:
        holds("data.name < 3")
    assert not isinstance(info.value, UnknownVariable)
    with pytest.raises(TemplateError, match="cannot be evaluated"):
        holds("'a' in data.n")


def test_an_unknown_config_key_is_refused_when_parsed() -> None:
    with pytest.raises(TemplateError, match=r"unknown config\.region \(limit, stage\)"):
        parse_condition("config.region == 'eu'", CONFIG)


def test_references_are_collected_for_the_loader() -> None:
    condition = parse_condition(
        "${{ steps.Build.outputs.status }} == 'ok' and data.user.name in config.stage", CONFIG
    )
    assert [ref.text for ref in condition.refs] == [
        "steps.Build.outputs.status",
        "data.user.name",
        "config.stage",
    ]
    assert [ref.step for ref in condition.refs] == ["Build", None, None]


CODE = [
    "__import__('os').system('touch {canary}')",
    "open('{canary}', 'w')",
    "(lambda: __import__('os').system('touch {canary}'))()",
    "lambda: 1",
    "'x'.upper() == 'X'",
    "'{canary}'.__class__",
    "(1).real == 1",
    "data.name.upper",  # a path of the data, not a method: refused by no rule, see below
    "[x for x in data.tags]",
    "{{x: 1 for x in data.tags}}",
    "data.tags[0] == 'a'",
    "data.tags[0:1]",
    "data.n + 1 > 0",
    "data.n * 2",
    "~data.n",
    "+data.n",
    "data.n if data.ok else 0",
    "data.nothing is None",
    "data.nothing is not None",
    "f'{{data.n}}' == '5'",
    "(x := 1)",
    "{{'a': 1}}",
    "{{1, 2}}",
    "*data.tags",
    "b'bytes' == data.name",
    "... == data.n",
    "globals()",
    "data.n == 1; import os",
    "import os",
]


@pytest.mark.parametrize("template", CODE)
def test_nothing_in_a_condition_can_run_code(template: str, tmp_path: Path) -> None:
    canary = tmp_path / "ran"
    text = template.format(canary=canary)
    if text == "data.name.upper":
        # Attribute syntax only ever walks the data as a mapping: there is no key
        # "upper" under the text "wfe", so this is an unknown variable, not a call.
        with pytest.raises(UnknownVariable, match=r"data\.name is not a mapping"):
            holds(text)
        return
    with pytest.raises(TemplateError) as info:
        parse_condition(text, CONFIG)
    assert not isinstance(info.value, UnknownVariable)
    assert repr(text)[:20] in str(info.value) or "not a valid expression" in str(info.value)
    assert not canary.exists()


def test_dunder_names_are_keys_of_the_data_not_attributes() -> None:
    with pytest.raises(UnknownVariable, match="data has"):
        holds("data.__class__ == 1")
    assert holds("data.__class__ == 'dict'", {"__class__": "dict"}) is True
    with pytest.raises(TemplateError, match=r"unknown config\.__class__"):
        parse_condition("config.__class__ == 1", CONFIG)


@pytest.mark.parametrize(
    "text",
    ["data", "foo.bar == 1", "os.system == 1", "steps.Build.result == 1", "config == 1"],
)
def test_a_name_that_is_not_a_reference_is_refused(text: str) -> None:
    with pytest.raises(TemplateError) as info:
        parse_condition(text, CONFIG)
    assert not isinstance(info.value, UnknownVariable)


@pytest.mark.parametrize(
    "text",
    [
        "not " * (MAX_DEPTH + 1) + "data.ok",
        "!" * 5000 + "data.ok",
        "-" * 5000 + "1",
        "data" + ".a" * 5000,
        "(" * 300 + "data.ok" + ")" * 300,
    ],
    ids=["not", "bang", "minus", "path", "parentheses"],
)
def test_deep_nesting_is_refused_not_a_recursion_error(text: str) -> None:
    # Regression: these raised RecursionError, which no caller expects.
    with pytest.raises(TemplateError):
        parse_condition(text, CONFIG)


def test_reasonable_nesting_is_fine() -> None:
    assert holds("not " * (MAX_DEPTH - 10) + "data.ok") is (MAX_DEPTH % 2 == 0)
    assert holds("(" * 100 + "data.ok" + ")" * 100) is True
