"""The kernel module of a cell, for the framework wrappers (cellgrad.torch, cellgrad.jax)."""

from __future__ import annotations

import importlib
from pathlib import Path

from derive import load_cell, spec_hash, spec_path


def kernel_module(cell: str | Path, backend: str = "numba"):
    """The kernel module of a cell: the committed generated/ one for a built-in (Numba's compiled
    kernels are cached beside it), else built in memory from the spec (codegen.build_module)."""
    path = spec_path(cell)
    name = load_cell(path).name
    try:
        module = importlib.import_module(f"generated.{name}_{backend}")
        if module.SPEC_HASH == spec_hash(path.read_text(encoding="utf-8")):
            return module
    except ImportError:
        pass
    from codegen import build_module
    return build_module(path, backend)
