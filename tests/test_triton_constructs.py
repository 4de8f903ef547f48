"""The spec constructs through the triton backend, under Triton's interpreter on CPU tensors:
reductions (mean, sum: a row kernel each), constants, buffers (no gradient), states starting at
ones or at a learnable parameter, a positive domain, several inputs, and a product with a
buffer matrix. Each cell is checked against the NumPy backend (float64
tight, float32 1e-4), against central finite differences of its own forward pass, and with
sequence lengths. Skipped without triton, except in CI (CI=true): fail."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TRITON_INTERPRET", "1")   # before any generated Triton module is imported

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import sympy as sp  # noqa: E402

from cell_oracles import import_kernel  # noqa: E402
from codegen.gradcheck import check_gradients, format_table, random_problem  # noqa: E402
from derive import derive, load_cell, parse_spec  # noqa: E402
from test_triton_kernels import NumPyView, compare, triton_or_skip  # noqa: E402

CONSTRUCTS = Path(__file__).parent / "specs" / "constructs"

#: the matrix U is a buffer, so no gradient needs m: the derivation does not save it, the plan
#: keeps it per step for the product
STEP_VECTOR = '''
[cell]
name = "step_vector"
[sizes]
D = "input size"
H = "hidden size"
[inputs]
x = "D"
[states]
h = "H"
[params]
W = ["H", "D"]
V = ["H", "H"]
[buffers]
U = ["H", "H"]
[step]
outputs = ["h"]
equations = """
m = W @ x + V @ h_prev
h = tanh(U @ m)
"""
'''

#: reductions in every place: straight into a state, over a parameter vector (the same row for
#: every batch row), over an input as an output that is no state
REDUCTIONS = '''
[cell]
name = "reductions"
[sizes]
D = "input size"
H = "hidden size"
[inputs]
x = "D"
[states]
h = "H"
n = { size = "H", init = "ones" }
[params]
W = ["H", "D"]
U = ["H", "H"]
b = "H"
[step]
outputs = ["h", "y", "n"]
equations = """
h = tanh(W @ x + U @ h_prev + n_prev * mean(b))
n = mean(h_prev)
y = sum(x)
"""
'''

CELLS = {path.stem: path.read_text(encoding="utf-8") for path in sorted(CONSTRUCTS.glob("*.toml"))}
CELLS["step_vector"] = STEP_VECTOR
CELLS["reductions"] = REDUCTIONS


@pytest.fixture(scope="module")
def modules(tmp_path_factory):
    """cell -> (NumPy module, Triton module), built once."""
    folder = tmp_path_factory.mktemp("triton-constructs")
    out = {}
    for name, text in CELLS.items():
        d = derive(parse_spec(text, f"{name}.toml"))
        out[name] = (import_kernel(d, "numpy", folder, text), import_kernel(d, "triton", folder, text))
    return out


def test_the_constructs_are_all_drawn():
    """The cells here hold every construct the module docstring names."""
    cells = [load_cell(CONSTRUCTS / f"{name}.toml") for name in CELLS if (CONSTRUCTS / f"{name}.toml").exists()]
    q = {n: v for c in cells for n, v in c.quantities.items()}
    assert any(len(c.inputs) > 1 for c in cells)
    assert {"ones", "param"} <= {v.init for v in q.values()}
    assert any(not v.trainable for v in q.values())
    assert any(v.domain == "positive" for v in q.values())
    text = "".join(CELLS.values())
    assert "mean(" in text and "sum(" in text and "[constants]" in text


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("initial", [False, True], ids=["state given", "declared initial states"])
@pytest.mark.parametrize("cell", list(CELLS))
def test_constructs_match_the_numpy_backend(modules, cell, initial, dtype):
    torch = triton_or_skip()
    ref, module = modules[cell]
    compare(ref, module, torch, dtype, seed=2, initial=initial, T=3, N=3, D=3, H=5)


@pytest.mark.parametrize("cell", list(CELLS))
def test_constructs_honour_lengths(modules, cell):
    """Unsorted lengths including 0 and T, given as a tensor; a row of length 0 keeps its
    initial state, and the gradients past each end are zero."""
    torch = triton_or_skip()
    ref, module = modules[cell]
    lengths = np.array([2, 0, 4, 1])
    compare(ref, module, torch, "float64", seed=4, lengths=lengths, T=4, N=4, D=3, H=5)
    compare(ref, module, torch, "float64", seed=5, lengths=lengths, as_tensor=True, initial=True,
            T=4, N=4, D=3, H=5)


@pytest.mark.parametrize("cell", list(CELLS))
def test_construct_gradients_match_finite_differences(modules, cell):
    """Every trainable parameter, input and initial state (drawn inside its domain) by the
    dot-product test; buffers get no gradient."""
    torch = triton_or_skip()
    view = NumPyView(modules[cell][1], torch)
    results = check_gradients(view, T=3, N=2, seed=3, max_entries=0)
    names = {r.name for r in results}
    assert names == (set(view.PARAM_SHAPES) - set(view.BUFFERS)) | set(view.INPUTS) | set(view.STATES)
    assert all(r.ok for r in results), "\n" + format_table(results)
    params, x, state0, d_out, d_state = random_problem(view, 2, 2, seed=1)
    _, _, cache = view.forward(x, params, state0)
    assert set(view.backward(d_out, cache, d_state).params) == set(view.PARAM_SHAPES) - set(view.BUFFERS)


def test_learnable_initial_states_match_finite_differences(modules):
    """With no state passed, the gradient of a learnable initial value (h0 of ``init = "param"``)
    is the sum over the batch of the initial state's adjoint: checked along a random direction
    by central differences of the forward pass (float64)."""
    torch = triton_or_skip()
    view = NumPyView(modules["layernorm_rnn"][1], torch)
    assert view.INITIAL
    params, x, _, d_out, d_state = random_problem(view, 3, 2, seed=6)
    rng = np.random.default_rng(7)

    def loss() -> float:
        outputs, state, _ = view.forward(x, params)
        return (sum(float(np.sum(outputs[o] * d_out[o])) for o in d_out)
                + sum(float(np.sum(state[s] * d_state[s])) for s in d_state))

    _, _, cache = view.forward(x, params)
    grads = view.backward(d_out, cache, d_state)
    for p in view.INITIAL.values():
        direction = rng.standard_normal(params[p].shape)
        base = params[p].copy()
        params[p] = base + 1e-6 * direction
        up = loss()
        params[p] = base - 1e-6 * direction
        down = loss()
        params[p] = base
        numeric = (up - down) / 2e-6
        analytic = float(np.sum(grads.params[p] * direction))
        assert abs(analytic - numeric) <= 1e-6 * max(1.0, abs(numeric)), (p, analytic, numeric)
        assert abs(numeric) > 1e-3   # the direction reaches the loss: the check can fail


POSITIVE_PARAM = CELLS["layernorm_rnn"].replace('n = { size = "H", init = "ones", domain = "positive" }',
                                               'n = { size = "H", init = "param", domain = "positive" }')


def test_init_params_are_the_numpy_backends(modules, tmp_path):
    """init_params gives the NumPy backend's values for the same seed, a positive state's
    learnable initial value included (drawn from (0.5, 1.5))."""
    torch = triton_or_skip()
    assert POSITIVE_PARAM != CELLS["layernorm_rnn"]
    d = derive(parse_spec(POSITIVE_PARAM, "positive.toml"))
    pairs = [*modules.values(), (import_kernel(d, "numpy", tmp_path), import_kernel(d, "triton", tmp_path))]
    for ref, module in pairs:
        want = ref.init_params(3, 5, seed=4)
        got = module.init_params(3, 5, seed=4, dtype=torch.float64)
        assert set(got) == set(want)
        for name in want:
            np.testing.assert_array_equal(got[name].numpy(), want[name], err_msg=name)
    assert np.all(got["n0"].numpy() > 0.5)


def test_a_function_without_a_triton_spelling_is_refused_by_name():
    """cos (in sin', for a row someone adds without a Triton spelling) is refused when the
    module is printed, never printed as a call that fails or differs on the GPU."""
    from codegen.backends.triton.printer import TritonPrinter
    with pytest.raises(NotImplementedError, match="triton backend has no spelling for cos"):
        TritonPrinter({}).doprint(sp.cos(sp.Symbol("z")))
