"""Local partials that are matrices (∂h_t/∂h_{t-1} = W_hh, CS231n's ∂a/∂h_prev = W_h, ∂a/∂b = 1,
∂a/∂W_x = x) judged as matrix claims, and a notation file's ``[[formula]]`` readings of garbled
pieces. Each expectation is worked out by hand from the cell's equations."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from derive.notation import NotationError, parse_notation
from derive.verify import VerifyError, verify
from derive.verify.vocabulary import Reading, retyped

ROOT = Path(__file__).resolve().parents[1]
OWN = ROOT / "tests" / "fixtures" / "verify_documents"
D2L = (str(OWN / "d2l_rnn.toml"), str(OWN / "d2l_notation.toml"))
SEED_002 = str(ROOT / "docs" / "notations" / "seed_002.toml")


@settings(max_examples=25, deadline=None)
@given(st.integers(-3, 3), st.booleans(), st.sampled_from(["W_{hh}", "W_{hx}"]))
def test_a_jacobian_of_the_linear_rnn_holds_only_as_w_hh(coefficient, transposed, matrix):
    """d2l's h_t = W_hx x_t + W_hh h_{t-1}: ∂h_t/∂h_{t-1} is W_hh (numerator layout), nothing else."""
    written = ("" if coefficient == 1 else f"{coefficient} ") + matrix + ("^T" if transposed else "")
    v = verify(D2L[0], rf"\frac{{\partial h_t}}{{\partial h_{{t-1}}}} = {written}", notation=D2L[1])
    right = coefficient == 1 and not transposed and matrix == "W_{hh}"
    if right:
        assert v.verdict == "holds", v.detail
    elif matrix == "W_{hh}" or coefficient == 0:     # 0: the zero matrix, of any shape
        assert v.verdict == "does not hold", (written, v.detail)
    else:       # W_hx (H, D): another shape than the H x H Jacobian; wrong only when diagnosed
        assert v.verdict in ("does not hold", "unreadable"), (written, v.detail)
        assert v.verdict == "unreadable" or v.diagnosis
    if transposed and coefficient == 1 and matrix == "W_{hh}":
        assert "missing transpose" in [d.kind for d in v.diagnosis]


@pytest.mark.parametrize("formula, verdict", [
    # rows are samples (a = x Wx + h_prev Wh + b): the notes' layout = "denominator"
    (r"\frac{\partial a}{\partial h_{\text{prev}}} = \omega_{\text{wh}}", "holds"),
    (r"\frac{\partial a}{\partial h_{\text{prev}}} = \omega_{\text{wh}}^T", "does not hold"),
    (r"\frac{\partial a}{\partial x-t} = w-x", "holds"),
    (r"\frac{\partial a}{\partial x-t} = w-h", "unreadable"),          # (H, 4H) for a (D, 4H)
    (r"\frac{\partial a}{\partial b} = 1", "holds"),
    (r"\frac{\partial a}{\partial b} = 2", "does not hold"),
    (r"\frac{\partial a}{\partial w-x} = x-t", "holds"),                # through its product
    (r"\frac{\partial a}{\partial w-x} = h\text{-prev}", "does not hold"),
    (r"\frac{\partial a}{\partial w-h} = h\text{-prev}", "holds"),
    (r"\partial b = \sum_{n=1}^N \frac{\partial a}{\partial b}", "unreadable"),   # da is missing
    (r"\partial b = \sum_{n=1}^N \partial a \frac{\partial a}{\partial b}", "holds"),
])
def test_cs231n_local_partials(formula, verdict):
    v = verify("lstm", formula, notation=SEED_002)
    assert v.verdict == verdict, (v.detail, v.claim)


def test_a_matrix_claim_prints_its_matrix_and_reads_back():
    v = verify(D2L[0], r"\frac{\partial h_t}{\partial h_{t-1}} = W_{hh}^T", notation=D2L[1])
    assert v.verdict == "does not hold" and v.claim == ["W_hh", "W_hh.T"]
    again = verify(D2L[0], r"\frac{\partial h_t}{\partial h_{t-1}} = " + v.correct, notation=D2L[1])
    assert again.verdict == "holds", again.detail


NOTATION = """[notation]
name = "garbled"
time = "angle"
auto = true
{extra}
"""


def _file(tmp_path, extra: str) -> str:
    path = tmp_path / "garbled.toml"
    path.write_text(NOTATION.format(extra=extra), encoding="utf-8")
    return str(path)


def test_a_formula_entry_reads_garbled_indices_occurrence_by_occurrence(tmp_path):
    formula = r"\frac{\partial c^{}}{\partial c^{}} = f^{}"
    assert verify("lstm", formula, notation=_file(tmp_path, "")).verdict == "unreadable"
    right = _file(tmp_path, """[[formula]]
where = '\\frac{\\partial c^{}}{\\partial c^{}}'
read = { '^{}' = ['^{<t>}', '^{<t-1>}', '^{<t>}'] }
""")
    assert verify("lstm", formula, notation=right).verdict == "holds"
    wrong = _file(tmp_path, """[[formula]]
where = '\\frac{\\partial c^{}}{\\partial c^{}}'
read = { '^{}' = ['^{<t>}', '^{<t-1>}', '^{<t-1>}'] }
""")
    v = verify("lstm", formula, notation=wrong)
    assert v.verdict == "does not hold" and "wrong time index" in [d.kind for d in v.diagnosis]
    # another formula is not touched by the entry, and keeps its diagnosis
    other = verify("lstm", r"\frac{\partial h^{}}{\partial o^{}} = \tanh(c^{})", notation=right)
    assert other.verdict == "unreadable" and "garbled" in other.detail


