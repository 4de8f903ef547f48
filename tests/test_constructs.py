"""The spec constructs of reductions, constants, buffers, declared initial values and domains,
and several inputs: how they parse, what they refuse, and the derived gradients against central
finite differences of the reference interpreter's forward pass (an independent oracle: it only
runs the forward equations)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import sympy as sp

from derive import SpecError, derive, load_spec, parse_spec
from derive.evaluate import (loss, random_inputs, random_params, random_upstream, run_backward,
                             run_forward)
from derive.linear import RowMean, RowSum

SPECS = Path(__file__).parent / "specs" / "constructs"
SIZES = {"D": 3, "H": 4}
STEP = 1e-6


def central_difference(f, array: np.ndarray) -> np.ndarray:
    grad = np.zeros_like(array)
    for idx in np.ndindex(array.shape):
        old = array[idx]
        array[idx] = old + STEP
        plus = f()
        array[idx] = old - STEP
        minus = f()
        array[idx] = old
        grad[idx] = (plus - minus) / (2 * STEP)
    return grad


@pytest.fixture(scope="module")
def ln_rnn():
    return derive(load_spec(SPECS / "layernorm_rnn.toml"))


def test_reductions_are_their_own_equations(ln_rnn):
    forward = {eq.lhs: eq.rhs for eq in ln_rnn.forward}
    assert forward["mu"] == RowMean(sp.Symbol("a"))
    # mean((a - mu)**2): the operand is named first, then reduced
    assert forward["var"] == RowMean(sp.Symbol("var_in"))
    assert forward["var_in"] == (sp.Symbol("a") - sp.Symbol("mu")) ** 2
    # a reduction inside an expression becomes a quantity of its own
    assert forward["n_sum"] == RowSum(sp.Symbol("h"))
    assert all(not eq.rhs.atoms(RowMean, RowSum) or isinstance(eq.rhs, RowMean | RowSum)
               for eq in ln_rnn.forward)


def test_transpose_of_a_reduction_is_the_reduction_of_the_adjoint(ln_rnn):
    assert ln_rnn.backward_eq("dvar_in").expr == RowMean(sp.Symbol("dvar"))
    assert RowSum(sp.Symbol("dn_sum")) in sp.Add.make_args(ln_rnn.backward_eq("dh").expr)


def test_verify_reads_reductions(ln_rnn):
    """Every backward equation of a cell with reductions verifies, written as the derivation
    prints it (``RowMean(dvar)``) or as a user writes it (``mean(dvar)``, LaTeX too); a slip
    (the reduction dropped) does not hold. verify once knew no reduction: "unknown function"."""
    from derive.verify import verify
    for eq in ln_rnn.backward:
        assert verify(ln_rnn, sp.sstr(eq.expr), quantity=eq.target).verdict == "holds", eq.target
    for formula in ("mean(dvar)", r"\operatorname{mean}\left(dvar\right)"):
        assert verify(ln_rnn, formula, quantity="dvar_in").verdict == "holds", formula
    assert verify(ln_rnn, "dvar", quantity="dvar_in").verdict == "does not hold"


def test_reductions_print_and_read_back_as_the_spec_writes_them(ln_rnn):
    """Regression: the derived dvar_in printed as RowMean(dvar), and verify read neither that nor
    mean(dvar), so no backward equation of a layer-norm cell could be verified."""
    from derive.verify import verify
    dvar_in = ln_rnn.backward_eq("dvar_in")
    assert sp.sstr(dvar_in.expr) == "mean(dvar)"
    for formula in ("mean(dvar)", r"\operatorname{mean}(\delta var)", sp.sstr(ln_rnn.backward_eq("dh").expr)):
        quantity = "dh" if "sum" in formula else "dvar_in"
        assert verify(ln_rnn, formula, quantity=quantity).verdict == "holds", formula
    assert verify(ln_rnn, "sum(dvar)", quantity="dvar_in").verdict == "does not hold"


def test_constants_are_numbers_in_the_equations(ln_rnn):
    assert ln_rnn.cell.constants == {"eps": 1e-5}
    h = ln_rnn.forward_eq("h").rhs
    assert sp.Rational(1, 100000) in h.atoms(sp.Rational)
    assert "eps" not in {s.name for s in h.free_symbols}


def test_buffers_get_no_gradient(ln_rnn):
    cell = ln_rnn.cell
    assert "beta" in cell.params and "beta" not in cell.trainable_params
    assert not cell.quantities["beta"].trainable
    assert all(eq.of != "beta" for eq in ln_rnn.backward)


def test_state_declarations(ln_rnn):
    q = ln_rnn.cell.quantities
    assert (q["n"].init, q["n"].domain) == ("ones", "positive")
    assert (q["h"].init, q["h"].domain) == ("param", "real")
    assert ln_rnn.cell.initial == {"h": "h0"}
    assert q["h0"].role == "initial" and q["h0"].shape == ("H",)


def problem(d, seed=0, T=4, N=3, from_declared=True):
    rng = np.random.default_rng(seed)
    params = random_params(d, SIZES, rng)
    xs, state0 = random_inputs(d, SIZES, T, N, rng)
    w, v = random_upstream(d, SIZES, T, N, rng)
    if from_declared:
        state0 = {}
    return params, xs, state0, w, v


def test_initial_values_are_the_declared_ones(ln_rnn):
    params, xs, _, _, _ = problem(ln_rnn)
    trace = run_forward(ln_rnn, params, xs)
    np.testing.assert_array_equal(trace.state0["n"], np.ones((3, 4)))
    np.testing.assert_array_equal(trace.state0["h"], np.broadcast_to(params["h0"], (3, 4)))


def test_positive_states_are_drawn_inside_their_domain(ln_rnn):
    for seed in range(5):
        _, state0 = random_inputs(ln_rnn, SIZES, 2, 8, np.random.default_rng(seed))
        assert np.all(state0["n"] > 0)
        assert np.any(state0["h"] < 0)  # a real state is not folded


@pytest.mark.parametrize("from_declared", [True, False])
def test_gradients_match_central_differences(ln_rnn, from_declared):
    params, xs, state0, w, v = problem(ln_rnn, from_declared=from_declared)

    def f():
        return loss(run_forward(ln_rnn, params, xs, state0), w, v)

    grads = run_backward(ln_rnn, run_forward(ln_rnn, params, xs, state0), w, v)
    wrt = {**{p: params[p] for p in ln_rnn.cell.trainable_params}, **xs, **state0}
    if from_declared:
        wrt["h0"] = params["h0"]
    assert set(grads) == set(wrt) | set(ln_rnn.cell.states)
    for name, array in wrt.items():
        np.testing.assert_allclose(grads[name], central_difference(f, array), rtol=1e-6,
                                   atol=1e-8, err_msg=name)
    # the second input and the buffer really take part
    assert np.any(grads["s"] != 0)
    before = f()
    params["beta"] += 0.1
    assert f() != before


def test_numpy_kernels_of_every_construct_match_central_differences():
    """The generated kernels of ln_rnn (a reduction of an input, mean(s), once printed as the bare
    name ``s``: a NameError in generated code) against central differences of their forward."""
    from codegen import build_module
    from codegen.gradcheck import check_gradients
    module = build_module(SPECS / "layernorm_rnn.toml", "numpy")   # numba's loops load inputs by name
    for many_to_one in (False, True):
        results = check_gradients(module, T=3, N=2, seed=0, many_to_one=many_to_one)
        assert {r.name for r in results} >= {"W", "U", "g", "h0", "x", "s"}
        assert all(r.ok for r in results), [(r.name, r.rel_err) for r in results if not r.ok]


def test_reductions_against_torch_autograd():
    """mean and sum broadcast back over the row, as torch's keepdim reductions do."""
    torch = pytest.importorskip("torch")
    text = '''
[cell]
name = "red"
[sizes]
H = "hidden size"
[inputs]
x = "H"
[states]
h = "H"
[params]
g = "H"
[step]
outputs = ["h"]
equations = """
h = tanh(g * (x - mean(x)) * sum(h_prev * x) + mean(h_prev))
"""
'''
    d = derive(parse_spec(text))
    rng = np.random.default_rng(1)
    params = random_params(d, {"H": 5}, rng)
    xs, state0 = random_inputs(d, {"H": 5}, 3, 2, rng)
    w, _ = random_upstream(d, {"H": 5}, 3, 2, rng)
    grads = run_backward(d, run_forward(d, params, xs, state0), w)

    g = torch.tensor(params["g"], requires_grad=True)
    x = torch.tensor(xs["x"], requires_grad=True)
    h = h0 = torch.tensor(state0["h"], requires_grad=True)
    out = []
    for t in range(3):
        h = torch.tanh(g * (x[t] - x[t].mean(-1, keepdim=True)) * (h * x[t]).sum(-1, keepdim=True)
                       + h.mean(-1, keepdim=True))
        out.append(h)
    (torch.stack(out) * torch.tensor(w["h"])).sum().backward()
    for name, tensor in {"g": g, "x": x, "h": h0}.items():
        np.testing.assert_allclose(grads[name], tensor.grad.numpy(), rtol=1e-10, atol=1e-12)


