"""Random valid cells (tests/random_cells.py, the property test's generator) trained through
cellgrad.torch.CellRNN, the way a user brings a cell of their own to a training loop: any sizes,
states that start at zeros, ones or a learnt value, buffers, an output of another size than the
state. Two oracles, neither of them CellRNN's code path:

* one layer, one direction: the output and every final state equal the reference interpreter's
  (derive/evaluate.py) run on each sequence alone, cut to its own length;
* any layers and directions, packed or padded: torch.autograd.gradcheck (central differences of
  the module's own forward) for the input and every parameter.

Cells with several inputs or outputs are refused by CellRNN when it is built (tested in
tests/test_torch_cellrnn.py); the generator's draws of those are skipped here. Derandomized when
CI=true, where a missing torch fails."""

from __future__ import annotations

import inspect
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, note, settings
from hypothesis import strategies as st

if os.environ.get("CI") == "true":
    import torch            # CI installs torch: a missing one fails, never skips
else:
    torch = pytest.importorskip("torch")

from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence  # noqa: E402

from cellgrad.torch import CellRNN  # noqa: E402
from derive import derive  # noqa: E402
from derive.evaluate import run_forward  # noqa: E402
from derive.spec import parse_spec  # noqa: E402
from random_cells import cell_specs  # noqa: E402

EXAMPLES = int(os.environ.get("CELLGRAD_CELLRNN_CELLS", 12))
T, N, D, H = 3, 3, 2, 3
API_KEYWORDS = {"input_size", "hidden_size", "seed", "dtype"}


def _other_sizes(rnn_kernels) -> dict[str, int]:
    """init_params' keywords for the cell's sizes besides the input and hidden size: 2, 3, ..."""
    keywords = [k for k in inspect.signature(rnn_kernels.init_params).parameters if k not in API_KEYWORDS]
    return {k: 2 + n for n, k in enumerate(keywords)}


def _as_tuple(final):
    return final if isinstance(final, tuple) else (final,)


def _build(text: str, folder: Path, **options):
    path = folder / "random_cell.toml"
    path.write_text(text, encoding="utf-8")
    from cellgrad.kernels import kernel_module
    kernels = kernel_module(path, "numpy")
    torch.manual_seed(0)
    return CellRNN(path, D, H, backend="numpy", dtype=torch.float64, **options,
                   **_other_sizes(kernels))


def _reference(d, rnn, x: np.ndarray, lengths: list[int]):
    """(outputs (T, N, size), final states by name) from the reference interpreter, one sequence at
    a time over its own length, from the states the spec declares (a learnt start: its value)."""
    params = {k: v.detach().numpy() for k, v in rnn.layer_params(0).items()}
    for name, buffer in rnn.named_buffers():
        params.setdefault(name.removesuffix("_l0"), buffer.numpy())
    (output,) = d.cell.outputs
    out = np.zeros((T, N, rnn.output_size))
    finals = {s: np.zeros((N, rnn.state_sizes[s])) for s in d.cell.states}
    for n, length in enumerate(lengths):
        trace = run_forward(d, params, {d.cell.inputs[0]: x[:length, n:n + 1]})
        out[:length, n] = trace.outputs[output][:, 0]
        for s in d.cell.states:
            finals[s][n] = trace.state[s][0]
    return out, finals


@settings(max_examples=EXAMPLES, deadline=None, derandomize=os.environ.get("CI") == "true",
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.filter_too_much])
@given(cell_specs(max_depth=2), st.lists(st.integers(1, T), min_size=N, max_size=N))
def test_random_cell_one_layer_matches_the_reference_interpreter(text, lengths):
    d = derive(parse_spec(text, "random_cell.toml"))
    assume(len(d.cell.inputs) == 1 and len(d.cell.outputs) == 1)
    note(text)
    with tempfile.TemporaryDirectory(prefix="cellgrad-cellrnn-random-") as folder:
        rnn = _build(text, Path(folder))
        x = torch.randn(T, N, D, dtype=torch.float64)
        packed = pack_padded_sequence(x, torch.tensor(lengths), enforce_sorted=False)
        out, final = rnn(packed)
        got = pad_packed_sequence(out, total_length=T)[0].detach().numpy()
        want, want_final = _reference(d, rnn, x.numpy(), lengths)
        scale = max(1.0, float(np.max(np.abs(want))))
        assert np.allclose(got, want, rtol=0, atol=1e-10 * scale), float(np.max(np.abs(got - want)))
        for s, tensor in zip(d.cell.states, _as_tuple(final)):
            got_s = tensor.detach().numpy()[0]
            assert np.allclose(got_s, want_final[s], rtol=0, atol=1e-10 * max(1.0, float(np.max(np.abs(want_final[s]))))), s


@settings(max_examples=EXAMPLES, deadline=None, derandomize=os.environ.get("CI") == "true",
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.filter_too_much])
@given(cell_specs(max_depth=2), st.integers(1, 2), st.booleans(), st.booleans(),
       st.lists(st.integers(1, T), min_size=N, max_size=N))
def test_random_cell_stacked_and_bidirectional_passes_gradcheck(text, layers, bidirectional, packed, lengths):
    d = derive(parse_spec(text, "random_cell.toml"))
    assume(len(d.cell.inputs) == 1 and len(d.cell.outputs) == 1)
    note(text)
    with tempfile.TemporaryDirectory(prefix="cellgrad-cellrnn-random-") as folder:
        rnn = _build(text, Path(folder), num_layers=layers, bidirectional=bidirectional)
        names = [n for n, _ in rnn.named_parameters()]
        x = torch.randn(T, N, D, dtype=torch.float64, requires_grad=True)

        def f(x, *values):   # the module with its parameters replaced by ``values``, which gradcheck perturbs
            given = pack_padded_sequence(x, torch.tensor(lengths), enforce_sorted=False) if packed else x
            out, final = torch.func.functional_call(rnn, dict(zip(names, values)), (given,))
            out = pad_packed_sequence(out, total_length=T)[0] if packed else out
            return (out, *_as_tuple(final))

        values = [p.detach().clone().requires_grad_() for p in rnn.parameters()]
        assert torch.autograd.gradcheck(f, (x, *values), eps=1e-6, atol=1e-6, rtol=1e-5)
