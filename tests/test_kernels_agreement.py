"""Backends agree with each other, and float32 agrees with float64 to float32 accuracy."""

from __future__ import annotations

import numpy as np
import pytest

from codegen.gradcheck import random_problem

from kernel_modules import BACKENDS, CELLS, kernel


def run(module, dtype, T=6, N=3, D=5, H=7, seed=3):
    params, x, state0, d_outputs, d_state = random_problem(module, T, N, D, H, seed, dtype)
    outputs, state, cache = module.forward(x, params, state0)
    grads = module.backward(d_outputs, cache, d_state)
    return {**{f"out:{k}": v for k, v in outputs.items()}, **{f"state:{k}": v for k, v in state.items()},
            **{f"grad:{k}": v for part in grads for k, v in part.items()}}


def rel_err(a, b):
    return float(np.linalg.norm(a.astype(np.float64) - b) / max(np.linalg.norm(b), 1e-30))


@pytest.mark.parametrize("cell", CELLS)
def test_numba_agrees_with_numpy(cell):
    ref = run(kernel(cell, "numpy"), np.float64)
    got = run(kernel(cell, "numba"), np.float64)
    assert ref.keys() == got.keys()
    for key in ref:
        assert rel_err(got[key], ref[key]) < 1e-12, key


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cell", CELLS)
def test_float32_runs_in_float32_and_agrees_with_float64(cell, backend):
    module = kernel(cell, backend)
    wide = run(module, np.float64)
    narrow = run(module, np.float32)
    for key in wide:
        assert narrow[key].dtype == np.float32, f"{key} was upcast to {narrow[key].dtype}"
        assert rel_err(narrow[key], wide[key]) < 1e-4, key
