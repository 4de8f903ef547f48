"""Shared by the kernel tests: import generated kernel modules by cell and backend."""

from __future__ import annotations

import importlib

from codegen.kernels import LAYOUTS

#: the backends whose modules take NumPy arrays (the triton backend's take torch tensors and
#: are checked by tests/test_triton_*.py)
BACKENDS = tuple(name for name, layout in LAYOUTS.items() if layout.arrays == "numpy")
from derive import builtin_cells

CELLS = tuple(builtin_cells())


def kernel(cell: str, backend: str):
    return importlib.import_module(f"generated.{cell}_{backend}")
