"""`cellgrad bench` takes spec files: their kernels are generated and timed against each other
(no PyTorch counterpart, no GEMM bound, and the table says why). Timing is never asserted."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_times_a_spec_file_cell(tmp_path):
    readme = (ROOT / "README.md").read_text()
    (tmp_path / "my_cell.toml").write_text(re.search(r"```toml\n(.*?)```", readme, re.S).group(1))
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run([sys.executable, "-m", "cellgrad", "bench", "my_cell.toml", "--quick",
                             "--sizes", "3,2,3,4", "--repeats", "2", "--dtypes", "float64",
                             "--methods", "numpy", "torch", "bound", "--json", "out.json"],
                            capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600)
    assert result.returncode == 0, result.stderr
    row = json.loads((tmp_path / "out.json").read_text())["sessions"][0]["rows"][0]
    assert row["case"]["cell"] == "indrnn" and row["median"]["numpy"] > 0
    assert row["unavailable"] == {"torch": "no PyTorch counterpart of this cell",
                                  "bound": "the GEMM bound is modelled for rnn, lstm, gru_torch only"}
    assert "no PyTorch counterpart of this cell" in result.stdout
    assert (tmp_path / "cache" / "cellgrad" / "bench" / "kernels" / "indrnn_numpy.py").is_file()
