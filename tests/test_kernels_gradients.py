"""Every built-in cell x backend: the generated backward pass against central finite differences
of the generated forward pass alone (float64), for every gradient: parameters, every input and
the initial states; T in {1, 5}, N in {1, 3}; many-to-many and many-to-one losses."""

from __future__ import annotations

import pytest

from codegen.gradcheck import check_gradients, format_table

from kernel_modules import BACKENDS, CELLS, kernel


@pytest.mark.parametrize("many_to_one", [False, True], ids=["many_to_many", "many_to_one"])
@pytest.mark.parametrize("T,N", [(1, 1), (1, 3), (5, 1), (5, 3)])
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cell", CELLS)
def test_gradients_match_finite_differences(cell, backend, T, N, many_to_one):
    module = kernel(cell, backend)
    results = check_gradients(module, T=T, N=N, input_size=3, hidden_size=4, seed=T * 10 + N,
                              many_to_one=many_to_one, max_entries=8)
    names = {r.name for r in results}
    assert names == (set(module.PARAM_SHAPES) - set(module.BUFFERS)) | set(module.INPUTS) | set(module.STATES)
    assert all(r.ok for r in results), "\n" + format_table(results)


def test_finite_difference_check_catches_a_wrong_gradient(monkeypatch):
    """The oracle can fail: scale one gradient by 1.001 and the check reports it."""
    module = kernel("lstm", "numpy")
    original = module.backward

    def skewed(d_outputs, cache, d_state=None):
        grads = original(d_outputs, cache, d_state)
        grads.params["U_f"] = grads.params["U_f"] * 1.001
        return grads

    monkeypatch.setattr(module, "backward", skewed)
    results = {r.name: r for r in check_gradients(module, T=3, N=2)}
    assert not results["U_f"].ok
    assert results["W_f"].ok
