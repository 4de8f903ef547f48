"""cellgrad bench: time the generated kernels against PyTorch and the GEMM bound (bench/run.py).

The benchmark lives in the repository's ``bench/`` folder next to ``generated/``; from a source
checkout (also an editable install) it is found even when ``bench`` is not on ``sys.path``.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

from . import Example, error

NAME = "bench"
HELP = "benchmark the generated kernels against PyTorch and the GEMM-only bound"
EXAMPLES = (
    Example("cellgrad bench --quick", "smoke run of rnn, lstm, gru_torch at one size", slow=True),
    Example("cellgrad bench --train --quick", "one SGD step: raw kernels vs CellRNN vs PyTorch",
            slow=True),
    Example("cellgrad bench my_cell.toml --quick", "your cell's kernels (no PyTorch counterpart)",
            slow=True),
)

_CHECKOUT = Path(__file__).resolve().parents[2]


def _bench_run():
    """bench.run, or None when this installation has no bench/ folder."""
    if importlib.util.find_spec("bench") is None:
        if not (_CHECKOUT / "bench" / "run.py").is_file():
            return None
        sys.path.insert(0, str(_CHECKOUT))
    return importlib.import_module("bench.run")


def add_arguments(parser):
    module = _bench_run()
    if module is not None:
        module.add_arguments(parser)


def run(args) -> int:
    module = _bench_run()
    if module is None:
        return error("the benchmark needs a source checkout (bench/ next to cellgrad/)", 3)
    return module.run(args)
