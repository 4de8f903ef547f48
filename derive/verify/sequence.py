"""Numbers for the verifier: a random sequence run through the cell, and formulas evaluated on it.

``simulate`` draws parameters, inputs, initial states and upstream gradients, runs the cell's
forward equations step by step (its real forward semantics: gates in (0, 1), c = f c_prev + i g,
...) and the derivation's backward equations from the last step to the first, with the carried
adjoints ``d<s>_next`` handed back from step t+1 (zero after the last step, or always zero for
the one-step truncated sweep). Both sweeps are ``derive.evaluate``'s, the project's one
reference interpreter. Every value of every step is kept in one dict per step.

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

from derive.evaluate import backward_step, value
from derive.linear import Outer, ShapeMismatch

from .nodes import PROBE_PREFIX, HCat, MatMul, MatTranspose, Probed, Row, SumN, SumT, VCat, VStack

SYMBOL_RE = re.compile(r"^(?P<base>[^@#]+)(?:#(?P<variant>\w+))?(?:@(?P<shift>[+-]\d+))?$")


class OutOfRange(LookupError):
    """A shifted symbol (``f@+1``) that does not exist at this step (after the last one)."""


class StepFree(ValueError):
    """A per-step symbol used where no step is bound (outside Σ_t in a whole-sequence claim)."""


def target_name(output: str) -> str:
    """The symbol of the target y of a squared-error loss on ``output`` (a verifier name: the
    leading underscore keeps it apart from the cell's own names)."""
    return "_target_" + output


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
    derivation's own equations; ``diagnose`` passes variants), one ``backward_step`` per step."""
    from derive.evaluate import random_inputs, random_params, random_upstream, run_forward
    d = derivation
    cell = d.cell
    rng = np.random.default_rng(seed)
    sizes = draw_sizes(cell, scalar)
    params = random_params(d, sizes, rng)
    xs, state0 = random_inputs(d, sizes, T, N, rng)
    d_outputs, _ = random_upstream(d, sizes, T, N, rng)
    upstream = [{d.upstream[o]: d_outputs[o][t] for o in cell.outputs} for t in range(T)]
    if backward is None:
        backward = [(eq.target, eq.expr) for eq in d.backward]
    trace = run_forward(d, params, xs, state0)

    run = Run(d, sizes, T, N, seed, backward)
    for variant, carry in (("full", True), ("k1", False)):
        steps: list = [None] * T
        for t in reversed(range(T)):
            carried = {c: steps[t + 1]["d" + s + "_prev"] if carry and t + 1 < T
                       else np.zeros((N, *(sizes[k] for k in d.quantities[s].shape)))
                       for s, c in d.carried.items()}
            steps[t] = _backward(run, params, trace.steps[t], upstream[t], carried)
        run.steps[variant] = steps
    return run


def _backward(run: Run, params, values, upstream, carried, backward=None) -> dict:
    """One step's environment: its forward values and what ``backward`` computes from them.
    The target y of a squared-error loss on an output o is o - do_out (so that do_out = o - y)."""
    d = run.derivation
    values = {**values, **{target_name(o): values[o] - upstream[u] for o, u in d.upstream.items()}}
    adjoints = backward_step(d, values, params, upstream, carried, run.sizes,
                             equations=run.backward if backward is None else backward,
                             nodes=formula_nodes())
    return {**params, **values, **upstream, **carried, **adjoints}


def restep(run: Run, backward) -> dict:
    """Each step's backward equations recomputed with ``backward``, from the true arriving
    adjoints (d<s>_next, d<out>_out) of that step: the per-step meaning of a variant."""
    d = run.derivation
    forward = {eq.lhs for eq in d.forward} | set(d.cell.inputs) | \
        {s + "_prev" for s in d.cell.states}
    steps = []
    for env in run.steps["full"]:
        params = {p: env[p] for p in d.cell.params}
        steps.append(_backward(run, params, {k: v for k, v in env.items() if k in forward},
                               {u: env[u] for u in d.upstream.values()},
                               {c: env[c] for c in d.carried.values()}, backward))
    return {"full": steps, "k1": run.steps["k1"]}


def truncated_totals(run: Run, k: int) -> dict[str, np.ndarray]:
    """Parameter gradients of k-step truncated BPTT: each loss E<t> reaches steps t..t-k+1 only."""
    d = run.derivation
    cell = d.cell
    full = run.steps["full"]
    forward = {eq.lhs for eq in d.forward} | set(cell.inputs) | {s + "_prev" for s in cell.states}
    totals: dict[str, np.ndarray] = {}
    for t_loss in range(run.T):
        carried = {c: np.zeros_like(full[0][c]) for c in d.carried.values()}
        for t in range(t_loss, max(-1, t_loss - k), -1):
            env = full[t]
            upstream = {u: env[u] if t == t_loss else np.zeros_like(env[u]) for u in d.upstream.values()}
            step = _backward(run, {p: env[p] for p in cell.params},
                             {n: v for n, v in env.items() if n in forward}, upstream, carried)
            for p in cell.params:
                totals["d" + p] = totals.get("d" + p, 0) + step["d" + p]
            carried = {c: step["d" + s + "_prev"] for s, c in d.carried.items()}
    return totals


def loss_gradients(run: Run) -> list[dict[str, np.ndarray]]:
    """Per step t: the parameter gradients of the loss of step t alone (E<t> propagated back
    through every earlier step), the per-step meaning of ∂E_t/∂W (``dW#loss``)."""
    d = run.derivation
    cell = d.cell
    full = run.steps["full"]
    forward = {eq.lhs for eq in d.forward} | set(cell.inputs) | {s + "_prev" for s in cell.states}
    out = []
    for t_loss in range(run.T):
        grads: dict[str, np.ndarray] = {}
        carried = {c: np.zeros_like(full[0][c]) for c in d.carried.values()}
        for t in range(t_loss, -1, -1):
            env = full[t]
            upstream = {u: env[u] if t == t_loss else np.zeros_like(env[u]) for u in d.upstream.values()}
            step = _backward(run, {p: env[p] for p in cell.params},
                             {n: v for n, v in env.items() if n in forward}, upstream, carried)
            for p in cell.params:
                grads["d" + p] = grads.get("d" + p, 0) + step["d" + p]
            carried = {c: step["d" + s + "_prev"] for s, c in d.carried.items()}
        out.append(grads)
    return out


# -- numeric meaning of an expression ----------------------------------------------------------

def _stack(e, ev):
    vals = [ev(a) for a in e.args]
    if vals and all(np.ndim(v) == 1 for v in vals):        # parameter vectors: stacked biases
        return np.concatenate(vals)
    rows = {np.shape(v)[0] for v in vals if np.ndim(v) == 2}
    if any(np.ndim(v) not in (1, 2) for v in vals) or len(rows) != 1:
        raise ShapeMismatch("[ , ] stacks vectors only")
    n = rows.pop()                                          # a bias beside batch rows repeats
    return np.concatenate([np.broadcast_to(v, (n, np.shape(v)[0])) if np.ndim(v) == 1 else v
                           for v in vals], axis=1)


def _blocks(e, ev):
    vals = [ev(a) for a in e.args]
    if len({np.shape(v)[0] for v in vals}) != 1:
        raise ShapeMismatch("blocks of different heights")
    return np.concatenate(vals, axis=1)


def _rows(e, ev):
    vals = [ev(a) for a in e.args]
    if any(np.ndim(v) != np.ndim(vals[0]) for v in vals) or \
            len({np.shape(v)[1:] for v in vals}) != 1:
        raise ShapeMismatch("stacked blocks of different widths")
    return np.concatenate(vals, axis=0)


def _matrix_product(e, ev):
    a, b = (ev(x) for x in e.args)
    if np.ndim(a) != 2 or np.ndim(b) != 2 or np.shape(a)[1] != np.shape(b)[0]:
        raise ShapeMismatch(f"a matrix product of shapes {np.shape(a)} and {np.shape(b)}")
    return a @ b


def _sum_batch(e, ev):
    v = ev(e.args[0])
    return v.sum(axis=0) if np.ndim(v) == 2 and not _is_matrix_valued(e.args[0]) else v


def formula_nodes(sum_steps=None, probe=None) -> dict:
    """How the reference interpreter evaluates the nodes of formulas (``nodes``); ``sum_steps(e)``
    gives Σ_t e, where a claim sums over steps; ``probe(name)`` is a ``Probes`` table."""
    def sum_over_steps(e, ev):
        if sum_steps is None:
            raise StepFree("Σ_t inside Σ_t")
        return sum_steps(e.args[0])

    def probed(e, ev):
        if probe is None:
            raise ShapeMismatch("a matrix claim outside a run")
        body, vector = e.args
        columns = []
        for j in range(probe.size(vector.name)):
            with probe.bound(vector.name, j):
                columns.append(np.asarray(ev(body), dtype=float))
        if all(c.ndim == 0 for c in columns) and len({float(c) for c in columns}) == 1:
            return columns[0]            # 0: the same number in every column
        shape = np.broadcast_shapes(*(c.shape for c in columns))
        return np.stack([np.broadcast_to(c, shape) for c in columns], axis=-1)

    return {VCat: _stack, HCat: _blocks, VStack: _rows,
            MatTranspose: lambda e, ev: np.transpose(ev(e.args[0])),
            MatMul: _matrix_product,
            Row: lambda e, ev: ev(e.args[0]), SumN: _sum_batch, SumT: sum_over_steps,
            Probed: probed}


class Probes:
    """The unit vectors a ``Probed`` matrix claim is evaluated at: ``_probe_h_prev`` is e_j in
    the space of h (one row per sequence), while its column j is evaluated."""

    def __init__(self, run: "Run"):
        self.run = run
        self.values: dict[str, np.ndarray] = {}

    def size(self, name: str) -> int:
        d = self.run.derivation
        leaf = split_symbol(name)[0][len(PROBE_PREFIX):]
        base = leaf[:-5] if leaf.endswith("_prev") and leaf[:-5] in d.cell.states else leaf
        return int(np.prod([self.run.sizes[k] for k in d.quantities[base].shape]))

    def bound(self, name: str, j: int):
        from contextlib import contextmanager

        @contextmanager
        def binding():
            base = split_symbol(name)[0]
            unit = np.zeros((self.run.N, self.size(name)))
            unit[:, j] = 1.0
            self.values[base] = unit
            try:
                yield
            finally:
                del self.values[base]
        return binding()

    def lookup(self, name: str):
        """The bound value of a probe (at any step offset: a unit vector has no step)."""
        base = split_symbol(name)[0]
        if not base.startswith(PROBE_PREFIX):
            return None
        if base not in self.values:
            raise ShapeMismatch("a probe vector outside its matrix claim")
        return self.values[base]


def evaluate(expr, lookup, sum_steps=None, probe=None):
    """The value of ``expr``; ``lookup(name)`` gives a symbol's array, ``sum_steps(e)`` Σ_t e.
    The reference interpreter's ``value`` does the work, with the formula nodes added."""
    return value(expr, lookup, formula_nodes(sum_steps, probe))


def _is_matrix_valued(e) -> bool:
    return isinstance(e, (Outer, HCat, VStack, MatTranspose))


class Evaluator:
    """Values of formula expressions on one ``Run``; ``extra`` variants override ``run.steps``."""

    def __init__(self, run: Run, steps: dict | None = None, totals: dict | None = None):
        self.run = run
        self.steps = steps or run.steps
        self.totals = totals          # whole-sequence parameter gradients to use for SumT(dW)

    def at(self, expr, t: int | None):
        probes = Probes(self.run)

        def lookup(name):
            unit = probes.lookup(name)
            if unit is not None:
                return unit
            base, variant, shift = split_symbol(name)
            if t is None:
                raise StepFree(base)
            k = t + shift
            if k == self.run.T and self._is_adjoint(base):
                return np.zeros_like(self.steps[variant][k - 1][base])   # nothing after step T
            if not 0 <= k < self.run.T:
                raise OutOfRange(name)
            if variant == "loss":
                if "loss" not in self.steps:
                    self.steps = {**self.steps, "loss": loss_gradients(self.run)}
                if base not in self.steps["loss"][k]:
                    raise ValueError(f"{base}: only a parameter's gradient has a per-loss value")
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

        return evaluate(expr, lookup, sum_steps, probes)

    def _is_adjoint(self, name: str) -> bool:
        """An adjoint of the cell (boundary: every adjoint after the last step is zero)."""
        d = self.run.derivation
        return name in {eq.target for eq in d.backward} or name in d.carried.values() or \
            name in d.upstream.values()
