"""Hostile inputs at every entry point end cleanly, in bounded time and memory, and run nothing.

The corpus (tests/hostile_corpus.py: spec files, formulas, kernel arguments, command lines, plus
hypothesis-drawn byte strings, random equations and truncations of valid specs and formulas)
runs in child processes (tests/hostile_runner.py), several inputs per child, two children at a
time, each child limited to 2 GiB of address space and each input to 5 s of CPU time. Every
input must end as its case says: refused with the project's own error in one short line (the
CLI: exit code != 0, a message, no traceback), or accepted where docs/guide.md says so. A
payload that would create the canary file if any of it were executed must leave no file.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from derive import limits
from hostile_corpus import CASES, HYPOTHESIS_EXAMPLES

ROOT = Path(__file__).resolve().parents[1]
RUNNER = Path(__file__).parent / "hostile_runner.py"
BATCH = 16                   # cases per child process
MESSAGE_CHARS = 500          # a refusal is one line of at most this many characters


def _batches():
    by_entry: dict[str, list[str]] = {}
    for c in CASES:
        by_entry.setdefault(c.entry, []).append(c.id)
    for entry, ids in by_entry.items():
        size = 1 if entry == "hypothesis" else BATCH
        for k in range(0, len(ids), size):
            yield ids[k:k + size]


def _run_batch(ids: list[str], canary: Path, work: Path) -> dict[str, dict]:
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "NUMBA_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    try:
        proc = subprocess.run([sys.executable, str(RUNNER), str(canary), str(work), *ids],
                              capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL,
                              timeout=60 + 30 * len(ids), cwd=work)
        stdout, stderr, died = proc.stdout, proc.stderr, proc.returncode != 0
    except subprocess.TimeoutExpired as exc:
        stdout = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        stderr, died = "wall-clock timeout of the child process", True
    results, started = {}, None
    for line in stdout.splitlines():
        record = json.loads(line)
        if "start" in record:
            started = record["start"]
        else:
            results[record["id"]] = record
            started = None
    if died and started is not None:
        results[started] = {"id": started, "outcome": "died",
                            "message": f"the child process died: {stderr.strip()[-800:]}"}
    for case_id in ids:
        results.setdefault(case_id, {"id": case_id, "outcome": "not run", "message": stderr[-800:]})
    return results


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    canary = tmp_path_factory.mktemp("canary")
    work = tmp_path_factory.mktemp("work")
    batches = list(_batches())
    with ThreadPoolExecutor(max_workers=2) as pool:
        parts = pool.map(lambda kb: _run_batch(kb[1], canary, work / str(kb[0])), enumerate(batches))
        results = {k: v for part in parts for k, v in part.items()}
    return results, canary


def test_corpus_is_large_enough():
    assert sum(1 for c in CASES if c.entry != "hypothesis") >= 200
    assert sum(HYPOTHESIS_EXAMPLES.values()) >= 200
    for entry in ("spec", "formula", "kernel", "cli"):
        assert sum(c.entry == entry for c in CASES) >= 25, entry


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_input_ends_cleanly(case, outcomes):
    results, _ = outcomes
    result = results[case.id]
    outcome, message = result["outcome"], result["message"]
    assert outcome in ("refused", "accepted"), f"{outcome}: {message}"
    if case.expect != "either":
        assert outcome == case.expect, f"expected {case.expect}, got {outcome}: {message}"
    if outcome == "refused":
        if case.entry != "cli":
            assert "\n" not in message, message
            assert len(message) <= MESSAGE_CHARS, f"{len(message)} characters: {message[:300]}…"
        else:
            assert len(message) <= 4 * MESSAGE_CHARS, message[:300]
        assert case.says in message, f"{case.says!r} not in {message!r}"


def test_nothing_ran(outcomes):
    _, canary = outcomes
    assert list(canary.iterdir()) == []


def test_the_guide_lists_every_limit():
    """docs/guide.md's table of limits shows derive/limits.py's values."""
    guide = (ROOT / "docs" / "guide.md").read_text(encoding="utf-8")
    for name, value, what in limits.LIMITS:
        row = re.search(rf"^\| {re.escape(what)} \| ([\d,]+) \|", guide, re.M)
        assert row, f"docs/guide.md has no row for {name} ({what})"
        assert int(row.group(1).replace(",", "")) == value, name


def test_a_power_of_a_vector_is_elementwise():
    """``a ** 2`` is accepted on purpose (docs/guide.md): each element squared, here checked
    against NumPy's elementwise square of the same numbers, and its gradient against central
    finite differences of the forward pass."""
    import numpy as np

    from derive import derive, parse_spec
    from derive.evaluate import run_backward, run_forward
    from hostile_corpus import spec

    d = derive(parse_spec(spec("h = (W @ x) ** 2 + tanh(U @ h_prev) ** 3")))
    rng = np.random.default_rng(1)
    params = {"W": rng.standard_normal((5, 4)), "U": rng.standard_normal((5, 5))}
    x = rng.standard_normal((3, 2, 4))
    h = run_forward(d, params, x).outputs["h"]
    expected, prev = [], np.zeros((2, 5))
    for t in range(3):
        prev = np.square(x[t] @ params["W"].T) + np.power(np.tanh(prev @ params["U"].T), 3)
        expected.append(prev)
    np.testing.assert_allclose(h, np.stack(expected), rtol=1e-12)

    weights = rng.standard_normal(h.shape)
    grads = run_backward(d, run_forward(d, params, x), {"h": weights})
    eps, k = 1e-6, (1, 2)
    bumped = {n: v.copy() for n, v in params.items()}
    bumped["W"][k] += eps
    up = (run_forward(d, bumped, x).outputs["h"] * weights).sum()
    bumped["W"][k] -= 2 * eps
    down = (run_forward(d, bumped, x).outputs["h"] * weights).sum()
    np.testing.assert_allclose(grads["W"][k], (up - down) / (2 * eps), rtol=1e-6)
