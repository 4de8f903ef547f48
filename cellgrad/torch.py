"""Train with the generated kernels in PyTorch: ``CellRNN``, a drop-in nn.LSTM / nn.GRU / nn.RNN
for any cell, and ``kernel_function``, the torch.autograd.Function of one kernel module.

    from cellgrad.torch import CellRNN
    rnn = CellRNN("peephole_lstm", input_size=8, hidden_size=32, num_layers=2, batch_first=True)
    output, (h_n, c_n) = rnn(x)                   # as nn.LSTM; x may be a PackedSequence
    lstm = CellRNN.from_torch(torch.nn.LSTM(8, 32, bidirectional=True))   # same weights
    lstm.to_torch()                               # and back, for the cells torch has

Tensors are CPU tensors shared with NumPy without copies (torch.from_numpy, Tensor.numpy).
The kernels' backward is not differentiable: a second derivative is refused with an error.
Thread pools are the program's to set: at default threads, start it with OMP_WAIT_POLICY=PASSIVE,
else torch's OpenMP worker spins after each op on the core the kernels' BLAS needs (README).
"""

from __future__ import annotations

import itertools

import numpy as np
import torch
from torch import nn
from torch.autograd.function import once_differentiable
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from cellgrad.kernels import kernel_module
from codegen import torch_weights
from derive import load_cell

__all__ = ["CellRNN", "kernel_function", "kernel_module"]

_DTYPES = {torch.float32: np.float32, torch.float64: np.float64}


def _numpy(tensor: torch.Tensor, label: str) -> np.ndarray:
    if tensor.device.type != "cpu":
        raise RuntimeError(f"cellgrad.torch runs on CPU tensors: {label} is on {tensor.device} "
                           "(with the numpy and numba backends; backend='triton' takes CUDA tensors, "
                           "or move the module and the input with .cpu())")
    if tensor.dtype not in _DTYPES:
        raise TypeError(f"{label} has dtype {tensor.dtype}: use torch.float32 or torch.float64")
    return tensor.detach().numpy()


_FUNCTIONS: dict[str, type] = {}


def kernel_function(module) -> type[torch.autograd.Function]:
    """The torch.autograd.Function of a kernel module (one class per module).

    ``apply(x, lengths, *states, *params)``: x (T, N, input size); lengths None or an (N,) int64
    numpy array; the initial states (N, size) in STATES order, or all None for each state's
    STATE_INIT (zeros, ones or its learnable parameter); the parameters in PARAM_SHAPES order.
    Returns the outputs (T, N, size) in OUTPUTS order, then the final states."""
    key = f"{module.__name__}:{id(module)}"
    if key in _FUNCTIONS:
        return _FUNCTIONS[key]
    params, states, outputs, x_name = tuple(module.PARAM_SHAPES), tuple(module.STATES), tuple(module.OUTPUTS), module.INPUT
    if getattr(module, "ARRAYS", "numpy") == "torch":   # the triton backend takes tensors as they are
        _array, _tensor = (lambda t, label: t.detach()), (lambda a: a.contiguous())
        _zeros, _copy = (lambda shape, dtype, device: torch.zeros(shape, dtype=dtype, device=device)), torch.clone
    else:
        _array, _tensor = _numpy, (lambda a: torch.from_numpy(np.ascontiguousarray(a)))
        _zeros, _copy = (lambda shape, dtype, device: np.zeros(shape, dtype)), np.copy

    def forward(ctx, x, lengths, *tensors):
        given = tensors[:len(states)]
        if all(t is None for t in given):
            state0 = None
        elif any(t is None for t in given):
            raise ValueError(f"pass every initial state ({', '.join(states)}) or none")
        else:
            state0 = {s: _array(t, f"the initial {s}") for s, t in zip(states, given)}
        result, final, cache = module.forward(
            _array(x, "the input"), {p: _array(t, p) for p, t in zip(params, tensors[len(states):])},
            state0, lengths)
        ctx.cache, ctx.given_state = cache, state0 is not None
        meta = lambda a: (a.shape, a.dtype, getattr(a, "device", None))   # noqa: E731
        ctx.like = ({o: meta(result[o]) for o in outputs}, {s: meta(final[s]) for s in states})   # both may be called h
        ctx.set_materialize_grads(False)   # an unused output or final state comes back as None
        # final states are copied: they are views of the same buffers as the outputs
        return (*(_tensor(result[o]) for o in outputs), *(_tensor(_copy(final[s])) for s in states))

    @once_differentiable
    def backward(ctx, *grads):
        def arrays(like, grads):   # an unused output's or final state's None: zeros of its shape
            return {n: _zeros(*like[n]) if g is None else _array(g, f"d{n}") for n, g in zip(like, grads)}
        d_final = grads[len(outputs):]
        g = module.backward(arrays(ctx.like[0], grads), ctx.cache,
                            None if all(d is None for d in d_final) else arrays(ctx.like[1], d_final))
        return (_tensor(g.inputs[x_name]) if ctx.needs_input_grad[0] else None, None,
                *(_tensor(g.state[s]) if ctx.given_state else None for s in states),
                *(_tensor(g.params[p]) if p in g.params else None for p in params))   # a buffer: none

    name = f"{module.CELL}_{module.BACKEND}_function"
    function = type(name, (torch.autograd.Function,), {
        "__doc__": f"The {module.CELL} kernels ({module.BACKEND}) as a torch.autograd.Function.",
        "forward": staticmethod(forward), "backward": staticmethod(backward)})
    _FUNCTIONS[key] = function
    return function


