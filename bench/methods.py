"""The four things a row times, each prepared as a no-argument call doing one forward+backward.

- ``numpy`` / ``numba``: the generated kernels ``generated/<cell>_<backend>.py``;
- ``torch``: ``torch.nn.RNN`` / ``LSTM`` / ``GRU`` on the CPU with the same weights and the same
  loss, sum_t <w_t, h_t>, differentiated by autograd with respect to x, the initial states and
  every parameter (what the kernels return);
- ``bound``: exactly the matrix products the computation must do, with NumPy's BLAS and
  preallocated outputs: the x-GEMM over all T*N rows, T recurrent GEMMs, the backward dx GEMM,
  the input and recurrent weight-gradient GEMMs over T*N rows and T dh_prev GEMMs. Nothing
  else, so no implementation of the same cell can beat it by more than noise.

A method that cannot run here raises ``Unavailable`` with the reason, which the table prints.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from typing import Callable

import numpy as np

from .cases import Case, CaseData, has_torch_counterpart
from .layout import LAYOUTS

METHODS = ("numpy", "numba", "torch", "bound")
BACKENDS = ("numpy", "numba")


class Unavailable(Exception):
    """The method cannot run in this environment; the message says why."""


#: where ``bench.run`` wrote the kernels of cells given as spec files (``<folder>/<cell>_<backend>.py``)
KERNELS_ENV = "CELLGRAD_BENCH_KERNELS"


def kernel_module(cell: str, backend: str):
    """Import ``generated.<cell>_<backend>``, or for a cell without a PyTorch counterpart the
    module ``bench.run`` generated for it; Unavailable when it or its backend is missing."""
    if not has_torch_counterpart(cell) and os.environ.get(KERNELS_ENV):
        name = f"{cell}_{backend}"
        path = os.path.join(os.environ[KERNELS_ENV], f"{name}.py")
        if name in sys.modules:
            return sys.modules[name]
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # Numba's cache finds a module's functions through sys.modules
        try:
            spec.loader.exec_module(module)
        except ModuleNotFoundError as err:
            del sys.modules[name]
            raise Unavailable(f"{err.name} not installed") from None
        return module
    name = f"generated.{cell}_{backend}"
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as err:
        if err.name == name:
            raise Unavailable(f"generated/{cell}_{backend}.py not found") from None
        raise Unavailable(f"{err.name} not installed") from None


def import_torch():
    try:
        import torch
    except ImportError as err:
        raise Unavailable(f"torch not importable ({err})") from None
    if os.environ.get("CELLGRAD_BENCH_THREADS") == "one":
        torch.set_num_threads(1)
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:  # already set, or inter-op work already started: harmless here
            pass
    return torch


def kernel_call(case: Case, data: CaseData, backend: str) -> Callable[[], object]:
    module = kernel_module(case.cell, backend)
    if has_torch_counterpart(case.cell):
        params = LAYOUTS[case.cell].kernel_params(data.torch_weights)
        x, d_outputs = data.x, {"h": data.w}
    else:  # D is the input size, H every other size
        from codegen.gradcheck import random_problem
        sizes = {s: case.H for s in module.SIZES} | {module.INPUT_SIZE: case.D}
        params, x, _, d_outputs, _ = random_problem(module, case.T, case.N, sizes=sizes,
                                                    dtype=np.dtype(case.dtype))
        params = {k: v / 2 for k, v in params.items()}  # PyTorch's initialisation range

    def forward_backward():
        outputs, state, cache = module.forward(x, params)
        return module.backward(d_outputs, cache)
    return forward_backward


class TorchModel:
    """A torch module holding ``data``'s weights, with leaf tensors for x and the initial states."""

    def __init__(self, case: Case, data: CaseData):
        torch = self.torch = import_torch()
        layout = LAYOUTS[case.cell]
        dtype = getattr(torch, case.dtype)
        self.module = getattr(torch.nn, layout.module)(case.D, case.H).to(dtype)
        with torch.no_grad():
            for name, value in data.torch_weights.items():
                getattr(self.module, name).copy_(torch.from_numpy(value))
        self.x = torch.from_numpy(data.x).requires_grad_()
        self.w = torch.from_numpy(data.w)
        self.states = [torch.zeros(1, case.N, case.H, dtype=dtype, requires_grad=True)
                       for _ in layout.states]
        self.hx = tuple(self.states) if len(self.states) > 1 else self.states[0]
        self.param_names = [name for name, _ in self.module.named_parameters()]
        self.leaves = [self.x, *self.states, *self.module.parameters()]

    def forward_backward(self):
        """(h (T, N, H), loss, gradients of every leaf in ``self.leaves`` order)."""
        h, _ = self.module(self.x, self.hx)
        loss = (h * self.w).sum()
        return h, loss, self.torch.autograd.grad(loss, self.leaves)


def torch_call(case: Case, data: CaseData) -> Callable[[], object]:
    if not has_torch_counterpart(case.cell):
        raise Unavailable("no PyTorch counterpart of this cell")
    return TorchModel(case, data).forward_backward


def bound_call(case: Case, data: CaseData) -> Callable[[], object]:
    if not has_torch_counterpart(case.cell):
        raise Unavailable("the GEMM bound is modelled for " + ", ".join(LAYOUTS) + " only")
    T, N, D, H = case.size
    GH = len(LAYOUTS[case.cell].gates) * H
    dtype = np.dtype(case.dtype)
    rng = np.random.default_rng(1)

    def array(*shape):
        return rng.standard_normal(shape).astype(dtype)

    x, W, U = data.x.reshape(T * N, D), array(GH, D), array(GH, H)
    h_prev, a_x, a_h = array(T, N, H), array(T * N, GH), array(T, N, GH)
    da_x, da_h = array(T * N, GH), array(T, N, GH)
    dx, dW, dU, dh_prev = array(T * N, D), array(GH, D), array(GH, H), array(T, N, H)

    def gemms():
        np.matmul(x, W.T, out=a_x)                              # x-part of every gate, all steps
        for t in range(T):
            np.matmul(h_prev[t], U.T, out=a_h[t])               # recurrent part, step by step
        for t in range(T - 1, -1, -1):
            np.matmul(da_h[t], U, out=dh_prev[t])               # dh_prev, step by step
        np.matmul(da_x, W, out=dx)                              # dx, all steps
        np.matmul(da_x.T, x, out=dW)                            # dW over T*N rows
        np.matmul(da_h.reshape(T * N, GH).T, h_prev.reshape(T * N, H), out=dU)  # dU over T*N rows
    return gemms


def prepare(method: str, case: Case, data: CaseData) -> Callable[[], object]:
    from .training import CALLS as TRAIN_CALLS
    if method in TRAIN_CALLS:
        return TRAIN_CALLS[method](case, data)
    if method in BACKENDS:
        return kernel_call(case, data, method)
    if method == "torch":
        return torch_call(case, data)
    if method == "bound":
        return bound_call(case, data)
    raise ValueError(f"unknown method {method!r}; expected one of {METHODS + tuple(TRAIN_CALLS)}")
