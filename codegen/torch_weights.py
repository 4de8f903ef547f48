"""PyTorch's recurrent modules' weights as the kernels' parameters, and back; numpy only.

    from codegen.torch_weights import params_from_torch, grads_to_torch
    lstm = torch.nn.LSTM(D, H, num_layers=2, bidirectional=True, dtype=torch.float64)
    params = params_from_torch("lstm", lstm, layer=1, direction=1)   # {"W_i": ..., "b_o": ...}
    ...                                                               # kernels' forward/backward
    grads_to_torch("lstm", grads.params, layer=1, direction=1)["weight_hh_l1_reverse"]

PyTorch stacks the gates' matrices row-wise: nn.LSTM's weight_ih_l0 is [W_i; W_f; W_g; W_o],
nn.GRU's is [W_ir; W_iz; W_in]. The built-in lstm spec has one bias per gate, so it receives
bias_ih + bias_hh, and both torch biases receive its gradient. A module built with bias=False
gives zero biases. nn.LSTM(proj_size=P) is the lstmp cell (its cell size is H, its hidden state
P). The one-step modules nn.RNNCell, nn.LSTMCell and nn.GRUCell have the same weights without the
``_l0`` suffix. cellgrad.torch uses these tables for CellRNN.from_torch and to_torch.
"""

from __future__ import annotations

import numpy as np

#: cell -> torch parameter (without its _l<k> suffix) -> the kernels' parameters stacked in its rows
LAYOUT: dict[str, dict[str, tuple[str, ...]]] = {
    "rnn": {"weight_ih": ("W",), "weight_hh": ("U",), "bias_ih": ("b_ih",), "bias_hh": ("b_hh",)},
    "lstm": {"weight_ih": ("W_i", "W_f", "W_g", "W_o"), "weight_hh": ("U_i", "U_f", "U_g", "U_o"),
             "bias_ih": ("b_i", "b_f", "b_g", "b_o"), "bias_hh": ("b_i", "b_f", "b_g", "b_o")},
    "lstmp": {"weight_ih": ("W_ii", "W_if", "W_ig", "W_io"), "weight_hh": ("W_hi", "W_hf", "W_hg", "W_ho"),
              "bias_ih": ("b_ii", "b_if", "b_ig", "b_io"), "bias_hh": ("b_hi", "b_hf", "b_hg", "b_ho"),
              "weight_hr": ("W_hr",)},
    "gru_torch": {"weight_ih": ("W_ir", "W_iz", "W_in"), "weight_hh": ("W_hr", "W_hz", "W_hn"),
                  "bias_ih": ("b_ir", "b_iz", "b_in"), "bias_hh": ("b_hr", "b_hz", "b_hn")},
}

#: the torch module class each cell matches, and its one-step class
TORCH_MODULE = {"rnn": "RNN", "lstm": "LSTM", "lstmp": "LSTM", "gru_torch": "GRU"}
TORCH_CELL = {"RNN": "RNNCell", "LSTM": "LSTMCell", "GRU": "GRUCell"}


def _check(cell: str) -> dict[str, tuple[str, ...]]:
    if cell not in LAYOUT:
        raise ValueError(f"no PyTorch layout for cell {cell!r}: one of {', '.join(LAYOUT)}")
    return LAYOUT[cell]


def suffix(module, layer: int = 0, direction: int = 0) -> str:
    """``_l1_reverse``: how torch names layer ``layer``'s weights in ``direction`` (1: reverse)."""
    if type(module).__name__ in TORCH_CELL.values():
        if layer or direction:
            raise ValueError(f"a {type(module).__name__} has one layer and one direction")
        return ""
    return f"_l{layer}" + ("_reverse" if direction else "")


def check_module(cell: str, module) -> None:
    """Refuse a torch module that computes another cell than ``cell``, naming the mismatch."""
    _check(cell)
    kind = TORCH_MODULE[cell]
    name = type(module).__name__
    if name not in (kind, TORCH_CELL[kind]):
        raise ValueError(f"{cell} matches torch.nn.{kind} or nn.{TORCH_CELL[kind]}, not nn.{name}")
    if cell == "rnn" and module.nonlinearity != "tanh":
        raise ValueError("the rnn cell uses tanh: build nn.RNN(..., nonlinearity='tanh')")
    proj = getattr(module, "proj_size", 0)
    if cell == "lstm" and proj:
        raise ValueError(f"nn.LSTM(proj_size={proj}) is the lstmp cell, not lstm")
    if cell == "lstmp" and not proj:
        raise ValueError("the lstmp cell matches nn.LSTM with proj_size > 0; without it use lstm")


def params_from_torch(cell: str, module, layer: int = 0, direction: int = 0) -> dict[str, np.ndarray]:
    """The kernels' params (numpy, the module's dtype) of one layer and direction of ``module``."""
    layout = _check(cell)
    check_module(cell, module)
    end = suffix(module, layer, direction)
    blocks = {}
    for torch_name, names in layout.items():
        tensor = getattr(module, torch_name + end, None)
        if tensor is not None:
            blocks[torch_name] = np.split(tensor.detach().cpu().numpy(), len(names), axis=0)
        elif torch_name.startswith("bias_"):   # bias=False: zero biases, one per gate of weight_ih
            rows = getattr(module, "weight_ih" + end).shape[0] // len(names)
            dtype = getattr(module, "weight_ih" + end).detach().cpu().numpy().dtype
            blocks[torch_name] = [np.zeros(rows, dtype) for _ in names]
        else:
            raise ValueError(f"{type(module).__name__} has no {torch_name + end}")
    params: dict[str, np.ndarray] = {}
    for torch_name, names in layout.items():
        for name, block in zip(names, blocks[torch_name]):
            params[name] = params[name] + block if name in params else block.copy()
    return params


def grads_to_torch(cell: str, grads: dict[str, np.ndarray], layer: int = 0, direction: int = 0,
                   bias: bool = True, module=None) -> dict[str, np.ndarray]:
    """The kernels' parameter gradients stacked as torch's parameters' .grad would be, named as in
    ``module`` (default: a multi-layer module's ``_l<layer>`` names); no biases when bias=False."""
    layout = _check(cell)
    end = suffix(module, layer, direction) if module is not None else f"_l{layer}" + ("_reverse" if direction else "")
    return {torch_name + end: np.concatenate([grads[name] for name in names], axis=0)
            for torch_name, names in layout.items() if bias or not torch_name.startswith("bias_")}


def torch_weights(cell: str, params: dict[str, np.ndarray], layer: int = 0, direction: int = 0,
                  bias: bool = True) -> dict[str, np.ndarray]:
    """The inverse of params_from_torch: torch parameter name -> array. A kernel parameter fed by
    two torch parameters (the LSTM's summed biases) goes whole to the first, zeros to the second."""
    layout = _check(cell)
    end = f"_l{layer}" + ("_reverse" if direction else "")
    seen: set[str] = set()
    out = {}
    for torch_name, names in layout.items():
        if not bias and torch_name.startswith("bias_"):
            continue
        out[torch_name + end] = np.concatenate(
            [np.zeros_like(params[n]) if n in seen else params[n] for n in names], axis=0)
        seen.update(names)
    return out
