"""Variable-length sequences (``lengths``): every built-in cell x backend, lengths in any order
(0 and T included). Oracles: each sequence run alone, truncated to its length; and central
finite differences of forward alone."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from codegen.gradcheck import check_gradients, format_table, random_problem

from kernel_modules import BACKENDS, CELLS, kernel

T, N = 5, 4


def run_batch(module, lengths, seed=0):
    params, x, state0, d_outputs, d_state = random_problem(module, T, N, 3, 4, seed)
    outputs, state, cache = module.forward(x, params, state0, lengths)
    grads = module.backward(d_outputs, cache, d_state)
    return (params, x, state0, d_outputs, d_state), outputs, state, grads


def _inputs(module, x) -> dict:
    """Every input sequence by name (a cell with several inputs takes a dict)."""
    return x if isinstance(x, dict) else {next(iter(module.INPUTS)): x}


def assert_matches_sequences_alone(module, lengths, seed=0):
    (params, x, state0, d_outputs, d_state), outputs, state, grads = run_batch(module, lengths, seed)
    inputs = _inputs(module, x)
    param_sum = {k: np.zeros_like(v) for k, v in params.items()}
    for n, length in enumerate(lengths):
        one = slice(n, n + 1)
        if length == 0:   # nothing runs: the final state is the initial one, no gradient but d_state's
            for s in module.STATES:
                assert np.array_equal(state[s][n], state0[s][n])
                assert np.array_equal(grads.state[s][n], d_state[s][n])
            assert not outputs[next(iter(module.OUTPUTS))][:, n].any()
            assert not any(grads.inputs[i][:, n].any() for i in inputs)
            continue
        alone = {i: np.ascontiguousarray(v[:length, one]) for i, v in inputs.items()}
        out1, state1, cache1 = module.forward(alone if isinstance(x, dict) else alone[next(iter(module.INPUTS))], params,
                                              {s: v[one].copy() for s, v in state0.items()})
        grads1 = module.backward({o: np.ascontiguousarray(d[:length, one]) for o, d in d_outputs.items()},
                                 cache1, {s: v[one].copy() for s, v in d_state.items()})
        for o in module.OUTPUTS:
            np.testing.assert_allclose(outputs[o][:length, n], out1[o][:, 0], rtol=1e-12, atol=1e-14)
            assert not outputs[o][length:, n].any(), "outputs past the end are zero"
        for s in module.STATES:
            np.testing.assert_allclose(state[s][n], state1[s][0], rtol=1e-12, atol=1e-14)
            np.testing.assert_allclose(grads.state[s][n], grads1.state[s][0], rtol=1e-10, atol=1e-12)
        for i in inputs:
            dx = grads.inputs[i]
            np.testing.assert_allclose(dx[:length, n], grads1.inputs[i][:, 0], rtol=1e-10, atol=1e-12)
            assert not dx[length:, n].any(), "padded steps get no gradient"
        for k in params:
            param_sum[k] += grads1.params[k]
    for k in params:
        np.testing.assert_allclose(grads.params[k], param_sum[k], rtol=1e-9, atol=1e-11, err_msg=k)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cell", CELLS)
def test_each_sequence_as_if_alone(cell, backend):
    assert_matches_sequences_alone(kernel(cell, backend), np.array([3, 5, 0, 1]))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cell", CELLS)
def test_gradients_with_lengths_match_finite_differences(cell, backend):
    results = check_gradients(kernel(cell, backend), T=T, N=N, seed=4, max_entries=10,
                              lengths=np.array([2, 5, 1, 4]))
    assert all(r.ok for r in results), "\n" + format_table(results)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(0, T), min_size=N, max_size=N), st.sampled_from(["lstm", "gru_torch", "peephole_lstm"]),
       st.sampled_from(BACKENDS))
def test_any_lengths_in_any_order(lengths, cell, backend):
    assert_matches_sequences_alone(kernel(cell, backend), np.array(lengths), seed=sum(lengths))


def test_padding_never_reaches_a_result():
    """NaN or inf in the padding of x changes nothing: padded steps read zeros."""
    module = kernel("lstm", "numba")
    lengths = np.array([2, 5, 0, 3])
    (params, x, state0, d_outputs, d_state), outputs, state, grads = run_batch(module, lengths)
    dirty = x.copy()
    for n, length in enumerate(lengths):
        dirty[length:, n] = np.nan if n % 2 else np.inf
    out2, state2, cache2 = module.forward(dirty, params, state0, lengths)
    grads2 = module.backward(d_outputs, cache2, d_state)
    assert np.array_equal(out2["h"], outputs["h"]) and all(np.array_equal(state2[s], state[s]) for s in state)
    assert all(np.array_equal(grads2.params[k], grads.params[k]) for k in params)


@pytest.mark.parametrize("lengths, message", [
    (np.array([1, 2, 3]), r"lengths must be a \(4,\) integer"),
    (np.array([1.0, 2, 3, 4]), "integer"),
    (np.array([1, 2, 6, 0]), r"\[0, T\] = \[0, 5\]"),
    (np.array([1, -1, 2, 0]), r"\[0, T\]"),
    ([1, 2, 3, 4], "numpy array"),
])
def test_bad_lengths_are_refused(lengths, message):
    module = kernel("rnn", "numpy")
    params, x, *_ = random_problem(module, T, N, 3, 4)
    with pytest.raises(ValueError, match=message):
        module.forward(x, params, lengths=lengths)
