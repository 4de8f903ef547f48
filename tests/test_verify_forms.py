"""Forms of gradient formulas verify reads beyond a symbol per quantity: slices of stacked
arrays, derivatives with respect to a matrix through its rows (∂a/∂W = x^T) or to a vector as a
Jacobian applied to an adjoint, and += accumulation. Each expectation is the verdict a careful
reader gives (worked out by hand from the cell's equations)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from derive.verify import verify

ROOT = Path(__file__).resolve().parents[1]
OWN = ROOT / "tests" / "fixtures" / "verify_documents"
STACKED = """[notation]
name = "stacked"
time = "sub"
auto = true
[read]
'a' = 'VCat(a_i, a_f, a_o, a_g)'
'W' = 'VStack(W_i, W_f, W_o, W_g)'
'w_x' = 'MatTranspose(VStack(W_i, W_f, W_o, W_g))'
'w_f' = 'HCat(U_f, W_f)'
[sizes]
'n_a' = 'H'
'n_x' = 'D'
"""


@pytest.fixture(scope="module")
def stacked(tmp_path_factory):
    path = tmp_path_factory.mktemp("notation") / "stacked.toml"
    path.write_text(STACKED, encoding="utf-8")
    return str(path)


@pytest.mark.parametrize("formula, verdict", [
    (r"\delta a[:, H:2H] = \delta f \odot f \odot (1 - f)", "holds"),       # cs231n's gate columns
    (r"\delta a[:, H:2*H] = \delta f \odot f \odot (1 - f)", "holds"),
    (r"\delta a[:, :H] = \delta f \odot f \odot (1 - f)", "does not hold"),  # that is the i gate
    (r"\delta a[:, H:3H] = [\delta a_f, \delta a_o]", "holds"),
    (r"\delta a[:, H:H+1] = \delta a_f", "unreadable"),                     # cuts a block
    (r"\delta W[:H] = \delta a_i x^T", "holds"),                           # a stacked weight's rows
    (r"\delta W[H:2H, :] = \delta a_i x^T", "does not hold"),
    (r"\delta w_x[:, 3H:] = x^T \delta a_g", "holds"),                      # (D, 4H): columns
    (r"\delta w_f[:, :n_a] = \delta a_f h_{t-1}^T", "holds"),               # coursera's w_f[:, :n_a]
    (r"\delta w_f[:, n_a:] = \delta a_f x_t^T", "holds"),
    (r"\delta w_f[:, :n_x] = \delta a_f h_{t-1}^T", "unreadable"),          # D is no block edge
    (r"\delta W_f[:, :n_a] = \delta a_f h_{t-1}^T", "unreadable"),          # W_f is not stacked
    (r"\delta a[:, :K] = \delta a_i", "unreadable"),                        # no size K
])
def test_slices_of_stacked_arrays(stacked, formula, verdict):
    v = verify("lstm", formula, notation=stacked)
    assert v.verdict == verdict, (v.detail, v.claim)


D2L = (str(OWN / "d2l_rnn.toml"), str(OWN / "d2l_notation.toml"))
GRU = ("gru", str(OWN / "gru_notation.toml"))
SEED_003 = ("lstm", str(ROOT / "docs" / "notations" / "seed_003.toml"))


@pytest.mark.parametrize("cell_notation, formula, verdict, kind", [
    (D2L, r"\frac{\partial L}{\partial h_t} = \left(\frac{\partial h_{t+1}}{\partial h_t}\right)^T "
          r"\frac{\partial L}{\partial h_{t+1}} + W_{qh}^T \frac{\partial L}{\partial o_t}", "holds", None),
    (D2L, r"\frac{\partial L}{\partial h_t} = \frac{\partial h_{t+1}}{\partial h_t} "
          r"\frac{\partial L}{\partial h_{t+1}} + W_{qh}^T \frac{\partial L}{\partial o_t}", "does not hold",
     "missing transpose"),
    (D2L, r"\frac{\partial L}{\partial h_t} = \frac{\partial L}{\partial h_{t+1}}^T "
          r"\frac{\partial h_{t+1}}{\partial h_t} + W_{qh}^T \frac{\partial L}{\partial o_t}", "holds", None),
    # a Jacobian standing alone, judged as a matrix (d2l: h_t = W_hx x_t + W_hh h_{t-1})
    (D2L, r"\frac{\partial h_{t+1}}{\partial h_t} = W_{hh}", "holds", None),
    (D2L, r"\frac{\partial h_{t+1}}{\partial h_t} = W_{hh}^T", "does not hold", "missing transpose"),
    (D2L, r"\frac{\partial h_t}{\partial x_t} = W_{hx}", "holds", None),
    (D2L, r"\frac{\partial o_t}{\partial h_t} = W_{qh}", "holds", None),
    (D2L, r"\frac{\partial o_t}{\partial h_{t-1}} = W_{qh}", "does not hold", None),  # W_qh W_hh
    (D2L, r"\frac{\partial h_t}{\partial h_{t-1}} = 2 W_{hh}", "does not hold", None),
    (D2L, r"\frac{\partial o_t}{\partial h_t} = W_{qh} + 0", "holds", None),
    (GRU, r"\frac{\partial h_t}{\partial h_{t-1}} = U_h", "does not hold", None),   # z, r paths missing
    (D2L, r"\frac{\partial o_t}{\partial W_{qh}} = h_t^T", "holds", None),           # through its rows
    (D2L, r"\frac{\partial o_t}{\partial W_{qh}} = h_{t-1}^T", "does not hold", "wrong time index"),
    (GRU, r"\delta h_{t-1} = \left(\frac{\partial h_t}{\partial h_{t-1}}\right)^T \delta h_t", "holds", None),
    (GRU, r"\delta h_{t-1} = \frac{\partial h_t}{\partial h_{t-1}} \delta h_t", "does not hold", None),
    (GRU, r"\delta W_z = \delta a_z \frac{\partial a_z}{\partial W_z}", "holds", None),
    (GRU, r"\delta U_r = \delta r \frac{\partial r}{\partial U_r}", "holds", None),    # through σ
    (GRU, r"\delta U_r = \delta h \frac{\partial h}{\partial U_r}", "unreadable", None),  # r h_prev inside U_h
    (("lstm", None), r"\delta c_{t-1} = \left(\frac{\partial c_t}{\partial c_{t-1}}\right)^T \delta c_t",
     "holds", None),                                  # an elementwise derivative is its own transpose
    (("lstm", None), r"\frac{\partial L}{\partial W_f} = \sum_t \frac{\partial L}{\partial h_t} "
                     r"\frac{\partial h_t}{\partial W_f}", "does not hold", None),   # drops the c path
    # the total derivative as the sum of each step's loss (each through every earlier step)
    (GRU, r"\frac{\partial E}{\partial W_z} = \sum_t \frac{\partial E_t}{\partial W_z}", "holds", None),
    (GRU, r"\frac{\partial E}{\partial W_z} = \sum_t \frac{\partial E_t}{\partial W_r}", "does not hold",
     None),
    (GRU, r"\frac{\partial E_t}{\partial W_z} = \delta a_{z,t} x_t^T", "does not hold", None),
    # with respect to a concatenated matrix [U_f | W_f] acting on [a<t-1>, x<t>]: seed 003's sum_f
    (SEED_003, r"\frac{\partial sum_f}{\partial W_f} = [a^{<t-1>}, x^{<t>}]^T", "holds", None),
    (SEED_003, r"\frac{\partial sum_f}{\partial W_f} = [x^{<t>}, a^{<t-1>}]^T", "does not hold", None),
    (SEED_003, r"\frac{dError}{dW_f} = \sum_t \delta sum_f^{<t>} \frac{\partial sum_f^{<t>}}{\partial W_f}",
     "holds", None),
])
def test_derivatives_through_matrix_products(cell_notation, formula, verdict, kind):
    cell, notation = cell_notation
    v = verify(cell, formula, notation=notation)
    assert v.verdict == verdict, (v.detail, v.claim)
    if kind:
        assert kind in [d.kind for d in v.diagnosis], v.diagnosis_text


@pytest.mark.parametrize("formula, verdict", [
    (r"\mathrm{d}W_f \mathrel{+}= \mathrm{d}a_f\, x^T", "holds"),
    (r"dW_f += da_f x^T", "holds"),
    (r"dW_f += da_f h_prev^T", "does not hold"),
    (r"\delta h \mathrel{+}= \delta c", "unreadable"),             # += only accumulates a parameter's
    (r"dW_f = da_f x^T += da_f x^T", "unreadable"),
])
def test_accumulation(formula, verdict):
    assert verify("lstm", formula).verdict == verdict


def test_carried_assign_reads_dhnext_on_the_left_as_what_the_step_hands_back(tmp_path):
    text = (OWN / "char_rnn_notation.toml").read_text("utf-8")
    cell, formula = str(OWN / "char_rnn.toml"), r"dh_{next} = W_{hh}^T dh_{raw}"
    assert verify(cell, formula, notation=str(OWN / "char_rnn_notation.toml")).verdict == "holds"
    plain = tmp_path / "plain.toml"
    plain.write_text(text.replace("carried_assign = true\n", ""), encoding="utf-8")
    assert verify(cell, formula, notation=str(plain)).verdict == "does not hold"


BOUND = st.sampled_from(["", "H", "2H", "2*H", "3H", "4H", "H+D", "n_a", "n_x", "1", "-H", "K",
                         "H-", "2", "{H}", "H H"])


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(BOUND, st.booleans(), BOUND), min_size=1, max_size=3),
       st.sampled_from(["a", "W", "w_x", "w_f", "W_f", "x", "c"]), st.booleans())
def test_any_slice_ends_in_a_verdict(stacked, items, name, adjoint):
    """Whatever the bounds, a slice is read or refused with a reason, never a crash."""
    inside = ", ".join(f"{lo}{':' if colon else ''}{hi}" for lo, colon, hi in items)
    left = rf"\delta {name}[{inside}]" if adjoint else rf"{name}[{inside}]"
    v = verify("lstm", left + r" = \delta a_f", notation=stacked)
    assert v.verdict in ("holds", "does not hold", "unreadable")
    if v.verdict == "unreadable":
        assert v.detail


WORDS = st.sampled_from([
    r"\frac{\partial L}{\partial h_t}", r"\frac{\partial L}{\partial h_{t+1}}",
    r"\frac{\partial h_{t+1}}{\partial h_t}", r"\frac{\partial o_t}{\partial W_{qh}}",
    r"\frac{\partial o_t}{\partial h_t}", r"\frac{\partial L}{\partial o_t}", r"\frac{\partial L}{\partial W_{hh}}",
    r"\text{prod}(", ",", ")", "(", r"\left(", r"\right)", "^T", "^\\top", "+", "-", "=", "+=",
    r"\mathrel{+}=", r"\sum_t", r"\sum_{t=1}^T", "W_{hh}", "W_{qh}", "h_t", "h_{t-1}", "x_t", "[", "]",
    ":", "H", "2", "0", r"\odot", "*", " "])


@settings(max_examples=200, deadline=None)
@given(st.lists(WORDS, min_size=1, max_size=14).map(" ".join))
def test_any_chain_of_derivatives_ends_in_a_verdict_or_a_clear_error(formula):
    """Jacobians, prod, transposes, sums, slices and += in any order: a verdict, or (no left
    side) a VerifyError; never another exception."""
    from derive.verify import VerifyError
    try:
        v = verify(D2L[0], formula, notation=D2L[1])
    except VerifyError as err:
        assert str(err)
        return
    assert v.verdict in ("holds", "does not hold", "unreadable")
    assert v.verdict != "unreadable" or v.detail
