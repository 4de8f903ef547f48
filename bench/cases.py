"""What one benchmark row measures: a cell at one (T, N, D, H) and dtype, and its shared data.

Every process of a run rebuilds the same data from a fixed seed, so the generated kernels,
PyTorch and the GEMM bound see identical weights, inputs and upstream gradients even when they
are timed in different processes. Weights are drawn in PyTorch's stacked layout (one
``weight_ih`` of (G*H, D) per module) and split into the spec's per-gate names by ``layout``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .layout import LAYOUTS

CELLS = ("rnn", "lstm", "gru_torch")
SIZES = ((50, 32, 128, 128), (100, 64, 256, 256), (20, 16, 64, 64), (200, 8, 32, 32))
LARGE_SIZES = SIZES[:2]  # where the 1.3x-of-the-bound target applies
DTYPES = ("float32", "float64")
QUICK_SIZE = (20, 16, 64, 64)


@dataclass(frozen=True)
class Case:
    cell: str
    T: int
    N: int
    D: int
    H: int
    dtype: str

    @property
    def size(self) -> tuple[int, int, int, int]:
        return (self.T, self.N, self.D, self.H)

    def label(self) -> str:
        return f"{self.cell} ({self.T},{self.N},{self.D},{self.H}) {self.dtype}"

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class CaseData:
    """x (T, N, D); w (T, N, H), the loss weights: loss = sum_t <w_t, h_t> (many-to-many), so
    w is also the upstream gradient of h; torch_weights {weight_ih_l0: (G*H, D), ...}."""

    x: np.ndarray
    w: np.ndarray
    torch_weights: dict[str, np.ndarray]


def has_torch_counterpart(cell: str) -> bool:
    """A built-in cell with a PyTorch module (``LAYOUTS``); any other cell is a spec path or name
    whose kernels are timed against each other only."""
    return cell in LAYOUTS


def make_data(case: Case, seed: int = 0) -> CaseData:
    rng = np.random.default_rng(seed)
    dtype = np.dtype(case.dtype)
    if not has_torch_counterpart(case.cell):   # the kernels draw their own (kernel_call)
        return CaseData(np.empty(0, dtype), np.empty(0, dtype), {})
    rows = len(LAYOUTS[case.cell].gates) * case.H
    bound = 1.0 / np.sqrt(case.H)  # PyTorch's default initialisation range
    shapes = {"weight_ih_l0": (rows, case.D), "weight_hh_l0": (rows, case.H),
              "bias_ih_l0": (rows,), "bias_hh_l0": (rows,)}
    weights = {name: rng.uniform(-bound, bound, shape).astype(dtype) for name, shape in shapes.items()}
    x = rng.standard_normal((case.T, case.N, case.D)).astype(dtype)
    w = rng.standard_normal((case.T, case.N, case.H)).astype(dtype)
    return CaseData(x, w, weights)
