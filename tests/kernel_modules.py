"""Shared by the kernel tests: import generated kernel modules by cell and backend."""

from __future__ import annotations

import importlib

from derive import builtin_cells

CELLS = tuple(builtin_cells())
BACKENDS = ("numpy", "numba")


def kernel(cell: str, backend: str):
    return importlib.import_module(f"generated.{cell}_{backend}")
