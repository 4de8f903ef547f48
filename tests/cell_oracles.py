"""Shared by the tests that generate kernels for specs of their own: render and import a kernel
module, and hold it against the independent oracles (central finite differences of its own
forward, and the reference interpreter derive/evaluate.py for the forward values)."""

from __future__ import annotations

import importlib.util
import itertools
from pathlib import Path

import numpy as np

from codegen.gradcheck import check_gradients, random_problem
from codegen.kernels import render_kernel
from derive import Derivation
from derive.evaluate import run_forward

_counter = itertools.count()


def import_kernel(d: Derivation, backend: str, folder: Path, spec_text: str = ""):
    """Render the kernel of ``d`` for ``backend`` into ``folder`` and import it."""
    text = render_kernel(d, backend, spec_text, f"{d.cell.name}.toml", "tests")
    path = Path(folder) / f"{d.cell.name}_{backend}_{next(_counter)}.py"
    path.write_text(text, encoding="utf-8")
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def failed_gradients(module, seed: int = 0, T: int = 3, N: int = 2,
                     modes: tuple[bool, ...] = (False, True), max_entries: int = 40) -> list[str]:
    """The gradients that disagree with central finite differences (float64), as table rows;
    ``modes``: many-to-one or not (upstream gradients at every step, or at the last only);
    ``max_entries`` entries of each array perturbed (and a dot-product test over all)."""
    bad = []
    for many_to_one in modes:
        for r in check_gradients(module, T=T, N=N, seed=seed, many_to_one=many_to_one,
                                 max_entries=max_entries):
            if not r.ok:
                bad.append(f"{r.name}: rel {r.rel_err:.1e}, dot {r.dot_rel_err:.1e}"
                           f"{' (many-to-one)' if many_to_one else ''}")
    return bad


def forward_mismatch(d: Derivation, module, seed: int = 0, T: int = 3, N: int = 2) -> float:
    """Largest difference between the kernel's forward and the reference interpreter's (outputs
    and final states), relative to the largest value when that exceeds 1."""
    params, x, state0, _, _ = random_problem(module, T, N, 3, 4, seed)
    outputs, state, _ = module.forward(x, params, state0)
    trace = run_forward(d, params, x if isinstance(x, dict) else {d.cell.inputs[0]: x}, state0)
    worst = 0.0
    for got, want in [*((outputs[o], trace.outputs[o]) for o in d.cell.outputs),
                      *((state[s], trace.state[s]) for s in d.cell.states)]:
        if want.size:
            worst = max(worst, float(np.max(np.abs(got - want)) / max(1.0, float(np.max(np.abs(want))))))
    return worst


def differences(pairs, tolerance: float = 1e-9) -> list[str]:
    """``pairs`` of (what, got, want): each got that is missing, or differs from want by more than
    ``tolerance`` of want's largest entry (at least 1), or has another shape, as one line."""
    bad = [f"{what}: missing" for what, got, _ in pairs if got is None]
    for what, got, want in pairs:
        if got is not None:
            scale = max(1.0, float(np.max(np.abs(want)))) if np.size(want) else 1.0
            if np.shape(got) != np.shape(want) or not np.allclose(got, want, rtol=0, atol=tolerance * scale):
                bad.append(f"{what}: differs by {np.max(np.abs(np.asarray(got) - want)):.2e}")
    return bad
