"""The hostile corpus: inputs for every entry point (spec files, formulas, kernel arguments, the
command line), each with what must happen to it. tests/test_hostile.py runs them in child
processes (tests/hostile_runner.py) under a time and a memory limit.

A payload is a function that builds the input (so a 10 MB input exists only in the child). A
case expects "refused" (the project's own error, one short line; ``says`` is a part of it),
"accepted" (a documented acceptance: docs/guide.md says why) or "either" (random input: any
clean outcome). ``{CANARY}`` in a payload is a file path that must never be created.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

MB = 1_000_000
ROOT = Path(__file__).resolve().parents[1]
CELLS = ROOT / "derive" / "cells"


@dataclass(frozen=True)
class Case:
    id: str
    entry: str                  # "spec" | "formula" | "notation" | "document" | "kernel" | "cli" | "hypothesis"
    payload: Callable           # spec: -> str | bytes; formula: -> (cell, text[, quantity, notation])
                                # notation: -> (cell, notation file text, formula); document: -> (text, notation)
    expect: str = "refused"     # kernel: module -> call result; cli: -> argv; hypothesis: -> None
    says: str = ""


CASES: list[Case] = []


def case(entry: str, id: str, payload, expect: str = "refused", says: str = "") -> None:
    id = f"{entry}-{id}"
    assert all(c.id != id for c in CASES), id
    CASES.append(Case(id, entry, payload, expect, says))


# -- spec files -------------------------------------------------------------------------------

HEAD = '''[cell]
name = "{name}"

[sizes]
D = "input size"
H = "hidden size"

[inputs]
x = "D"

[states]
h = "H"

[params]
W = ["H", "D"]
U = ["H", "H"]

[step]
outputs = ["h"]
equations = \'\'\'
{equations}
\'\'\'
'''


def spec(equations: str, name: str = "hostile") -> str:
    return HEAD.replace("{name}", name).replace("{equations}", equations)


def eq(rhs: str) -> Callable[[], str]:
    """A spec whose state update is ``h = <rhs>`` (rhs uses W @ x and U @ h_prev)."""
    return lambda: spec(f"h = {rhs}")


OK = "tanh(W @ x + U @ h_prev)"
INJECT = "__import__('os').system('touch {CANARY}')"

# size: every limit crossed far, and just
case("spec", "sum_100k_terms", eq(OK + " + h_prev" * 100_000), says="limit")
case("spec", "sum_10MB", eq(OK + " + h_prev" * (MB)), says="too large")
case("spec", "product_2000_factors", eq(OK + " * h_prev" * 2000), says="limit")
case("spec", "product_150_factors", eq(OK + " * h_prev" * 150), "accepted")
case("spec", "operators_201", eq(OK + " + h_prev" * 200), says="too many operators")
case("spec", "operators_in_all_equations", lambda: spec("\n".join(
    [f"a{i} = tanh(W @ x" + " + h_prev" * 190 + ")" for i in range(22)]
    + ["h = " + " + ".join(f"a{i}" for i in range(22))])), says="too many operators")
case("spec", "equations_100k", lambda: spec("\n".join(f"a{i} = tanh(W @ x)" for i in range(100_000))
                                             + "\nh = U @ h_prev"), says="too large")
case("spec", "equations_201", lambda: spec("\n".join(
    ["a0 = tanh(W @ x + U @ h_prev)"] + [f"a{i} = tanh(a{i - 1})" for i in range(1, 200)]
    + ["h = a199"])), says="too many equations")
case("spec", "chain_of_150_equations", lambda: spec("\n".join(
    ["a0 = tanh(W @ x + U @ h_prev)"] + [f"a{i} = tanh(a{i - 1})" for i in range(1, 150)]
    + ["h = a149"])), "accepted")
case("spec", "fan_out_150", lambda: spec("\n".join(
    ["a = tanh(W @ x + U @ h_prev)"] + [f"b{i} = a * {i + 1}" for i in range(150)]
    + ["h = " + " + ".join(f"b{i}" for i in range(150))])), "accepted")
case("spec", "fan_out_wide_bad_end", lambda: spec("\n".join(
    ["a = tanh(W @ x + U @ h_prev)"] + [f"b{i} = a * {i + 1}" for i in range(150)]
    + ["h = " + " + ".join(f"b{i}" for i in range(150)) + " + nowhere"])), says="unknown name")
case("spec", "equation_2001_chars", eq(OK + " " * 2000 + "+ h_prev"), says="equation too long")
case("spec", "unary_minus_100k", eq("-" * 100_000 + OK), says="limit")
case("spec", "unary_minus_250", eq("-" * 250 + OK), says="too many operators")
case("spec", "unary_minus_190", eq("-" * 190 + OK), "accepted")
case("spec", "parentheses_100k", eq("(" * 100_000 + OK + ")" * 100_000), says="limit")
case("spec", "parentheses_33", eq("(" * 32 + OK + ")" * 32), says="nests too deeply")
case("spec", "parentheses_31", eq("(" * 29 + OK + ")" * 29), "accepted")
case("spec", "open_parentheses_10MB", eq("(" * 10 * MB), says="too large")
case("spec", "tanh_nested_40", eq("tanh(" * 40 + "W @ x + U @ h_prev" + ")" * 40),
     says="too deeply")
case("spec", "tanh_nested_6", eq("tanh(" * 6 + "W @ x + U @ h_prev" + ")" * 6),
     says="function calls nested too deeply")
case("spec", "tanh_nested_5", eq("tanh(" * 5 + "W @ x + U @ h_prev" + ")" * 5), "accepted")
case("spec", "calls_in_parentheses_30", eq("(" * 29 + OK + ")" * 29), "accepted")
case("spec", "power_tower_10k", eq(OK + " ** 2" * 10_000), says="limit")
case("spec", "power_tower_3", eq(OK + " ** 2 ** 2 ** 2"), says="exponent of ** must be a number")
case("spec", "power_of_numbers_nested", eq(OK + " * " + "(" * 12 + "2" + " ** 16)" * 12),
     says="a power of numbers is too large")
case("spec", "exponent_17", eq(OK + " ** 17"), says="exponent too large")
case("spec", "exponent_minus_17", eq(OK + " ** -17"), says="exponent too large")
case("spec", "exponent_minus_1", eq(OK + " * (2 + U @ h_prev) ** -1"), "accepted")
case("spec", "exponent_16", eq(OK + " ** 16"), "accepted")
case("spec", "exponent_half", eq(OK + " + (W @ x) ** 2 * 0 + (1 + h_prev ** 2) ** 0.5"), "accepted")
case("spec", "vector_squared", eq("(W @ x) ** 2 + U @ h_prev"), "accepted")
case("spec", "exponent_is_vector", eq(OK + " ** h_prev"), says="exponent of ** must be a number")
case("spec", "integer_1000_digits", eq(OK + " * 1" + "0" * 1000), says="limit")
case("spec", "integer_5000_digits", eq(OK + " * 1" + "0" * 5000), says="equation too long")
case("spec", "float_overflow_literal", eq(OK + " * 1e999"), says="not a finite number")
case("spec", "float_underflow_literal", eq(OK + " * 1e-400"), says="rounds to 0")
case("spec", "float_tiny_literal", eq(OK + " * 1e-300"), "accepted")
case("spec", "product_of_big_constants", eq(OK + " * 1e300 * 1e300"), says="too large")
case("spec", "quotient_of_tiny_constants", eq(OK + " * (1e-300 / 1e300)"), says="too large or too small")
case("spec", "hex_literal", eq(OK + " * 0xFFFFFFFFFFFFFFFFFFFFFFFF"), "accepted")
case("spec", "complex_literal", eq(OK + " * 1j"), says="only numbers")
case("spec", "identifier_10MB", eq(OK + " + " + "a" * 10 * MB), says="too large")
case("spec", "identifier_1500", eq(OK + " + " + "a" * 1500), says="unknown name")
case("spec", "cell_name_300", lambda: spec(f"h = {OK}", name="c" * 300), says="at most 64")
case("spec", "cell_name_64", lambda: spec(f"h = {OK}", name="c" * 64), "accepted")
case("spec", "cell_name_path", lambda: spec(f"h = {OK}", name="../../etc/passwd"), says="[cell]")
case("spec", "cell_name_empty", lambda: spec(f"h = {OK}", name=""), says="[cell]")
case("spec", "param_name_300", lambda: spec(f"h = {OK}").replace('U = ["H", "H"]',
     'U = ["H", "H"]\n' + "p" * 300 + ' = "H"'), says="too long")
case("spec", "size_name_300", lambda: spec(f"h = {OK}").replace('H = "hidden size"',
     'H = "hidden size"\n' + "S" * 300 + ' = "other"'), says="too long")
case("spec", "quantity_name_300", lambda: spec(f"{'q' * 300} = {OK}\nh = {'q' * 300}"), says="too long")
case("spec", "names_600", lambda: spec(f"h = {OK}").replace('U = ["H", "H"]', 'U = ["H", "H"]\n'
     + "\n".join(f'p{i} = "H"' for i in range(600))), says="too many names")
case("spec", "unknown_table_10k", lambda: spec(f"h = {OK}") + "[" + "t" * 10_000 + "]\n",
     says="unknown table")
case("spec", "unknown_size_10k", lambda: spec(f"h = {OK}").replace('W = ["H", "D"]',
     'W = ["H", "' + "K" * 10_000 + '"]'), says="unknown size")
case("spec", "output_10k", lambda: spec(f"h = {OK}").replace('outputs = ["h"]',
     'outputs = ["' + "o" * 10_000 + '"]'), says="is not computed")
case("spec", "alias_target_10k", lambda: spec(f"h = {OK}") + '[functions]\nact = "' + "g" * 10_000 + '"\n',
     says="unknown function")
case("spec", "description_10k", lambda: spec(f"h = {OK}").replace('name = "hostile"',
     'name = "hostile"\ndescription = "' + "d" * 10_000 + '"'), says="one line of text")
case("spec", "file_of_262145_bytes", lambda: spec(f"h = {OK}") + "#" * 262_145, says="too large")
case("spec", "comment_of_200kB", lambda: spec(f"h = {OK}") + "#" * 200_000 + "\n", "accepted")
case("spec", "blank_lines_200k", lambda: spec(f"h = {OK}" + "\n" * 200_000), "accepted")
case("spec", "toml_nested_arrays_100k", lambda: "a = " + "[" * 100_000 + "]" * 100_000,
     says="TOML nests too deeply")
case("spec", "toml_nested_tables_20k", lambda: "a = " + "{b = " * 20_000 + "1" + "}" * 20_000,
     says="TOML nests too deeply")
case("spec", "toml_nested_arrays_17", lambda: spec(f"h = {OK}") + "[cell.x]\ny = " + "[" * 17 + "]" * 17,
     says="TOML nests too deeply")
case("spec", "toml_brackets_in_strings", lambda: spec(f"h = {OK}").replace('name = "hostile"',
     'name = "hostile"\ndescription = "' + "[{" * 90 + '"'), "accepted")
case("spec", "toml_unterminated_string", lambda: 'a = "' + "x" * 1000, says="not valid TOML")
case("spec", "toml_unterminated_multiline", lambda: "a = '''" + "x\n" * 1000, says="not valid TOML")
case("spec", "toml_many_keys", lambda: "\n".join(f"k{i} = {i}" for i in range(10_000)),
     says="unknown table")
case("spec", "toml_huge_integer", lambda: "a = 1" + "0" * 10_000, says="not valid TOML")
case("spec", "toml_duplicate_table", lambda: spec(f"h = {OK}") + "[cell]\n", says="not valid TOML")

# the language: what is refused, what is accepted on purpose
case("spec", "trailing_semicolon", eq(OK + ";"), says="';' is not part of the spec language")
case("spec", "two_statements", eq(OK + "; import os"), says="';'")
case("spec", "backslash_continuation", eq(OK + " \\"), says="'\\\\' is not part of")
case("spec", "backslashes_100k", eq(OK + "\\" * 100_000), says="limit")
case("spec", "crlf_line_endings", lambda: spec(f"h = {OK}").replace("\n", "\r\n"), "accepted")
case("spec", "tabs", lambda: spec(f"h =\t{OK}").replace(" = ", "\t=\t"), "accepted")
case("spec", "utf8_bom", lambda: "\ufeff" + spec(f"h = {OK}"), says="not valid TOML")
case("spec", "not_utf8", lambda: b"\xff\xfe" + spec(f"h = {OK}").encode("utf-16-le"), says="not UTF-8")
case("spec", "nul_bytes", lambda: spec(f"h = {OK}").replace("tanh", "ta\0nh"), says="not valid TOML")
case("spec", "unicode_identifier", eq(OK + " + ω"), says="printable ASCII")
case("spec", "unicode_minus", eq(OK + " − h_prev"), says="U+2212")
case("spec", "fullwidth_letters", eq("ｔａｎｈ(W @ x + U @ h_prev)"), says="printable ASCII")
case("spec", "planck_constant_h", eq(OK + " + ℎ_prev"), says="printable ASCII")
case("spec", "right_to_left_override", eq(OK + " + \u202eh_prev"), says="U+202E")
case("spec", "zero_width_space", eq(OK + " +\u200b h_prev"), says="printable ASCII")
case("spec", "empty_file", lambda: "", says="empty")
case("spec", "whitespace_only", lambda: " \n\t\n" * 1000, says="empty")
case("spec", "comments_only", lambda: "# x\n" * 1000, says="missing required table")
case("spec", "binary_noise", lambda: bytes(range(256)) * 100, says="not UTF-8")
case("spec", "equations_not_a_string", lambda: spec(f"h = {OK}").replace(
    "equations = '''", "equations = 3\nzz = '''"), says="[step]")

# code injection: parsed, never run (the canary file must not appear)
case("spec", "inject_import_call", eq(f"{OK} + {INJECT}"), says="attribute access")
case("spec", "inject_exec", eq(f"{OK} + exec(\"open('{{CANARY}}', 'w')\")"), says="unknown function")
case("spec", "inject_eval", eq(f"{OK} + eval(\"open('{{CANARY}}', 'w')\")"), says="unknown function")
case("spec", "inject_open", eq(f"{OK} + open('{{CANARY}}', 'w')"), says="unknown function")
case("spec", "inject_dunder_class", eq(f"{OK} + ().__class__.__base__"), "refused")
case("spec", "inject_lambda", eq(f"{OK} + (lambda: {INJECT})()"), says="lambda")
case("spec", "inject_walrus", eq(f"{OK} + (z := 1)"), says="assignment expressions")
case("spec", "inject_fstring", eq(f"{OK} + f'{{{INJECT}}}'"), says="cannot parse")
case("spec", "inject_fstring_plain", eq(OK + " + f'{h_prev}'"), says="strings")
case("spec", "inject_list_comprehension", eq(f"{OK} + [{INJECT} for _ in 'a']"), "refused")
case("spec", "inject_generator", eq(f"{OK} + sum({INJECT} for _ in 'a')"), "refused")
case("spec", "inject_getattr", eq(f"{OK} + getattr(h_prev, 'x')"), says="unknown function")
case("spec", "inject_in_lhs", lambda: spec(f"h = {OK}\n{INJECT} = h"), says="equation")
case("spec", "inject_in_name", lambda: spec(f"h = {OK}", name=INJECT), says="[cell]")
case("spec", "inject_in_description", lambda: spec(f"h = {OK}").replace(
    'name = "hostile"', 'name = "hostile"\ndescription = """\\"\\"\\" + ' + INJECT.replace("'", '\\"') + ' #"""'),
    says="one line of text")
