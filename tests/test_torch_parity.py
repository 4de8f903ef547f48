"""Generated kernels against PyTorch autograd: rnn vs nn.RNN, lstm vs nn.LSTM, gru_torch vs
nn.GRU, with the same weights (codegen.torch_weights), float64, relative error <= 1e-10 for the
outputs, final states and every gradient. Skipped without torch, except in CI (CI=true): fail."""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest

from codegen.torch_weights import TORCH_MODULE, grads_to_torch, params_from_torch

from kernel_modules import BACKENDS, kernel


def torch_or_skip():
    if importlib.util.find_spec("torch") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("torch is required in CI (pip install torch==2.13.0)")
        pytest.skip("torch not installed")
    import torch
    return torch


def rel_err(a, b):
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)) / max(np.linalg.norm(b), 1e-30))


@pytest.mark.parametrize("many_to_one", [False, True], ids=["many_to_many", "many_to_one"])
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru_torch"])
def test_kernels_match_torch_autograd(cell, backend, many_to_one):
    torch = torch_or_skip()
    T, N, D, H = 6, 3, 5, 7
    torch.manual_seed(0)
    net = getattr(torch.nn, TORCH_MODULE[cell])(D, H, dtype=torch.float64)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((T, N, D))
    states = ("h", "c") if cell == "lstm" else ("h",)
    state0 = {s: rng.standard_normal((N, H)) for s in states}
    d_out = rng.standard_normal((T, N, H))
    if many_to_one:
        d_out[:-1] = 0
    d_state = {s: rng.standard_normal((N, H)) for s in states}

    # torch: loss = <d_out, outputs> + <d_state, final states>
    xt = torch.tensor(x, requires_grad=True)
    s0 = {s: torch.tensor(v[None], requires_grad=True) for s, v in state0.items()}
    out, final = net(xt, (s0["h"], s0["c"]) if cell == "lstm" else s0["h"])
    final = dict(zip(states, final if cell == "lstm" else (final,)))
    loss = (out * torch.tensor(d_out)).sum() + sum((final[s][0] * torch.tensor(d_state[s])).sum()
                                                    for s in states)
    loss.backward()

    module = kernel(cell, backend)
    params = params_from_torch(cell, net)
    outputs, state, cache = module.forward(x, params, state0)
    grads = module.backward({"h": d_out}, cache, d_state)

    assert rel_err(outputs["h"], out.detach().numpy()) <= 1e-10
    for s in states:
        assert rel_err(state[s], final[s][0].detach().numpy()) <= 1e-10, s
        assert rel_err(grads.state[s], s0[s].grad.numpy()[0]) <= 1e-10, f"d{s}0"
    assert rel_err(grads.inputs["x"], xt.grad.numpy()) <= 1e-10
    for name, value in grads_to_torch(cell, grads.params).items():
        assert rel_err(value, getattr(net, name).grad.numpy()) <= 1e-10, name


def test_params_from_torch_rejects_a_mismatched_module():
    torch = torch_or_skip()
    with pytest.raises(ValueError, match="nn.LSTM"):
        params_from_torch("lstm", torch.nn.GRU(3, 4))
    with pytest.raises(ValueError, match="tanh"):
        params_from_torch("rnn", torch.nn.RNN(3, 4, nonlinearity="relu"))
    with pytest.raises(ValueError, match="no PyTorch layout"):
        params_from_torch("gru", torch.nn.GRU(3, 4))
