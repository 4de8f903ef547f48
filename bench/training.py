"""The training-step methods (``--train``): one SGD step of the same model three ways.

- ``raw``: the generated numba kernels called directly on NumPy arrays: ``forward``, the loss
  sum_t <w_t, h_t> (whose gradient w is passed to ``backward``), ``backward``, then the update
  ``p -= lr * grad`` in place. What ``CellRNN`` costs at the least.
- ``cellrnn``: ``cellgrad.torch.CellRNN`` (numba backend) with the same weights: forward, the loss
  ``(output * w).sum()``, ``loss.backward()``, ``torch.optim.SGD.step()`` after ``zero_grad``.
- ``torch_train``: the same with ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU``.

x is data here (no gradient asked for), as in training; the kernels compute dx anyway (their
backward always does), PyTorch skips it, which favours PyTorch slightly.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from .cases import Case, CaseData, has_torch_counterpart
from .layout import LAYOUTS

TRAIN_METHODS = ("raw", "cellrnn", "torch_train")
BACKEND = "numba"
LR = 1e-4   # small: the weights barely move over the timed steps, so every step costs the same


def _torch_module(case: Case, data: CaseData):
    from .methods import import_torch
    torch = import_torch()
    module = getattr(torch.nn, LAYOUTS[case.cell].module)(case.D, case.H).to(getattr(torch, case.dtype))
    with torch.no_grad():
        for name, value in data.torch_weights.items():
            getattr(module, name).copy_(torch.from_numpy(value))
    return torch, module


def _needs_torch_counterpart(case: Case) -> None:
    from .methods import Unavailable
    if not has_torch_counterpart(case.cell):
        raise Unavailable("the training step is timed for " + ", ".join(LAYOUTS) + " only")


def raw_call(case: Case, data: CaseData) -> Callable[[], object]:
    from .methods import kernel_module
    _needs_torch_counterpart(case)
    module = kernel_module(case.cell, BACKEND)
    params = LAYOUTS[case.cell].kernel_params(data.torch_weights)
    x, d_outputs = data.x, {"h": data.w}

    def step():
        outputs, _, cache = module.forward(x, params)
        # not np.vdot: that is NumPy's OpenBLAS, a second pool beside the kernels' (SciPy's); its
        # float64 dot runs on two threads and the worker it wakes then busy-waits on the core the
        # kernels' next GEMM needs (docs/benchmarks.md). einsum loops in NumPy itself.
        loss = float(np.einsum("tnh,tnh->", outputs["h"], data.w))
        grads = module.backward(d_outputs, cache).params
        for name, value in params.items():
            value -= LR * grads[name]
        return loss
    return step


def _torch_step(torch, model, x, w) -> Callable[[], object]:
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)

    def step():
        optimizer.zero_grad()
        output, _ = model(x)
        loss = (output * w).sum()
        loss.backward()
        optimizer.step()
        return loss.item()
    return step


def cellrnn_call(case: Case, data: CaseData) -> Callable[[], object]:
    _needs_torch_counterpart(case)
    torch, module = _torch_module(case, data)
    try:
        from cellgrad.torch import CellRNN
    except ImportError as err:  # pragma: no cover - torch imported above, so only a broken install
        from .methods import Unavailable
        raise Unavailable(f"cellgrad.torch not importable ({err})") from None
    model = CellRNN.from_torch(module, cell=case.cell, backend=BACKEND)
    return _torch_step(torch, model, torch.from_numpy(data.x), torch.from_numpy(data.w))


def torch_train_call(case: Case, data: CaseData) -> Callable[[], object]:
    _needs_torch_counterpart(case)
    torch, module = _torch_module(case, data)
    return _torch_step(torch, module, torch.from_numpy(data.x), torch.from_numpy(data.w))


CALLS = {"raw": raw_call, "cellrnn": cellrnn_call, "torch_train": torch_train_call}