case("spec", "inject_in_size_meaning", lambda: spec(f"h = {OK}").replace(
    '"hidden size"', '"\\"\\"\\"; ' + INJECT.replace("'", '\\"') + '; \\"\\"\\""'), says="one line of text")
case("spec", "inject_alias", lambda: spec(f"h = {OK}") + f'[functions]\nact = "{INJECT}"\n',
     says="attribute access")
case("spec", "inject_import_statement", lambda: spec(f"h = {OK}\nimport os"), says="name = expression")
case("spec", "inject_decorator_like", eq(f"{OK} @ h_prev"), "refused")
case("spec", "inject_breakpoint", eq(f"{OK} + breakpoint()"), says="unknown function")
case("spec", "inject_format_braces", lambda: spec(f"h = {OK}").replace(
    'name = "hostile"', 'name = "hostile"\ndescription = "{__import__} %s %(x)s {0}"'), "accepted")


# -- formulas ----------------------------------------------------------------------------------

HOLDS = r"\mathrm{d}c = \mathrm{d}c_{next} + \mathrm{d}h\, o (1 - \tanh^2 c)"


def formula(text_or_builder, cell: str = "lstm", quantity=None, notation=None):
    build = text_or_builder if callable(text_or_builder) else (lambda: text_or_builder)
    return lambda: (cell, build(), quantity, notation)


