"""Malformed spec files: each one raises one SpecError naming the file, the line and the problem,
and none of them runs anything (the injection case would create /tmp/pwned).

Each row: spec file under tests/specs/bad/, the text of the line the error must point at (found
in the file here, independently of the parser; None where no single line is at fault) and words
the message must contain.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from cellgrad.cli import main as cellgrad_main
from derive import SpecError, derive, load_cell

ROOT = Path(__file__).resolve().parents[1]
BAD = Path(__file__).parent / "specs" / "bad"
PWNED = Path("/tmp/pwned")

CASES = {
    "unknown_name": ("U @ h_prev + q)", "unknown name 'q'"),
    "cycle": ("a = tanh(", "cycle: a -> z -> a"),
    "state_reads_itself": ("U @ h + b)", "cycle: h -> h"),
    "state_without_update": ('c = "H"', "state 'c' has no update"),
    "unknown_function": ("gelu(", "unknown function 'gelu'"),
    "unknown_alias_target": ('act = "gelu"', "unknown function 'gelu'"),
    "two_arguments": ("b, 2)", "takes exactly one argument"),
    "matmul_shape_mismatch": ("W @ h_prev", "shape mismatch in W @ h_prev"),
    "elementwise_size_mismatch": ("+ x +", "size mismatch"),
    "matrix_elementwise": ("W * x", "a matrix cannot take part in *"),
    "matmul_vector_left": ("x @ W", "left operand of @ must be a parameter matrix"),
    "vector_exponent": ("** h_prev", "exponent of ** must be a number"),
    "duplicate_name": ('x = "H"', "duplicate name 'x'"),
    "adjoint_collision": ('dh = "H"', "'dh'"),
    "keyword_adjoint": ("el = tanh(", "its adjoint would be 'del', a Python keyword"),
    "invalid_identifier": ('"W-1"', "invalid param name 'W-1'"),
    "dunder_name": ("__class__", "invalid param name '__class__'"),
    "keyword_name": ('lambda = "H"', "'lambda' in [params] is a reserved word"),
    "reserved_name": ('np = "H"', "'np' in [params] is a reserved word"),
    "attribute_access": (".clip(0)", "attribute access"),
    "import_call": ("__import__", "attribute access"),
    "lambda": ("(lambda v:", "lambda"),  # the equation is quoted on line 2; the problem must say it
    "lambda_operand": ("(lambda: 1)", "lambdas not allowed"),
    "subscript": ("b[0]", "subscripts not allowed"),
    "conditional": ("if b else", "conditionals not allowed"),
    "string_constant": ("'one'", "only numbers are allowed as constants"),
    "statement": ("import os", "an equation must read 'name = expression'"),
    "syntax_error": ("+ b\n", "cannot parse equation"),
    "assign_param": ("W = tanh(", "'W' is a param and cannot be assigned"),
    "assign_prev": ("h_prev = tanh(", "'h_prev' is a prev state and cannot be assigned"),
    "input_prev": ("W @ x_prev", "unknown name 'x_prev'"),
    "assigned_twice": ("h = sigmoid(", "'h' is assigned twice"),
    "unused_param": ('V = ["H", "H"]', "param 'V' is declared but no equation uses it"),
    "unused_intermediate": ("g = sigmoid(", "'g' is computed but never used"),
    "unknown_size": ('["H", "K"]', "unknown size 'K'"),
    "missing_outputs": (None, "[step] needs outputs"),
    "output_not_computed": ('outputs = ["y"]', "output 'y' is not computed"),
    "unknown_table": ("[parameters]", "unknown table [parameters]"),
    "wrong_toml": ("[params\n", "not valid TOML"),
    "non_finite_constant": (") * 1e999", "not a finite number"),
    "division_by_zero": ("/ 0", "division by zero"),
    "description_injection": ("description = ", "'description' in [cell] must be one line of text"),
    "empty": (None, "the spec file is empty"),
    "comments_only": (None, "missing required table [cell]"),
}

#: Rows that show a weakness of the parser; strict, so fixing it turns the row red as a reminder.
KNOWN_BUGS: dict[str, str] = {}


def expected_line(path: Path, marker: str | None) -> int | None:
    if marker is None:
        return None
    text = path.read_text()
    hits = [n for n, line in enumerate(text.splitlines(keepends=True), start=1) if marker in line]
    assert len(hits) == 1, f"marker {marker!r} must occur on exactly one line of {path.name}"
    return hits[0]


def check_message(message: str, path: Path, marker: str | None, problem: str) -> None:
    first = message.splitlines()[0]
    line = expected_line(path, marker)
    where = f"{path}:{line}:" if line is not None else f"{path}:"
    assert first.startswith(where), f"{first!r} should start with {where!r}"
    column = re.match(r"(\d+:)? ", first[len(where):]) if line is not None else None
    where += column.group() if column else " "   # file:line: or file:line:column:
    assert first.startswith(where), f"{first!r} should start with {where!r}"
    stated = first[len(where):]  # not the file name, not the quoted equation: the problem itself
    assert problem in stated, f"{problem!r} not in {stated!r}"


def row(name):
    marks = [pytest.mark.xfail(strict=True, reason=KNOWN_BUGS[name])] if name in KNOWN_BUGS else []
    return pytest.param(name, marks=marks, id=name)


def test_every_bad_spec_is_in_the_table():
    assert {p.stem for p in BAD.glob("*.toml")} == set(CASES)
    assert len(CASES) >= 20


@pytest.mark.parametrize("name", [row(n) for n in CASES])
def test_bad_spec_raises_one_spec_error_naming_file_line_and_problem(name):
    PWNED.unlink(missing_ok=True)
    path = BAD / f"{name}.toml"
    marker, problem = CASES[name]
    with pytest.raises(SpecError) as info:
        derive(load_cell(path))
    check_message(str(info.value), path, marker, problem)
    assert info.value.path == str(path)
    assert not PWNED.exists(), "loading a spec executed code from it"


@pytest.mark.parametrize("name", [row(n) for n in CASES])
def test_cli_reports_the_same_error_and_exits_2(name, capsys):
    path = BAD / f"{name}.toml"
    marker, problem = CASES[name]
    assert cellgrad_main(["derive", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("cellgrad: error: ")
    check_message(captured.err.removeprefix("cellgrad: error: "), path, marker, problem)


@pytest.mark.parametrize("name", ["import_call", "cycle", "wrong_toml"])
def test_cli_process_exits_2_without_a_traceback(name):
    PWNED.unlink(missing_ok=True)
    path = BAD / f"{name}.toml"
    result = subprocess.run([sys.executable, "-m", "cellgrad", "derive", str(path)],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 2
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith(f"cellgrad: error: {path}:")
    assert not PWNED.exists()
