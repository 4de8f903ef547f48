"""cellgrad check: finite-difference gradient check of a cell's generated kernels, as a table."""

from __future__ import annotations

import importlib.util
import sys
import tempfile
from pathlib import Path

NAME = "check"
HELP = "check the generated kernels' gradients of a cell against central finite differences"


def add_arguments(parser):
    parser.add_argument("cell", metavar="CELL_OR_SPEC", help="built-in cell name or path to a spec file")
    parser.add_argument("--backend", choices=("numpy", "numba"), default="numpy")
    parser.add_argument("--steps", type=int, default=4, help="sequence length T (default 4)")
    parser.add_argument("--batch", type=int, default=3, help="batch size N (default 3)")


def load_module(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(args) -> int:
    from codegen.gradcheck import check_gradients, format_table
    from codegen.kernel_outputs import kernel_text

    try:
        text = kernel_text(args.cell, args.backend, f"cellgrad check {args.cell} --backend {args.backend}")
    except NotImplementedError as exc:
        print(f"cellgrad: error: cannot generate kernels for {args.cell}: {exc}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="cellgrad-check-") as folder:
        path = Path(folder) / f"checked_{args.backend}.py"
        path.write_text(text, encoding="utf-8")
        module = load_module(path)
        failed = False
        for many_to_one in (False, True):
            results = check_gradients(module, T=args.steps, N=args.batch, many_to_one=many_to_one)
            print(f"{module.CELL} ({args.backend}), T={args.steps}, N={args.batch}, "
                  f"{'many-to-one' if many_to_one else 'many-to-many'}, float64:")
            print(format_table(results))
            print()
            failed |= not all(r.ok for r in results)
    print("FAILED: some gradients disagree with finite differences" if failed
          else "all gradients agree with finite differences")
    sys.stdout.flush()
    return 1 if failed else 0
