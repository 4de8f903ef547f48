"""The textbook's gradient notation (Goodfellow, Bengio & Courville, *Deep Learning* 10.2.2):
``\\nabla_{h^{(t)}} L`` for the gradient, ``\\mathrm{diag}(v)`` inside products, steps and
transposes in one superscript (``h^{(t-1)T}``). Each new form is checked against the same formula
written with the forms verify already read (``\\frac{\\partial L}{\\partial h^{(t)}}``, ``\\odot``
and explicit parentheses, so the hand-written side is unambiguous), over random placements."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import pytest
import sympy as sp
from hypothesis import HealthCheck, given, settings, strategies as st

from derive import derive, load_cell
from derive.notation import load_notation
from derive.verify import VerifyError, verify
from derive.verify.context import Context
from derive.verify.normalize_latex import normalize_latex
from derive.verify.parse import parse_formula
from derive.verify.vocabulary import get_reading

OWN = Path(__file__).resolve().parent / "fixtures" / "verify_documents"
CELL = str(OWN / "goodfellow_rnn.toml")
NOTATION = str(OWN / "goodfellow_notation.toml")
#: the lead's first notation for the book: every template spelled \nabla_{#} L
ALL_NABLA = """[notation]
name = "goodfellow"
time = "paren"
adjoint = '\\nabla_{#} L'
carried = '\\nabla_{#} L'
upstream = '\\nabla_{#} L'
loss = 'L'
[symbols]
h = 'h'
x = 'x'
o = 'o'
a = 'a'
"""


@lru_cache(maxsize=None)
def context() -> Context:
    d = derive(load_cell(CELL))
    return Context(d, get_reading(NOTATION, d))


def sides(text: str):
    return parse_formula(text, context()).sides


def same(a: str, b: str) -> bool:
    """Both formulas read as the same SymPy expression (every side)."""
    left, right = sides(a), sides(b)
    return len(left) == len(right) and all(sp.expand(x - y) == 0 for x, y in zip(left, right))


def alike(written: str, by_hand: str) -> None:
    """Read as the same expression, or refused alike (dL^(t)/dh^(t-1) is no quantity of the
    cell whichever way it is written)."""
    try:
        sides(by_hand)
    except VerifyError as err:
        with pytest.raises(VerifyError) as refused:
            sides(written)
        assert refused.value.problem == err.problem, (written, by_hand)
        return
    assert same(written, by_hand), (written, by_hand)


# -- ∇_X L is ∂L/∂X -----------------------------------------------------------------------

STEPS = ["t-1", "t", "t+1"]
#: (the gradient as the book writes it, the same with \frac) for a vector of size H
GRADIENTS = st.sampled_from(["h", "a"]).flatmap(lambda name: st.sampled_from(STEPS).flatmap(
    lambda step: st.sampled_from([
        (rf"\nabla_{{{name}^{{({step})}}}} L", rf"\frac{{\partial L}}{{\partial {name}^{{({step})}}}}"),
        (rf"\nabla_{{\boldsymbol{{{name}}}^{{({step})}}}} L",
         rf"\frac{{\partial L}}{{\partial {name}^{{({step})}}}}"),
        (rf"\nabla_{{{name}^{{({step})}}}} L^{{(t)}}",
         rf"\frac{{\partial L^{{(t)}}}}{{\partial {name}^{{({step})}}}}"),
    ] + ([(rf"\nabla_{name} L", rf"\frac{{\partial L}}{{\partial {name}}}")] if step == "t" else []))))
#: elementwise vectors of size H, the same in both spellings
VECTORS = st.sampled_from(STEPS).flatmap(lambda step: st.sampled_from([
    rf"h^{{({step})}}", rf"\tanh(a^{{({step})}})", rf"(1 - (h^{{({step})}})^2)", "2", rf"a^{{({step})}}"]))
PIECE = st.one_of(GRADIENTS, VECTORS.map(lambda v: (v, v)))
MATRICES = st.sampled_from(["", r"W^{\top}", "W", r"V^{\top}"])


def _joined(pieces, ops):
    out = [pieces[0]]
    for op, p in zip(ops, pieces[1:]):
        out.append((f"{out[-1][0]} {op} {p[0]}", f"{out[-1][1]} {op} {p[1]}"))
    return out[-1]


@st.composite
def products(draw):
    """A sum of products of gradients and vectors, each product maybe behind a matrix."""
    terms = []
    for _ in range(draw(st.integers(1, 3))):
        pieces = draw(st.lists(PIECE, min_size=1, max_size=3))
        ops = draw(st.lists(st.sampled_from([r"\odot", "*", r"\cdot", ""]),
                            min_size=len(pieces) - 1, max_size=len(pieces) - 1))
        pieces = [(rf"\left({a}\right)", rf"\left({b}\right)") for a, b in pieces]
        body = _joined(pieces, ops)
        m = draw(MATRICES)
        terms.append((f"{m} \\left({body[0]}\\right)", f"{m} \\left({body[1]}\\right)") if m else body)
    return _joined(terms, draw(st.lists(st.sampled_from(["+", "-"]), min_size=len(terms) - 1,
                                        max_size=len(terms) - 1)))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(products(), GRADIENTS)
def test_nabla_reads_as_the_fraction_anywhere_in_a_product(rhs, lhs):
    alike(f"{lhs[0]} = {rhs[0]}", f"{lhs[1]} = {rhs[1]}")


@pytest.mark.parametrize("nabla, frac", [
    (r"\nabla_{W} L", r"\frac{\partial L}{\partial W}"),              # a parameter: the whole sequence
    (r"\nabla_W L", r"\frac{\partial L}{\partial W}"),
    (r"\nabla_{\boldsymbol{V}} L", r"\frac{\partial L}{\partial V}"),
    (r"\nabla_{o^{(\tau)}} L", r"\frac{\partial L}{\partial o(T)}"),   # the book's last step tau
    (r"\nabla_{h^{(t)}} L^{(t)}", r"\frac{\partial L(t)}{\partial h(t)}"),   # [losses] L = step
    (r"\nabla_{h(t+1)} L", r"\frac{\partial L}{\partial h(t+1)}"),
])
def test_nabla_forms(nabla, frac):
    assert same(nabla, frac)


# -- diag(v) is a product node ----------------------------------------------------------

DIAG = st.sampled_from([r"\mathrm{diag}", r"\operatorname{diag}", r"\text{diag}", "diag"])
ELEMENTWISE = st.lists(VECTORS, min_size=1, max_size=3, unique=True).flatmap(
    lambda vs: st.lists(st.sampled_from(["+", "-", r"\odot"]), min_size=len(vs) - 1,
                        max_size=len(vs) - 1).map(lambda ops: _joined([(v, v) for v in vs], ops)[0]))
OPERAND = st.one_of(GRADIENTS.map(lambda g: g[1]), VECTORS.filter(lambda v: v != "2"))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(MATRICES, DIAG, ELEMENTWISE, OPERAND, st.booleans())
def test_diag_is_the_elementwise_product_with_what_follows(m, diag, v, g, outer):
    """``M diag(v) g`` (then maybe ``h^{(t-1)T}``) is M (v ⊙ g): never (M v) ⊙ g."""
    tail, hand_tail = (r" h^{(t-1)\top}", r" \left(h^{(t-1)}\right)^{\top}") if outer and not m \
        else ("", "")
    written = rf"\nabla_{{h^{{(t)}}}} L = {m} {diag}\left({v}\right) \left({g}\right){tail}"
    by_hand = rf"\nabla_{{h^{{(t)}}}} L = {m} \left(\left({v}\right) \odot \left({g}\right)\right){hand_tail}"
    alike(written, by_hand)
    wrong = rf"\nabla_{{h^{{(t)}}}} L = \left({m} \left({v}\right)\right) \odot \left({g}\right)"
    if m and not tail and _readable(wrong) and _readable(written) and sides(written)[1] != 0:
        assert not same(written, wrong)


def _readable(text: str) -> bool:
    try:
        sides(text)
    except VerifyError:
        return False
    return True


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(DIAG, ELEMENTWISE, OPERAND, st.sampled_from(["W", r"W^{\top}", r"V^{\top}"]))
def test_a_transposed_vector_takes_diag_from_the_left(diag, v, g, m):
    """``g^T diag(v) M`` is (v ⊙ g)^T M."""
    written = rf"\nabla_{{o^{{(t)}}}} L = \left(\left({g}\right)^{{\top}} {diag}({v}) {m}\right)^{{\top}}"
    by_hand = rf"\nabla_{{o^{{(t)}}}} L = \left(\left(\left({v}\right) \odot \left({g}\right)\right)^{{\top}} {m}\right)^{{\top}}"
    alike(written, by_hand)


def test_diag_with_a_transpose_and_through_matrices():
    assert same(r"\nabla_{h^{(t)}} L = \mathrm{diag}(h^{(t)})^{\top} W^{\top} \nabla_{h^{(t+1)}} L",
                r"\nabla_{h^{(t)}} L = h^{(t)} \odot \left(W^{\top} \nabla_{h^{(t+1)}} L\right)")


@pytest.mark.parametrize("formula, problem", [
    (r"\nabla_{h^{(t)}} L = \mathrm{diag}(h^{(t)})", "diag(v) must multiply"),
    (r"\nabla_{h^{(t)}} L = W^{\top} \mathrm{diag}(1 - (h^{(t+1)})^2)", "diag(v) must multiply"),
    (r"\nabla_{h^{(t)}} L = \mathrm{diag}(h^{(t)}) W", "diag(v) must multiply"),
    (r"\nabla_{h^{(t)}} L = \mathrm{diag}(W) \nabla_{h^{(t+1)}} L", "diag(v) takes a vector"),
    (r"\nabla_{h^{(t)}} L = \mathrm{diag}(h^{(t)}) \odot \nabla_{h^{(t+1)}} L", "diag(v) must multiply"),
    (r"\nabla_{h^{(t)}} = 0", "must be followed by a loss"),
    (r"\nabla_{} L = 0", "expected a symbol"),
    (r"\nabla_ = 0", "needs the symbol"),
    (r"\nabla_{h^{(t)}} L = \nabla L", "the loss L appears outside a derivative"),
    (r"\nabla_{h^{(t)}} L = \nabla_{o^{(t)}} J", "must be followed by a loss"),
])
def test_what_cannot_be_read_says_why(formula, problem):
    v = verify(CELL, formula, notation=NOTATION)
    assert v.verdict == "unreadable" and problem in v.detail, v.detail


# -- steps and transposes in one superscript ----------------------------------------------

@pytest.mark.parametrize("written, normal", [
    (r"h^{(t-1)T}", "h@{t-1}^{T}"),
    (r"h^{(t-1)\top}", "h@{t-1}^{T}"),
    (r"h^{( t + 1 )}", "h@{t+1}"),
    (r"x^{(t)\intercal}", "x@{t}^{T}"),
    (r"o^{(\tau)}", "o@{T}"),
    (r"W^{(2)}", "W^{(2)}"),                 # not a step: left for the parser to refuse
    (r"\operatorname{diag}(v)", "diag (v)"),
])
def test_superscript_steps_normalize(written, normal):
    assert normalize_latex(written) == normal


# -- the book's equations, judged -----------------------------------------------------------

@pytest.mark.parametrize("formula, verdict", [
    # 10.21, as the brief's lead tried it
    (r"\nabla_{h^{(t)}} L = W^T \mathrm{diag}(1 - (h^{(t+1)})^2) (\nabla_{h^{(t+1)}} L) "
     r"+ V^T (\nabla_{o^{(t)}} L)", "holds"),
    # a textual diag -> ⊙ rewrite would read this as (W^T v) ⊙ g: it is W^T (v ⊙ g)
    (r"\nabla_{h^{(t)}} L = W^T (1 - (h^{(t+1)})^2) \odot (\nabla_{h^{(t+1)}} L) "
     r"+ V^T (\nabla_{o^{(t)}} L)", "does not hold"),
    (r"\nabla_{h^{(t)}} L = (\nabla_{h^{(t+1)}} L)^T \mathrm{diag}(1 - (h^{(t+1)})^2) W "
     r"+ (\nabla_{o^{(t)}} L)^T V", "holds"),
    (r"\nabla_{h^{(t)}} L = \nabla_{h^{(t)}} L^{(t)} + W^T \mathrm{diag}(1 - (h^{(t+1)})^2) "
     r"\nabla_{h^{(t+1)}} L", "holds"),
    (r"\nabla_{W} L = \sum_t \mathrm{diag}(1 - (h^{(t)})^2) (\nabla_{h^{(t)}} L) h^{(t-1)}",
     "does not hold"),                                    # h^{(t-1)} without its transpose
    (r"\nabla_{W} L = \sum_t \nabla_{W} L^{(t)}", "holds"),
])
def test_book_formulas(formula, verdict):
    v = verify(CELL, formula, notation=NOTATION)
    assert v.verdict == verdict, v.detail


def test_a_notation_whose_templates_are_all_nabla(tmp_path):
    """The lead's notation (carried and upstream also \\nabla_{#} L) reads the same: those
    templates are the gradient operator, not symbols of their own."""
    path = tmp_path / "goodfellow.toml"
    path.write_text(ALL_NABLA, encoding="utf-8")
    v = verify(CELL, r"\nabla_{h^{(t)}} L = W^T \mathrm{diag}(1 - (h^{(t+1)})^2) "
               r"(\nabla_{h^{(t+1)}} L) + V^T (\nabla_{o^{(t)}} L)", notation=str(path))
    assert v.verdict == "holds", v.detail


def test_the_gradient_template_prints_the_step_on_its_subscript():
    """``\\nabla_{#} L`` at step t is ``\\nabla_{h(t)} L``, never ``\\nabla_{h} L(t)`` (which
    reads as the gradient of step t's loss alone)."""
    table = load_notation(NOTATION).latex_table(derive(load_cell(CELL)))
    assert table["dh"] == r"\nabla_{h(t)} L" and table["dW"] == r"\nabla_{W} L"
    assert table["dh_prev"] == r"\bar{\delta} h(t-1)"
    v = verify(CELL, r"\nabla_{h^{(t)}} L = W^{\top} \nabla_{a^{(t+1)}} L", notation=NOTATION)
    assert v.verdict == "does not hold" and r"\nabla_{o(t)} L" in v.correct, v.correct
    again = verify(CELL, rf"\nabla_{{h^{{(t)}}}} L = {v.correct}", notation=NOTATION)
    assert again.verdict == "holds", again.detail


SOUP = st.lists(st.sampled_from([
    r"\nabla", "_", "{", "}", "(", ")", "L", r"L^{(t)}", r"h^{(t-1)T}", r"h^{(t+1)}", r"^{(t)\top}",
    r"\mathrm{diag}", r"\operatorname{diag}", "diag", "W", r"W^{\top}", "V", "^T", "+", "-", r"\odot",
    r"\sum_t", "=", r"o^{(\tau)}", r"\boldsymbol{h}", "2", r"\frac{\partial L}{\partial h^{(t)}}"]),
    max_size=14)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(SOUP)
def test_any_mix_of_the_new_forms_reads_or_says_why(pieces):
    """A formula of these pieces in any order reads, or is refused with a VerifyError: never
    another exception, never a pending diag(v) leaking out as a value."""
    try:
        claim = parse_formula(" ".join(pieces), context())
    except VerifyError:
        return
    assert all(isinstance(side, sp.Basic) for side in claim.sides)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["2", "3", r"\frac{1}{2}", "0.5"]), ELEMENTWISE.filter(lambda v: v != "2"),
       st.booleans())
def test_a_transposed_vector_transposed_back_keeps_its_coefficient(c, v, coefficient_first):
    """(c v^T)^T is c v for a number c (it once read as c alone, dropping the vector; a vector
    beside v^T makes an outer product instead)."""
    row = rf"\left({c}\right) \left({v}\right)^{{\top}}" if coefficient_first else \
        rf"\left({v}\right)^{{\top}} \left({c}\right)"
    alike(rf"\nabla_{{h^{{(t)}}}} L = \left({row}\right)^{{\top}}",
          rf"\nabla_{{h^{{(t)}}}} L = \left({c}\right) \odot \left({v}\right)")