BASE = '''
[cell]
name = "c"
[sizes]
H = "hidden size"
{extra}
[inputs]
x = "H"
[states]
{state}
[params]
b = "H"
[step]
outputs = ["h"]
equations = """
{equation}
"""
'''


@pytest.mark.parametrize("extra, state, equation, message", [
    ("", 'h = { size = "H", init = "random" }', "h = tanh(x + b + h_prev)", "init must be one of"),
    ("", 'h = { size = "H", domain = "negative" }', "h = tanh(x + b + h_prev)", "domain must be one of"),
    ("", 'h = { init = "ones" }', "h = tanh(x + b + h_prev)", "needs a size"),
    ("", 'h = { size = "H", start = "ones" }', "h = tanh(x + b + h_prev)", "unknown key 'start'"),
    ("", 'h = { size = "K" }', "h = tanh(x + b + h_prev)", "unknown size 'K'"),
    ("[constants]\neps = 'small'", 'h = "H"', "h = tanh(x + b + h_prev)", "must be a finite number"),
    ("[constants]\neps = true", 'h = "H"', "h = tanh(x + b + h_prev)", "must be a finite number"),
    ("[constants]\neps = inf", 'h = "H"', "h = tanh(x + b + h_prev)", "must be a finite number"),
    ("[constants]\nb = 1.0", 'h = "H"', "h = tanh(x + b + h_prev)", "duplicate name 'b'"),
    ("[constants]\nH = 1.0", 'h = "H"', "h = tanh(x + b + h_prev)", "duplicate name 'H'"),
    ("[constants]\nsum = 1.0", 'h = "H"', "h = tanh(x + b + h_prev)", "reserved"),
    ("[constants]\neps = 1.0", 'h = "H"', "eps = x + b + h_prev\nh = tanh(eps)", "cannot be assigned"),
    ("", 'h = "H"', "h = tanh(mean(3) + x + b + h_prev)", "of a plain number"),
    ("", 'h = "H"', "h = tanh(mean + x + b + h_prev)", "used without a call"),
    ("", 'h = "H"', "h = tanh(mean(x, b) + h_prev)", "exactly one argument"),
    ("", 'h = { size = "H", init = "param" }', "h = tanh(x + b + h_prev + h0)", "unknown name 'h0'"),
    ("[buffers]\nb = \"H\"", 'h = "H"', "h = tanh(x + b + h_prev)", "duplicate name 'b'"),
])
def test_bad_declarations_are_clear_spec_errors(extra, state, equation, message):
    with pytest.raises(SpecError, match=message):
        parse_spec(BASE.format(extra=extra, state=state, equation=equation))


