"""bench.gpu: one line and exit 0 without CUDA; on the CPU through Triton's interpreter (tiny
size) every method's row passes its float64 check and is timed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from test_triton_kernels import triton_or_skip

ROOT = Path(__file__).resolve().parents[1]


def run_bench(*args, **env):
    return subprocess.run([sys.executable, "-m", "bench.gpu", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(ROOT), **env})


def test_without_cuda_one_line_and_exit_0():
    result = run_bench(CUDA_VISIBLE_DEVICES="")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1 and "nothing measured" in lines[0], result.stdout


def test_rows_are_checked_against_float64_then_timed():
    triton_or_skip()
    result = run_bench("--device", "cpu", "--cells", "gru_torch", "--sizes", "2,2,3,4", "--dtypes",
                       "float32", "--methods", "triton,cudnn,loop", "--repeats", "1", TRITON_INTERPRET="1")
    assert result.returncode == 0, result.stdout + result.stderr
    row = next(line for line in result.stdout.splitlines() if line.startswith("| gru_torch"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    times, errors = cells[3:6], [float(e) for e in cells[7].split(",")]
    assert all(float(t) > 0 for t in times), row
    assert all(e < 1e-3 for e in errors), row


def test_bad_sizes_are_refused():
    result = run_bench("--sizes", "2,2,3", CUDA_VISIBLE_DEVICES="")
    assert result.returncode == 2 and "T,N,D,H" in result.stderr
