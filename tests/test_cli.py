"""The `list` and `derive` commands, and that the guide's example spec really derives."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from derive import builtin_cells, derive, load_cell

ROOT = Path(__file__).resolve().parents[1]


def cellgrad(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cellgrad", *args], capture_output=True, text=True,
                          cwd=ROOT)


def test_list_prints_every_builtin_cell_one_per_line():
    result = cellgrad("list")
    assert result.returncode == 0
    assert result.stdout.split() == builtin_cells()
    assert {"rnn", "minimal_rnn", "lstm", "lstm_no_tanh", "book_lstm", "gru", "gru_torch",
            "peephole_lstm"} <= set(builtin_cells())


def test_derive_marks_the_lstm_fork_sums():
    result = cellgrad("derive", "lstm")
    assert result.returncode == 0, result.stderr
    fork_lines = [line for line in result.stdout.splitlines() if "fork sum" in line]
    targets = {re.match(r"\s*\(B\d+\) (\w+)", line).group(1) for line in fork_lines}
    # h<t> feeds the loss and step t+1; c<t> feeds tanh(c) and step t+1; h_prev and x feed 4 gates.
    assert targets == {"dh", "dc", "dh_prev", "dx"}


def test_derive_unknown_cell_is_one_clean_error_line():
    result = cellgrad("derive", "no_such_cell")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "unknown cell 'no_such_cell'" in result.stderr


def test_guide_example_spec_derives(tmp_path):
    guide = (ROOT / "docs" / "guide.md").read_text()
    spec = re.search(r"```toml\n(.*?)```", guide, re.S).group(1)
    path = tmp_path / "mgu.toml"
    path.write_text(spec)
    d = derive(load_cell(path))
    # f is read by a_n's input fh, by h, and through a_f: its adjoint is a fork.
    assert d.backward_eq("df").is_fork
    assert {eq.target for eq in d.param_grads} == {"dW_f", "dU_f", "db_f", "dW_h", "dU_h", "db_h"}


def test_readme_documents_every_command_and_its_examples_run(tmp_path):
    from cellgrad.cli import _command_modules

    readme = (ROOT / "README.md").read_text()
    for module in _command_modules():
        assert f"`cellgrad {module.NAME}" in readme, f"README does not document `cellgrad {module.NAME}`"
    spec = re.search(r"```toml\n(.*?)```", readme, re.S).group(1)
    (tmp_path / "indrnn.toml").write_text(spec)
    d = derive(load_cell(tmp_path / "indrnn.toml"))
    assert d.backward_eq("dh").is_fork  # loss + next step
    example = re.search(r"```python\n(import numpy.*?)```", readme, re.S).group(1)
    namespace: dict = {}
    exec(compile(example, "README.md", "exec"), namespace)  # the repository's own example code
    assert namespace["grads"].params["W_f"].shape == (32, 16)


def test_verify_reports_a_nan_in_its_verdict_without_numpy_warnings():
    """A formula that takes the log of a negative draw: the verdict names the NaN and its draw;
    stderr stays empty (NumPy's RuntimeWarning said the same without saying where)."""
    done = cellgrad("verify", "lstm", "--formula", r"dc = \log(c_prev) + \sqrt{h_prev}")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "does not hold" in done.stdout and "nan" in done.stdout
    assert done.stderr == ""
