"""How a PyTorch recurrent module's stacked weights map onto a spec's per-gate parameters.

``torch.nn.LSTM`` keeps ``weight_ih_l0 = [W_i; W_f; W_g; W_o]`` (rows stacked by gate) and two
biases whose sum is the spec's one bias per gate; ``nn.GRU`` stacks r, z, n and keeps both
biases (the spec ``gru_torch`` has both); ``nn.RNN`` has one gate. Only data layout lives here:
no gradient formula. When two torch tensors feed one spec parameter (LSTM biases), the spec
parameter is their sum and its gradient equals the gradient of either.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TorchLayout:
    module: str                 # class name in torch.nn
    gates: tuple[str, ...]      # gate letters in torch's stacking order
    names: dict[str, str]       # torch tensor name -> spec name template ("{}" = gate letter)
    states: tuple[str, ...]     # spec state names in torch's (h, c) order

    def spec_name(self, torch_name: str, gate: str) -> str:
        return self.names[torch_name].format(gate)

    def chunks(self, torch_name: str, value: np.ndarray):
        """(spec name, rows of ``value`` for that gate) for every gate."""
        rows = value.shape[0] // len(self.gates)
        for k, gate in enumerate(self.gates):
            yield self.spec_name(torch_name, gate), value[k * rows:(k + 1) * rows]

    def kernel_params(self, torch_weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Spec-named parameters holding the same function as the torch module's weights."""
        params: dict[str, np.ndarray] = {}
        for torch_name, value in torch_weights.items():
            for name, part in self.chunks(torch_name, value):
                params[name] = params[name] + part if name in params else part.copy()
        return {name: np.ascontiguousarray(v) for name, v in params.items()}

    def kernel_grads(self, torch_grads: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Torch's parameter gradients under the spec's names (first torch tensor wins when
        two feed one spec parameter: their gradients are equal)."""
        grads: dict[str, np.ndarray] = {}
        for torch_name, value in torch_grads.items():
            for name, part in self.chunks(torch_name, value):
                grads.setdefault(name, part)
        return grads


LAYOUTS = {
    "rnn": TorchLayout("RNN", ("",), {"weight_ih_l0": "W", "weight_hh_l0": "U",
                                      "bias_ih_l0": "b_ih", "bias_hh_l0": "b_hh"}, ("h",)),
    "lstm": TorchLayout("LSTM", ("i", "f", "g", "o"),
                        {"weight_ih_l0": "W_{}", "weight_hh_l0": "U_{}",
                         "bias_ih_l0": "b_{}", "bias_hh_l0": "b_{}"}, ("h", "c")),
    "gru_torch": TorchLayout("GRU", ("r", "z", "n"),
                             {"weight_ih_l0": "W_i{}", "weight_hh_l0": "W_h{}",
                              "bias_ih_l0": "b_i{}", "bias_hh_l0": "b_h{}"}, ("h",)),
}
