"""Index notation, products over a range of steps and sums of matrix powers (issue 10).

Expected verdicts come from reading the math by hand: d2l's linear RNN h_t = W_hx x_t + W_hh h_{t-1},
o_t = W_qh h_t, with the loss L over the whole sequence."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from derive.verify import verify

ROOT = Path(__file__).resolve().parents[1]
OWN = ROOT / "tests" / "fixtures" / "verify_documents"
D2L = (str(OWN / "d2l_rnn.toml"), str(OWN / "d2l_notation.toml"))

# Σ_{i=t}^{T} (W_hh^T)^{T-i} W_qh^T ∂L/∂o_{T+t-i} is true for this RNN (k = T+t-i: the power is
# k - t), and so is (∏_{k=t+1}^{T} ∂h_k/∂h_{k-1})^T ∂L/∂h_T when the loss is at the last step
# only; neither form is read yet, so both must be refused, with the place, never judged.
NOT_READ_YET = [
    (r"\frac{\partial L}{\partial h_t} = \sum_{i=t}^{T} (W_{hh}^T)^{T-i} W_{qh}^T "
     r"\frac{\partial L}{\partial o_{T+t-i}}", r"\sum_{i=t}^{T}", "a sum over a range of steps"),
    (r"\frac{\partial L}{\partial h_t} = (W_{hh}^T)^{T-t} W_{qh}^T \frac{\partial L}{\partial o_T}",
     "^{T-t}", "a power of a matrix with a symbolic exponent"),
    (r"\frac{\partial L}{\partial h_t} = \left(\prod_{k=t+1}^{T} \frac{\partial h_k}"
     r"{\partial h_{k-1}}\right)^T \frac{\partial L}{\partial h_T}", r"\prod_{k=t+1}^{T}",
     "a product over a range of steps (∏) is not read yet"),
]


@pytest.mark.parametrize("formula, place, problem", NOT_READ_YET)
def test_ranges_of_steps_are_refused_with_their_place(formula, place, problem):
    v = verify(D2L[0], formula, notation=D2L[1])
    assert v.verdict == "unreadable", (v.verdict, v.claim)
    assert problem in v.detail
    assert "not read yet" in v.detail
    typed, carets = v.caret[-2:]
    start = carets.index("^")
    assert typed[start:start + len(carets.strip())] == place


@settings(max_examples=40, deadline=None)
@given(st.sampled_from("ijklmnpqrs"), st.sampled_from(["t", "t+1", "t-1"]),
       st.sampled_from(["T", "T-1", "T+1"]), st.sampled_from(["prod", "sum", "power"]))
def test_any_range_of_steps_is_unreadable_never_judged(letter, low, high, form):
    if form == "prod":
        body = (rf"\left(\prod_{{{letter}={low}}}^{{{high}}} \frac{{\partial h_{letter}}}"
                rf"{{\partial h_{{{letter}-1}}}}\right)^T \frac{{\partial L}}{{\partial h_T}}")
    elif form == "sum":
        body = (rf"\sum_{{{letter}={low}}}^{{{high}}} W_{{qh}}^T "
                rf"\frac{{\partial L}}{{\partial o_{{{letter}}}}}")
    else:
        body = rf"(W_{{hh}}^T)^{{{high}-{letter}}} \frac{{\partial L}}{{\partial h_T}}"
    v = verify(D2L[0], r"\frac{\partial L}{\partial h_t} = " + body, notation=D2L[1])
    assert v.verdict == "unreadable", (body, v.verdict, v.claim)
    assert "not read yet" in v.detail, v.detail


def test_a_numeric_power_of_a_matrix_is_still_its_own_message():
    v = verify(D2L[0], r"\frac{\partial L}{\partial h_t} = (W_{hh}^T)^{2} \frac{\partial L}{\partial h_T}",
               notation=D2L[1])
    assert v.verdict == "unreadable" and "power of a matrix" in v.detail


# Index notation: the notation declares its entry indices (row, column). By hand, for this RNN:
# dL/dW_hh = Σ_t δ_t h_{t-1}^T, dL/dW_hx = Σ_t δ_t x_t^T, dL/dW_qh = Σ_t (dL/do_t) h_t^T, with
# δ_t = dL/dh_t; entry (i, j) of v w^T is v_i w_j, of its transpose v_j w_i.
def _index_notation(tmp_path, indices=("i", "j")) -> str:
    path = tmp_path / "index.toml"
    path.write_text(Path(D2L[1]).read_text().replace(
        "loss = 'L'", f"loss = 'L'\nindices = [\"{indices[0]}\", \"{indices[1]}\"]")
        + "\n[read]\n'\\delta' = 'dh'\n")
    return str(path)


@pytest.mark.parametrize("formula, verdict", [
    (r"\frac{\partial L}{\partial W_{hh,ij}} = \sum_t \delta_{i}^{(t)} h_{j}^{(t-1)}", "holds"),
    (r"\frac{\partial L}{\partial W_{hh,ij}} = \sum_t h_{j}^{(t-1)} \delta_{i}^{(t)}", "holds"),
    (r"\frac{\partial L}{\partial W_{hh,ji}} = \sum_t \delta_{j}^{(t)} h_{i}^{(t-1)}", "holds"),
    (r"\frac{\partial L}{\partial W_{hx,ij}} = \sum_t \delta_{t,i} x_{t,j}", "holds"),
    (r"\frac{\partial L}{\partial W_{qh,ij}} = \sum_{t=1}^{T} \frac{\partial L}{\partial o_{t,i}} h_{t,j}",
     "holds"),
    (r"\frac{\partial L}{\partial h_{t,i}} = \delta_{i}^{(t)}", "holds"),
    # the deliberate slips: i and j swapped, h_t for h_{t-1}, one step's term for the sum
    (r"\frac{\partial L}{\partial W_{hh,ij}} = \sum_t \delta_{j}^{(t)} h_{i}^{(t-1)}", "does not hold"),
    (r"\frac{\partial L}{\partial W_{hh,ij}} = \sum_t \delta_{i}^{(t)} h_{j}^{(t)}", "does not hold"),
    (r"\frac{\partial L}{\partial W_{hh,ij}} = \delta_{i}^{(t)} h_{j}^{(t-1)}", "does not hold"),
    (r"\frac{\partial L}{\partial W_{qh,ij}} = \sum_t \frac{\partial L}{\partial o_{t,j}} h_{t,i}",
     "does not hold"),
    # index forms beyond entries of vectors: refused, never judged
    (r"\frac{\partial L}{\partial h_{t,j}} = \sum_i W_{qh,ij} \frac{\partial L}{\partial o_{t,i}}",
     "unreadable"),
    (r"\frac{\partial L}{\partial W_{hh,ij}} = \sum_t W_{hh,ij} h_{j}^{(t)}", "unreadable"),
    (r"\frac{\partial L}{\partial W_{hh,ij}} = \sum_t \delta_{i}^{(t)}", "unreadable"),
    (r"\frac{\partial L}{\partial W_{hh,ij}} = \sum_t \delta_{i}^{(t)} \tanh(h_{j}^{(t-1)})",
     "unreadable"),
    (r"\frac{\partial h_{t,i}}{\partial h_{t-1,j}} = W_{hh,ij}", "unreadable"),
    (r"\frac{\partial L}{\partial W_{hh,ii}} = \sum_t \delta_{i}^{(t)} h_{i}^{(t-1)}", "unreadable"),
])
def test_index_notation(tmp_path, formula, verdict):
    v = verify(D2L[0], formula, notation=_index_notation(tmp_path))
    assert v.verdict == verdict, (v.detail, v.claim)


def test_a_label_made_of_index_letters_stays_a_label(tmp_path):
    """indices h and q: W_{qh} is still the symbol W_qh (the notation names it), W_{hh} repeats a
    letter; the matrix claims read as without indices."""
    notation = _index_notation(tmp_path, ("h", "q"))
    holds = verify(D2L[0], r"\frac{\partial L}{\partial W_{qh}} = \sum_t \frac{\partial L}"
                   r"{\partial o_t} h_t^T", notation=notation)
    assert holds.verdict == "holds", holds.detail
    slip = verify(D2L[0], r"\frac{\partial L}{\partial W_{hh}} = \sum_t \frac{\partial L}"
                  r"{\partial h_t} h_t^T", notation=notation)
    assert slip.verdict == "does not hold", slip.detail


def test_without_declared_indices_no_subscript_is_an_entry():
    v = verify(D2L[0], r"\frac{\partial L}{\partial W_{hh,ij}} = \sum_t \frac{\partial L}"
               r"{\partial h_t} h_{t-1}^T", notation=D2L[1])
    assert v.verdict == "unreadable" and "W_{hh,ij}" in v.detail


@pytest.mark.parametrize("indices", [["i"], ["i", "i"], ["t", "j"], ["ij", "k"], "ij", [1, 2]])
def test_indices_must_be_two_letters(indices):
    from derive.notation import NotationError, parse_notation
    text = f'[notation]\nname = "n"\nindices = {json.dumps(indices)}\n'
    with pytest.raises(NotationError, match="indices must be two different letters"):
        parse_notation(text)


# (the matrix, its row vector written as an entry, its column vector, the column vector's step)
PAIRS = {"hh": (r"\delta_{{{r}}}^{{(t)}}", "h_{{{c}}}^{{(t{k})}}", -1),
         "hx": (r"\delta_{{t,{r}}}", "x_{{t{k},{c}}}", 0),
         "qh": (r"\frac{{\partial L}}{{\partial o_{{t,{r}}}}}", "h_{{t{k},{c}}}", 0)}


@settings(max_examples=40, deadline=None)
# no l: the pair "ln" would be read as the function ln
@given(st.lists(st.sampled_from("abcijkmnpqruvw"), min_size=2, max_size=2, unique=True),
       st.sampled_from(sorted(PAIRS)), st.booleans(), st.booleans(), st.booleans(),
       st.sampled_from([-1, 0, 1]))
def test_any_index_letters_read_as_the_matrix_claim(tmp_path_factory, letters, matrix, lhs_swapped,
                                                    rhs_swapped, column_first, shift):
    notation = _index_notation(tmp_path_factory.mktemp("idx"), letters)
    row, col = letters
    left_index = col + row if lhs_swapped else row + col
    r, c = (col, row) if rhs_swapped else (row, col)
    vector, column, step = PAIRS[matrix]
    k = step + shift
    factors = [vector.format(r=r), column.format(c=c, k="" if k == 0 else f"{k:+d}")]
    if column_first:
        factors.reverse()
    formula = rf"\frac{{\partial L}}{{\partial W_{{{matrix},{left_index}}}}} = \sum_t " + " ".join(factors)
    v = verify(D2L[0], formula, notation=notation)
    # entry (a, b) of dW: the row vector's entry a times the column vector's b, at the right step
    right = lhs_swapped == rhs_swapped and shift == 0
    assert v.verdict == ("holds" if right else "does not hold"), (formula, v.detail, v.claim)
