"""Load a PyTorch nn.RNN / nn.LSTM / nn.GRU's weights into the kernels' params, and map the
kernels' gradients back to PyTorch's parameter names for comparison.

    import torch
    from codegen.torch_weights import params_from_torch, grads_to_torch
    lstm = torch.nn.LSTM(D, H, dtype=torch.float64)        # one layer, time-major input
    params = params_from_torch("lstm", lstm)                # {"W_i": ..., "b_o": ...}
    ...                                                     # kernels' forward/backward
    grads_to_torch("lstm", grads)["weight_hh_l0"]           # compare with lstm.weight_hh_l0.grad

PyTorch stacks the gates' matrices row-wise: nn.LSTM's weight_ih_l0 is [W_i; W_f; W_g; W_o],
nn.GRU's is [W_ir; W_iz; W_in]. The built-in lstm spec has one bias per gate, so it receives
bias_ih + bias_hh, and both torch biases receive its gradient. torch is not imported here.
"""

from __future__ import annotations

import numpy as np

#: cell -> torch parameter -> the kernels' parameters stacked in its rows (a tuple), in order
LAYOUT: dict[str, dict[str, tuple[str, ...]]] = {
    "rnn": {"weight_ih_l0": ("W",), "weight_hh_l0": ("U",), "bias_ih_l0": ("b_ih",),
            "bias_hh_l0": ("b_hh",)},
    "lstm": {"weight_ih_l0": ("W_i", "W_f", "W_g", "W_o"), "weight_hh_l0": ("U_i", "U_f", "U_g", "U_o"),
             "bias_ih_l0": ("b_i", "b_f", "b_g", "b_o"), "bias_hh_l0": ("b_i", "b_f", "b_g", "b_o")},
    "gru_torch": {"weight_ih_l0": ("W_ir", "W_iz", "W_in"), "weight_hh_l0": ("W_hr", "W_hz", "W_hn"),
                  "bias_ih_l0": ("b_ir", "b_iz", "b_in"), "bias_hh_l0": ("b_hr", "b_hz", "b_hn")},
}

#: the torch module class each cell matches
TORCH_MODULE = {"rnn": "RNN", "lstm": "LSTM", "gru_torch": "GRU"}


def _check(cell: str) -> dict[str, tuple[str, ...]]:
    if cell not in LAYOUT:
        raise ValueError(f"no PyTorch layout for cell {cell!r}: one of {', '.join(LAYOUT)}")
    return LAYOUT[cell]


def _shared(layout) -> set[str]:
    """Kernel parameters fed by two torch parameters (the LSTM's summed biases)."""
    seen, shared = set(), set()
    for names in layout.values():
        for name in names:
            (shared if name in seen else seen).add(name)
    return shared


def params_from_torch(cell: str, module) -> dict[str, np.ndarray]:
    """The kernels' params (numpy, the module's dtype) from a one-layer torch module."""
    layout = _check(cell)
    if type(module).__name__ != TORCH_MODULE[cell] or module.num_layers != 1 or module.bidirectional:
        raise ValueError(f"{cell} matches a one-layer, one-direction torch.nn.{TORCH_MODULE[cell]}")
    if cell == "rnn" and module.nonlinearity != "tanh":
        raise ValueError("the rnn cell uses tanh: build nn.RNN(..., nonlinearity='tanh')")
    params: dict[str, np.ndarray] = {}
    for torch_name, names in layout.items():
        value = getattr(module, torch_name).detach().cpu().numpy()
        for name, block in zip(names, np.split(value, len(names), axis=0)):
            params[name] = params[name] + block if name in params else block.copy()
    return params


def grads_to_torch(cell: str, grads: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The kernels' parameter gradients stacked as torch's parameters' .grad would be."""
    layout = _check(cell)
    return {torch_name: np.concatenate([grads[name] for name in names], axis=0)
            for torch_name, names in layout.items()}
