"""Numeric oracle: the evaluator's BPTT gradients against central finite differences.

The loss is L = sum_t sum_q <w_q<t>, q<t>> + sum_s <v_s, s<T-1>> with random weights, so its
upstream gradients are exactly (w, v). Finite differences only ever call the forward pass;
every entry of every parameter, of x and of each initial state is perturbed.

For truncated BPTT the oracle is the finite difference of a loss whose graph is cut: E<t> is
computed by running steps t-k+1..t from the states that reach step t-k+1 under the unperturbed
parameters (held constant), so only the last k steps see the perturbation.
"""

from __future__ import annotations

import numpy as np
import pytest

from derive import builtin_cells, derive, load_cell
from derive.evaluate import (loss, random_inputs, random_params, random_upstream, run_backward,
                             run_forward)

D, H, N, T = 3, 4, 2, 4
EPS = 1e-6


def sizes_for(cell) -> dict[str, int]:
    """D and H as above; any other size (e.g. the minimal RNN's O) gets 2."""
    return {s: {"D": D, "H": H}.get(s, 2) for s in cell.sizes}


def finite_difference(f, arrays: dict[str, np.ndarray], name: str) -> np.ndarray:
    """Central differences of the scalar f() with respect to every entry of arrays[name]."""
    arr = arrays[name]
    grad = np.zeros_like(arr)
    for idx in np.ndindex(arr.shape):
        old = arr[idx]
        arr[idx] = old + EPS
        plus = f()
        arr[idx] = old - EPS
        minus = f()
        arr[idx] = old
        grad[idx] = (plus - minus) / (2 * EPS)
    return grad


class Problem:
    """A random cell instance: parameters, a sequence, initial states and loss weights."""

    def __init__(self, d, seed=0, T=T):
        rng = np.random.default_rng(seed)
        self.d = d
        self.sizes = sizes_for(d.cell)
        self.params = random_params(d, self.sizes, rng)
        self.xs, self.state0 = random_inputs(d, self.sizes, T, N, rng)
        self.w, self.v = random_upstream(d, self.sizes, T, N, rng)
        self.T = T

    def arrays(self):
        """Everything a gradient is taken with respect to, by name (names are unique in a cell)."""
        return {**self.params, **self.xs, **self.state0}

    def full_loss(self) -> float:
        return loss(run_forward(self.d, self.params, self.xs, self.state0), self.w, self.v)

    def truncated_loss(self, k: int, frozen_states: list[dict]) -> float:
        """sum_t E<t> with E<t> computed from the frozen states entering step t-k+1."""
        total = 0.0
        for t in range(self.T + 1):  # t = T is the final-state term, a loss "at step T"
            start = max(t - k + 1, 0)
            state = self.state0 if start == 0 else frozen_states[start]
            stop = min(t, self.T - 1) + 1
            if start >= stop:
                continue
            trace = run_forward(self.d, self.params, {i: x[start:stop] for i, x in self.xs.items()},
                                state)
            if t < self.T:
                total += sum(float(np.sum(self.w[o][t] * trace.outputs[o][-1])) for o in self.w)
            else:
                total += sum(float(np.sum(self.v[s] * trace.state[s])) for s in self.v)
        return total

    def frozen_states(self) -> list[dict]:
        """states[t] = the states entering step t under the current (unperturbed) values."""
        trace = run_forward(self.d, self.params, self.xs, self.state0)
        out = [dict(self.state0)]
        for step in trace.steps:
            out.append({s: step[s].copy() for s in self.d.cell.states})
        return out

    def gradients(self):
        trace = run_forward(self.d, self.params, self.xs, self.state0)
        return run_backward(self.d, trace, self.w, self.v)


def assert_gradients_match(grads, f, arrays):
    assert set(grads) == set(arrays)
    for name in arrays:
        expected = finite_difference(f, arrays, name)
        assert grads[name].shape == expected.shape, name
        np.testing.assert_allclose(grads[name], expected, rtol=1e-6, atol=1e-8, err_msg=name)


@pytest.mark.parametrize("name", builtin_cells())
def test_full_bptt_matches_finite_differences(name):
    problem = Problem(derive(load_cell(name)))
    grads = problem.gradients()
    # Every state influences the loss, so a gradient that ignores the recurrence would fail.
    assert all(np.any(grads[s] != 0) for s in problem.d.cell.states)
    assert_gradients_match(grads, problem.full_loss, problem.arrays())


@pytest.mark.parametrize("k", [1, 2])
@pytest.mark.parametrize("name", builtin_cells())
def test_truncated_bptt_matches_finite_differences_of_the_cut_loss(name, k):
    problem = Problem(derive(load_cell(name), truncate=k))
    frozen = problem.frozen_states()
    grads = problem.gradients()
    assert_gradients_match(grads, lambda: problem.truncated_loss(k, frozen), problem.arrays())


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_truncation_longer_than_the_sequence_is_full_bptt(name):
    cell = load_cell(name)
    full = Problem(derive(cell)).gradients()
    for k in (T + 1, T + 5):
        long = Problem(derive(cell, truncate=k)).gradients()
        for key in full:
            np.testing.assert_allclose(long[key], full[key], rtol=1e-12, atol=1e-14, err_msg=key)
    # k = T: every output loss reaches step 0, only the final-state term is cut short.
    cut = Problem(derive(cell, truncate=T)).gradients()
    assert not np.allclose(cut[cell.states[0]], full[cell.states[0]])


def test_truncated_and_full_differ():
    """The cut loss has the full loss's value but not its gradient (else truncation tests
    could pass with full BPTT)."""
    problem = Problem(derive(load_cell("lstm"), truncate=2))
    frozen = problem.frozen_states()
    assert problem.truncated_loss(2, frozen) == pytest.approx(problem.full_loss(), rel=1e-12)
    full = Problem(derive(load_cell("lstm"))).gradients()
    assert not np.allclose(problem.gradients()["U_f"], full["U_f"])


def test_float32_stays_float32():
    d = derive(load_cell("lstm"))
    rng = np.random.default_rng(0)
    sizes = sizes_for(d.cell)
    params = random_params(d, sizes, rng, dtype=np.float32)
    xs, state0 = random_inputs(d, sizes, 3, N, rng, dtype=np.float32)
    trace = run_forward(d, params, xs, state0)
    grads = run_backward(d, trace, {"h": np.ones_like(trace.outputs["h"])})
    assert trace.outputs["h"].dtype == np.float32
    assert all(g.dtype == np.float32 for g in grads.values())


def test_shape_mismatch_is_a_clear_error():
    d = derive(load_cell("rnn"))
    rng = np.random.default_rng(0)
    params = random_params(d, {"D": 3, "H": 4}, rng)
    params["U"] = params["U"][:, :3]
    with pytest.raises(ValueError, match="'U' has H = 3"):
        run_forward(d, params, rng.standard_normal((2, 1, 3)))
