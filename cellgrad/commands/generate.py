"""cellgrad generate: the kernel module of one cell (built-in or any spec file) for one backend."""

from __future__ import annotations

import sys
from pathlib import Path

from derive import load_cell

NAME = "generate"
HELP = "write the NumPy, Numba or Triton BPTT kernel module of a cell into a folder"


def add_arguments(parser):
    parser.add_argument("cell", metavar="CELL_OR_SPEC", help="built-in cell name or path to a spec file")
    from codegen.kernels import BACKENDS
    parser.add_argument("--backend", choices=BACKENDS, default="numpy")
    parser.add_argument("--out", metavar="DIR", default=".", help="output folder (default: .)")


def run(args) -> int:
    from codegen.kernel_outputs import kernel_filename, kernel_text
    from cellgrad.commands.regenerate import write_atomic

    name = load_cell(args.cell).name
    command = f"cellgrad generate {args.cell} --backend {args.backend}"
    path = Path(args.out) / kernel_filename(name, args.backend)
    try:
        text = kernel_text(args.cell, args.backend, command)
    except NotImplementedError as exc:
        print(f"cellgrad: error: cannot generate kernels for {args.cell}: {exc}", file=sys.stderr)
        return 2
    write_atomic(path, text)
    print(path)
    return 0
