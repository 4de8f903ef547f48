"""The kernel plan's layout decisions: packing, hoisting, contiguous adjoint blocks, CSE, the cache."""

from __future__ import annotations

import sympy as sp

from codegen.lower import GroupProduct, Segment, lower
from derive import derive, load_cell


def plan(cell):
    return lower(derive(load_cell(cell)))


def test_lstm_packs_the_four_gates_and_hoists_the_input_products():
    p = plan("lstm")
    x, h = p.group("x"), p.group("h_prev")
    assert x.hoisted and not h.hoisted
    assert x.matrices == ("W_i", "W_f", "W_g", "W_o") and h.matrices == ("U_i", "U_f", "U_g", "U_o")
    assert p.hoisted_bias == {"a_i": ("b_i",), "a_f": ("b_f",), "a_g": ("b_g",), "a_o": ("b_o",)}
    assert p.dpre == ("a_i", "a_f", "a_g", "a_o")
    H = sp.Symbol("H")
    assert p.dpre_block(h) == (0, 4 * H) and p.dpre_block(x) == (0, 4 * H)
    # one per-step GEMM forward (h_prev) and one backward (dh_prev), nothing else per step
    assert [s.group.vector for s in p.forward_steps if isinstance(s, GroupProduct)] == ["h_prev"]
    assert [s.group.vector for s in p.backward_steps if isinstance(s, GroupProduct)] == ["h_prev"]


def test_lstm_cache_holds_activations_not_pre_activations():
    p = plan("lstm")
    assert p.saved_seq == ("i", "f", "g", "o")
    assert not any(name.startswith("a_") for name in p.saved_seq)


def test_gru_torch_orders_adjoints_so_both_groups_are_contiguous():
    p = plan("gru_torch")
    for vector in ("x", "h_prev"):
        assert p.dpre_block(p.group(vector)) is not None, vector
    assert p.hoisted_bias["a_r"] == ("b_hr", "b_ir")   # both biases folded into the hoisted GEMM
    assert "b_hn" not in sum(p.hoisted_bias.values(), ())  # b_hn is multiplied by r: stays in the step


def test_weight_gradients_come_from_group_gemms_and_biases_from_sums():
    p = plan("lstm")
    assert p.param_grads["U_f"][0][0] == "gemm" and p.param_grads["b_f"] == [("bias", "a_f")]
    peephole = plan("peephole_lstm")
    assert peephole.param_grads["p_i"][0][0] == "loop"   # c_prev * da_i: summed in the loop


def test_backward_shares_tanh_c_once():
    p = plan("lstm")
    stmts = [s for st in p.backward_steps if isinstance(st, Segment) for s in st.stmts]
    tanh = [s for s in stmts if s.expr == sp.tanh(sp.Symbol("c"))]
    assert [s.target for s in tanh] == ["_tanh_c"]
    users = [s.target for s in stmts if sp.Symbol("_tanh_c") in s.expr.free_symbols]
    assert users == ["dc", "do"]


def test_minimal_rnn_product_of_the_current_state_is_inside_the_step():
    p = plan("minimal_rnn")
    order = [s.group.vector if isinstance(s, GroupProduct) else [t.target for t in s.stmts]
             for s in p.forward_steps]
    assert order == ["s_prev", ["a_s", "s"], "s", ["a_o", "o"]]
