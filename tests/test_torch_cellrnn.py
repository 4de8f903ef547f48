"""cellgrad.torch.CellRNN against PyTorch's own nn.LSTM / nn.GRU / nn.RNN with the same weights
(CellRNN.from_torch): outputs, final states and every gradient (input, initial states, each
parameter), over layers, directions, batch_first and packed sequences of unsorted lengths;
float64 to 1e-10, float32 to 1e-4. Cells PyTorch lacks: torch.autograd.gradcheck. Without torch
these skip, except in CI (CI=true), where they fail."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

if os.environ.get("CI") == "true":
    import torch            # CI installs torch: a missing one fails, never skips
else:
    torch = pytest.importorskip("torch")

from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence  # noqa: E402

from cellgrad.torch import CellRNN, kernel_function, kernel_module  # noqa: E402
from codegen.torch_weights import grads_to_torch  # noqa: E402
from derive import builtin_cells  # noqa: E402

T, N, D, H = 6, 4, 3, 5
LENGTHS = [3, 6, 1, 4]        # unsorted


def numpy(a):
    return a.detach().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)


def rel_err(a, b):
    a, b = numpy(a).astype(np.float64), numpy(b).astype(np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def as_tuple(state):
    return state if isinstance(state, tuple) else (state,)


def run(net, x, hx, packed, batch_first):
    """Loss <w, output> + <v, final states> and its gradients, by torch autograd through ``net``."""
    x = x.detach().requires_grad_()
    hx = tuple(h.detach().requires_grad_() for h in hx)
    inp = x
    if packed:
        inp = pack_padded_sequence(x, torch.tensor(LENGTHS), batch_first=batch_first, enforce_sorted=False)
    out, final = net(inp, hx if len(hx) > 1 else hx[0])
    if packed:
        out, _ = pad_packed_sequence(out, batch_first=batch_first, total_length=T)
    gen = torch.Generator().manual_seed(7)
    loss = (out * torch.randn(out.shape, generator=gen, dtype=out.dtype)).sum()
    for f in as_tuple(final):
        loss = loss + (f * torch.randn(f.shape, generator=gen, dtype=f.dtype)).sum()
    params = dict(net.named_parameters())
    grads = torch.autograd.grad(loss, [x, *hx, *params.values()])
    return {"output": out, **{f"final {k}": f for k, f in enumerate(as_tuple(final))},
            "dx": grads[0], **{f"dh0 {k}": g for k, g in enumerate(grads[1:1 + len(hx)])},
            **dict(zip(params, grads[1 + len(hx):]))}


CASES = [  # (torch module, num_layers, bidirectional, batch_first, packed, bias)
    ("LSTM", 1, False, False, False, True),
    ("LSTM", 2, True, True, True, True),
    ("LSTM", 3, False, False, True, False),
    ("GRU", 1, True, False, True, True),
    ("GRU", 2, False, True, False, False),
    ("GRU", 3, True, False, False, True),
    ("RNN", 1, False, True, True, True),
    ("RNN", 2, True, False, True, False),
    ("RNN", 3, False, False, False, True),
]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("kind,layers,bidirectional,batch_first,packed,bias", CASES)
def test_cellrnn_matches_torch(kind, layers, bidirectional, batch_first, packed, bias, dtype):
    torch.manual_seed(layers)
    net = getattr(torch.nn, kind)(D, H, num_layers=layers, bidirectional=bidirectional,
                                  batch_first=batch_first, bias=bias, dtype=dtype)
    ours = CellRNN.from_torch(net, backend="numpy" if dtype == torch.float64 else "numba")
    x = torch.randn((N, T, D) if batch_first else (T, N, D), dtype=dtype)
    n_states = 2 if kind == "LSTM" else 1
    hx = tuple(torch.randn(layers * (1 + bidirectional), N, H, dtype=dtype) for _ in range(n_states))
    want = run(net, x, hx, packed, batch_first)
    got = run(ours, x, hx, packed, batch_first)
    tol = 1e-10 if dtype == torch.float64 else 1e-4
    cell = {"LSTM": "lstm", "GRU": "gru_torch", "RNN": "rnn"}[kind]
    for key in [k for k in want if not k.startswith(("weight", "bias"))]:
        assert got[key].dtype == dtype
        assert rel_err(got[key], want[key]) <= tol, key
    for layer in range(layers):     # every parameter's gradient, stacked as torch stacks them
        for direction in range(1 + bidirectional):
            end = f"_l{layer}" + ("_reverse" if direction else "")
            kernel_grads = {name[: -len(end)]: g.numpy() for name, g in got.items() if name.endswith(end)}
            kernel_grads.update({name: np.zeros(v.shape) for name, v in ours.layer_params(layer, direction).items()
                                 if name not in kernel_grads})     # bias=False: zero buffers
            for name, value in grads_to_torch(cell, kernel_grads, layer, direction, bias).items():
                assert rel_err(value, want[name]) <= tol, name


def test_parameters_are_named_after_the_spec_and_bias_false_fixes_biases():
    rnn = CellRNN("lstm", D, H, num_layers=2, bidirectional=True, bias=False, backend="numpy")
    names = dict(rnn.named_parameters())
    assert "W_f_l1_reverse" in names and "U_o_l0" in names and not any(n.startswith("b_") for n in names)
    assert not rnn.b_i_l0.any() and "b_i_l0" in dict(rnn.named_buffers())
    assert names["W_i_l1"].shape == (H, 2 * H)             # layer 1 reads both directions


def test_round_trip_through_torch_keeps_the_function():
    torch.manual_seed(3)
    ours = CellRNN("gru_torch", D, H, num_layers=2, bidirectional=True, backend="numpy", dtype=torch.float64)
    net = ours.to_torch()
    assert isinstance(net, torch.nn.GRU) and net.bidirectional and net.num_layers == 2
    x = torch.randn(T, N, D, dtype=torch.float64)
    assert rel_err(ours(x)[0], net(x)[0]) <= 1e-12
    back = CellRNN.from_torch(net, backend="numpy")
    assert all(torch.equal(a, b) for a, b in zip(back.parameters(), ours.parameters()))


def test_lstm_biases_go_to_bias_ih_on_the_way_back():
    ours = CellRNN("lstm", D, H, backend="numpy", dtype=torch.float64)
    net = ours.to_torch()
    assert torch.equal(net.bias_ih_l0.detach(), torch.cat([ours.b_i_l0, ours.b_f_l0, ours.b_g_l0, ours.b_o_l0]).detach())
    assert not net.bias_hh_l0.any()


@pytest.mark.skipif("lstmp" not in builtin_cells(), reason="the lstmp cell is not built in yet")
@pytest.mark.parametrize("bidirectional", [False, True])
def test_proj_size_runs_as_the_lstmp_cell(bidirectional):
    torch.manual_seed(5)
    net = torch.nn.LSTM(D, H, num_layers=2, proj_size=2, bidirectional=bidirectional, dtype=torch.float64)
    ours = CellRNN.from_torch(net, backend="numpy")
    x = torch.randn(T, N, D, dtype=torch.float64)
    hx = (torch.randn(2 * (1 + bidirectional), N, 2, dtype=torch.float64),
          torch.randn(2 * (1 + bidirectional), N, H, dtype=torch.float64))
    want, got = run(net, x, hx, True, False), run(ours, x, hx, True, False)
    for key in [k for k in want if not k.startswith(("weight", "bias"))]:
        assert rel_err(got[key], want[key]) <= 1e-10, key
    assert rel_err(ours.to_torch()(x)[0], net(x)[0]) <= 1e-12


@pytest.mark.parametrize("cell", ["peephole_lstm", "gru", "minimal_rnn"])
def test_cells_torch_lacks_pass_gradcheck(cell):
    torch.manual_seed(0)
    rnn = CellRNN(cell, 2, 3, num_layers=2, bidirectional=True, backend="numpy", dtype=torch.float64)
    x = torch.randn(4, 3, 2, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([2, 4, 1])
    names = [n for n, _ in rnn.named_parameters()]

    def f(x, *values):   # the module with its parameters replaced by ``values``, which gradcheck perturbs
        packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
        out, final = torch.func.functional_call(rnn, dict(zip(names, values)), (packed,))
        return (pad_packed_sequence(out)[0], *as_tuple(final))

    values = [p.detach().clone().requires_grad_() for p in rnn.parameters()]
    assert torch.autograd.gradcheck(f, (x, *values), eps=1e-6, atol=1e-7, rtol=1e-6)


def test_refusals_are_clear():
    rnn = CellRNN("rnn", D, H, backend="numpy", dtype=torch.float64)
    with pytest.raises(RuntimeError, match="CPU tensors: the input is on meta"):
        rnn(torch.empty(T, N, D, dtype=torch.float64, device="meta"))
    with pytest.raises(TypeError, match="dtype torch.float32 but the parameters torch.float64"):
        rnn(torch.zeros(T, N, D))
    with pytest.raises(ValueError, match=f"the input has {D + 4} features per step, but this CellRNN "
                                         f"was built with input_size={D}"):
        rnn(torch.zeros(T, N, D + 4, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"the initial h has shape \(2, 4, 5\), expected \(1, 4, 5\)"):
        rnn(torch.zeros(T, N, D, dtype=torch.float64), torch.zeros(2, N, H, dtype=torch.float64))
    with pytest.raises(ValueError, match="tanh"):
        CellRNN.from_torch(torch.nn.RNN(D, H, nonlinearity="relu"))
    with pytest.raises(ValueError, match="augru reads x, att: call its kernels through"):
        CellRNN("augru", D, H, backend="numpy")     # several inputs: refused when built, not in forward
    with pytest.raises(ValueError, match="PyTorch has no module computing the peephole_lstm cell"):
        CellRNN("peephole_lstm", D, H, backend="numpy").to_torch()
    x = torch.randn(T, N, D, dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(rnn(x)[0].pow(2).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="differentiate twice"):
        g.sum().backward()


def test_kernel_function_shares_memory_with_numpy():
    module = kernel_module("lstm", "numpy")
    function = kernel_function(module)
    assert kernel_function(module) is function and issubclass(function, torch.autograd.Function)
    params = [torch.from_numpy(v) for v in module.init_params(D, H).values()]
    x = torch.randn(T, N, D, dtype=torch.float64)
    h, h_n, c_n = function.apply(x, None, torch.zeros(N, H, dtype=torch.float64),
                                 torch.zeros(N, H, dtype=torch.float64), *params)
    assert h.shape == (T, N, H) and torch.equal(h[-1], h_n)
    assert h.numpy().base is not None                    # a view of the kernel's own buffer: no copy


def test_kernel_function_without_initial_states_starts_at_the_declared_ones():
    """All-None states: the kernel's own STATE_INIT (zeros for lstm), the same values and
    parameter gradients as explicit zeros, no state gradient; a final state unused by the loss
    comes to backward as None and counts as zero."""
    module = kernel_module("lstm", "numpy")
    function = kernel_function(module)
    torch.manual_seed(2)
    x = torch.randn(T, N, D, dtype=torch.float64, requires_grad=True)
    runs = []
    for states in ((None, None), (torch.zeros(N, H, dtype=torch.float64, requires_grad=True),) * 2):
        params = [torch.tensor(v, requires_grad=True) for v in module.init_params(D, H, seed=3).values()]
        h, h_n, c_n = function.apply(x, None, *states, *params)
        (h.sum() + c_n.sum()).backward()       # h_n unused
        runs.append((h.detach(), [p.grad for p in params], x.grad.clone()))
        x.grad = None
    (h0, g0, dx0), (h1, g1, dx1) = runs
    assert torch.equal(h0, h1) and torch.equal(dx0, dx1) and all(torch.equal(a, b) for a, b in zip(g0, g1))
    with pytest.raises(ValueError, match="pass every initial state"):
        function.apply(x, None, torch.zeros(N, H, dtype=torch.float64), None, *params)


def test_unbatched_input_as_torch_takes_it():
    torch.manual_seed(1)
    net = torch.nn.LSTM(D, H, num_layers=2, dtype=torch.float64)
    ours = CellRNN.from_torch(net, backend="numpy")
    x = torch.randn(T, D, dtype=torch.float64)
    (o1, (h1, c1)), (o2, (h2, c2)) = net(x), ours(x)
    assert o2.shape == o1.shape and h2.shape == h1.shape
    assert rel_err(o2, o1) <= 1e-10 and rel_err(c2, c1) <= 1e-10


def test_dropout_acts_between_layers_in_training_only():
    torch.manual_seed(2)
    net = torch.nn.GRU(D, H, num_layers=2, dropout=0.5, dtype=torch.float64)
    ours = CellRNN.from_torch(net, backend="numpy")
    assert ours.dropout == 0.5
    x = torch.randn(T, N, D, dtype=torch.float64)
    net.eval(), ours.eval()
    assert rel_err(ours(x)[0], net(x)[0]) <= 1e-10          # no dropout in eval mode
    ours.train()
    torch.manual_seed(4)
    first = ours(x)[0]
    torch.manual_seed(4)
    assert torch.equal(ours(x)[0], first) and rel_err(first, net(x)[0]) > 1e-3


@pytest.mark.parametrize("cell", ["rnn", "gru_torch", "lstm"])
def test_two_backward_passes_accumulate_each_gradient_once(cell):
    """Gradient accumulation (no zero_grad between two backward passes) gives twice one pass's
    gradient for every parameter: rnn's b_ih and b_hh once shared one .grad array, so each got
    four times the gradient."""
    torch.manual_seed(0)
    rnn = CellRNN(cell, D, H, backend="numpy", dtype=torch.float64)
    x = torch.randn(T, N, D, dtype=torch.float64)
    rnn(x)[0].sum().backward()
    once = {name: p.grad.clone() for name, p in rnn.named_parameters()}
    rnn(x)[0].sum().backward()
    for name, p in rnn.named_parameters():
        assert rel_err(p.grad, 2 * once[name]) < 1e-14, name


def test_buffers_are_module_buffers_and_get_no_gradient():
    """A spec's [buffers] (fixed time constants tau, a fixed coupling P) are nn.Module buffers,
    not Parameters; the trained weights pass gradcheck (central differences) through them. The
    autograd Function once asked the kernels' gradients for the buffers too: a KeyError."""
    spec = Path(__file__).parent / "specs" / "check" / "time_constant.toml"
    rnn = CellRNN(spec, D, H, backend="numpy", dtype=torch.float64)
    assert [n for n, _ in rnn.named_parameters()] == ["W_l0", "U_l0"]
    assert sorted(n for n, _ in rnn.named_buffers()) == ["P_l0", "tau_l0"]
    with torch.no_grad():
        rnn.tau_l0.uniform_(1.5, 3.0)          # keep the division well away from 0
    x = torch.randn(T, N, D, dtype=torch.float64, requires_grad=True)
    weights = tuple(rnn.parameters())
    assert torch.autograd.gradcheck(lambda x: rnn(x)[0], (x,))
    rnn(x)[0].pow(2).sum().backward()
    assert all(p.grad is not None for p in weights) and rnn.tau_l0.grad is None
    from torch.func import functional_call
    params = {n: p.detach().clone().requires_grad_() for n, p in rnn.named_parameters()}
    assert torch.autograd.gradcheck(
        lambda W, U: functional_call(rnn, {"W_l0": W, "U_l0": U}, (x.detach(),))[0],
        (params["W_l0"], params["U_l0"]))


