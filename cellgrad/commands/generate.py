"""cellgrad generate: the kernel module of one cell (built-in or any spec file) for one backend."""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path

from derive import load_cell

from . import Example, error

NAME = "generate"
HELP = "write the NumPy or Numba BPTT kernel module of a cell into a folder"
BACKENDS = ("numpy", "numba")
EXAMPLES = (
    Example("cellgrad generate lstm --out kernels", "kernels/lstm_numpy.py"),
    Example("cellgrad generate my_cell.toml --backend numba --out kernels", "kernels/<name>_numba.py"),
    Example("cellgrad generate gru --backend numba --compile --out kernels",
            "compile now for float32 and float64, not at the first call", slow=True),
)


def add_arguments(parser):
    parser.add_argument("cell", metavar="CELL_OR_SPEC", help="built-in cell name or path to a spec file")
    parser.add_argument("--backend", choices=BACKENDS, default="numpy",
                        help="numpy: whole-array NumPy code; numba: fused @njit time loops")
    parser.add_argument("--out", metavar="DIR", default=".", help="output folder")
    parser.add_argument("--compile", action="store_true",
                        help="numba: compile the kernels for float32 and float64 now and cache "
                             "them next to the module (in __pycache__), so the first call is fast")


def import_module_file(path: Path, name: str | None = None):
    """Import a Python file as a module of its own (not registered in sys.modules)."""
    spec = importlib.util.spec_from_file_location(name or path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(args) -> int:
    from codegen.kernel_outputs import kernel_filename, kernel_text
    from codegen.outputs import write_atomic

    name = load_cell(args.cell).name
    command = f"cellgrad generate {args.cell} --backend {args.backend}"
    path = Path(args.out) / kernel_filename(name, args.backend)
    try:
        text = kernel_text(args.cell, args.backend, command)
    except NotImplementedError as exc:
        return error(f"cannot generate kernels for {args.cell}: {exc}")
    try:
        compile(text, str(path), "exec")
    except SyntaxError as exc:  # a generator bug: never write a module that cannot import
        return error(f"the generated module for {args.cell} does not compile (line {exc.lineno}: "
                     f"{exc.msg}); nothing written. This is a bug in cellgrad, please report it", 4)
    write_atomic(path, text)
    print(path)
    if args.compile:
        if args.backend != "numba":
            print("note: --compile: the numpy backend has nothing to compile", file=sys.stderr)
            return 0
        start = time.perf_counter()
        import_module_file(path).warmup()
        print(f"compiled the numba kernels of {name} (float32, float64) in "
              f"{time.perf_counter() - start:.0f} s; cached in {path.parent / '__pycache__'}",
              file=sys.stderr)
    return 0
