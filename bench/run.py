"""``python -m bench.run`` / ``cellgrad bench``: time the generated kernels against PyTorch and the
GEMM bound, interleaved, and print one Markdown table per session (thread mode x OpenBLAS
core type). Progress goes to stderr, the report to stdout. See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import signal
import subprocess
import sys

from .cases import CELLS, DTYPES, QUICK_SIZE, SIZES, Case, has_torch_counterpart
from .methods import KERNELS_ENV, METHODS
from .report import render, render_train, session_title
from .training import TRAIN_METHODS
from .session import CORETYPE_VARS, ROOT, run_session

THREAD_MODES = ("one", "default", "passive")
DEFAULT_THREAD_MODES = THREAD_MODES[:2]   # passive is asked for by name
CORETYPES = ("as-set", "unset")


def _size(text: str) -> tuple[int, int, int, int]:
    try:
        size = tuple(int(v) for v in text.split(","))
    except ValueError:
        size = ()
    if len(size) != 4 or min(size) < 1:
        raise argparse.ArgumentTypeError(f"expected T,N,D,H (four positive integers), got {text!r}")
    return size


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def cache_dir() -> str:
    """The benchmark's own Numba cache (and the kernels of spec-file cells): written only by
    benchmark workers, so a cache of another process cannot change what is timed, and kept
    between runs, so that only the first run compiles."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "cellgrad", "bench")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("cell", nargs="*", metavar="CELL_OR_SPEC",
                        help="cells to time: built-in names or spec files; cells other than "
                             f"{', '.join(CELLS)} have no PyTorch counterpart or GEMM bound and "
                             f"time numpy against numba (default: {' '.join(CELLS)})")
    parser.add_argument("--quick", action="store_true",
                        help=f"smoke run: size {','.join(map(str, QUICK_SIZE))}, 3 repeats, one "
                             "thread, OpenBLAS variables as set; the three cells take about a "
                             "minute on an idle 2-core machine, Numba compilation included, and "
                             "several minutes on a busy one (docs/benchmarks.md)")
    parser.add_argument("--cells", nargs="+", metavar="CELL_OR_SPEC", default=None,
                        help="the same as the positional CELL_OR_SPEC (older spelling)")
    parser.add_argument("--sizes", nargs="+", type=_size, metavar="T,N,D,H",
                        help="sizes to time; for a spec file D is the input size and H every other "
                             "size (default: " + " ".join(",".join(map(str, z)) for z in SIZES)
                             + "; quick: " + ",".join(map(str, QUICK_SIZE)) + ")")
    parser.add_argument("--dtypes", nargs="+", default=list(DTYPES), choices=DTYPES,
                        help="dtypes to time")
    parser.add_argument("--repeats", type=_positive, help="timed samples per method and row (default 10, "
                        "quick 3)")
    parser.add_argument("--threads", nargs="+", choices=THREAD_MODES,
                        help="one: one process, one thread per pool; default: one process per "
                             "method at default threads; passive: the same with "
                             "OMP_WAIT_POLICY=PASSIVE (default: one default; quick: one)")
    parser.add_argument("--coretype", nargs="+", choices=CORETYPES,
                        help="OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE as set, or unset for the "
                             "benchmark's workers only (default: both; quick: as-set)")
    parser.add_argument("--methods", nargs="+", default=None, choices=METHODS + TRAIN_METHODS,
                        help="what to time: the two generated backends, PyTorch autograd, and the "
                             "GEMM-only lower bound (default: " + " ".join(METHODS) + "; with "
                             "--train: " + " ".join(TRAIN_METHODS) + ")")
    parser.add_argument("--train", action="store_true",
                        help="time one SGD training step instead: the raw numba kernels on NumPy "
                             "arrays, cellgrad.torch.CellRNN and the PyTorch module, in one table "
                             "over both thread modes (quick too) with CellRNN's overhead")
    parser.add_argument("--burst", type=_positive, default=2,
                        help="consecutive calls per turn in the default-threads mode")
    parser.add_argument("--gap", type=float, default=0.1,
                        help="pause (s) after each turn in the default-threads mode")
    parser.add_argument("--json", metavar="PATH", help="also write every sample summary as JSON")


def _machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{model}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}"


