"""Cells that are not built in, each defined only by a spec file under tests/specs/new_cells/,
go through both oracles exactly as the built-in cells do: no code knows about them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from derive import builtin_cells, derive, load_cell
from test_derive_numeric import Problem, assert_gradients_match
from test_derive_symbolic import check_cell

NEW_CELLS = sorted((Path(__file__).parent / "specs" / "new_cells").glob("*.toml"))


def test_new_cells_are_not_built_in():
    assert len(NEW_CELLS) >= 2
    assert not {load_cell(p).name for p in NEW_CELLS} & set(builtin_cells())


@pytest.mark.parametrize("path", NEW_CELLS, ids=lambda p: p.stem)
def test_symbolic_oracle(path):
    check_cell(load_cell(path))


@pytest.mark.parametrize("path", NEW_CELLS, ids=lambda p: p.stem)
def test_finite_differences(path):
    problem = Problem(derive(load_cell(path)), seed=3)
    grads = problem.gradients()
    assert all(np.any(grads[s] != 0) for s in problem.d.cell.states)
    assert_gradients_match(grads, problem.full_loss, problem.arrays())


@pytest.mark.parametrize("path", NEW_CELLS, ids=lambda p: p.stem)
def test_truncated_after_one_step(path):
    cell = load_cell(path)
    check_cell(cell, truncate=1)
    problem = Problem(derive(cell, truncate=1), seed=4)
    frozen = problem.frozen_states()
    assert_gradients_match(problem.gradients(), lambda: problem.truncated_loss(1, frozen),
                           problem.arrays())