def test_float32_reaches_the_kernels_and_comes_back_without_copies_or_conversions(monkeypatch):
    """The kernels read the input's and the parameters' own memory, the output is the kernels'
    own array, and every array on the way (input, parameters, upstream gradient, gradients) stays
    float32: no hidden float64 round trip, no copy in a training step (docs/benchmarks.md)."""
    torch.manual_seed(5)
    rnn = CellRNN("lstm", D, H, backend="numpy", dtype=torch.float32)
    module, seen = rnn.kernels, {}
    forward, backward = module.forward, module.backward

    def spy_forward(x, params, state=None, lengths=None):
        seen["x"], seen["params"] = x, params
        seen["result"] = forward(x, params, state, lengths)
        return seen["result"]

    def spy_backward(d_outputs, cache, d_state=None):
        seen["d_outputs"], seen["grads"] = d_outputs, backward(d_outputs, cache, d_state)
        return seen["grads"]

    monkeypatch.setattr(module, "forward", spy_forward)
    monkeypatch.setattr(module, "backward", spy_backward)
    address = lambda a: a.__array_interface__["data"][0]   # noqa: E731
    x, w = torch.randn(T, N, D), torch.randn(T, N, H)
    output, _ = rnn(x)
    (output * w).sum().backward()

    assert address(seen["x"]) == x.data_ptr() and seen["x"].dtype == np.float32
    for name, tensor in rnn.layer_params(0).items():
        assert address(seen["params"][name]) == tensor.data_ptr(), name
        assert seen["params"][name].dtype == np.float32, name
    assert output.data_ptr() == address(seen["result"][0]["h"]) and output.dtype == torch.float32
    assert seen["d_outputs"]["h"].dtype == np.float32
    np.testing.assert_array_equal(seen["d_outputs"]["h"], w.numpy())   # d(sum(h * w))/dh
    for name, tensor in rnn.layer_params(0).items():
        grad = seen["grads"].params[name]
        assert grad.dtype == np.float32 and tensor.grad.dtype == torch.float32, name
        np.testing.assert_array_equal(tensor.grad.numpy(), grad)   # reaches .grad unchanged
