"""The kernels provider of ``cellgrad regenerate``: generated/<cell>_<backend>.py for every
built-in cell and backend, and the text of one kernel for any spec (``cellgrad generate``)."""

from __future__ import annotations

from pathlib import Path

from derive import builtin_cells, derive, load_cell, spec_path

from .kernels import BACKENDS, LAYOUTS, render_kernel

REGENERATE_COMMAND = "cellgrad regenerate"


def kernel_filename(cell_name: str, backend: str) -> str:
    return f"{cell_name}_{backend}.py"


def kernel_text(cell: str | Path, backend: str, command: str) -> str:
    """Module text for a built-in cell name or a spec file path."""
    path = spec_path(cell)
    builtin = path.parent.resolve() == spec_path("lstm").parent.resolve()
    label = f"derive/cells/{path.name}" if builtin else path.name
    return render_kernel(derive(load_cell(path)), backend, path.read_text(encoding="utf-8"), label,
                         command)


def builtin_outputs() -> dict[str, str]:
    """Every built-in cell on every backend; a backend that may refuse a cell (``every_cell`` is
    False: the triton backend) gets no file for the cells it refuses."""
    out = {}
    for name in builtin_cells():
        for backend in BACKENDS:
            try:
                out[f"generated/{kernel_filename(name, backend)}"] = kernel_text(name, backend, REGENERATE_COMMAND)
            except NotImplementedError:
                if LAYOUTS[backend].every_cell:
                    raise
    return out
