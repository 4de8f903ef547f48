"""The example examples/train_digits.py runs: one tiny epoch of each task, three models, each
line it promises. Skipped without torch or scikit-learn, except in CI (CI=true): fail."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def example():
    for package in ("torch", "sklearn"):
        if importlib.util.find_spec(package) is None:
            if os.environ.get("CI") == "true":
                pytest.fail(f"{package} is required in CI (pip install -e '.[examples]')")
            pytest.skip(f"{package} not installed")
    sys.path.insert(0, str(EXAMPLES))
    try:
        import train_digits
    finally:
        sys.path.remove(str(EXAMPLES))
    return train_digits


@pytest.mark.parametrize("task", ["digits", "adding"])
def test_one_tiny_epoch_trains_three_models(task):
    lines = []
    results = example().train(task, epochs=1, hidden=8, backend="numpy", limit=120, log=lines.append)
    assert list(results) == ["nn.LSTM", 'CellRNN("lstm")', 'CellRNN("peephole_lstm")']
    assert sum(line.startswith("epoch  1") for line in lines) == 3 and lines[-4] == "final:"
    assert all(0 <= accuracy <= 1 and seconds > 0 for accuracy, seconds in results.values())


def test_the_readme_torch_example_runs():
    import re
    if importlib.util.find_spec("torch") is None and os.environ.get("CI") != "true":
        pytest.skip("torch not installed")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    code = re.search(r"```python\n(import torch\n.*?)```", readme, re.S).group(1)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)   # the repository's own example code
    rnn = namespace["rnn"]
    assert namespace["h_n"].shape == (4, 4, 16) and rnn.W_f_l1_reverse.grad is not None