def test_initial_parameter_name_is_checked():
    text = BASE.format(extra="", state='h = { size = "H", init = "param" }',
                       equation="h = tanh(x + b + h_prev + h0)").replace('b = "H"', 'b = "H"\nh0 = "H"')
    with pytest.raises(SpecError, match="'h0' is taken"):
        parse_spec(text)


def test_constant_used_in_an_equation_is_a_number():
    text = BASE.format(extra="[constants]\nscale = 2\nshift = 0.5", state='h = "H"',
                       equation="h = tanh(scale * x + b + h_prev - shift)")
    cell = parse_spec(text)
    x, b, h_prev = sp.symbols("x b h_prev")
    assert sp.simplify(cell.equations[0].rhs - sp.tanh(2 * x + b + h_prev - sp.Rational(1, 2))) == 0


def test_constant_as_an_exponent():
    """A constant is a number in every equation, also as the exponent of ``**`` (it was refused:
    "the exponent of ** must be a number"); the exponent limit still applies to its value."""
    text = BASE.format(extra="[constants]\nk = 2\nhalf = 0.5\nbig = 40", state='h = "H"',
                       equation="h = tanh(x + b + h_prev)**k + (1 + x**2)**-half")
    x, b, h_prev = sp.symbols("x b h_prev")
    rhs = parse_spec(text).equations[0].rhs
    assert sp.simplify(rhs - (sp.tanh(x + b + h_prev)**2 + (1 + x**2)**sp.Rational(-1, 2))) == 0
    with pytest.raises(SpecError, match="exponent"):
        parse_spec(text.replace("**k", "**big"))


def test_init_params_draws_a_positive_initial_value_inside_its_domain(tmp_path):
    """init_params drew the learnable initial value n0 of a positive state like any parameter,
    from (-1/sqrt(H), 1/sqrt(H)): half its entries negative, so log(n_prev) was NaN at step 0."""
    from cell_oracles import import_kernel
    text = BASE.format(extra="", state='h = "H"\nn = { size = "H", init = "param", domain = "positive" }',
                       equation="h = tanh(x + b + h_prev) * log(n_prev)\nn = n_prev * exp(tanh(x))")
    module = import_kernel(derive(parse_spec(text)), "numpy", tmp_path)
    for seed in range(5):
        params = module.init_params(4, 4, seed=seed)
        assert np.all(params["n0"] >= 0.5) and np.all(params["n0"] <= 1.5)
        outputs, _, _ = module.forward(np.ones((2, 3, 4)), params)
        assert np.all(np.isfinite(outputs["h"]))
