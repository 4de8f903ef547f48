"""codegen.build_module: a kernel module built in memory from a spec, the same code as the
committed one, writing no file; with cache_dir it lives in that folder only."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from codegen import build_module

from kernel_modules import kernel

SPEC = Path(__file__).parent / "specs" / "codegen_relu_gated.toml"


def test_built_module_computes_what_the_committed_module_does(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    built = build_module("gru_torch", "numpy")
    committed = kernel("gru_torch", "numpy")
    assert built is not committed and built.SPEC_HASH == committed.SPEC_HASH
    params = committed.init_params(3, 4, seed=1)
    x = np.random.default_rng(0).standard_normal((5, 2, 3))
    lengths = np.array([5, 2])
    (out_a, state_a, cache_a), (out_b, state_b, cache_b) = (
        m.forward(x, params, lengths=lengths) for m in (built, committed))
    assert np.array_equal(out_a["h"], out_b["h"]) and np.array_equal(state_a["h"], state_b["h"])
    grads_a = built.backward(out_a, cache_a)
    grads_b = committed.backward(out_b, cache_b)
    assert all(np.array_equal(grads_a.params[k], grads_b.params[k]) for k in params)
    assert os.listdir(tmp_path) == []            # nothing written


def test_a_user_spec_builds_in_a_cache_folder(tmp_path):
    module = build_module(SPEC, "numpy", cache_dir=tmp_path / "k")
    assert [p.suffix for p in (tmp_path / "k").iterdir()] == [".py"]
    assert build_module(SPEC, "numpy", cache_dir=tmp_path / "k") is module
