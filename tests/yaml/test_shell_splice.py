"""Values spliced into shell commands reach a real bash as data, byte for byte."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wfe_yaml.shell_splice import splice

# (command, how the printed text relates to the value): one per quoting context.
CONTEXTS = {
    "unquoted": ("printf '%s' ${{ data.x }}", "{}"),
    "double": ("printf '%s' \"a ${{ data.x }} b\"", "a {} b"),
    "single": ("printf '%s' 'a ${{ data.x }} b'", "a {} b"),
    "ansi-c": ("printf '%s' $'a\\t${{ data.x }}\\tb'", "a\t{}\tb"),
    # the trailing dot keeps the value's trailing newlines, which $( ) would strip
    "command-substitution": ("printf '%s' \"$(printf '%s.' ${{ data.x }})\"", "{}."),
    "nested-substitution": (
        "printf '%s' \"$(printf '%s' \"$(printf '%s.' 'q'${{ data.x }})\")\"",
        "q{}.",
    ),
    "backticks": ("printf '%s' \"`printf '%s.' ${{ data.x }}`\"", "{}."),
    "heredoc": ("cat <<EOF\n${{ data.x }}\nEOF", "{}\n"),
    "heredoc-tabs": ("cat <<-END\n\t<${{ data.x }}>\n\tEND", "<{}>\n"),
    "here-string": ("cat <<<${{ data.x }}", "{}\n"),
    "after-comment": ("# it's ${{ data.x }} \"\nprintf '%s' ${{ data.x }}", "{}"),
}

HOSTILE = [
    '"', "'", "$", "`", "\\", "\n", "\t", "\r", "*", "?", "[a]", " ", "-", "--help", "~",
    "#", ";", "&", "|", "<", ">", "(", ")", "{", "}", "!", "%s", "${HOME}", "$1", "EOF",
    "\nEOF\n", "$(touch INJECTED)", "`touch INJECTED`", "é", "漢",
]  # fmt: skip

hostile_text = st.lists(
    st.one_of(
        st.sampled_from(HOSTILE),
        st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\0"), max_size=4),
    ),
    max_size=12,
).map("".join)

PAYLOADS = [
    '"; touch INJECTED; echo "',
    "'; touch INJECTED; echo '",
    "$(touch INJECTED)",
    "`touch INJECTED`",
    "'\"$(touch INJECTED)\"'",
    "\nEOF\ntouch INJECTED\ncat <<EOF\n",
    "x\ntouch INJECTED",
    "a[$(touch INJECTED)]",
    "${IFS}touch${IFS}INJECTED",
    "-e touch INJECTED *",
]


def run(command: str, values: list[str], cwd: Path | None = None, shell: str = "bash") -> str:
    """Splice ``values`` into ``command``, run it, return its stdout."""
    spliced, variables = splice(command, values)
    completed = subprocess.run(
        [shell, "-c", spliced],
        env={"PATH": os.environ["PATH"], **variables},
        cwd=cwd,
        capture_output=True,
        check=True,
    )
    return completed.stdout.decode()


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A working directory for the generated runs (module-scoped for hypothesis)."""
    path = tmp_path_factory.mktemp("splice")
    yield path
    assert not (path / "INJECTED").exists()


@pytest.mark.parametrize("context", CONTEXTS)
@settings(max_examples=40, deadline=None, database=None)
@given(value=hostile_text)
def test_a_hostile_value_arrives_byte_for_byte(context: str, value: str, scratch: Path):
    command, expected = CONTEXTS[context]
    count = command.count("${{")
    assert run(command, [value] * count, cwd=scratch) == expected.format(value)


@pytest.mark.parametrize("payload", PAYLOADS)
@pytest.mark.parametrize("context", CONTEXTS)
def test_a_value_never_runs_as_code(context: str, payload: str, tmp_path: Path):
    command, expected = CONTEXTS[context]
    values = [payload] * command.count("${{")
    assert payload not in splice(command, values)[0]
    printed = run(command, values, cwd=tmp_path)
    assert printed == expected.format(payload)
    assert not (tmp_path / "INJECTED").exists()


@pytest.mark.parametrize("context", ["unquoted", "double", "single", "heredoc", "after-comment"])
def test_posix_sh_reads_the_same_references(context: str, tmp_path: Path):
    command, expected = CONTEXTS[context]
    value = PAYLOADS[0] + "\n*"
    values = [value] * command.count("${{")
    assert run(command, values, cwd=tmp_path, shell="sh") == expected.format(value)
    assert not (tmp_path / "INJECTED").exists()