def _reverse_within(x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """Each sequence reversed within its own length (padding stays where it is); an involution."""
    if lengths is None:
        return x.flip(0)
    T = x.shape[0]
    t = torch.arange(T, device=x.device).unsqueeze(1)
    lengths = lengths.to(x.device)
    index = torch.where(t < lengths, lengths - 1 - t, t)     # (T, N)
    return x.gather(0, index.unsqueeze(2).expand(-1, -1, x.shape[2]))


class CellRNN(nn.Module):
    """A multi-layer, optionally bidirectional RNN of any cell, with nn.LSTM's interface.

    ``forward(input, hx=None)`` returns ``(output, h_n)``, or ``(output, (h_n, c_n))`` for a cell
    with two states (a tuple of every final state in the spec's order for more). ``input`` is
    (T, N, input_size) (``batch_first``: (N, T, ...)), unbatched (T, input_size), or a
    PackedSequence. ``**sizes``: the cell's other sizes, as its ``init_params`` names them.
    Parameters are named ``<spec name>_l<layer>`` (``_reverse`` for the second direction); with
    ``bias=False`` the cell's biases (the kernel module's BIASES) are zero buffers instead.
    """

    def __init__(self, cell, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, backend="numba", dtype=None, **sizes):
        super().__init__()
        if num_layers < 1 or not isinstance(num_layers, int):
            raise ValueError(f"num_layers must be a positive integer, got {num_layers!r}")
        if not 0 <= dropout <= 1:
            raise ValueError(f"dropout must be in [0, 1], got {dropout}")
        self.kernels = kernel_module(cell, backend)
        if len(self.kernels.OUTPUTS) != 1:
            raise ValueError(f"CellRNN stacks cells with one output; {self.kernels.CELL} has "
                             f"{', '.join(self.kernels.OUTPUTS)}")
        if len(self.kernels.INPUTS) != 1:      # the layers below feed one sequence, the input
            raise ValueError(f"CellRNN feeds each layer one input sequence; {self.kernels.CELL} reads "
                             f"{', '.join(self.kernels.INPUTS)}: call its kernels through "
                             "cellgrad.torch.kernel_function")
        self.cell, self.backend = cell, backend
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bias, batch_first, float(dropout)
        self.bidirectional, self.sizes = bidirectional, dict(sizes)
        self.num_directions = 2 if bidirectional else 1
        dtype = dtype or torch.get_default_dtype()
        if dtype not in _DTYPES:
            raise TypeError(f"dtype {dtype}: use torch.float32 or torch.float64")
        self.state_sizes: dict[str, int] = {}
        layer_input = input_size
        for layer in range(num_layers):
            for direction in range(self.num_directions):
                seed = int(torch.randint(0, 2**31 - 1, ()))   # torch.manual_seed decides the weights
                init = self.kernels.init_params(layer_input, hidden_size, seed=seed, dtype=np.float64, **sizes)
                for name, value in init.items():
                    tensor = torch.as_tensor(value).to(dtype)   # numpy arrays, or tensors (triton)
                    full = name + self._suffix(layer, direction)
                    if name in self.kernels.BUFFERS:      # the spec's [buffers]: not trained
                        self.register_buffer(full, tensor)
                    elif name in self.kernels.BIASES and not bias:
                        self.register_buffer(full, torch.zeros_like(tensor))
                    else:
                        self.register_parameter(full, nn.Parameter(tensor))
            known = self._sizes(init)
            self.state_sizes = {s: known[size] for s, size in self.kernels.STATES.items()}
            self.output_size = known[next(iter(self.kernels.OUTPUTS.values()))]
            layer_input = self.output_size * self.num_directions

    @staticmethod
    def _suffix(layer: int, direction: int) -> str:
        return f"_l{layer}" + ("_reverse" if direction else "")

    def _sizes(self, params: dict) -> dict[str, int]:
        """Each size symbol's value, read off the parameters' shapes."""
        known = {}
        for name, shape in self.kernels.PARAM_SHAPES.items():
            known.update(zip(shape, params[name].shape))
        return known

    def layer_params(self, layer: int, direction: int = 0) -> dict[str, torch.Tensor]:
        """One layer and direction's parameters (and zero bias buffers) by their spec names."""
        end = self._suffix(layer, direction)
        return {name: getattr(self, name + end) for name in self.kernels.PARAM_SHAPES}

    def extra_repr(self) -> str:
        text = f"{self.cell!r}, {self.input_size}, {self.hidden_size}, num_layers={self.num_layers}"
        for key, default in (("bias", True), ("batch_first", False), ("dropout", 0.0), ("bidirectional", False)):
            if getattr(self, key) != default:
                text += f", {key}={getattr(self, key)}"
        return text + f", backend={self.backend!r}"

    def forward(self, input, hx=None):
        packed = isinstance(input, PackedSequence)
        lengths, unbatched = None, False
        if packed:
            x, lengths = pad_packed_sequence(input)            # (T, N, D), the batch in its original order
        else:
            unbatched = input.dim() == 2
            if input.dim() not in (2, 3):
                raise ValueError(f"input must be 2-D (unbatched) or 3-D, got shape {tuple(input.shape)}")
            x = input.unsqueeze(1) if unbatched else (input.transpose(0, 1) if self.batch_first else input)
        if x.shape[-1] != self.input_size:
            raise ValueError(f"the input has {x.shape[-1]} features per step, but this CellRNN was "
                             f"built with input_size={self.input_size}")
        first = next(itertools.chain(self.parameters(), self.buffers()), None)  # a cell of buffers only
        if not self._tensors():
            _numpy(x, "the input")
        if first is not None and x.dtype != first.dtype:
            raise TypeError(f"the input has dtype {x.dtype} but the parameters {first.dtype}: "
                            "convert one of them (module.double() / module.float())")
        T, N = x.shape[0], x.shape[1]
        states = self._initial_states(hx, N, x.dtype, packed or not unbatched)
        lengths_np = None if lengths is None else lengths.numpy().astype(np.int64)
        finals = {s: [] for s in self.kernels.STATES}
        function = kernel_function(self.kernels)
        layer_input = x
        for layer in range(self.num_layers):
            outs = []
            for direction in range(self.num_directions):
                k = layer * self.num_directions + direction
                seq = layer_input if direction == 0 else _reverse_within(layer_input, lengths)
                given = (None,) * len(self.kernels.STATES) if states is None else (v[k] for v in states.values())
                result = function.apply(seq, lengths_np, *given, *self.layer_params(layer, direction).values())
                out = result[0] if direction == 0 else _reverse_within(result[0], lengths)
                outs.append(out)
                for s, value in zip(self.kernels.STATES, result[1:]):
                    finals[s].append(value)
            layer_input = torch.cat(outs, dim=2) if len(outs) > 1 else outs[0]
            if self.dropout and self.training and layer < self.num_layers - 1:
                layer_input = nn.functional.dropout(layer_input, self.dropout, training=True)
        final = tuple(torch.stack(v) if len(v) > 1 else v[0].unsqueeze(0) for v in finals.values())
        output = layer_input
        if packed:
            order = input.sorted_indices
            sorted_out = output if order is None else output.index_select(1, order)
            data = pack_padded_sequence(sorted_out, lengths if order is None else lengths[order]).data
            output = PackedSequence(data, input.batch_sizes, input.sorted_indices, input.unsorted_indices)
        elif unbatched:
            output, final = output.squeeze(1), tuple(f.squeeze(1) for f in final)
        elif self.batch_first:
            output = output.transpose(0, 1)
        return output, (final[0] if len(final) == 1 else final)

    def _initial_states(self, hx, N, dtype, batched) -> dict[str, torch.Tensor] | None:
        """The given initial states by name, (layers * directions, N, size) each; None without hx:
        the kernels then start each state where its spec says (zeros, ones, or its learnt <s>0
        of each layer and direction, which gets its gradient)."""
        layers = self.num_layers * self.num_directions
        names = list(self.kernels.STATES)
        if hx is None:
            return None
        given = (hx,) if isinstance(hx, torch.Tensor) else tuple(hx)
        if len(given) != len(names):
            raise ValueError(f"hx must give the initial {', '.join(names)} ({len(names)} tensors), got {len(given)}")
        out = {}
        for s, value in zip(names, given):
            value = value if batched else value.unsqueeze(1)
            expected = (layers, N, self.state_sizes[s])
            if tuple(value.shape) != expected:
                raise ValueError(f"the initial {s} has shape {tuple(value.shape)}, expected {expected}")
            if not self._tensors():
                _numpy(value, f"the initial {s}")
            out[s] = value.to(dtype)
        return out

    def _device(self) -> torch.device:
        return next(itertools.chain(self.parameters(), self.buffers()), torch.empty(0)).device

    def _tensors(self) -> bool:
        """Whether the kernels take torch tensors on any device (the triton backend)."""
        return getattr(self.kernels, "ARRAYS", "numpy") == "torch"

    # -- PyTorch's own modules ------------------------------------------------------------------

    @classmethod
    def from_torch(cls, module: nn.Module, cell: str | None = None, backend: str = "numba") -> "CellRNN":
        """A CellRNN computing what an nn.LSTM, nn.GRU or nn.RNN computes, with its weights (copied)
        and options. ``cell`` defaults to the built-in matching the module: lstm (lstmp with
        proj_size), gru_torch, rnn (tanh)."""
        kind = type(module).__name__
        proj = getattr(module, "proj_size", 0)
        if cell is None:
            cells = {"LSTM": "lstmp" if proj else "lstm", "GRU": "gru_torch", "RNN": "rnn"}
            if kind not in cells:
                raise TypeError(f"from_torch takes an nn.LSTM, nn.GRU or nn.RNN, not {kind}")
            cell = cells[kind]
        cell_name = load_cell(cell).name            # the weight tables know cells by name
        torch_weights.check_module(cell_name, module)
        first = next(module.parameters())
        _numpy(first, "the module's weights")
        sizes = {}
        hidden = module.hidden_size
        if cell_name == "lstmp":                    # torch's hidden_size is the cell size; h has proj_size
            sizes, hidden = {"cell_size": module.hidden_size}, proj
        rnn = cls(cell, module.input_size, hidden, num_layers=module.num_layers, bias=module.bias,
                  batch_first=module.batch_first, dropout=module.dropout, bidirectional=module.bidirectional,
                  backend=backend, dtype=first.dtype, **sizes)
        with torch.no_grad():
            for layer in range(rnn.num_layers):
                for direction in range(rnn.num_directions):
                    params = torch_weights.params_from_torch(cell_name, module, layer, direction)
                    for name, tensor in rnn.layer_params(layer, direction).items():
                        tensor.copy_(torch.from_numpy(params[name]))
        return rnn

    def to_torch(self) -> nn.Module:
        """The nn.LSTM / nn.GRU / nn.RNN with this module's weights (for lstm, lstmp, gru_torch, rnn)."""
        cell = self.kernels.CELL
        if cell not in torch_weights.LAYOUT:
            raise ValueError(f"PyTorch has no module computing the {cell} cell; "
                             f"to_torch knows {', '.join(torch_weights.LAYOUT)}")
        kind = torch_weights.TORCH_MODULE[cell]
        first = next(self.parameters())
        options = dict(num_layers=self.num_layers, bias=self.bias, batch_first=self.batch_first,
                       dropout=self.dropout, bidirectional=self.bidirectional, dtype=first.dtype)
        if cell == "lstmp":
            module = nn.LSTM(self.input_size, self.state_sizes["c"], proj_size=self.hidden_size, **options)
        else:
            module = getattr(nn, kind)(self.input_size, self.hidden_size, **options)
        with torch.no_grad():
            for layer in range(self.num_layers):
                for direction in range(self.num_directions):
                    params = {k: v.detach().numpy() for k, v in self.layer_params(layer, direction).items()}
                    for name, value in torch_weights.torch_weights(cell, params, layer, direction, self.bias).items():
                        getattr(module, name).copy_(torch.from_numpy(value))
        return module
