"""cellgrad check: finite-difference gradient check of a cell's generated kernels, as a table.

The kernels are generated from the cell into a scratch folder, or an existing generated module
(a ``.py`` file from ``cellgrad generate``) is checked as it is. A crash inside the kernels is
reported as one line naming the generated statement and the equation tag (``(B5)``) it carries.
"""

from __future__ import annotations

import importlib.util
import re
import sys
import tempfile
import traceback
from pathlib import Path

from . import Example, error

NAME = "check"
HELP = "check the generated kernels' gradients of a cell against central finite differences"
EXAMPLES = (
    Example("cellgrad check lstm", "NumPy kernels, many-to-many and many-to-one"),
    Example("cellgrad check my_cell.toml --sizes D=3,H=5 --seed 1 -T 6",
            "your cell at other sizes and draws"),
    Example("cellgrad check kernels/gru_triton.py --dtype float32",
            "a module `cellgrad generate gru --backend triton --out kernels` wrote; on the GPU, "
            "or through Triton's interpreter on a CPU", slow=True),
)

_TAG = re.compile(r"#\s*\(((?:[FB]\d+)(?:,\s*[FB]\d+)*)\)")


def _sizes(text: str) -> dict[str, int]:
    import argparse
    sizes = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, value = part.partition("=")
        if not name.strip().isidentifier() or not value.strip().isdigit() or int(value) < 1:
            raise argparse.ArgumentTypeError(f"expected SIZE=N[,SIZE=N...] with positive N, "
                                             f"e.g. D=3,H=5; got {part!r}")
        sizes[name.strip()] = int(value)
    return sizes


def _positive(text: str) -> int:
    import argparse
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def add_arguments(parser):
    parser.add_argument("cell", metavar="CELL_SPEC_OR_MODULE",
                        help="built-in cell name, path to a spec file, or a generated kernel module (.py)")
    parser.add_argument("--backend", choices=("numpy", "numba", "triton"), default="numpy",
                        help="which kernels to generate and check (a .py module is checked as it "
                             "is); triton runs on CUDA, or through TRITON_INTERPRET=1 on the CPU")
    parser.add_argument("--sizes", type=_sizes, default={}, metavar="SIZE=N,...",
                        help="values of the cell's size symbols, e.g. D=3,H=5 (default: 3, 4, 5, ... "
                             "in the order the spec declares them, so no two are equal)")
    parser.add_argument("--dtype", choices=("float64", "float32"), default="float64",
                        help="dtype of the checked backward pass; the differences always use the "
                             "float64 forward (tolerance 1e-5 for float64, 2e-3 for float32)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the random parameters, inputs, initial states and loss weights")
    parser.add_argument("-T", "--steps", dest="steps", type=_positive, default=4,
                        help="sequence length T")
    parser.add_argument("-N", "--batch", dest="batch", type=_positive, default=3, help="batch size N")


def load_module(path: Path, name: str | None = None):
    """Import a generated module from its file (registered in sys.modules: Numba's cache needs it)."""
    name = name or f"_cellgrad_checked_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def crash_site(exc: BaseException, path: Path) -> tuple[int, str, str] | None:
    """(line, statement, tags) of the deepest frame in the generated file, or of the line a Numba
    typing error names in it; tags are the nearest equation tags at or below that line."""
    lineno = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if Path(frame.filename).resolve() == path.resolve():
            lineno = frame.lineno
    found = re.findall(rf'File "{re.escape(str(path))}", line (\d+)', str(exc))
    if found:
        lineno = int(found[-1])
    if lineno is None:
        return None
    lines = path.read_text(encoding="utf-8").splitlines()
    statement = lines[lineno - 1].split("  #")[0].strip()
    for text in lines[lineno - 1:lineno + 4]:
        match = _TAG.search(text)
        if match:
            return lineno, statement, match.group(1)
    return lineno, statement, ""


def _domains(cell) -> dict[str, str]:
    return {s: getattr(cell.quantities[s], "domain", "real") for s in cell.states}


def run(args) -> int:
    import numpy as np

    with np.errstate(all="ignore"):  # a NaN is reported in the table, with a hint below it
        return _run(args)


