"""derive: cell specs in, BPTT equations out. Mathematics only: SymPy in, SymPy out.

    >>> from derive import load_cell, derive
    >>> d = derive(load_cell("lstm"))
    >>> print(d.backward_eq("dc").expr)
    dc_next + dh*o*(1 - tanh(c)**2)
"""

from __future__ import annotations

from pathlib import Path

from . import limits
from .adjoint import derive
from .cell import Cell, Equation, Quantity
from .derivation import BackwardEq, Branch, Derivation, ForwardEq
from .errors import SpecError
from .spec import load_spec, parse_spec, register_function, spec_hash

CELLS_DIR = Path(__file__).parent / "cells"


def builtin_cells() -> list[str]:
    """Names of the built-in cells (spec files under derive/cells/)."""
    return sorted(p.stem for p in CELLS_DIR.glob("*.toml"))


def spec_path(cell: str | Path) -> Path:
    """The spec file of a built-in cell name, or ``cell`` itself when it is a path."""
    try:
        limits.check_argument(str(cell), "cell name or spec path")
    except limits.LimitError as exc:
        raise SpecError(exc.problem, path=limits.clip(str(cell), 80)) from None
    candidate = Path(cell)
    try:
        if candidate.suffix == ".toml" or candidate.exists():
            if not candidate.is_file():
                raise SpecError("no such spec file", path=str(candidate))
            return candidate
        path = CELLS_DIR / f"{cell}.toml"
        found = path.is_file()
    except OSError as exc:                    # a name too long for the file system
        raise SpecError(f"cannot look up the spec file: {exc.strerror}",
                        path=limits.clip(str(cell), 80)) from None
    if not found:
        raise SpecError(f"unknown cell {limits.short(str(cell))}: not a built-in cell "
                        f"({', '.join(builtin_cells())}) and not a spec file path",
                        path=limits.clip(str(cell), 80))
    return path


def load_cell(cell: str | Path) -> Cell:
    """Load a built-in cell by name, or a spec file by path."""
    return load_spec(spec_path(cell))


__all__ = ["BackwardEq", "Branch", "Cell", "Derivation", "Equation", "ForwardEq", "Quantity",
           "SpecError", "builtin_cells", "derive", "load_cell", "load_spec", "parse_spec",
           "register_function", "spec_hash", "spec_path"]
