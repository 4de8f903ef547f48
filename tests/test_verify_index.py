"""Index notation, products over a range of steps and sums of matrix powers (issue 10).

Expected verdicts come from reading the math by hand: d2l's linear RNN h_t = W_hx x_t + W_hh h_{t-1},
o_t = W_qh h_t, with the loss L over the whole sequence."""

from __future__ import annotations

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
@given(st.sampled_from("ijklmnpqr"), st.sampled_from(["t", "t+1", "t-1"]),
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
