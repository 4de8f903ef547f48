"""A spec file that is not built in goes through `cellgrad generate` -> import -> gradient check."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from codegen.gradcheck import check_gradients, format_table

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "tests" / "specs"


def import_file(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def generate(tmp_path, spec: Path, backend: str, cell: str):
    result = subprocess.run([sys.executable, "-m", "cellgrad", "generate", str(spec), "--backend", backend,
                             "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    path = tmp_path / f"{cell}_{backend}.py"
    assert result.stdout.strip() == str(path)
    return path


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_spec_file_generate_import_gradient_check(tmp_path, backend):
    path = generate(tmp_path, SPECS / "codegen_relu_gated.toml", backend, "relu_gated")
    text = path.read_text(encoding="utf-8")
    assert "import sympy" not in text and "derive" not in text.split('"""', 1)[0]
    module = import_file(path)
    assert set(module.OUTPUTS) == {"s", "y"} and module.PARAM_SHAPES["R"] == ("K", "H")
    for many_to_one in (False, True):
        results = check_gradients(module, T=4, N=3, input_size=3, hidden_size=4, seed=5,
                                  many_to_one=many_to_one, max_entries=10)
        assert all(r.ok for r in results), "\n" + format_table(results)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_input_used_elementwise(tmp_path, backend):
    module = import_file(generate(tmp_path, SPECS / "codegen_elementwise_input.toml", backend, "elemx"))
    results = check_gradients(module, T=3, N=2, hidden_size=4, seed=7, max_entries=10)
    assert all(r.ok for r in results), "\n" + format_table(results)


def test_generate_rejects_an_unknown_backend(tmp_path):
    result = subprocess.run([sys.executable, "-m", "cellgrad", "generate", "lstm", "--backend", "cuda",
                             "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode != 0 and "invalid choice" in result.stderr


@pytest.mark.parametrize("broken, where", [("x = 1\nraise RuntimeError('boom')\n", "line 2: raise RuntimeError"),
                                           ("def f(:\n", "SyntaxError")])
def test_generate_refuses_a_module_that_does_not_import(tmp_path, monkeypatch, capsys, broken, where):
    import argparse

    import codegen.kernel_outputs
    from cellgrad.commands import generate as command

    monkeypatch.setattr(codegen.kernel_outputs, "kernel_text", lambda *args: broken)
    args = argparse.Namespace(cell="rnn", backend="numpy", out=str(tmp_path))
    assert command.run(args) == 4  # exit 4: a bug in cellgrad (README, exit codes)
    err = capsys.readouterr().err
    assert "does not import, so it was not written" in err and where in err
    assert list(tmp_path.iterdir()) == []