def _run(args) -> int:
    from codegen.gradcheck import check_gradients, format_table

    with tempfile.TemporaryDirectory(prefix="cellgrad-check-") as folder:
        given = Path(args.cell)
        if given.suffix == ".py":
            if not given.is_file():
                return error(f"{given}: no such generated module")
            path, domains = given, None
        else:
            from codegen.kernel_outputs import kernel_text
            from derive import load_cell
            cell = load_cell(args.cell)
            domains = _domains(cell)
            try:
                text = kernel_text(args.cell, args.backend,
                                   f"cellgrad check {args.cell} --backend {args.backend}")
            except NotImplementedError as exc:
                return error(f"cannot generate kernels for {args.cell}: {exc}")
            path = Path(folder) / f"{cell.name}_{args.backend}.py"
            path.write_text(text, encoding="utf-8")
        where = None
        if args.backend == "triton" or _says_triton(path):
            where = _triton_device()
            if where is None:
                return error("the triton backend needs torch and triton (pip install -e '.[triton]')")
        try:
            module = load_module(path)
        except Exception as exc:
            return _crashed(exc, path, given, "import")
        if getattr(module, "BACKEND", None) == "triton" and where is not None:
            import torch
            from codegen.backends.triton.numpy_view import NumPyView
            module = NumPyView(module, torch, device=where)
        if not all(hasattr(module, k) for k in ("CELL", "SIZES", "PARAM_SHAPES", "forward", "backward")):
            return error(f"{given}: not a kernel module written by cellgrad (no CELL, SIZES, "
                         "PARAM_SHAPES, forward and backward)")
        domains = domains or getattr(module, "STATE_DOMAIN", None)
        unknown = sorted(set(args.sizes) - set(module.SIZES))
        if unknown:
            return error(f"--sizes: {module.CELL} has no size {', '.join(unknown)} (its sizes: "
                         f"{', '.join(f'{s} = {m}' for s, m in module.SIZES.items())})")
        backend = getattr(module, "BACKEND", args.backend)
        if backend == "triton" and where == "cpu":
            backend = "triton, interpreted on the CPU"
        failed = nan = False
        for many_to_one in (False, True):
            try:
                results = check_gradients(module, T=args.steps, N=args.batch, seed=args.seed,
                                          many_to_one=many_to_one, sizes=args.sizes,
                                          dtype=args.dtype, domains=domains)
            except Exception as exc:
                return _crashed(exc, path, given, "run")
            sizes = ", ".join(f"{s}={n}" for s, n in _used_sizes(module, args.sizes).items())
            print(f"{module.CELL} ({backend}), T={args.steps}, N={args.batch}, {sizes}, seed "
                  f"{args.seed}, {'many-to-one' if many_to_one else 'many-to-many'}, {args.dtype}:")
            print(format_table(results))
            print()
            failed |= not all(r.ok for r in results)
            nan |= any(r.max_abs_err != r.max_abs_err or r.dot_rel_err != r.dot_rel_err for r in results)
    if nan:
        print("note: some values are NaN; if a state must stay positive (it goes through log, sqrt "
              "or a division), declare it so: n = { size = \"H\", domain = \"positive\" }")
    print("FAILED: some gradients disagree with finite differences" if failed
          else "all gradients agree with finite differences")
    sys.stdout.flush()
    return 1 if failed else 0


def _says_triton(path: Path) -> bool:
    """A generated module names its backend near its top (``BACKEND = "triton"``)."""
    head = path.read_text(encoding="utf-8", errors="replace")[:20_000]
    return re.search(r'^BACKEND = "triton"', head, re.M) is not None


def _triton_device() -> str | None:
    """"cuda" with a GPU; else "cpu" with Triton's interpreter switched on, which must happen
    before the module's kernels are decorated; None without torch or triton."""
    import importlib.util
    import os
    if any(importlib.util.find_spec(m) is None for m in ("torch", "triton")):
        return None
    import torch
    if torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1":
        return "cuda"
    os.environ["TRITON_INTERPRET"] = "1"
    return "cpu"


def _used_sizes(module, sizes):
    from codegen.gradcheck import default_sizes
    return {**default_sizes(module), **sizes}


def _crashed(exc: BaseException, path: Path, given: Path, what: str) -> int:
    """One line: the kernel crashed, where in the generated code and which equation."""
    site = crash_site(exc, path)
    reason = " ".join(f"{type(exc).__name__}: {exc}".split())
    if len(reason) > 300:
        reason = reason[:299] + "…"
    module = str(given) if given.suffix == ".py" else "the generated module"
    if site is None:
        return error(f"the kernels failed to {what}: {reason}", 4)
    line, statement, tags = site
    tag = f", equation ({tags})" if tags else ""
    return error(f"the kernels crashed at line {line} of {module}{tag}: `{statement}`: {reason}", 4)
