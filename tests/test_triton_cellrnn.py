"""cellgrad.torch.CellRNN(..., backend="triton") on CPU tensors through Triton's interpreter: the
same outputs, final states and gradients as backend="numpy" with the same weights, for two
layers, both directions and a PackedSequence of unsorted lengths (float64); layer-normalised LSTM
(reductions, a constant) and an LSTM with learnt initial states from their spec files."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TRITON_INTERPRET", "1")   # before any generated Triton module is imported

import pytest  # noqa: E402

from test_triton_kernels import triton_or_skip  # noqa: E402


SPECS = Path(__file__).parent / "specs"
# its spec file while it is a test spec; its name once it is a built-in (derive/cells)
LAYERNORM_LSTM = next((str(p) for p in [SPECS / "constructs" / "layernorm_lstm.toml"] if p.exists()), "layernorm_lstm")
LSTM_H0 = str(SPECS / "zoo" / "lstm_h0.toml")   # learnt initial states: CellRNN starts there without hx


@pytest.mark.parametrize("cell", ["lstm", "gru_torch", LAYERNORM_LSTM, LSTM_H0],
                         ids=["lstm", "gru_torch", "layernorm_lstm", "lstm_h0"])
def test_cellrnn_triton_matches_numpy_backend(cell):
    torch = triton_or_skip()
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    from cellgrad.torch import CellRNN
    kwargs = dict(input_size=3, hidden_size=4, num_layers=2, bidirectional=True, dtype=torch.float64)
    ref = CellRNN(cell, backend="numpy", **kwargs)
    tri = CellRNN(cell, backend="triton", **kwargs)
    tri.load_state_dict(ref.state_dict())
    torch.manual_seed(0)
    x = torch.randn(5, 3, 3, dtype=torch.float64)
    lengths = torch.tensor([2, 5, 3])
    results = []
    for module in (ref, tri):
        xr = x.clone().requires_grad_(True)
        packed = pack_padded_sequence(xr, lengths, enforce_sorted=False)
        out, final = module(packed)
        out, _ = pad_packed_sequence(out)
        finals = final if isinstance(final, tuple) else (final,)
        loss = (out * torch.linspace(-1, 1, out.numel(), dtype=torch.float64).reshape(out.shape)).sum() \
            + sum((f * 0.5).sum() for f in finals)
        loss.backward()
        results.append((out.detach(), [f.detach() for f in finals], xr.grad,
                        {n: p.grad for n, p in module.named_parameters()}))
    (out0, fin0, dx0, g0), (out1, fin1, dx1, g1) = results
    torch.testing.assert_close(out1, out0, rtol=1e-10, atol=1e-12)
    for a, b in zip(fin1, fin0):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(dx1, dx0, rtol=1e-10, atol=1e-12)
    assert set(g1) == set(g0)
    for name in g0:
        torch.testing.assert_close(g1[name], g0[name], rtol=1e-10, atol=1e-12, msg=name)
