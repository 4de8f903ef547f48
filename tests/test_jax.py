"""cellgrad.jax: the kernels as a jax.custom_vjp function, held against jax's own autodiff of the
same cells written by hand below in jax.numpy (an independent oracle: no generated code), and
against central finite differences (the dot-product test). lstm and gru are cells JAX users
write themselves; peephole_lstm and the spec file ln_rnn (two inputs, a buffer, a learnable
initial state, reductions) are not in any framework. Skipped without jax, except in CI
(CI=true): fail."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st


def jax_or_skip():
    if importlib.util.find_spec("jax") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("jax is required in CI (pip install -e '.[jax]')")
        pytest.skip("jax not installed (pip install -e '.[jax]')")
    import jax
    jax.config.update("jax_enable_x64", True)   # float64 tests; float32 arrays stay float32
    return jax


@pytest.fixture(scope="module")
def jax():
    return jax_or_skip()


LN_RNN = Path(__file__).parent / "specs" / "constructs" / "layernorm_rnn.toml"
TOL = {"float64": 1e-10, "float32": 1e-4}


# -- the oracles: each cell's step in jax.numpy, written from its spec ----------------------------

def lstm_step(jnp, p, inp, s):
    x, h, c = inp["x"], s["h"], s["c"]
    sig = lambda a: 1 / (1 + jnp.exp(-a))   # noqa: E731
    i = sig(x @ p["W_i"].T + h @ p["U_i"].T + p["b_i"])
    f = sig(x @ p["W_f"].T + h @ p["U_f"].T + p["b_f"])
    g = jnp.tanh(x @ p["W_g"].T + h @ p["U_g"].T + p["b_g"])
    o = sig(x @ p["W_o"].T + h @ p["U_o"].T + p["b_o"])
    c = f * c + i * g
    h = o * jnp.tanh(c)
    return {"h": h}, {"h": h, "c": c}


def gru_step(jnp, p, inp, s):
    x, h = inp["x"], s["h"]
    sig = lambda a: 1 / (1 + jnp.exp(-a))   # noqa: E731
    r = sig(x @ p["W_r"].T + h @ p["U_r"].T)
    z = sig(x @ p["W_z"].T + h @ p["U_z"].T)
    n = jnp.tanh(x @ p["W_h"].T + (r * h) @ p["U_h"].T)
    h = z * n + (1 - z) * h
    return {"h": h}, {"h": h}


def peephole_step(jnp, p, inp, s):
    x, h, c = inp["x"], s["h"], s["c"]
    sig = lambda a: 1 / (1 + jnp.exp(-a))   # noqa: E731
    i = sig(x @ p["W_i"].T + h @ p["U_i"].T + p["p_i"] * c + p["b_i"])
    f = sig(x @ p["W_f"].T + h @ p["U_f"].T + p["p_f"] * c + p["b_f"])
    g = jnp.tanh(x @ p["W_g"].T + h @ p["U_g"].T + p["b_g"])
    c = f * c + i * g
    o = sig(x @ p["W_o"].T + h @ p["U_o"].T + p["p_o"] * c + p["b_o"])
    h = o * jnp.tanh(c)
    return {"h": h}, {"h": h, "c": c}


def ln_rnn_step(jnp, p, inp, s):
    x, sx, h, n = inp["x"], inp["s"], s["h"], s["n"]
    a = x @ p["W"].T + h @ p["U"].T
    mu = a.mean(axis=1, keepdims=True)
    var = ((a - mu) ** 2).mean(axis=1, keepdims=True)
    h = jnp.tanh(p["g"] * (a - mu) / (var + 1e-5) ** 0.5 + p["beta"]) * (1 - sx * n / (1 + n))
    n = n * (1 / (1 + jnp.exp(-(h.sum(axis=1, keepdims=True) - sx.mean(axis=1, keepdims=True))))) + 0.1
    return {"h": h}, {"h": h, "n": n}


def ln_rnn_initial(jnp, p, N):
    H = p["g"].shape[0]
    return {"h": jnp.broadcast_to(p["h0"], (N, H)), "n": jnp.ones((N, H), p["g"].dtype)}


CELLS = {"lstm": lstm_step, "gru": gru_step, "peephole_lstm": peephole_step, LN_RNN: ln_rnn_step}
STATES = {"lstm": ("h", "c"), "gru": ("h",), "peephole_lstm": ("h", "c"), LN_RNN: ("h", "n")}
INPUT_SIZES = {LN_RNN: {"x": "D", "s": "H"}}


def oracle(jnp, cell, params, inputs, state=None, lengths=None):
    """Unroll the hand-written step over time; past a sequence's end its states hold and its
    outputs are zero."""
    step = CELLS[cell]
    T, N = next(iter(inputs.values())).shape[:2]
    if state is None:
        state = ln_rnn_initial(jnp, params, N) if cell == LN_RNN else \
            {s: jnp.zeros((N, params[next(iter(params))].shape[0]), params[next(iter(params))].dtype)
             for s in STATES[cell]}
    outputs = []
    for t in range(T):
        out, new = step(jnp, params, {k: v[t] for k, v in inputs.items()}, state)
        if lengths is not None:
            live = (t < lengths)[:, None]
            out = {k: jnp.where(live, v, 0) for k, v in out.items()}
            new = {k: jnp.where(live, v, state[k]) for k, v in new.items()}
        outputs.append(out)
        state = new
    return {k: jnp.stack([o[k] for o in outputs]) for k in outputs[0]}, state


# -- the problem ------------------------------------------------------------------------------

def problem(jnp, f, cell, dtype, T=4, N=3, D=3, H=5, seed=0):
    rng = np.random.default_rng(seed)
    params = {k: v + 0.1 * rng.standard_normal(v.shape) for k, v in f.init_params(D, H, seed=seed, dtype=np.float64).items()}
    sizes = {"D": D, "H": H}
    inputs = {k: rng.standard_normal((T, N, sizes[size])) for k, size in INPUT_SIZES.get(cell, {"x": "D"}).items()}
    if cell == LN_RNN:
        inputs["s"] = rng.uniform(0, 1, inputs["s"].shape)
    state = {s: rng.uniform(0.2, 1.0, (N, H)) for s in STATES[cell]}
    cast = lambda tree: {k: jnp.asarray(v, dtype) for k, v in tree.items()}   # noqa: E731
    return cast(params), cast(inputs), cast(state)


def x_arg(inputs):
    return inputs if len(inputs) > 1 else inputs["x"]


def loss_weights(jnp, outputs, state, seed=7):
    """Fixed random weights for a scalar loss that reads every output and final state."""
    rng = np.random.default_rng(seed)
    w = lambda v: jnp.asarray(rng.standard_normal(v.shape), v.dtype)   # noqa: E731
    return {k: w(v) for k, v in outputs.items()}, {k: w(v) for k, v in state.items()}


def scalar(jnp, outputs, state, weights):
    wo, ws = weights
    return sum(jnp.vdot(wo[k], outputs[k]) for k in outputs) + sum(jnp.vdot(ws[k], state[k]) for k in state)


def rel_err(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def assert_close(got, want, tol, what):
    got_leaves, want_leaves = (__import__("jax").tree_util.tree_leaves_with_path(t) for t in (got, want))
    assert [p for p, _ in got_leaves] == [p for p, _ in want_leaves], what
    for (path, g), (_, w) in zip(got_leaves, want_leaves):
        assert g.dtype == w.dtype, f"{what}{path}: dtype {g.dtype}, oracle {w.dtype}"
        assert rel_err(g, w) <= tol, f"{what}{path}: relative error {rel_err(g, w):.2e} > {tol}"


# -- values and gradients against the oracle ------------------------------------------------------

@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("with_state", [False, True], ids=["zero_state", "given_state"])
@pytest.mark.parametrize("cell", list(CELLS), ids=lambda c: Path(c).stem)
def test_values_and_gradients_match_jax_autodiff_of_a_hand_written_cell(jax, cell, with_state, dtype):
    import jax.numpy as jnp
    from cellgrad.jax import kernel_function
    f = kernel_function(cell, "numpy")
    params, inputs, state = problem(jnp, f, cell, dtype)
    state = state if with_state else None
    outputs, final = f(x_arg(inputs), params, state)
    want_outputs, want_final = oracle(jnp, cell, params, inputs, state)
    assert_close((outputs, final), (want_outputs, want_final), TOL[dtype], "forward")

    weights = loss_weights(jnp, outputs, final)
    ours = lambda p, i, s: scalar(jnp, *f(x_arg(i), p, s), weights)              # noqa: E731
    theirs = lambda p, i, s: scalar(jnp, *oracle(jnp, cell, p, i, s), weights)   # noqa: E731
    argnums = (0, 1, 2) if with_state else (0, 1)
    got = jax.grad(ours, argnums=argnums)(params, inputs, state)
    want = jax.grad(theirs, argnums=argnums)(params, inputs, state)
    if cell == LN_RNN:   # a buffer is passed like a parameter but not trained: its gradient is zero
        assert not np.any(np.asarray(got[0]["beta"]))
        want[0]["beta"] = jnp.zeros_like(want[0]["beta"])
    assert_close(got, want, TOL[dtype], "gradient ")


@pytest.mark.parametrize("cell", list(CELLS), ids=lambda c: Path(c).stem)
def test_vjp_passes_the_dot_product_test_by_central_differences(jax, cell):
    """<J t, c> by central differences of the wrapped forward along a random tangent t of
    (params, inputs, state) against <t, J^T c> from jax.vjp: no oracle of ours involved."""
    import jax.numpy as jnp
    from cellgrad.jax import kernel_function
    f = kernel_function(cell, "numpy")
    params, inputs, state = problem(jnp, f, cell, "float64", seed=3)
    primal = (params, inputs, state)
    run = lambda p, i, s: f(x_arg(i), p, s)   # noqa: E731
    (outputs, final), vjp = jax.vjp(run, *primal)
    rng = np.random.default_rng(11)
    draw = lambda tree: jax.tree_util.tree_map(lambda v: jnp.asarray(rng.standard_normal(v.shape)), tree)   # noqa: E731
    tangent, cotangent = draw(primal), draw((outputs, final))
    if cell == LN_RNN:
        tangent[0]["beta"] = jnp.zeros_like(tangent[0]["beta"])   # a buffer: no gradient to test
    eps = 1e-6
    shift = lambda sign: jax.tree_util.tree_map(lambda v, t: v + sign * eps * t, primal, tangent)   # noqa: E731
    inner = lambda a, b: sum(float(jnp.vdot(u, v)) for u, v in                                     # noqa: E731
                             zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))
    jt_c = (inner(run(*shift(+1)), cotangent) - inner(run(*shift(-1)), cotangent)) / (2 * eps)
    t_jtc = inner(tangent, vjp(cotangent))
    assert abs(jt_c - t_jtc) <= 1e-6 * max(1.0, abs(t_jtc)), (jt_c, t_jtc)


# -- transformations ----------------------------------------------------------------------------

@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_jit_of_grad_matches_the_oracle_with_lengths(jax, backend):
    import jax.numpy as jnp
    from cellgrad.jax import kernel_function
    f = kernel_function("lstm", backend)
    params, inputs, state = problem(jnp, f, "lstm", "float64", T=5)
    lengths = jnp.asarray([5, 0, 2])

    def ours(p, x, s, lengths):
        out, fin = f(x, p, s, lengths)
        return (out["h"] ** 2).sum() + fin["c"].sum()

    def theirs(p, x, s, lengths):
        out, fin = oracle(jnp, "lstm", p, {"x": x}, s, lengths)
        return (out["h"] ** 2).sum() + fin["c"].sum()

    jitted = jax.jit(jax.value_and_grad(ours, argnums=(0, 1, 2)))
    got = jitted(params, inputs["x"], state, lengths)
    want = jax.value_and_grad(theirs, argnums=(0, 1, 2))(params, inputs["x"], state, lengths)
    assert_close(got, want, 1e-10, "jit(value_and_grad) ")
    again = jitted(params, inputs["x"] * 0.5, state, jnp.asarray([1, 4, 3]))   # same shapes: no retrace needed
    want_again = jax.value_and_grad(theirs, argnums=(0, 1, 2))(params, inputs["x"] * 0.5, state, jnp.asarray([1, 4, 3]))
    assert_close(again, want_again, 1e-10, "second call ")


def test_vmap_runs_each_batch_element_as_its_own_call(jax):
    """vmap over a leading axis of x (per-example gradients of shared parameters) equals a loop."""
    import jax.numpy as jnp
    from cellgrad.jax import kernel_function
    f = kernel_function("gru", "numpy")
    params, inputs, _ = problem(jnp, f, "gru", "float64")
    xs = jnp.stack([inputs["x"], 2 * inputs["x"], -inputs["x"]])
    per_example = lambda p, x: (f(x, p)[0]["h"] ** 2).sum()   # noqa: E731
    got = jax.vmap(jax.grad(per_example), in_axes=(None, 0))(params, xs)
    for k, x in enumerate(xs):
        want = jax.grad(lambda p: (oracle(jnp, "gru", p, {"x": x})[0]["h"] ** 2).sum())(params)
        assert_close({n: v[k] for n, v in got.items()}, want, 1e-10, f"example {k} ")


def test_a_kernel_module_is_accepted_as_it_is(jax):
    import jax.numpy as jnp
    from cellgrad.jax import kernel_function
    from codegen import build_module
    f = kernel_function(build_module("gru", "numpy"))
    params, inputs, _ = problem(jnp, f, "gru", "float64")
    assert_close(f(inputs["x"], params), oracle(jnp, "gru", params, inputs), 1e-10, "build_module ")


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(T=st.integers(1, 5), N=st.integers(1, 4), D=st.integers(1, 4), H=st.integers(1, 4),
       dtype=st.sampled_from(["float32", "float64"]), data=st.data())
def test_any_shapes_and_lengths_match_the_oracle(jax, T, N, D, H, dtype, data):
    import jax.numpy as jnp
    from cellgrad.jax import kernel_function
    f = kernel_function("peephole_lstm", "numpy")
    params, inputs, state = problem(jnp, f, "peephole_lstm", dtype, T=T, N=N, D=D, H=H)
    lengths = jnp.asarray(data.draw(st.lists(st.integers(0, T), min_size=N, max_size=N)))
    got = f(inputs["x"], params, state, lengths)
    want = oracle(jnp, "peephole_lstm", params, inputs, state, lengths)
    assert_close(got, want, TOL[dtype], "forward ")
    loss = lambda run: lambda p, x, s: scalar(jnp, *run(p, x, s), loss_weights(jnp, *want))   # noqa: E731
    got_grad = jax.grad(loss(lambda p, x, s: f(x, p, s, lengths)), argnums=(0, 1, 2))(params, inputs["x"], state)
    want_grad = jax.grad(loss(lambda p, x, s: oracle(jnp, "peephole_lstm", p, {"x": x}, s, lengths)),
                         argnums=(0, 1, 2))(params, inputs["x"], state)
    assert_close(got_grad, want_grad, 10 * TOL[dtype], "gradient ")


# -- refusals --------------------------------------------------------------------------------------

def test_a_wrong_shape_is_refused_while_tracing_with_the_kernels_message(jax):
    import jax.numpy as jnp
    from cellgrad.jax import kernel_function
    f = kernel_function("lstm", "numpy")
    params, inputs, _ = problem(jnp, f, "lstm", "float64")
    params["U_i"] = params["U_i"][:, :-1]
    with pytest.raises(ValueError, match=r"params\['U_i'\] has shape"):
        jax.jit(lambda p: f(inputs["x"], p))(params)


def test_mixed_dtypes_and_float_lengths_are_refused(jax):
    import jax.numpy as jnp
    from cellgrad.jax import kernel_function
    f = kernel_function("rnn", "numpy")
    params = f.init_params(2, 3, dtype=jnp.float64)
    with pytest.raises(TypeError, match="dtype float32, expected float64"):
        f(jnp.ones((2, 1, 2), jnp.float64), {**params, "b_ih": params["b_ih"].astype(jnp.float32)})
    with pytest.raises(TypeError, match="lengths must be integers"):
        f(jnp.ones((2, 1, 2)), params, lengths=jnp.ones(1))


def test_forward_mode_is_refused_by_jax_not_answered_wrongly(jax):
    import jax.numpy as jnp
    from cellgrad.jax import kernel_function
    f = kernel_function("rnn", "numpy")
    params = f.init_params(2, 3, dtype=jnp.float64)
    x = jnp.ones((2, 1, 2))
    with pytest.raises(TypeError, match="custom_vjp"):
        jax.jvp(lambda x: f(x, params)[0]["h"], (x,), (x,))


def test_the_readme_jax_example_runs(jax):
    import re
    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    code = re.search(r"```python\n(import jax\n.*?)```", readme, re.S).group(1)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)   # the repository's own example code
    grads, params = namespace["grads"], namespace["params"]
    assert set(grads) == set(params) and all(np.all(np.isfinite(g)) and np.any(g) for g in grads.values())
    assert np.isfinite(float(namespace["value"]))
