"""`cellgrad check` prints a finite-difference table and its exit status tells the result."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_check_prints_a_table_and_passes():
    result = subprocess.run([sys.executable, "-m", "cellgrad", "check", "gru", "--backend", "numpy",
                             "--steps", "3", "--batch", "2"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert any(line.split()[:1] == ["U_h"] and line.split()[-1] == "yes" for line in lines)
    assert "many-to-one" in result.stdout and "all gradients agree" in result.stdout


def test_check_reports_a_bad_spec_clearly(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[cell]\nname = 'x'\n")
    result = subprocess.run([sys.executable, "-m", "cellgrad", "check", str(bad)], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 2 and "cellgrad: error" in result.stderr
