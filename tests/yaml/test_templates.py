"""``${{ }}`` references: parsing, finding, looking up in the data, and as text.

Pure unit tests (no backend fixture, so each runs once).
"""

from __future__ import annotations

from typing import Any

import pytest

from wfe_yaml.steps import render
from wfe_yaml.templates import (
    EXPRESSION,
    Ref,
    TemplateError,
    UnknownVariable,
    as_text,
    lookup,
    parse_ref,
    refs_in,
)

DATA: dict[str, Any] = {
    "region": "eu",
    "count": 3,
    "nothing": None,
    "items": ["a", {"id": 7}],
    "user": {"name": "ada", "langs": ["en", "fr"]},
    "steps": {"Build": {"outputs": {"image": "app:1", "size": 12}}},
}


@pytest.mark.parametrize(
    ("expression", "ref"),
    [
        ("data.region", Ref("data", ("region",))),
        ("  data.user.name\n", Ref("data", ("user", "name"))),
        ("data.items.1.id", Ref("data", ("items", "1", "id"))),
        ("data.with-dash_and_1", Ref("data", ("with-dash_and_1",))),
        ("steps.Build.outputs.image", Ref("steps", ("Build", "outputs", "image"))),
        ("config.target", Ref("config", ("target",))),
    ],
)
def test_parse_ref(expression: str, ref: Ref) -> None:
    assert parse_ref(expression) == ref
    assert ref.text == expression.strip()


@pytest.mark.parametrize(
    ("expression", "phrase"),
    [
        ("", "starts with config., data. or steps."),
        ("   ", "starts with config., data. or steps."),
        ("foo.bar", "unknown variable ${{ foo.bar }}"),
        ("env.HOME", "unknown variable ${{ env.HOME }}"),
        ("Data.x", "unknown variable"),
        ("data", "expected ROOT.NAME"),
        ("data.", "expected ROOT.NAME"),
        ("data..x", "expected ROOT.NAME"),
        ("data.a b", "expected ROOT.NAME"),
        ("data.items[0]", "expected ROOT.NAME"),
        ("data.x | upper", "expected ROOT.NAME"),
        ("data.x || 'default'", "expected ROOT.NAME"),
        ("steps.Build", "steps.NAME.outputs.KEY"),
        ("steps.Build.outputs", "steps.NAME.outputs.KEY"),
        ("steps.Build.result.image", "steps.NAME.outputs.KEY"),
        ("steps.Build.outputs.image.tag", "steps.NAME.outputs.KEY"),
        ("config.a.b", "config values are config.KEY"),
    ],
)
def test_parse_ref_refuses_what_it_cannot_read(expression: str, phrase: str) -> None:
    with pytest.raises(TemplateError) as info:
        parse_ref(expression)
    assert phrase in str(info.value)
    assert not isinstance(info.value, UnknownVariable)  # a load-time problem, not data


def test_expressions_are_found_in_text_across_lines_and_side_by_side() -> None:
    text = "a ${{ data.x }}${{data.y}} b ${{\n  steps.S.outputs.k\n}} ${ not } {{ this }}"
    assert [ref.text for ref in refs_in(text)] == ["data.x", "data.y", "steps.S.outputs.k"]
    assert [m.group(0) for m in EXPRESSION.finditer("${{ a }}${{ b }}")] == [
        "${{ a }}",
        "${{ b }}",
    ]


def test_refs_in_raises_on_the_first_bad_expression() -> None:
    with pytest.raises(TemplateError, match="foo"):
        list(refs_in("ok ${{ data.x }} bad ${{ foo }}"))


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ("data.region", "eu"),
        ("data.count", 3),
        ("data.nothing", None),  # a null that exists is a value, not a missing variable
        ("data.items", ["a", {"id": 7}]),
        ("data.items.0", "a"),
        ("data.items.1.id", 7),
        ("data.user.langs.1", "fr"),
        ("steps.Build.outputs.image", "app:1"),
        ("steps.Build.outputs.size", 12),
    ],
)
def test_lookup(expression: str, value: Any) -> None:
    assert lookup(parse_ref(expression), DATA) == value


@pytest.mark.parametrize(
    ("expression", "phrases"),
    [
        ("data.nope", ["${{ data.nope }}", "data has count, items, nothing, region, steps, user"]),
        ("data.user.email", ["${{ data.user.email }}", "data.user has langs, name"]),
        ("data.region.code", ["data.region is not a mapping"]),
        ("data.items.2", ["${{ data.items.2 }}", "data.items is not a mapping"]),
        ("data.items.x", ["data.items is not a mapping"]),
        ("data.nothing.x", ["data.nothing is not a mapping"]),
        ("steps.Deploy.outputs.url", ["step 'Deploy' has set no outputs yet"]),
        ("steps.Build.outputs.tag", ["${{ steps.Build.outputs.tag }}", "has image, size"]),
    ],
)
def test_lookup_of_a_missing_variable_names_it_and_what_exists(
    expression: str, phrases: list[str]
) -> None:
    with pytest.raises(UnknownVariable) as info:
        lookup(parse_ref(expression), DATA)
    for phrase in phrases:
        assert phrase in str(info.value)


def test_a_step_output_before_any_step_has_run() -> None:
    with pytest.raises(UnknownVariable, match="step 'Build' has set no outputs yet"):
        lookup(parse_ref("steps.Build.outputs.image"), {"region": "eu"})


def test_config_references_have_no_place_in_the_data() -> None:
    with pytest.raises(TemplateError, match="load-time value"):
        lookup(parse_ref("config.target"), DATA)


def test_unknown_variable_is_a_template_error_is_a_value_error() -> None:
    assert issubclass(UnknownVariable, TemplateError)
    assert issubclass(TemplateError, ValueError)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("plain", "plain"),
        ("", ""),
        ('é "quoted" $HOME', 'é "quoted" $HOME'),
        (3, "3"),
        (2.5, "2.5"),
        (True, "true"),
        (False, "false"),
        (None, "null"),
        (["a", 1], '["a",1]'),
        ({"k": "é"}, '{"k":"é"}'),
    ],
)
def test_as_text(value: Any, text: str) -> None:
    assert as_text(value) == text


def test_render_fills_every_expression_with_text() -> None:
    rendered = render("${{ data.region }}/${{data.count}}/${{ steps.Build.outputs.image }}", DATA)
    assert rendered == "eu/3/app:1"
    assert render("${{ data.user }}", DATA) == '{"name":"ada","langs":["en","fr"]}'
    assert render("no expressions at all", DATA) == "no expressions at all"
    with pytest.raises(UnknownVariable, match=r"data\.nope"):
        render("x ${{ data.nope }}", DATA)


def test_a_rendered_value_is_not_rendered_again() -> None:
    # A value that looks like an expression stays text: data never becomes a template.
    data = {"a": "${{ data.b }}", "b": "secret"}
    assert render("${{ data.a }}", data) == "${{ data.b }}"
