"""A Triton kernel module seen through NumPy arrays.

The NumPy-side oracles (``codegen.gradcheck``, ``cellgrad check``) call ``forward`` and
``backward`` with arrays; a Triton module takes torch tensors. The view converts at the edges and
nothing else, so what is checked is the module's own arithmetic.
"""

from __future__ import annotations

import numpy as np


class NumPyView:
    """``module`` with NumPy in and out: arrays become torch tensors on ``device``, of ``dtype``
    if given (else of the array's own dtype), and results come back as float64 arrays."""

    def __init__(self, module, torch, dtype=None, device="cpu"):
        self.module, self.torch = module, torch
        self.dtype = dtype
        self.device = device

    def __getattr__(self, name):   # the module's constants: PARAM_SHAPES, STATES, INPUT, ...
        return getattr(self.module, name)

    def tensor(self, value):
        """A torch tensor of the view's dtype; a dict of inputs (a cell with several) entry by entry."""
        if isinstance(value, dict):
            return self.tensors(value)
        tensor = self.torch.from_numpy(np.ascontiguousarray(value))
        return tensor.to(self.device, self.dtype or tensor.dtype)

    def tensors(self, values):
        return None if values is None else {k: self.tensor(v) for k, v in values.items()}

    def arrays(self, values):
        return {k: v.to(device="cpu", dtype=self.torch.float64).numpy() for k, v in values.items()}

    def init_params(self, input_size, hidden_size, seed=0, dtype=np.float64):
        params = self.module.init_params(input_size, hidden_size, seed=seed, dtype=self.torch.float64)
        return {k: v.numpy().astype(dtype) for k, v in params.items()}

    def forward(self, x, params, state0=None, lengths=None):
        outputs, state, cache = self.module.forward(self.tensor(x), self.tensors(params), self.tensors(state0),
                                                    lengths)
        return self.arrays(outputs), self.arrays(state), cache

    def backward(self, d_outputs, cache, d_state=None):
        grads = self.module.backward(self.tensors(d_outputs), cache, self.tensors(d_state))
        return type(grads)(*(self.arrays(part) for part in grads))