def test_a_reading_that_does_not_count_its_occurrences_is_refused(tmp_path):
    bad = _file(tmp_path, """[[formula]]
where = 'c^{}'
read = { '^{}' = ['^{<t>}'] }
""")
    v = verify("lstm", r"\frac{\partial c^{}}{\partial c^{}} = f^{}", notation=bad)
    assert v.verdict == "unreadable" and "3 times" in v.detail


@pytest.mark.parametrize("extra, problem", [
    ("[[formula]]\nwhere = 'x'\n", "expected where"),
    ("[[formula]]\nwhere = 'x'\nread = { 'x' = 3 }\n", "must be a string"),
    ("[[formula]]\nwhere = 'x'\nread = { 'x' = '{' }\n", "formula"),
    ("[[formula]]\nwhere = 'x'\nread = { 'x' = 'y' }\nhow = 'z'\n", "unknown key"),
    ("[notation.x]\n", "unknown"),
    ("", None),
])
def test_formula_entries_are_checked_on_load(extra, problem):
    text = NOTATION.format(extra=extra).replace('auto = true\n', 'auto = true\nlayout = "numerator"\n')
    if problem is None:
        assert parse_notation(text).layout == "numerator"
        return
    with pytest.raises(NotationError, match=problem):
        parse_notation(text)


def test_layout_is_one_of_two():
    with pytest.raises(NotationError, match="layout"):
        parse_notation('[notation]\nname = "n"\nlayout = "rows"\n')


def _toml(value) -> str:
    """A TOML value (JSON's string escapes are TOML's)."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(value)


PIECE = st.text(alphabet="^{}<>t+-1ac\\ ", min_size=1, max_size=8)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="^{}<>t+-1ac\\ =", max_size=40), PIECE, st.lists(PIECE, max_size=4),
       st.booleans())
def test_retyped_replaces_exactly_what_the_entry_names(text, typed, values, by_occurrence):
    """A reading applies only where its formula is, replaces each occurrence once, and a list
    must count the occurrences; anything else is a clear error."""
    values = values or ["X"]
    reading = Reading("r", formulas=((typed, ((typed, tuple(values), by_occurrence),)),))
    try:
        out = retyped(text, reading)
    except VerifyError as err:
        assert by_occurrence and text.count(typed) != len(values) and "times" in str(err)
        return
    if typed not in text:
        assert out == text
    else:
        pieces = text.split(typed)
        used = values if by_occurrence else [values[0]] * (len(pieces) - 1)
        assert out == pieces[0] + "".join(v + p for v, p in zip(used, pieces[1:]))


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.sampled_from(["where", "read", "why", "other"]),
                       st.one_of(st.text(max_size=10), st.integers(),
                                 st.dictionaries(st.text(max_size=5), st.one_of(
                                     st.text(max_size=8), st.lists(st.text(max_size=5), max_size=3),
                                     st.integers()), max_size=3)), max_size=4))
def test_any_formula_entry_loads_or_is_refused_clearly(entry):
    text = '[notation]\nname = "n"\n\n[[formula]]\n' + "".join(
        f"{json.dumps(k)} = {_toml(v)}\n" for k, v in entry.items())
    try:
        notation = parse_notation(text)
    except NotationError as err:
        assert str(err)
        return
    assert len(notation.formulas) == 1


@pytest.mark.parametrize("formula, verdict", [
    # d2l: o_t = W_qh h_t, h_t = W_hx x_t + W_hh h_{t-1}; chains of Jacobians are matrix products
    (r"\frac{\partial o_t}{\partial h_{t-1}} = W_{qh} W_{hh}", "holds"),
    (r"\frac{\partial o_t}{\partial h_{t-1}} = \frac{\partial o_t}{\partial h_t} "
     r"\frac{\partial h_t}{\partial h_{t-1}}", "holds"),
    (r"\frac{\partial h_t}{\partial h_{t-1}} \frac{\partial h_{t-1}}{\partial h_{t-2}} = W_{hh} W_{hh}",
     "holds"),
    (r"\frac{\partial h_t}{\partial h_{t-1}} \frac{\partial h_{t-1}}{\partial h_{t-2}} = W_{hh}^T W_{hh}",
     "does not hold"),
    (r"\frac{\partial o_t}{\partial h_{t-1}} = W_{hh} W_{qh}", "unreadable"),     # Q x H after H x H
    (r"2 \frac{\partial h_t}{\partial h_{t-1}} = 2 W_{hh}", "holds"),
    (r"2 \frac{\partial h_t}{\partial h_{t-1}} = W_{hh}", "does not hold"),
    # only the path through o_t: ∂L/∂h_{t-1} has the path through h_t's own future too
    (r"\frac{\partial L}{\partial h_{t-1}} = \left(\frac{\partial o_t}{\partial h_t} "
     r"\frac{\partial h_t}{\partial h_{t-1}}\right)^T \frac{\partial L}{\partial o_t}", "does not hold"),
])
def test_products_of_jacobians(formula, verdict):
    v = verify(D2L[0], formula, notation=D2L[1])
    assert v.verdict == verdict, (v.detail, v.claim)


def test_a_chain_of_jacobians_prints_its_product_and_reads_back():
    lhs = r"\frac{\partial h_t}{\partial h_{t-1}} \frac{\partial h_{t-1}}{\partial h_{t-2}} = "
    v = verify(D2L[0], lhs + r"W_{hh}^T W_{hh}", notation=D2L[1])
    assert v.verdict == "does not hold" and v.claim == ["W_hh @ W_hh", "W_hh.T @ W_hh"]
    again = verify(D2L[0], lhs + v.correct, notation=D2L[1])
    assert again.verdict == "holds" and again.how.startswith("symbolic proof"), again.detail
