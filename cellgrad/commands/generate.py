"""cellgrad generate: the kernel module of one cell (built-in or any spec file) for one backend.

The module is imported before it is written: a module that does not import is refused with a
message naming the generated line, and nothing is written (the write itself is atomic).
``--compile`` then compiles a Numba module's kernels for both dtypes, cached next to it."""

from __future__ import annotations

import importlib.util
import sys
import tempfile
import time
import traceback
from pathlib import Path

from derive import load_cell

from . import Example, error

NAME = "generate"
HELP = "write the NumPy, Numba or Triton BPTT kernel module of a cell into a folder"
EXAMPLES = (
    Example("cellgrad generate lstm --out kernels", "kernels/lstm_numpy.py"),
    Example("cellgrad generate my_cell.toml --backend numba --out kernels", "kernels/<name>_numba.py"),
    Example("cellgrad generate gru --backend numba --compile --out kernels",
            "compile now for float32 and float64, not at the first call", slow=True),
)


class KernelImportError(Exception):
    """A generated module that does not import: a bug of the generator, never of the spec."""


class MissingLibrary(Exception):
    """The generated module imports a library that is not installed here."""


def add_arguments(parser):
    from codegen.kernels import BACKENDS
    parser.add_argument("cell", metavar="CELL_OR_SPEC", help="built-in cell name or path to a spec file")
    parser.add_argument("--backend", choices=BACKENDS, default="numpy",
                        help="numpy: whole-array NumPy code; numba: fused @njit time loops; "
                             "triton: GPU kernels")
    parser.add_argument("--out", metavar="DIR", default=".", help="output folder")
    parser.add_argument("--compile", action="store_true",
                        help="numba: compile the kernels for float32 and float64 now and cache "
                             "them next to the module (in __pycache__), so the first call is fast")


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
        except ModuleNotFoundError as exc:  # a library the backend needs (triton, torch) is missing
            raise MissingLibrary(exc.name) from None
        except Exception as exc:  # any failure of generated code is reported the same way
            line = getattr(exc, "lineno", None) if isinstance(exc, SyntaxError) else None
            if line is None:
                frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == str(path)]
                line = frames[-1].lineno if frames else None
            lines = text.splitlines()
            where = f" at line {line}: {lines[line - 1].strip()}" if line and line <= len(lines) else ""
            raise KernelImportError(f"{type(exc).__name__}: {exc}{where}") from None
    return module


def import_module_file(path: Path):
    """Import a written module under its file's name, registered in sys.modules (Numba's cache
    finds a module's functions through it)."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
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
        import_text(text, path.name)
    except NotImplementedError as exc:
        return error(f"cannot generate kernels for {args.cell}: {exc}")
    except MissingLibrary as exc:
        return error(f"the {args.backend} backend's module imports {exc}, which is not installed "
                     f"(the triton backend: pip install -e '.[triton]'); nothing was written", 3)
    except KernelImportError as exc:
        return error(f"the generated {args.backend} module for {args.cell} does not import, so it "
                     f"was not written (a bug in cellgrad; please report it with the spec): {exc}", 4)
    write_atomic(path, text)
    print(path)
    if getattr(args, "compile", False):
        if not hasattr(import_module_file(path), "warmup"):
            print(f"note: --compile: the {args.backend} backend has nothing to compile ahead of time",
                  file=sys.stderr)
            return 0
        start = time.perf_counter()
        sys.modules[path.stem].warmup()
        print(f"compiled the numba kernels of {name} (float32, float64) in "
              f"{time.perf_counter() - start:.0f} s; cached in {path.parent / '__pycache__'}",
              file=sys.stderr)
    return 0
