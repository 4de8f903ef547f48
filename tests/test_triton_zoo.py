"""The zoo (tests/specs/zoo: cells from the literature, written from the guide alone, which
tests/test_zoo.py holds against hand-written PyTorch references and finite differences) through
the triton backend under Triton's interpreter: outputs, final states and gradients equal the
NumPy backend's in float64, with the states given, starting at their declared values, and with
sequence lengths. Skipped without triton, except in CI (CI=true): fail."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TRITON_INTERPRET", "1")   # before any generated Triton module is imported

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from cell_oracles import import_kernel  # noqa: E402
from derive import derive, parse_spec  # noqa: E402
from test_triton_kernels import compare, triton_or_skip  # noqa: E402

ZOO = sorted((Path(__file__).parent / "specs" / "zoo").glob("*.toml"))


@pytest.mark.parametrize("path", ZOO, ids=[p.stem for p in ZOO])
def test_zoo_cell_triton_matches_numpy(path, tmp_path):
    torch = triton_or_skip()
    text = path.read_text(encoding="utf-8")
    d = derive(parse_spec(text, path.name))
    ref, module = import_kernel(d, "numpy", tmp_path, text), import_kernel(d, "triton", tmp_path, text)
    compare(ref, module, torch, "float64", seed=1, T=3, N=3, D=3, H=4)
    compare(ref, module, torch, "float64", seed=2, initial=True, T=3, N=3, D=3, H=4)
    compare(ref, module, torch, "float64", seed=3, lengths=np.array([3, 0, 2]), T=3, N=3, D=3, H=4)


def test_the_zoo_is_there():
    assert len(ZOO) >= 20
