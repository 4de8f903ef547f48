"""Shared by the kernel tests: import generated kernel modules by cell and backend."""

from __future__ import annotations

import importlib

from codegen.kernels import BACKENDS  # noqa: F401  every backend the generator knows
from derive import builtin_cells

CELLS = tuple(builtin_cells())


def kernel(cell: str, backend: str):
    return importlib.import_module(f"generated.{cell}_{backend}")
