"""Random valid cells (tests/random_cells.py, the property test's generator) through the triton
backend under Triton's interpreter: outputs, final states and every gradient equal the NumPy
backend's in float64 (whose kernels test_random_cells.py holds against central finite
differences and the reference interpreter), with the states given and with each starting at its
declared value. The backend refuses only a function without a Triton spelling, which the
generator never draws: a refusal is a failure. Few cells: the interpreter is slow.
Derandomized when CI=true."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

os.environ.setdefault("TRITON_INTERPRET", "1")   # before any generated Triton module is imported

from hypothesis import HealthCheck, given, note, settings  # noqa: E402

from cell_oracles import import_kernel  # noqa: E402
from derive import derive  # noqa: E402
from derive.spec import parse_spec  # noqa: E402
from random_cells import cell_specs  # noqa: E402
from test_triton_kernels import compare, triton_or_skip  # noqa: E402

EXAMPLES = int(os.environ.get("CELLGRAD_TRITON_CELLS", 2000 if os.environ.get("HYPOTHESIS_PROFILE") == "long" else 6))


@settings(max_examples=EXAMPLES, deadline=None, derandomize=os.environ.get("CI") == "true",
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
@given(cell_specs(max_depth=2))
def test_random_cells_triton_match_numpy(text):
    torch = triton_or_skip()
    note(text)
    d = derive(parse_spec(text, "random_cell.toml"))
    with tempfile.TemporaryDirectory(prefix="cellgrad-triton-random-") as folder:
        ref = import_kernel(d, "numpy", Path(folder), text)
        module = import_kernel(d, "triton", Path(folder), text)
        compare(ref, module, torch, "float64", seed=1, T=3, N=2, D=3, H=4)
        compare(ref, module, torch, "float64", seed=2, initial=True, T=3, N=2, D=3, H=4)
