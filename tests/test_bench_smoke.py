"""Smoke test of the benchmark harness (bench/): ``--quick`` runs end to end and prints one row
per cell and dtype with positive times and a passing correctness check against PyTorch.

No timing assertions: speed is measured by the benchmark, never asserted in tests. Without
torch the torch column must say "n/a" with the reason; that path is exercised by shadowing
torch with a package that fails to import. In CI (``CI=true``) a missing torch fails the torch
parity part instead of skipping it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CELLS = ("rnn", "lstm", "gru_torch")
DTYPES = ("float32", "float64")
TINY = "4,3,5,6"


def torch_or_skip() -> bool:
    """True when torch is importable; otherwise skip, or fail when CI=true."""
    if importlib.util.find_spec("torch") is not None:
        return True
    if os.environ.get("CI") == "true":
        pytest.fail("torch is required in CI (pip install torch==2.13.0)")
    pytest.skip("torch not installed")


def run_quick(tmp_path, *args, env=None) -> tuple[str, dict]:
    out = tmp_path / "bench.json"
    result = subprocess.run([sys.executable, "-m", "bench.run", "--quick", "--sizes", TINY,
                             "--repeats", "2", "--json", str(out), *args],
                            capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout, json.loads(out.read_text())


def table_rows(stdout: str) -> list[list[str]]:
    """The cells of every table row at the tiny size (the one-thread session prints a wall-time
    and a CPU-time table)."""
    rows = []
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) > 3 and cells[1] == TINY:
            rows.append(cells)
    return rows


def keys(rows) -> list[tuple[str, str]]:
    return sorted((cells[0], cells[2]) for cells in rows)


def test_quick_prints_every_cell_and_dtype_with_positive_times(tmp_path):
    torch_or_skip()
    stdout, report = run_quick(tmp_path)
    assert [(s["threads"], s["coretype"]) for s in report["sessions"]] == [("one", "as-set")]
    rows = table_rows(stdout)
    assert keys(rows) == sorted(2 * [(c, d) for c in CELLS for d in DTYPES])  # wall and CPU
    header = next(line for line in stdout.splitlines() if line.startswith("| cell |"))
    columns = [c.strip() for c in header.strip().strip("|").split("|")]
    for cells in rows:
        for column in ("numpy ms", "numba ms", "torch ms", "bound ms", "numpy/torch", "numba/bound"):
            assert float(cells[columns.index(column)]) > 0, (column, cells)
        assert cells[columns.index("torch path")] in ("oneDNN", "ATen")
        # "numpy 3e-15 / numba 2e-15": both kernels agree with torch autograd
        check = cells[columns.index("check vs torch")]
        assert re.fullmatch(r"numpy \S+ / numba \S+", check) and "FAIL" not in check, check
    for row in report["sessions"][0]["rows"]:
        assert set(row["median"]) == set(row["cpu_median"]) == {"numpy", "numba", "torch", "bound"}
        assert all(row["check"][b]["ok"] for b in ("numpy", "numba")), row["check"]
    assert "BLAS/OpenMP pools:" in stdout and "torch 2" in stdout  # what it ran with


def test_without_torch_the_torch_column_says_na_with_the_reason(tmp_path):
    fake = tmp_path / "shadow" / "torch"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text('raise ImportError("simulated: no torch here")\n')
    env = {**os.environ, "PYTHONPATH": str(fake.parent)}
    stdout, report = run_quick(tmp_path, "--cells", "rnn", env=env)
    rows = table_rows(stdout)
    assert keys(rows) == sorted(2 * [("rnn", d) for d in DTYPES])
    for cells in rows:
        number = re.fullmatch(r"n/a \[(\d+)\]", cells[5]).group(1)  # the torch ms column
        assert f"[{number}] torch: torch not importable (simulated: no torch here)" in stdout
        assert float(cells[3]) > 0 and float(cells[6]) > 0  # numpy and the bound still ran
    for row in report["sessions"][0]["rows"]:
        assert "torch" not in row["median"]
