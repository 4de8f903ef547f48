"""Everything verify prints reads back: the correct formula it prints, fed back in with the same
left side and notation, holds; claims and correct formulas use no internal node names; an
unreadable formula is quoted as the user typed it."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from derive.verify import verify

ROOT = Path(__file__).resolve().parents[1]
ENTRIES = tomllib.loads((ROOT / "tests" / "fixtures" / "seed_formulas.toml").read_text("utf-8"))["formula"]
WRONG = [e for e in ENTRIES if e["expect"] == "does not hold"]
INTERNAL = re.compile(r"\b(HCat|VCat|VStack|MatVecT?|Outer|SumT|SumN|MatTranspose|Row)\(")


def notation_of(entry) -> str:
    name = entry["notation"]
    return str(ROOT / name) if name.endswith(".toml") else name


def left_side(latex: str) -> str:
    """The text before the first '=' outside braces."""
    depth = 0
    for n, ch in enumerate(latex):
        depth += (ch == "{") - (ch == "}")
        if ch == "=" and depth == 0:
            return latex[:n]
    raise AssertionError(f"no left side in {latex!r}")


@pytest.mark.parametrize("entry", WRONG, ids=[e["id"] for e in WRONG])
def test_the_printed_correct_formula_holds_when_fed_back(entry):
    quantity = entry.get("quantity") or None
    v = verify(entry["cell"], entry["latex"], quantity=quantity, notation=notation_of(entry))
    assert v.verdict == "does not hold" and v.correct, v.detail
    formula = v.correct if quantity else f"{left_side(entry['latex'])} = {v.correct}"
    again = verify(entry["cell"], formula, quantity=quantity, notation=notation_of(entry))
    assert again.verdict == "holds", (formula, again.detail)
    in_cell_names = verify(entry["cell"], f"{v.claim[0]} = {v.correct_cell}")
    assert in_cell_names.verdict == "holds", (v.claim[0], v.correct_cell, in_cell_names.detail)
    for text in [*v.claim, v.correct_cell]:
        assert not INTERNAL.search(text), text


@pytest.mark.parametrize("typed, shown", [
    (r"\mathrm{d}c^{<t>} = \mathrm{d}z^{<t>}", "z^{<t>}"),
    (r"\mathrm{d}c^{\left\langle t\right\rangle} = \mathrm{d}c^{\left\langle t\right\rangle} + )", ")"),
    ("\\mathrm{d}c^{<t>} =\n  \\mathrm{d}c^{<t>} + \\mathrm{d}q", "q"),
])
def test_an_unreadable_formula_is_quoted_as_typed(typed, shown):
    """The place is quoted from what the user typed, with a caret line under its column."""
    column = typed.splitlines()[-1].rindex(shown) + 1
    v = verify("lstm", typed, notation="coursera")
    assert v.verdict == "unreadable"
    assert f"column {column}: {shown}" in v.detail, v.detail
    line, caret = v.caret                 # the typed line, clipped with … around a long one
    assert line.strip("…") in typed.splitlines()[-1], v.caret
    assert line[caret.index("^"):].startswith(shown) and caret.strip() == "^" * len(shown), v.caret
    for text in (v.detail, *v.caret):
        assert "@{" not in text and r"\diff" not in text and "⟪" not in text, text


@pytest.mark.parametrize("formula, quantity, kind", [
    ("dc_next + dh*o*(1 - tanh(c))**2", "dc", "tanh' as (1-tanh)^2"),
    (r"\delta c = \bar{\delta} c + \delta h\, o\, (1 - \tanh c)^2", None, "tanh' as (1-tanh)^2"),
    ("U_f @ da_f + U_i.T @ da_i + U_g.T @ da_g + U_o.T @ da_o", "dh_prev", "missing transpose"),
    ("dc*c", "df", "wrong time index"),
])
def test_new_diagnoses(formula, quantity, kind):
    v = verify("lstm", formula, quantity=quantity)
    assert v.verdict == "does not hold"
    assert kind in [d.kind for d in v.diagnosis], v.diagnosis_text


def test_absolute_value_and_block_concatenation_read():
    assert verify("lstm", r"\delta f = \delta c\, c^{<t-1>} |f| / f").verdict == "holds"    # f > 0
    assert verify("lstm", r"\delta f = \delta c\, |c^{<t-1>}|").verdict == "does not hold"
    v = verify("lstm", r"\mathrm{d}w_o = \left[\mathrm{d}\hat{w}_o \mid \mathrm{d}\tilde{w}_o\right]",
               notation="coursera")
    assert v.verdict == "holds" and v.claim == ["hcat(dU_o, dW_o)", "hcat(dU_o, dW_o)"], v.detail


NAMES_CELL = """[cell]
name = "names"
[sizes]
D = "input size"
H = "hidden size"
[inputs]
x = "D"
[states]
hhat = "H"
c_1 = "H"
[params]
W_m_1 = ["H", "D"]
alpha = ["H", "H"]
W_f_t = ["H", "H"]
b_2 = "H"
[step]
outputs = ["hhat"]
equations = '''
eta_2 = tanh(W_m_1 @ x + alpha @ hhat_prev + b_2)
ctilde = sigmoid(W_f_t @ c_1_prev)
c_1 = ctilde * c_1_prev + eta_2
hhat = eta_2 * tanh(c_1)
'''
"""


def test_automatic_symbols_are_readable_latex_that_reads_back():
    """The default notation's symbols for names it does not list: accents, Greek letters and
    subscripts as a reader writes them; every backward equation printed with them holds."""
    import sympy as sp
    from derive import derive
    from derive.notation import load_notation
    from derive.spec import parse_spec
    d = derive(parse_spec(NAMES_CELL))
    names = load_notation("default").latex_names(d)
    printed = {s.name: latex for s, latex in names.items()}
    assert printed["hhat"].startswith(r"\hat{h}") and printed["ctilde"].startswith(r"\tilde{c}")
    assert printed["W_m_1"] == "W_{m,1}" and printed["alpha"] == r"\alpha"
    assert printed["eta_2"].startswith(r"\eta_{2}") and printed["W_f_t"] == "W_{f_{t}}"
    assert not any("\\_" in latex or "mathit" in latex for latex in printed.values()), printed
    for eq in d.backward:
        formula = f"{names[sp.Symbol(eq.target)]} = {sp.latex(eq.expr, symbol_names=names)}"
        v = verify(d, formula)
        assert v.verdict == "holds", (formula, v.detail)
