"""Numbers for the verifier: a random sequence run through the cell, and formulas evaluated on it.

``simulate`` draws parameters, inputs, initial states and upstream gradients, runs the cell's
forward equations step by step (its real forward semantics: gates in (0, 1), c = f c_prev + i g,
...) and the derivation's backward equations from the last step to the first, with the carried
adjoints ``d<s>_next`` handed back from step t+1 (zero after the last step, or always zero for
the one-step truncated sweep). Every value of every step is kept in one dict per step.

``Evaluator`` gives a formula's SymPy expression its numeric meaning on such a run. Symbols are
cell names at step t (``c``, ``dc``, ``dW_f``), shifted (``f@+1``: f at step t+1) or taken from
the truncated sweep (``dc#k1``: the adjoint of c when only the loss at step t is propagated).

Layout: vectors are (N, size) arrays (one row per sequence), matrices (rows, cols); a parameter
gradient of one step is summed over the batch (dW: (H, D), db: (H,)).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import sympy as sp

from derive.functions import relu, sigmoid, softplus
from derive.linear import REDUCTIONS, MatVec, MatVecT, Outer, RowMean

from .nodes import HCat, Row, SumN, SumT, MatTranspose, VCat

SYMBOL_RE = re.compile(r"^(?P<base>[^@#]+)(?:#(?P<variant>\w+))?(?:@(?P<shift>[+-]\d+))?$")


class ShapeMismatch(ValueError):
    """Two operands whose shapes do not fit (a matrix where a vector belongs, swapped blocks)."""


class OutOfRange(LookupError):
    """A shifted symbol (``f@+1``) that does not exist at this step (after the last one)."""


class StepFree(ValueError):
    """A per-step symbol used where no step is bound (outside Σ_t in a whole-sequence claim)."""


def split_symbol(name: str) -> tuple[str, str, int]:
    m = SYMBOL_RE.match(name)
    if not m:
        raise ValueError(name)
    return m["base"], m["variant"] or "full", int(m["shift"] or 0)


def shifted(name: str, by: int) -> str:
    base, variant, shift = split_symbol(name)
    shift += by
    text = base + ("" if variant == "full" else f"#{variant}")
    return text if shift == 0 else f"{text}@{shift:+d}"


@dataclass
class Run:
    """One random sequence through a cell: ``steps[variant][t][name] -> array``."""

    derivation: object
    sizes: dict[str, int]
    T: int
    N: int
    seed: int
    backward: list = field(default_factory=list)     # [(target, expr, is_param_vector)]
    steps: dict = field(default_factory=dict)


def draw_sizes(cell, scalar: bool = False) -> dict[str, int]:
    """Distinct sizes (3, 2, 4, ...) so that a transposed or swapped operand cannot fit by luck."""
    if scalar:
        return {name: 1 for name in cell.sizes}
    pool = [3, 2, 4, 5, 6]
    return {name: pool[k % len(pool)] for k, name in enumerate(cell.sizes)}


def simulate(derivation, *, seed: int = 0, T: int = 4, N: int = 2, scalar: bool = False,
             backward=None) -> Run:
    """Run the forward pass (``derive.evaluate``, the project's reference interpreter) on random
    data, then the full and the one-step truncated backward sweeps of ``backward`` (default: the
    derivation's own equations; ``diagnose`` passes variants)."""
    from derive.evaluate import random_inputs, random_params, random_upstream, run_forward
    d = derivation
    cell = d.cell
    rng = np.random.default_rng(seed)
    sizes = draw_sizes(cell, scalar)
    dim = lambda q: tuple(sizes[s] for s in d.quantities[q].shape)  # noqa: E731
    params = random_params(d, sizes, rng)
    xs, state0 = random_inputs(d, sizes, T, N, rng)
    d_outputs, _ = random_upstream(d, sizes, T, N, rng)
    upstream = [{d.upstream[o]: d_outputs[o][t] for o in cell.outputs} for t in range(T)]
    if backward is None:
        backward = [(eq.target, eq.expr) for eq in d.backward]
    param_vectors = {"d" + p for p in cell.params if len(d.quantities[p].shape) == 1}
    trace = run_forward(d, params, xs, state0)
    forward_steps = [{**params, **values} for values in trace.steps]

    run = Run(d, sizes, T, N, seed, backward)
    for variant, carry in (("full", True), ("k1", False)):
        steps = [dict(env) for env in forward_steps]
        for t in reversed(range(T)):
            env = steps[t]
            env.update(upstream[t])
            for s, carried in d.carried.items():
                if carry and t + 1 < T:
                    env[carried] = steps[t + 1]["d" + s + "_prev"]
                else:
                    env[carried] = np.zeros((N, *dim(s)))
            for target, expr in backward:
                value = evaluate(expr, env.__getitem__)
                if target in param_vectors and np.ndim(value) == 2:
                    value = value.sum(axis=0)
                env[target] = value
        run.steps[variant] = steps
    return run


def restep(run: Run, backward) -> dict:
    """Each step's backward equations recomputed with ``backward``, from the true arriving
    adjoints (d<s>_next, d<out>_out) of that step: the per-step meaning of a variant."""
    d = run.derivation
    param_vectors = {"d" + p for p in d.cell.params if len(d.quantities[p].shape) == 1}
    forward = {eq.lhs for eq in d.forward} | set(d.cell.inputs) | set(d.cell.params) | \
        {s + "_prev" for s in d.cell.states} | set(d.carried.values()) | set(d.upstream.values())
    steps = []
    for env in run.steps["full"]:
        new = {k: v for k, v in env.items() if k in forward}
        for target, expr in backward:
            value = evaluate(expr, new.__getitem__)
            if target in param_vectors and np.ndim(value) == 2:
                value = value.sum(axis=0)
            new[target] = value
        steps.append(new)
    return {"full": steps, "k1": run.steps["k1"]}


def truncated_totals(run: Run, k: int) -> dict[str, np.ndarray]:
    """Parameter gradients of k-step truncated BPTT: each loss E<t> reaches steps t..t-k+1 only."""
    d = run.derivation
    cell = d.cell
    full = run.steps["full"]
    totals: dict[str, np.ndarray] = {}
    param_vectors = {"d" + p for p in cell.params if len(d.quantities[p].shape) == 1}
    for t_loss in range(run.T):
        carried = {c: np.zeros_like(full[0][c]) for c in d.carried.values()}
        for t in range(t_loss, max(-1, t_loss - k), -1):
            env = dict(full[t])
            for name in d.upstream.values():
                env[name] = full[t][name] if t == t_loss else np.zeros_like(full[t][name])
            env.update(carried)
            for target, expr in run.backward:
                value = evaluate(expr, env.__getitem__)
                if target in param_vectors and np.ndim(value) == 2:
                    value = value.sum(axis=0)
                env[target] = value
            for p in cell.params:
                totals["d" + p] = totals.get("d" + p, 0) + env["d" + p]
            carried = {c: env["d" + s + "_prev"] for s, c in d.carried.items()}
    return totals


# -- numeric meaning of an expression ----------------------------------------------------------

def _same_shape(values):
    """Elementwise operands: equal shapes, or a bias vector (k,) beside a batch of rows (N, k)."""
    shapes = {np.shape(v) for v in values if np.ndim(v) > 0}
    rows = {s for s in shapes if len(s) == 2}
    if len(rows) > 1 or any(len(s) == 1 and rows and s[0] != next(iter(rows))[1] for s in shapes) \
            or len({s for s in shapes if len(s) == 1}) > 1:
        raise ShapeMismatch("operands of shapes " + " and ".join(str(s) for s in sorted(shapes)))


_ELEMENTWISE = {
    sp.tanh: np.tanh, sp.exp: np.exp, sp.log: np.log, sp.cosh: np.cosh, sp.sinh: np.sinh,
    sigmoid: lambda z: np.exp(-np.logaddexp(0, -z)),
    relu: lambda z: np.maximum(z, 0.0),
    softplus: lambda z: np.logaddexp(0, z),
}


def evaluate(expr, lookup, sum_steps=None):
    """The value of ``expr``; ``lookup(name)`` gives a symbol's array, ``sum_steps(e)`` Σ_t e."""
    def ev(e):
        if isinstance(e, sp.Symbol):
            return lookup(e.name)
        if e.is_Number:
            return float(e)
        if isinstance(e, sp.Add):
            vals = [ev(a) for a in e.args]
            _same_shape(vals)
            return sum(vals[1:], vals[0])
        if isinstance(e, sp.Mul):
            vals = [ev(a) for a in e.args]
            _same_shape(vals)
            out = vals[0]
            for v in vals[1:]:
                out = out * v
            return out
        if isinstance(e, sp.Pow):
            return np.power(ev(e.base), float(e.exp)) if e.exp.is_Number else np.power(ev(e.base), ev(e.exp))
        if type(e) in _ELEMENTWISE:
            return _ELEMENTWISE[type(e)](ev(e.args[0]))
        if isinstance(e, sp.Heaviside):
            z = ev(e.args[0])
            return np.where(z > 0, 1.0, np.where(z < 0, 0.0, float(e.args[1]) if len(e.args) > 1 else 0.5))
        if isinstance(e, tuple(REDUCTIONS.values())):
            v = np.asarray(ev(e.vector), dtype=float)
            reduce = np.mean if isinstance(e, RowMean) else np.sum
            return np.broadcast_to(reduce(v, axis=-1, keepdims=True), v.shape).copy()
        if isinstance(e, MatVec):
            return _matmul(ev(e.vector), ev(e.matrix).T, e)
        if isinstance(e, MatVecT):
            return _matmul(ev(e.vector), ev(e.matrix), e)
        if isinstance(e, Outer):
            left, right = ev(e.left), ev(e.right)
            if np.ndim(left) != 2 or np.ndim(right) != 2 or left.shape[0] != right.shape[0]:
                raise ShapeMismatch(f"outer product of shapes {np.shape(left)} and {np.shape(right)}")
            return left.T @ right
        if isinstance(e, VCat):
            vals = [ev(a) for a in e.args]
            if any(np.ndim(v) != 2 for v in vals) or len({v.shape[0] for v in vals}) != 1:
                raise ShapeMismatch("[ , ] stacks vectors only")
            return np.concatenate(vals, axis=1)
        if isinstance(e, HCat):
            vals = [ev(a) for a in e.args]
            if len({np.shape(v)[0] for v in vals}) != 1:
                raise ShapeMismatch("blocks of different heights")
            return np.concatenate(vals, axis=1)
        if isinstance(e, MatTranspose):
            return np.transpose(ev(e.args[0]))
        if isinstance(e, Row):
            return ev(e.args[0])
        if isinstance(e, SumN):
            v = ev(e.args[0])
            return v.sum(axis=0) if np.ndim(v) == 2 and not _is_matrix_valued(e.args[0]) else v
        if isinstance(e, SumT):
            if sum_steps is None:
                raise StepFree("Σ_t inside Σ_t")
            return sum_steps(e.args[0])
        raise ValueError(f"cannot evaluate {type(e).__name__}")
    return ev(expr)


def _is_matrix_valued(e) -> bool:
    return isinstance(e, (Outer, HCat, MatTranspose))


def _matmul(v, m, node):
    if np.ndim(v) != 2 or np.ndim(m) != 2 or v.shape[1] != m.shape[0]:
        raise ShapeMismatch(f"{type(node).__name__}: a vector of shape {np.shape(v)} "
                            f"cannot be multiplied with a matrix of shape {np.shape(m)}")
    return v @ m


class Evaluator:
    """Values of formula expressions on one ``Run``; ``extra`` variants override ``run.steps``."""

    def __init__(self, run: Run, steps: dict | None = None, totals: dict | None = None):
        self.run = run
        self.steps = steps or run.steps
        self.totals = totals          # whole-sequence parameter gradients to use for SumT(dW)

    def at(self, expr, t: int | None):
        def lookup(name):
            base, variant, shift = split_symbol(name)
            if t is None:
                raise StepFree(base)
            k = t + shift
            if not 0 <= k < self.run.T:
                raise OutOfRange(name)
            return self.steps[variant][k][base]

        def sum_steps(body):
            if self.totals is not None and isinstance(body, sp.Symbol) and body.name in self.totals:
                return self.totals[body.name]
            total = 0
            for s in range(self.run.T):
                try:
                    total = total + self.at(body, s)
                except OutOfRange:
                    continue
            return total

        return evaluate(expr, lookup, sum_steps)
