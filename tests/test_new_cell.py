"""Cells that are not built in, each defined only by a spec file under tests/specs/new_cells/,
go through both oracles exactly as the built-in cells do: no code knows about them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from derive import builtin_cells, derive, load_cell
from test_derive_numeric import Problem, assert_gradients_match
from test_derive_symbolic import check_cell

#: Cells that expose a bug in derive/; strict, so a fix turns these rows red as a reminder.
KNOWN_BUGS: dict[str, str] = {}


class DeriveCrash(Exception):
    """derive() itself failed: kept apart from an oracle mismatch (an AssertionError), so the
    expected failure of a known bug never hides a wrong gradient."""


def derived(cell, truncate=None):
    try:
        return derive(cell, truncate=truncate)
    except AssertionError as exc:
        raise DeriveCrash(str(exc)) from exc


def spec_param(path: Path):
    marks = ([pytest.mark.xfail(strict=True, raises=DeriveCrash, reason=KNOWN_BUGS[path.stem])]
             if path.stem in KNOWN_BUGS else [])
    return pytest.param(path, marks=marks, id=path.stem)


NEW_CELLS = [spec_param(p) for p in
             sorted((Path(__file__).parent / "specs" / "new_cells").glob("*.toml"))]


def test_new_cells_are_not_built_in():
    working = [p.values[0] for p in NEW_CELLS if p.values[0].stem not in KNOWN_BUGS]
    assert len(working) >= 2
    assert not {load_cell(p.values[0]).name for p in NEW_CELLS} & set(builtin_cells())


@pytest.mark.parametrize("path", NEW_CELLS)
def test_symbolic_oracle(path):
    cell = load_cell(path)
    derived(cell)
    check_cell(cell)


@pytest.mark.parametrize("path", NEW_CELLS)
def test_finite_differences(path):
    problem = Problem(derived(load_cell(path)), seed=3)
    grads = problem.gradients()
    assert all(np.any(grads[s] != 0) for s in problem.d.cell.states)
    assert_gradients_match(grads, problem.full_loss, problem.arrays())


@pytest.mark.parametrize("path", NEW_CELLS)
def test_truncated_after_one_step(path):
    cell = load_cell(path)
    problem = Problem(derived(cell, truncate=1), seed=4)
    check_cell(cell, truncate=1)
    frozen = problem.frozen_states()
    assert_gradients_match(problem.gradients(), lambda: problem.truncated_loss(1, frozen),
                           problem.arrays())