def test_each_expression_gets_its_own_variable_in_order():
    command = "printf '%s|%s|%s' ${{ data.a }} \"${{ data.b }}\" '${{ data.a }}'"
    spliced, variables = splice(command, ["one", "two", "three"])
    assert spliced == ("printf '%s|%s|%s' \"${WFE_VAR_0}\" \"${WFE_VAR_1}\" ''\"${WFE_VAR_2}\"''")
    assert variables == {"WFE_VAR_0": "one", "WFE_VAR_1": "two", "WFE_VAR_2": "three"}
    assert run(command, ["one", "two", "three"]) == "one|two|three"


def test_the_prefix_names_the_variables():
    spliced, variables = splice("echo ${{ data.x }}", ["v"], prefix="STEP_")
    assert spliced == 'echo "${STEP_0}"'
    assert variables == {"STEP_0": "v"}
    with pytest.raises(ValueError, match="prefix"):
        splice("echo ${{ data.x }}", ["v"], prefix="1-bad")


def test_a_reference_in_a_comment_is_inert_and_keeps_the_numbering():
    spliced, variables = splice("echo a # ${{ data.x }}\necho ${{ data.y }}", ["1", "2"])
    assert spliced == 'echo a # ${WFE_VAR_0}\necho "${WFE_VAR_1}"'
    assert list(variables) == ["WFE_VAR_0", "WFE_VAR_1"]


def test_a_hash_inside_a_word_is_not_a_comment():
    assert run("printf '%s' a#${{ data.x }}", ["$(x) y"]) == "a#$(x) y"


def test_a_shift_in_arithmetic_is_not_a_heredoc():
    assert run("echo $((1 << 2)); printf '%s' ${{ data.x }}", ["a b"]) == "4\na b"


def test_several_heredocs_on_one_line():
    command = "cat <<A; cat <<'B'\n${{ data.x }}\nA\n$literal\nB\nprintf '%s' ${{ data.y }}"
    assert run(command, ["x y", "*"]) == "x y\n$literal\n*"


@pytest.mark.parametrize("opening", ["<<'EOF'", '<<"EOF"', "<<\\EOF", "<<-'EOF'", "<<E'O'F"])
def test_a_quoted_heredoc_refuses_interpolation(opening: str):
    with pytest.raises(ValueError, match="quoted heredoc"):
        splice(f"cat {opening}\nhello ${{{{ data.x }}}}\nEOF", ["v"])


def test_a_quoted_heredoc_without_expressions_is_left_alone():
    command = "cat <<'EOF'\n$HOME `x` \"\nEOF\nprintf '%s' ${{ data.x }}"
    assert run(command, ["v w"]) == '$HOME `x` "\nv w'


@pytest.mark.parametrize(
    "command",
    [
        "echo $(( ${{ data.n }} + 1 ))",
        "(( i = ${{ data.n }} ))",
        "for (( i = 0; i < ${{ data.n }}; i++ )); do :; done",
        'echo $(( $(printf %s "${{ data.n }}") ))',
    ],
)
def test_arithmetic_refuses_interpolation(command: str):
    # bash evaluates a value such as a[$(cmd)] in arithmetic, running cmd
    with pytest.raises(ValueError, match="arithmetic"):
        splice(command, ["1"])


@pytest.mark.parametrize("command", ["echo \\${{ data.x }}", 'echo "$${{ data.x }}"'])
def test_an_escape_or_dollar_before_an_expression_is_refused(command: str):
    with pytest.raises(ValueError, match="right before"):
        splice(command, ["v"])


def test_a_nul_in_a_value_is_refused():
    with pytest.raises(ValueError, match="NUL"):
        splice("echo ${{ data.x }}", ["a\0b"])


def test_the_values_must_match_the_expressions():
    with pytest.raises(ValueError, match="2 expressions in the command but 1 values"):
        splice("echo ${{ data.x }} ${{ data.y }}", ["v"])


def test_a_command_without_expressions_is_unchanged():
    command = "echo \"$HOME\" '$x' $'\\n' `date` $(pwd) # done"
    assert splice(command, []) == (command, {})
