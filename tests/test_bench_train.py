"""Smoke test of the training-step benchmark (``--train``): at a tiny size it prints one table
with a row per thread mode, cell and dtype, finite positive times and ratios that are the
quotients of the printed medians. No timing assertions (speed is measured, never asserted).
In CI (``CI=true``) a missing torch fails instead of skipping (tests/test_bench_smoke.py)."""

from __future__ import annotations

import json
import math
import subprocess
import sys

from test_bench_smoke import CELLS, ROOT, TINY, torch_or_skip

COLUMNS = ["threads", "cell", "T,N,D,H", "dtype", "raw ms", "CellRNN ms", "torch ms",
           "CellRNN/raw", "CellRNN/torch", "raw/torch"]


def test_train_prints_one_table_with_every_row_and_finite_numbers(tmp_path):
    torch_or_skip()
    out = tmp_path / "train.json"
    result = subprocess.run([sys.executable, "-m", "bench.run", "--train", "--quick", "--sizes", TINY,
                             "--dtypes", "float64", "--repeats", "2", "--coretype", "as-set",
                             "--json", str(out)], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    headers = [i for i, line in enumerate(lines) if line.startswith("| threads |")]
    assert len(headers) == 1, result.stdout                      # one table
    assert [c.strip() for c in lines[headers[0]].strip("|").split("|")] == COLUMNS
    rows = []
    for line in lines[headers[0] + 2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split("|")])
    assert sorted((r[0], r[1], r[2], r[3]) for r in rows) == sorted(
        (mode, cell, TINY, "float64") for mode in ("one", "default") for cell in CELLS)
    report = json.loads(out.read_text())
    for session in report["sessions"]:
        for row in session["rows"]:
            assert set(row["median"]) == {"raw", "cellrnn", "torch_train"}, row["unavailable"]
            assert all(math.isfinite(t) and t > 0 for t in row["median"].values())
    for cells in rows:
        raw, mine, torch = (float(cells[COLUMNS.index(c)]) for c in ("raw ms", "CellRNN ms", "torch ms"))
        for value in (raw, mine, torch):
            assert math.isfinite(value) and value > 0, cells
        # ratios are of the unrounded medians; the printed times have 3 significant digits
        assert math.isclose(float(cells[COLUMNS.index("CellRNN/raw")]), mine / raw, rel_tol=0.02, abs_tol=0.006)
        assert math.isclose(float(cells[COLUMNS.index("raw/torch")]), raw / torch, rel_tol=0.02, abs_tol=0.006)
    assert "CellRNN <= 1.1x raw kernels: met in" in result.stdout
