"""generated/ is exactly what `cellgrad regenerate` writes; --check names stale, missing and
extra files and writes nothing; writes are atomic."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cellgrad.commands import regenerate
from codegen.outputs import builtin_outputs

ROOT = Path(__file__).resolve().parents[1]


def test_committed_generated_files_are_fresh(tmp_path):
    """Regenerate into a temporary folder and compare with the committed files."""
    files = builtin_outputs()
    kernels = {rel: text for rel, text in files.items() if rel.startswith("generated/")}
    assert len(kernels) >= 16
    for rel, text in kernels.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        regenerate.write_atomic(tmp_path / rel, text)
    for rel in kernels:
        assert (tmp_path / rel).read_bytes() == (ROOT / rel).read_bytes(), f"{rel} is stale: run cellgrad regenerate"
    on_disk = {p.relative_to(ROOT).as_posix() for p in (ROOT / "generated").glob("*.py")}
    assert on_disk - set(kernels) == {"generated/__init__.py"}


def test_regeneration_is_deterministic():
    assert builtin_outputs() == builtin_outputs()


def make_root(tmp_path) -> Path:
    root = tmp_path / "repo"
    for rel, text in builtin_outputs().items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text, encoding="utf-8")
    (root / "generated" / "__init__.py").write_text("")
    return root


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "cellgrad", "regenerate", *args], cwd=ROOT,
                          capture_output=True, text=True)


def test_check_names_stale_missing_and_extra_files_and_writes_nothing(tmp_path):
    root = make_root(tmp_path)
    assert run_cli("--check", "--root", str(root)).returncode == 0
    stale = root / "generated" / "lstm_numpy.py"
    stale.write_text(stale.read_text() + "# edited by hand\n")
    (root / "generated" / "rnn_numba.py").unlink()
    (root / "generated" / "old_cell_numpy.py").write_text("")
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    result = run_cli("--check", "--root", str(root))
    assert result.returncode == 1
    assert "stale: generated/lstm_numpy.py" in result.stderr
    assert "missing: generated/rnn_numba.py" in result.stderr
    assert "extra: generated/old_cell_numpy.py" in result.stderr
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before
    assert run_cli("--root", str(root)).returncode == 0
    assert "# edited by hand" not in stale.read_text() and (root / "generated" / "rnn_numba.py").exists()
    check = run_cli("--check", "--root", str(root))
    assert check.returncode == 1 and "extra: generated/old_cell_numpy.py" in check.stderr


def test_write_is_atomic(tmp_path, monkeypatch):
    """An interrupted write leaves the old file whole and no temporary file behind."""
    target = tmp_path / "generated" / "x.py"
    target.parent.mkdir()
    target.write_text("old\n")

    def interrupted(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        regenerate.write_atomic(target, "new\n" * 1000)
    assert target.read_text() == "old\n"
    assert [p.name for p in target.parent.iterdir()] == ["x.py"]
