"""The generated Triton modules (generated/<cell>_triton.py), run on CPU tensors through Triton's
interpreter, for every built-in cell: against the NumPy backend in float64 (what the kernels
compute in for float64 tensors), float32 and bfloat16 storage, and against central finite
differences of their own forward pass in float64. Skipped without triton, except in CI
(CI=true): fail."""

from __future__ import annotations

import importlib
import importlib.util
import os
from pathlib import Path

# the interpreter is chosen when triton.jit decorates a kernel: set it before any generated
# Triton module is imported
os.environ.setdefault("TRITON_INTERPRET", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from codegen.backends.triton.numpy_view import NumPyView  # noqa: E402
from codegen.gradcheck import check_gradients, flat_grads, format_table, random_problem  # noqa: E402

from cell_oracles import import_kernel  # noqa: E402
from derive import derive, load_cell, parse_spec  # noqa: E402
from kernel_modules import CELLS, kernel  # noqa: E402

COLLIDE = Path(__file__).parent / "specs" / "names" / "collide.toml"
GENERATED = Path(__file__).resolve().parents[1] / "generated"
#: the built-in cells with a committed triton module (every one, see the last test)
TRITON_CELLS = tuple(c for c in CELLS if (GENERATED / f"{c}_triton.py").exists())


def triton_or_skip():
    for name in ("torch", "triton"):
        if importlib.util.find_spec(name) is None:
            if os.environ.get("CI") == "true":
                pytest.fail(f"{name} is required in CI (pip install -e '.[triton]')")
            pytest.skip(f"{name} not installed")
    if os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("TRITON_INTERPRET is set to something other than 1: these tests need the interpreter")
    import torch
    return torch


def problem(ref, seed=0, T=4, N=3, D=5, H=6):
    """NumPy float64 parameters, inputs (a dict for a cell with several), initial states (inside
    each state's domain) and upstream gradients for the cell of the NumPy module ``ref``."""
    return random_problem(ref, T, N, input_size=D, hidden_size=H, seed=seed)


def worst_error(got: dict, want: dict) -> tuple[float, str]:
    """Largest |got - want| relative to max(1, |want|max) over every entry of every array."""
    errors = {k: float(np.max(np.abs(got[k] - want[k])) / max(1.0, float(np.max(np.abs(want[k])))))
              for k in want}
    name = max(errors, key=errors.get)
    return errors[name], name


# float64 computes in float64 (exact up to rounding); float32 and bfloat16 are storage formats
# with float32 arithmetic: tolerances of their rounding over a few steps
TOLERANCE = {"float64": 1e-11, "float32": 1e-4, "bfloat16": 6e-2}


@pytest.mark.parametrize("dtype", list(TOLERANCE))
@pytest.mark.parametrize("cell", TRITON_CELLS)
def test_triton_matches_numpy_backend(cell, dtype):
    torch = triton_or_skip()
    compare(kernel(cell, "numpy"), kernel(cell, "triton"), torch, dtype)


def compare(ref, module, torch, dtype, seed=0, lengths=None, as_tensor=False, initial=False, **sizes):
    """Outputs, final states and gradients of a Triton module against a NumPy module (the Triton
    module gets ``lengths`` as a torch tensor when ``as_tensor``; ``initial``: no initial state is
    passed, each starts at its declared value, zeros, ones or its learnable parameter)."""
    params, x, state0, d_out, d_state = problem(ref, seed, **sizes)
    state0 = None if initial else state0
    outputs, state, cache = ref.forward(x, params, state0, lengths)
    grads = flat_grads(ref.backward(d_out, cache, d_state))
    view = NumPyView(module, torch, getattr(torch, dtype))
    got_outputs, got_state, got_cache = view.forward(
        x, params, state0, torch.from_numpy(lengths) if as_tensor else lengths)
    got_grads = flat_grads(view.backward(d_out, got_cache, d_state))
    for got, want, what in ((got_outputs, outputs, "outputs"), (got_state, state, "final state"),
                            (got_grads, grads, "gradients")):
        assert set(got) == set(want)
        err, name = worst_error(got, want)
        assert err < TOLERANCE[dtype], f"{ref.CELL} {dtype} {what}: {name} differs by {err:.2e}"


def test_spec_names_equal_to_generated_names_give_right_triton_kernels(tmp_path):
    """tests/specs/names/collide.toml names its quantities after generated names (tanh_c,
    proj_x, packed_x, h_seq, dpre_seq, tmp1, x, params, cache, ...)."""
    torch = triton_or_skip()
    d = derive(load_cell(COLLIDE))
    compare(import_kernel(d, "numpy", tmp_path), import_kernel(d, "triton", tmp_path), torch, "float64")


@pytest.mark.parametrize("cell", ["lstm", "gru", "minimal_rnn", "peephole_lstm", "augru"])
def test_triton_honours_lengths_as_the_numpy_backend(cell):
    """Unsorted lengths including 0 and T: outputs zero past each end, each sequence's own last
    state, exact gradients (the NumPy backend's lengths are checked by tests/test_kernels_lengths.py)."""
    torch = triton_or_skip()
    lengths = np.array([3, 0, 5, 1])
    compare(kernel(cell, "numpy"), kernel(cell, "triton"), torch, "float64", T=5, N=4, lengths=lengths)
    compare(kernel(cell, "numpy"), kernel(cell, "triton"), torch, "float32", T=5, N=4, lengths=lengths,
            as_tensor=True)


@pytest.mark.parametrize("cell", TRITON_CELLS)
def test_triton_gradients_match_finite_differences(cell):
    torch = triton_or_skip()
    view = NumPyView(kernel(cell, "triton"), torch)
    # the dot-product test per array (max_entries=0): two forward runs per array, which is what
    # the interpreter affords; it fails on any gradient off by a relative 1e-5 along a random direction
    results = check_gradients(view, T=3, N=2, input_size=3, hidden_size=4, seed=3, max_entries=0)
    assert {r.name for r in results} == (set(view.PARAM_SHAPES) - set(view.BUFFERS)) | set(view.INPUTS) | set(view.STATES)
    assert all(r.ok for r in results), "\n" + format_table(results)


def test_finite_difference_check_catches_a_wrong_triton_gradient(monkeypatch):
    """The oracle can fail on this path too: scale one gradient and the check reports it."""
    torch = triton_or_skip()
    module = importlib.reload(kernel("gru_torch", "triton"))
    original = module.backward

    def skewed(d_outputs, cache, d_state=None):
        grads = original(d_outputs, cache, d_state)
        grads.params["W_hz"] = grads.params["W_hz"] * 1.001
        return grads

    monkeypatch.setattr(module, "backward", skewed)
    results = {r.name: r for r in check_gradients(NumPyView(module, torch), T=2, N=2, max_entries=0)}
    assert not results["W_hz"].ok
    assert results["W_hr"].ok


def test_triton_module_refuses_numpy_arrays_and_mixed_dtypes():
    torch = triton_or_skip()
    module = kernel("lstm", "triton")
    params = module.init_params(input_size=3, hidden_size=4)
    with pytest.raises(ValueError, match="torch tensor"):
        module.forward(np.zeros((2, 1, 3), np.float32), params)
    with pytest.raises(TypeError, match="float64"):
        module.forward(torch.zeros((2, 1, 3), dtype=torch.float64), params)
    with pytest.raises(TypeError, match="int64"):
        module.forward(torch.zeros((2, 1, 3), dtype=torch.int64), params)


def test_every_builtin_cell_has_a_triton_module():
    """regenerate writes a triton module for every built-in cell (the backend refuses only a
    function without a Triton spelling, which no built-in uses), and the tests above run each."""
    assert set(TRITON_CELLS) == set(CELLS)   # test_generated_fresh.py checks their text


STEP_OF_STATE = '''
[cell]
name = "step_of_state"
[sizes]
D = "input size"
H = "hidden size"
[inputs]
x = "D"
[states]
h = "H"
[params]
W = ["H", "D"]
U = ["H", "H"]
[step]
outputs = ["h", "y"]
equations = """
h = tanh(W @ x + U @ h_prev)
y = sigmoid(step(h)) + sign(h)
"""
'''


def test_step_and_sign_compute_in_float64(tmp_path):
    """step and sign are spelled with constants (1.0, 0.0: float32 literals in Triton); in a
    float64 kernel they are cast to float64, so sigmoid(step(h)) is sigmoid(1.0) to float64
    precision, not float32's (found by the random cells: off by 2e-8)."""
    torch = triton_or_skip()
    d = derive(parse_spec(STEP_OF_STATE, "step_of_state.toml"))
    compare(import_kernel(d, "numpy", tmp_path), import_kernel(d, "triton", tmp_path), torch, "float64")


def test_cellgrad_check_runs_a_triton_module_through_the_interpreter():
    """`cellgrad check --backend triton` on a machine without a GPU: the module is generated,
    run through Triton's interpreter on NumPy's arrays turned into tensors, and judged."""
    import subprocess
    import sys
    triton_or_skip()
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    env.pop("TRITON_INTERPRET", None)    # the command switches the interpreter on itself
    done = subprocess.run([sys.executable, "-m", "cellgrad", "check", "rnn", "--backend", "triton",
                           "-T", "2", "-N", "2"], capture_output=True, text=True, env=env, cwd=root)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "rnn (triton, interpreted on the CPU)" in done.stdout
    assert "all gradients agree with finite differences" in done.stdout
