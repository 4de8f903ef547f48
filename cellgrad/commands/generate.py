"""cellgrad generate: the kernel module of one cell (built-in or any spec file) for one backend.

The module is imported before it is written: a module that does not import is refused with a
message naming the generated line, and nothing is written (the write itself is atomic)."""

from __future__ import annotations

import importlib.util
import sys
import tempfile
import traceback
from pathlib import Path

from derive import load_cell

NAME = "generate"
HELP = "write the NumPy, Numba or Triton BPTT kernel module of a cell into a folder"


class KernelImportError(Exception):
    """A generated module that does not import: a bug of the generator, never of the spec."""


def add_arguments(parser):
    parser.add_argument("cell", metavar="CELL_OR_SPEC", help="built-in cell name or path to a spec file")
    from codegen.kernels import BACKENDS
    parser.add_argument("--backend", choices=BACKENDS, default="numpy")
    parser.add_argument("--out", metavar="DIR", default=".", help="output folder (default: .)")


def import_text(text: str, filename: str):
    """Import module text from a private temporary folder and return the module; raise
    KernelImportError naming the generated line when it does not import."""
    with tempfile.TemporaryDirectory(prefix="cellgrad-generate-") as folder:
        path = Path(folder) / filename
        path.write_text(text, encoding="utf-8")
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except Exception as exc:  # any failure of generated code is reported the same way
            line = getattr(exc, "lineno", None) if isinstance(exc, SyntaxError) else None
            if line is None:
                frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == str(path)]
                line = frames[-1].lineno if frames else None
            lines = text.splitlines()
            where = f" at line {line}: {lines[line - 1].strip()}" if line and line <= len(lines) else ""
            raise KernelImportError(f"{type(exc).__name__}: {exc}{where}") from None
    return module


def run(args) -> int:
    from codegen.kernel_outputs import kernel_filename, kernel_text
    from cellgrad.commands.regenerate import write_atomic

    name = load_cell(args.cell).name
    command = f"cellgrad generate {args.cell} --backend {args.backend}"
    path = Path(args.out) / kernel_filename(name, args.backend)
    try:
        text = kernel_text(args.cell, args.backend, command)
        import_text(text, path.name)
    except NotImplementedError as exc:
        print(f"cellgrad: error: cannot generate kernels for {args.cell}: {exc}", file=sys.stderr)
        return 2
    except KernelImportError as exc:
        print(f"cellgrad: error: the generated {args.backend} module for {args.cell} does not import, "
              f"so it was not written (a bug in cellgrad; please report it with the spec): {exc}",
              file=sys.stderr)
        return 2
    write_atomic(path, text)
    print(path)
    return 0