def fcase(id: str, text, expect: str = "refused", says: str = "", **kw) -> None:
    case("formula", id, formula(text, **kw), expect, says)


fcase("braces_10MB", lambda: "{" * 10 * MB, says="formula too long")
fcase("sum_10MB", lambda: "dc = " + "dh + " * (MB // 2), says="formula too long")
fcase("sum_3000_terms", lambda: "dc = " + " + ".join(["dh"] * 3000), "accepted")
fcase("sympy_sum_4000_terms", lambda: "dc = " + "+".join(["dh"] * 4000), "accepted")
fcase("frac_nested_10k", lambda: "dc = " + r"\frac{" * 10_000 + "1" + "}{2}" * 10_000, says="limit")
fcase("frac_nested_41", lambda: "dc = " + r"\frac{" * 41 + "1" + "}{2}" * 41, says="nests too deeply")
fcase("frac_nested_30", lambda: "dc = dh " + r"\frac{" * 30 + "1" + "}{2}" * 30, "accepted")
fcase("sigma_nested_100k", lambda: "dc = " + r"\sigma(" * 100_000 + "c" + ")" * 100_000, says="limit")
fcase("sigma_nested_41", lambda: "dc = " + r"\sigma(" * 41 + "c" + ")" * 41, says="too deeply")
fcase("tanh_nested_6", lambda: "dc = dh " + r"\tanh(" * 6 + "c" + ")" * 6, says="calls nested too deeply")
fcase("tanh_nested_5", lambda: "dc = dh " + r"\tanh(" * 5 + "c" + ")" * 5, "accepted")
fcase("tanh_nested_in_parentheses", lambda: "dc = dh " + r"\tanh((" * 4 + "c" + "))" * 4, "accepted")
fcase("tanh_nested_as_powers", lambda: "dc = dh " + r"\tanh^{2}(" * 6 + "c" + ")" * 6, says="calls nested")
fcase("braces_nested_100k", lambda: "dc = " + "{" * 100_000 + "dh" + "}" * 100_000, says="limit")
fcase("brackets_nested_41", lambda: "dc = " + "[" * 41 + "dh" + "]" * 41, says="nests too deeply")
fcase("parens_nested_41", lambda: "dc = " + "(" * 41 + "dh" + ")" * 41, says="nests too deeply")
fcase("parens_unbalanced_10k", lambda: "dc = " + "(" * 10_000, says="nests too deeply")
fcase("closing_parens_10k", lambda: "dc = dh" + ")" * 10_000, "refused")
fcase("power_tower_10k", lambda: "dc = dh" + "^{2" * 10_000 + "}" * 10_000, says="limit")
fcase("power_tower_20", lambda: "dc = dh" + "^{2" * 20 + "}" * 20, says="exponent too large")
fcase("power_2_2_2_40", r"dc = 2^{2^{2^{40}}} \mathrm{d}h", says="exponent too large")
fcase("power_10_10_10", r"dc = 10^{10^{10}} \mathrm{d}h", says="exponent too large")
fcase("power_of_powers", r"dc = ((((10^{16})^{16})^{16})^{16}) \mathrm{d}h", says="power of numbers")
fcase("power_exponent_product", r"dc = 2^{4 \cdot 4 \cdot 4} \mathrm{d}h", says="exponent too large")
fcase("power_16", r"\mathrm{d}c = \mathrm{d}h^{16}", "accepted")
fcase("power_negative", r"\mathrm{d}c = \mathrm{d}h^{-2}", "accepted")
fcase("power_float", r"\mathrm{d}c = \mathrm{d}h^{0.5}", "accepted")
fcase("power_17_of_function", r"\mathrm{d}c = \tanh^{17} c", says="exponent too large")
fcase("big_number_products", lambda: "dc = " + r"10^{16} \cdot " * 30 + "dh", says="too large")
fcase("number_100_digits", lambda: "dc = " + "9" * 100 + " dh", "accepted")
fcase("number_101_digits", lambda: "dc = " + "9" * 101 + " dh", says="too long")
fcase("number_5000_digits", lambda: "dc = " + "9" * 5000 + " dh", says="too long")
fcase("decimal_fraction_long", lambda: "dc = 0." + "1" * 99 + " dh", "accepted")
fcase("sympy_power_tower", "dc = dh**2**2**2**2**2", says="exponent too large")
fcase("sympy_power_chain_3000", lambda: "dc = dh" + "**dh" * 3000, says="nests too deeply")
fcase("sympy_exponent_huge", "dc = dh**99999999999999", says="exponent too large")
fcase("unary_minus_100k", lambda: "dc = " + "-" * 100_000 + "dh", says="limit")
fcase("unary_minus_5k_after_product", lambda: "dc = dh * " + "-" * 5000 + "dh", says="signs in a row")
fcase("unary_minus_4", "dc = dh * - - - - dh", "accepted")
fcase("unary_minus_alternating", lambda: "dc = " + "-(" * 41 + "dh" + ")" * 41, says="nests too deeply")
fcase("trailing_backslashes_100k", lambda: HOLDS + "\\" * 100_000, says="limit")
fcase("trailing_backslashes_4", HOLDS + "\\\\\\\\", says="backslashes in a row")
fcase("trailing_backslashes_3", HOLDS + "\\\\\\", says="backslashes in a row")
fcase("trailing_line_break", HOLDS + r" \\", "accepted")
fcase("line_break_before_command", r"\mathrm{d}c = \mathrm{d}c_{next} \\\quad + \mathrm{d}h\, o (1 - \tanh^2 c)",
      "accepted")
fcase("lone_backslash", HOLDS + " \\", "refused")
fcase("identifier_10MB", lambda: "dc = " + "a" * 10 * MB, says="formula too long")
fcase("identifier_101", lambda: "dc = " + "a" * 101, says="too long")
fcase("identifier_100", lambda: "dc = " + "a" * 100, "refused")
fcase("parens_10MB", lambda: "(" * 10 * MB, says="formula too long")
fcase("parens_100k", lambda: "(" * 100_000, says="formula too long")
fcase("subscript_spam", lambda: "dc = dh" + "_{t}" * 4000, "refused")
fcase("time_index_huge", r"\mathrm{d}c^{<t-99999999999>} = \mathrm{d}h", "refused")
fcase("time_index_absolute_huge", r"\mathrm{d}c^{<99999999999>} = \mathrm{d}h^{<99999999999>}", "either")
fcase("array_spam", lambda: "dc = " + r"\begin{array}{c}" * 1400, "refused")
fcase("comment_spam", lambda: HOLDS + r" \# x" * 3000, "accepted")
fcase("empty", "", says="empty formula")
fcase("spaces_only", lambda: " " * 19_000, says="empty formula")
fcase("nul_characters", "dc = dh\0\0", says="unexpected character")
fcase("control_characters", "dc = dh\x1b[31m", "refused")
fcase("unicode_noise", "dc = dh ☃ ∑ ∂", "refused")
fcase("rtl_override", "dc = \u202edh", "refused")
fcase("emoji_letters", "dc = 𝒹h", "refused")
fcase("equals_only", "=", "refused")
fcase("equals_5000", lambda: "=" * 5000, "refused")
fcase("chain_of_1000_equals", lambda: "dc = " + " = ".join(["dc"] * 1000), "either")
fcase("division_by_zero", r"\mathrm{d}c = \frac{\mathrm{d}h}{0}", "either")
fcase("inject_python", f"dc = {INJECT}", "refused")
fcase("inject_dunder", "dc = dh.__class__.__mro__", "refused")
fcase("inject_sympy_eval", "dc = Symbol('x')", "refused")
fcase("inject_sympify_string", "dc = sympify(\"__import__('os')\")", "refused")
fcase("inject_latex_input", r"\input{/etc/passwd} \mathrm{d}c = \mathrm{d}h", "refused")
fcase("inject_latex_write", r"\immediate\write18{touch {CANARY}} \mathrm{d}c = \mathrm{d}h", "refused")
case("formula", "quantity_10MB", lambda: ("lstm", "dh", "d" * 10 * MB, None), says="limit")
case("formula", "quantity_inject", lambda: ("lstm", "dh", INJECT, None), "refused")
case("formula", "quantity_unknown", lambda: ("lstm", "dh", "dq", None), says="no quantity")
case("formula", "notation_10k_name", lambda: ("lstm", HOLDS, None, "n" * 10_000), says="notation")
case("formula", "notation_path_too_long", lambda: ("lstm", HOLDS, None, "n" * 300), says="notation")
case("formula", "notation_dev_zero", lambda: ("lstm", HOLDS, None, "/dev/zero"), says="notation")
case("formula", "notation_with_nul", lambda: ("lstm", HOLDS, None, "a\0b.toml"), says="notation")
case("formula", "cell_name_10k", lambda: ("c" * 10_000, HOLDS, None, None), says="cell")
case("formula", "cell_unknown", lambda: ("no_such_cell", HOLDS, None, None), says="unknown cell")
fcase("holds", HOLDS, "accepted")
fcase("does_not_hold", r"\mathrm{d}c = \mathrm{d}h\, o", "accepted")


# -- kernel arguments --------------------------------------------------------------------------
# Each payload gets the generated module (rnn and lstm, NumPy backend) and makes one call.

def _np():
    import numpy as np
    return np


def _x(m, T=3, N=2, dtype="float64", D=None):
    np = _np()
    D = D if D is not None else 4
    return np.ones((T, N, D), dtype=dtype)


def _params(m, dtype="float64"):
    return m.init_params(input_size=4, hidden_size=5, dtype=_np().dtype(dtype))


def kcase(id: str, call, expect: str = "refused", says: str = "", cell: str = "rnn") -> None:
    case("kernel", f"{cell}_{id}", (lambda m, call=call: call(m), cell), expect, says)


for name, value in [("zero", 0), ("negative", -1), ("float", 3.5), ("bool", True), ("string", "5"),
                    ("none", None), ("huge", 2 ** 70), ("numpy_bool", "np.bool_"), ("list", [5])]:
    def sized(m, value=value, key="hidden_size"):
        v = _np().bool_(True) if value == "np.bool_" else value
        return m.init_params(**{"input_size": 4, "hidden_size": 5, key: v})
    kcase(f"init_params_hidden_size_{name}", sized, says="hidden_size")
    kcase(f"init_params_input_size_{name}", lambda m, s=sized: s(m, key="input_size"), says="input_size")
kcase("init_params_numpy_int", lambda m: m.init_params(input_size=_np().int64(4), hidden_size=_np().int32(5)),
      "accepted")
for name in ["evil", "int32", "complex128", "object", "float16", "bool", "U5"]:
    kcase(f"init_params_dtype_{name}", lambda m, n=name: m.init_params(
        input_size=4, hidden_size=5, dtype=n if n == "evil" else _np().dtype(n)), says="dtype")
kcase("init_params_dtype_class", lambda m: m.init_params(input_size=4, hidden_size=5, dtype=dict), says="dtype")
kcase("init_params_dtype_float32", lambda m: m.init_params(input_size=4, hidden_size=5,
                                                           dtype=_np().float32), "accepted")
kcase("init_params_dtype_string_float64", lambda m: m.init_params(input_size=4, hidden_size=5,
                                                                  dtype="float64"), "accepted")
kcase("init_params_seed_string", lambda m: m.init_params(input_size=4, hidden_size=5, seed="evil"), says="seed")
kcase("init_params_seed_negative", lambda m: m.init_params(input_size=4, hidden_size=5, seed=-1), says="seed")
kcase("init_params_seed_float", lambda m: m.init_params(input_size=4, hidden_size=5, seed=0.5), says="seed")

for cell in ("rnn", "lstm"):
    kcase("forward_x_list", lambda m: m.forward([[[1.0] * 4]], _params(m)), says="x", cell=cell)
    kcase("forward_x_none", lambda m: m.forward(None, _params(m)), says="x", cell=cell)
    kcase("forward_x_2d", lambda m: m.forward(_np().ones((3, 4)), _params(m)), says="x", cell=cell)
    kcase("forward_x_4d", lambda m: m.forward(_np().ones((3, 2, 4, 1)), _params(m)), says="x", cell=cell)
    kcase("forward_x_wrong_size", lambda m: m.forward(_x(m, D=7), _params(m)), says="x", cell=cell)
    kcase("forward_x_int", lambda m: m.forward(_x(m, dtype="int64"), _params(m)), says="x", cell=cell)
    kcase("forward_x_complex", lambda m: m.forward(_x(m, dtype="complex128"), _params(m)), says="x",
          cell=cell)
    kcase("forward_x_object", lambda m: m.forward(_x(m, dtype="object"), _params(m)), says="x", cell=cell)
    kcase("forward_x_bool", lambda m: m.forward(_x(m, dtype="bool"), _params(m)), says="x", cell=cell)
    kcase("forward_x_float16", lambda m: m.forward(_x(m, dtype="float16"), _params(m)), says="x", cell=cell)
    kcase("forward_dtype_mix", lambda m: m.forward(_x(m, dtype="float32"), _params(m)), says="dtype",
          cell=cell)
    kcase("forward_params_none", lambda m: m.forward(_x(m), None), says="params", cell=cell)
    kcase("forward_params_missing", lambda m: m.forward(_x(m), {k: v for k, v in list(_params(m).items())[1:]}),
          says="params", cell=cell)
    kcase("forward_params_extra", lambda m: m.forward(_x(m), {**_params(m), "evil": 1}), says="params",
          cell=cell)
    kcase("forward_params_wrong_shape", lambda m: m.forward(_x(m), {k: v[..., :1] if v.ndim == 2 else v
                                                                       for k, v in _params(m).items()}),
          says="params", cell=cell)
    kcase("forward_params_list", lambda m: m.forward(_x(m), {k: v.tolist() for k, v in _params(m).items()}),
          says="params", cell=cell)
    kcase("forward_state_wrong_shape", lambda m: m.forward(_x(m), _params(m), {s: _np().ones((9, 9))
                                                                               for s in m.STATES}),
          says="state", cell=cell)
    kcase("forward_state_not_dict", lambda m: m.forward(_x(m), _params(m), 3), says="state", cell=cell)
    kcase("forward_fine", lambda m: m.forward(_x(m), _params(m)), "accepted", cell=cell)
    kcase("forward_nan_values", lambda m: m.forward(_x(m) * float("nan"), _params(m)), "accepted", cell=cell)
    kcase("backward_cache_none", lambda m: m.backward({o: _np().ones((3, 2, 5)) for o in m.OUTPUTS}, None),
          says="cache", cell=cell)
    kcase("backward_cache_forged", lambda m: m.backward({o: _np().ones((3, 2, 5)) for o in m.OUTPUTS},
                                                        {"x": 1}), says="cache", cell=cell)
    kcase("backward_d_outputs_wrong_shape",
          lambda m: m.backward({o: _np().ones((3, 2, 9)) for o in m.OUTPUTS}, m.forward(_x(m), _params(m))[2]),
          says="d_outputs", cell=cell)
    kcase("backward_d_outputs_int",
          lambda m: m.backward({o: _np().ones((3, 2, 5), int) for o in m.OUTPUTS},
                               m.forward(_x(m), _params(m))[2]), says="d_outputs", cell=cell)
    kcase("backward_d_outputs_missing", lambda m: m.backward({}, m.forward(_x(m), _params(m))[2]),
          says="d_outputs", cell=cell)
    kcase("backward_d_state_wrong_shape",
          lambda m: m.backward({o: _np().ones((3, 2, 5)) for o in m.OUTPUTS}, m.forward(_x(m), _params(m))[2],
                               {s: _np().ones((2, 9)) for s in m.STATES}), says="d_state", cell=cell)
    kcase("backward_fine", lambda m: m.backward({o: _np().ones((3, 2, 5)) for o in m.OUTPUTS},
                                                m.forward(_x(m), _params(m))[2]), "accepted", cell=cell)


# -- command line ------------------------------------------------------------------------------
# Run in the child as cellgrad.cli.main(argv): exit code != 0, a message, no traceback.

def ccase(id: str, argv, expect: str = "refused", says: str = "") -> None:
    case("cli", id, argv if callable(argv) else (lambda: argv), expect, says)


ccase("no_arguments", [], "either")
ccase("unknown_command", ["frobnicate"])
ccase("derive_cell_name_300", lambda: ["derive", "c" * 300], says="cell")
ccase("derive_cell_name_10k", lambda: ["derive", "c" * 10_000], says="cell")
ccase("derive_path_too_long", lambda: ["derive", "/".join(["d"] * 3000) + ".toml"], says="spec")
ccase("derive_nul_in_name", ["derive", "ls\0tm"], says="cell")
ccase("derive_directory", ["derive", "/tmp"], says="spec file")
ccase("derive_dev_zero", ["derive", "/dev/zero"], says="spec file")
ccase("derive_dev_stdin", ["derive", "/dev/stdin"], says="spec file")
ccase("derive_missing_file", ["derive", "/nonexistent/cell.toml"], says="spec file")
ccase("derive_truncate_negative", ["derive", "lstm", "--truncate", "-1"], says="truncate")
ccase("derive_truncate_not_a_number", ["derive", "lstm", "--truncate", "x"], says="truncate")
ccase("generate_out_is_a_file", ["generate", "rnn", "--out", "/etc/hostname"])
ccase("generate_out_under_a_file", ["generate", "rnn", "--out", "/etc/hostname/x"])
ccase("generate_unknown_backend", ["generate", "rnn", "--backend", "evil"], says="backend")
ccase("doc_unknown_format", ["doc", "rnn", "--format", "exe"], says="format")
ccase("doc_notation_long", lambda: ["doc", "rnn", "--format", "md", "--notation", "n" * 300, "--out",
                                    "{CANARY}"], says="notation")
ccase("doc_out_under_a_file", ["doc", "rnn", "--format", "md", "--out", "/etc/hostname/x.md"])
ccase("verify_formula_10MB", lambda: ["verify", "lstm", "--formula", "dc = " + "dh+" * (3 * MB)], says="limit")
ccase("verify_formula_dev_zero", ["verify", "lstm", "--formula", "/dev/zero"])
ccase("verify_quantity_long", lambda: ["verify", "lstm", "--quantity", "d" * 10_000, "--formula", "dh"],
      says="limit")
ccase("verify_notation_dev_zero", ["verify", "lstm", "--notation", "/dev/zero", "--formula", "dc = dh"],
      says="notation")
ccase("verify_no_formula", ["verify", "lstm"], says="formula")
ccase("verify_inject", ["verify", "lstm", "--formula", f"dc = {INJECT}"])
ccase("check_steps_zero", ["check", "rnn", "--steps", "0"])
ccase("check_steps_negative", ["check", "rnn", "--steps", "-3"])
ccase("check_batch_huge", ["check", "rnn", "--batch", "1000000000000"])
ccase("check_unknown_cell", ["check", "nosuchcell"], says="unknown cell")


# -- documents (verify --document) and notation files -------------------------------------------

def dcase(id: str, text, expect: str = "accepted", says: str = "", notation=None) -> None:
    build = text if callable(text) else (lambda: text)
    case("document", id, lambda: (build(), notation), expect, says)


# an opener never closed must not make the reader look for its closer again at every later one
dcase("unclosed_brackets_200k", lambda: "\\[" * 200_000)
dcase("unclosed_parens_200k", lambda: "\\(" * 200_000)
dcase("unclosed_comments_200k", lambda: "<!--" * 200_000)
dcase("unclosed_align_100k", lambda: "\\begin{align}" * 100_000)
dcase("dollars_400k", lambda: "$" * 400_000)
dcase("display_of_unclosed_begin", "$$\\begin{x$$")           # once looped for ever
dcase("display_of_unclosed_end", "$$dc = dh \\\\ \\end{x$$")
dcase("formulas_2001", lambda: "$dc = dh$\n" * 2001, "refused", says="limit")
dcase("same_formula_1000", lambda: "$\\mathrm{d}c = \\mathrm{d}h$\n" * 1000)
dcase("chain_of_20k_rows", lambda: "$$\\begin{aligned} dc " + " \\\\ ".join(["&= dh"] * 20_000)
      + " \\end{aligned}$$")
dcase("rows_20k", lambda: "$$\\begin{aligned} " + " \\\\ ".join(["x"] * 20_000) + " \\end{aligned}$$",
      "refused", says="limit")
dcase("notation_missing", "$dc = dh$", "refused", says="notation", notation="/nonexistent/n.toml")
dcase("notation_dev_zero", "$dc = dh$", "refused", says="notation", notation="/dev/zero")

NOTATION_HEAD = '[notation]\nname = "hostile"\ncells = ["lstm"]\n'


def ncase(id: str, body, expect: str = "refused", says: str = "") -> None:
    build = body if callable(body) else (lambda: body)
    case("notation", id, lambda: ("lstm", NOTATION_HEAD + build(), HOLDS), expect, says)


ncase("symbols_10k", lambda: "[symbols]\n" + "".join(f"s{k} = 'q{k}'\n" for k in range(10_000)), says="limit")
ncase("symbols_500", lambda: "[symbols]\n" + "".join(f"s{k} = 'q{k}'\n" for k in range(500)), "accepted")
ncase("read_10k", lambda: "[read]\n" + "".join(f"'q{k}' = 'c'\n" for k in range(10_000)), says="limit")
ncase("symbol_100k_chars", lambda: f"[symbols]\nc = '{'c' * 100_000}'\n", says="limit")
ncase("symbol_nested_braces", lambda: "[symbols]\nc = '" + "{" * 5000 + "c" + "}" * 5000 + "'\n", says="limit")
ncase("key_10k_chars", lambda: f"[symbols]\n'{'k' * 10_000}' = 'c'\n", says="limit")
ncase("template_without_hash", "adjoint = 'd'\n")
ncase("symbol_is_a_table", "[symbols]\nc = { a = 1 }\n")
ncase("symbol_is_empty", "[symbols]\nc = ''\n")
ncase("unknown_table", "[evil]\nx = 1\n", says="unknown table")
ncase("bytes_300k", lambda: "# " + "x" * 300_000 + "\n", says="limit")


# -- random inputs and truncations (hypothesis, run inside the child) ---------------------------

def builtin_spec_texts() -> list[str]:
    return [p.read_text(encoding="utf-8") for p in sorted(CELLS.glob("*.toml"))]


SEED_FORMULAS = [
    HOLDS, r"\mathrm{d}\Gamma_f = \mathrm{d}c * c^{<t-1>}",
    r"\frac{\partial E}{\partial a_o} = \mathrm{d}h \tanh(c) \odot o (1 - o)",
    "dc_next + dh*o*(1 - tanh(c)**2)", r"dW_f = \sum_t \mathrm{d}a_f\, [h_{t-1}, x_t]^T",
]
NOTATIONS = sorted([*(ROOT / "derive" / "notations").glob("*.toml"), *(ROOT / "docs" / "notations").glob("*.toml")])
DOCUMENTS = sorted((ROOT / "tests" / "fixtures" / "verify_documents").glob("*.md"))


def notation_texts() -> list[str]:
    """The built-in notations and the seed documents' notation files, as users' files to cut."""
    return [p.read_text(encoding="utf-8") for p in NOTATIONS]


def document_texts() -> list[str]:
    return [p.read_text(encoding="utf-8") for p in DOCUMENTS]


HYPOTHESIS_EXAMPLES = {"spec_bytes": 60, "spec_text": 60, "spec_truncations": 60,
                       "formula_text": 60, "formula_truncations": 40,
                       "notation_truncations": 40, "notation_edits": 40,
                       "document_windows": 30, "document_text": 30}
for kind, count in HYPOTHESIS_EXAMPLES.items():
    case("hypothesis", f"{kind}_{count}_examples", lambda kind=kind: kind, "either")

ALPHABET = string.printable + "σ∂⊙（）−\u202e\0"