def _revision() -> str:
    """The commit the kernels came from, and whether generated/ differs from it."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                                capture_output=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "generated", "bench"],
                               cwd=ROOT, text=True, capture_output=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return f"{commit}" + (" with local changes in generated/ or bench/" if dirty else "")


def _load() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "unknown"


def _progress(row: dict) -> None:
    case = Case(**row["case"])
    times = ", ".join(f"{m} {t * 1e3:.3g} ms" for m, t in row["median"].items())
    print(f"  {case.label()}: {times}", file=sys.stderr, flush=True)


def prepare_cells(cells: list[str], folder: str) -> list[str]:
    """Generate the kernels of every cell without a PyTorch counterpart into ``folder`` (by
    content: unchanged kernels keep their Numba cache), tell the workers where (``KERNELS_ENV``),
    and return the cells' names."""
    from codegen.kernel_outputs import kernel_filename, kernel_text
    from codegen.outputs import write_atomic
    from derive import SpecError, load_cell
    names = []
    for cell in cells:
        if has_torch_counterpart(cell):
            names.append(cell)
            continue
        name = load_cell(cell).name
        if has_torch_counterpart(name):
            raise SpecError(f"the cell is named {name!r}, as a built-in cell the benchmark "
                            "compares with PyTorch: give it another name", path=cell)
        names.append(name)
        for backend in ("numpy", "numba"):
            text = kernel_text(cell, backend, f"cellgrad bench {cell}")
            path = os.path.join(folder, kernel_filename(name, backend))
            if not os.path.exists(path) or open(path, encoding="utf-8").read() != text:
                write_atomic(path, text)
    os.environ[KERNELS_ENV] = folder
    return names


def run(args) -> int:
    cells = list(dict.fromkeys(args.cell + (args.cells or []))) or list(CELLS)
    cache = cache_dir()
    cells = prepare_cells(cells, os.path.join(cache, "kernels"))
    sizes = args.sizes or ([QUICK_SIZE] if args.quick else list(SIZES))
    repeats = args.repeats or (3 if args.quick else 10)
    train = getattr(args, "train", False)
    methods = args.methods or list(TRAIN_METHODS if train else METHODS)
    threads = args.threads or (["one"] if args.quick and not train else list(DEFAULT_THREAD_MODES))
    coretypes = args.coretype or (["as-set"] if args.quick else list(CORETYPES))
    notes = []
    if "unset" in coretypes and "as-set" in coretypes and not any(v in os.environ for v in CORETYPE_VARS):
        coretypes = ["as-set"]
        notes.append("OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE are not set here: one coretype session.")
    cases = [Case(cell, *size, dtype) for cell in cells for size in sizes for dtype in args.dtypes]
    header = [f"# cellgrad benchmark, {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
              "", f"- machine: {_machine()}; Python {platform.python_version()}",
              f"- code: commit {_revision()}",
              ("- median wall time of one training step (forward, loss sum_t <w_t, h_t>, backward, "
               f"SGD update), in ms; ratios of medians" if train else
               "- median wall time of one forward+backward (loss sum_t <w_t, h_t>, gradients of "
               "x, initial states and every parameter), in ms; ratios of medians"),
              f"- load average before the run: {_load()} (other work on the machine distorts "
              "every number)",
              *(f"- {n}" for n in notes), ""]
    print("\n".join(header), flush=True)
    sessions = []
    numba_cache = os.path.join(cache, "numba")
    for coretype in coretypes:
        for mode in threads:
            session_args = dict(threads=mode, coretype=coretype, repeats=repeats,
                                burst=args.burst, gap=args.gap)
            print(f"session: {session_title(session_args)}", file=sys.stderr, flush=True)
            session = run_session(cases, methods, progress=_progress,
                                  numba_cache=numba_cache, **session_args)
            sessions.append(session)
            if not train:
                print(render(session), f"Load average after this session: {_load()}", "",
                      sep="\n", flush=True)
    if train:
        print(render_train(sessions), f"Load average after the run: {_load()}", "", sep="\n", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"header": header, "sessions": sessions}, f, indent=1)
    return 0


def _exit_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)  # unwinds through run_session, which stops its workers


def main(argv=None) -> int:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
