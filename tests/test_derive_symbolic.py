"""Symbolic oracle: the derived BPTT equations equal sympy.diff of the unrolled sequence loss.

With every size 1, a cell is a scalar recurrence: ``W @ v`` is ``W*v``. The oracle unrolls the
spec's own equations (``cell.equations``, as the user wrote them; nothing from derive/adjoint.py)
over T = 3 steps (2 for the cells in SHORTER) into one expression per output and
step, forms L = sum_t sum_q w_{q,t} q_t (+ v_s s_{T-1} for the final states) and
differentiates it with ``sympy.diff``. The other side
applies the derived one-step backward equations step by step (carried adjoints chained,
parameter gradients summed over t). Both sides are expressions in the same leaves (parameters,
x_t, initial states, weights); their difference must expand to 0.

Truncated BPTT (k steps): the oracle differentiates sum_t E<t> where E<t> is computed from the
states before step t-k+1 held constant (fresh symbols, substituted back after differentiating).
"""

from __future__ import annotations

import dataclasses
import random

import pytest
import sympy as sp

from derive import builtin_cells, derive, load_cell
from derive.linear import MatVec, MatVecT, Outer, RowMean, RowSum

T = 3


class Tanh(sp.Function):
    """tanh for the unrolled expressions: SymPy's own spends most of a minute in assumption
    queries (is_real via Mod and gcd) when built on deeply nested arguments. Derivative:
    the textbook identity, written here, not taken from the engine."""

    nargs = 1

    def fdiff(self, argindex=1):
        return 1 - Tanh(self.args[0]) ** 2


def scalar(expr: sp.Expr) -> sp.Expr:
    """All sizes 1: matrix products are plain products, and the mean or sum of a row of one
    entry is that entry."""
    return expr.replace(MatVec, lambda W, v: W * v).replace(MatVecT, lambda W, d: W * d) \
               .replace(Outer, lambda d, v: d * v).replace(RowMean, lambda v: v) \
               .replace(RowSum, lambda v: v).replace(sp.tanh, Tanh)


class Leaves:
    """The independent symbols of the unrolled sequence of T steps (names with a double
    underscore, which a spec name cannot contain, so they never collide with the cell's)."""

    def __init__(self, cell, T=T):
        self.cell = cell
        self.T = T
        self.params = {p: sp.Symbol(p) for p in cell.params}
        self.x = [{i: sp.Symbol(f"{i}__{t}") for i in cell.inputs} for t in range(T)]
        self.init = {s: sp.Symbol(f"{s}__init") for s in cell.states}
        self.w = [{o: sp.Symbol(f"w__{o}_{t}") for o in cell.outputs} for t in range(T)]
        self.v = {s: sp.Symbol(f"v__{s}") for s in cell.states}


def run_step(equations, params, inputs, prev):
    """Values of one step from (lhs, rhs) pairs in order; returns {name: expression in leaves}."""
    env = {**params, **inputs, **{f"{s}_prev": value for s, value in prev.items()}}
    for lhs, rhs in equations:
        env[lhs] = scalar(rhs).xreplace({sp.Symbol(n): env[n] for n in
                                          (s.name for s in rhs.free_symbols)})
    return env


def spec_equations(cell):
    return [(eq.lhs, eq.rhs) for eq in cell.equations]


def unrolled_loss_terms(cell, leaves, cut: int | None):
    """[E<0>, ..., E<T-1>, E<T>]: the loss at each step (E<T> = the final-state term). With
    ``cut = k``, E<t> is computed from states before step t-k+1 replaced by constants, which are
    returned too so they can be substituted back after differentiating."""
    eqs = spec_equations(cell)
    states = [dict(leaves.init)]  # states[t] = states entering step t
    for t in range(leaves.T):
        env = run_step(eqs, leaves.params, leaves.x[t], states[t])
        states.append({s: env[s] for s in cell.states})
    terms, constants = [], {}
    for t in range(leaves.T + 1):
        start = 0 if cut is None else max(t - cut + 1, 0)
        prev = dict(states[start])
        if start > 0:
            fresh = {s: sp.Symbol(f"{s}__const_{t}") for s in cell.states}
            constants.update({fresh[s]: states[start][s] for s in cell.states})
            prev = fresh
        env = None
        for u in range(start, min(t, leaves.T - 1) + 1):
            env = run_step(eqs, leaves.params, leaves.x[u], prev)
            prev = {s: env[s] for s in cell.states}
        if t < leaves.T:
            terms.append(sum(leaves.w[t][o] * env[o] for o in cell.outputs))
        else:  # the final-state term: a loss "at step T", consumed by no step of its own
            terms.append(sum(leaves.v[s] * prev[s] for s in cell.states) if env is not None else 0)
    return terms, constants


def oracle_gradients(cell, leaves, cut: int | None = None):
    terms, constants = unrolled_loss_terms(cell, leaves, cut)
    total = sp.Add(*terms)
    wrt = {**leaves.params, **{s: leaves.init[s] for s in cell.states},
           **{f"{i}_{t}": leaves.x[t][i] for t in range(leaves.T) for i in cell.inputs}}
    return {name: sp.diff(total, sym).xreplace(constants) for name, sym in wrt.items()}


def backward_sweep(d, leaves, forward_envs, last, first, upstream_of, carried, grads):
    """Apply the derived one-step equations to steps last..first, accumulating into ``grads``."""
    cell = d.cell
    for t in range(last, first - 1, -1):
        env = {**forward_envs[t], **upstream_of(t), **carried}
        for eq in d.backward:
            env[eq.target] = scalar(eq.expr).xreplace(
                {s: env[s.name] for s in eq.expr.free_symbols})
        for p in cell.params:
            grads[p] += env["d" + p]
        for i in cell.inputs:
            grads[f"{i}_{t}"] += env["d" + i]
        carried = {d.carried[s]: env[f"d{s}_prev"] for s in cell.states}
    if first == 0:
        for s in cell.states:
            grads[s] += carried[d.carried[s]]


def derived_gradients(d, leaves):
    """Gradients from the derivation's backward equations, truncation as ``d.truncate`` says."""
    cell = d.cell
    fwd = [(eq.lhs, eq.rhs) for eq in d.forward]
    envs, prev = [], dict(leaves.init)
    for t in range(leaves.T):
        env = run_step(fwd, leaves.params, leaves.x[t], prev)
        envs.append(env)
        prev = {s: env[s] for s in cell.states}
    xs = (f"{i}_{t}" for t in range(leaves.T) for i in cell.inputs)
    grads = {name: sp.Integer(0) for name in (*cell.params, *cell.states, *xs)}
    zero_up = {d.upstream[o]: 0 for o in cell.outputs}
    zero_carry = {d.carried[s]: 0 for s in cell.states}
    final = {d.carried[s]: leaves.v[s] for s in cell.states}

    def upstream(t, only=None):
        if only is not None and t != only:
            return zero_up
        return {d.upstream[o]: leaves.w[t][o] for o in cell.outputs}

    k = d.truncate
    if k is None:
        backward_sweep(d, leaves, envs, leaves.T - 1, 0, upstream, final, grads)
    else:
        for t in range(leaves.T):
            backward_sweep(d, leaves, envs, t, max(t - k + 1, 0),
                           lambda u, t=t: upstream(u, only=t), zero_carry, grads)
        if k > 1:
            # the final-state term counts as a loss at step T: k - 1 steps of this sequence
            backward_sweep(d, leaves, envs, leaves.T - 1, max(leaves.T - k + 1, 0),
                           lambda u: zero_up, final, grads)
    return grads, envs


def canonical(expr: sp.Expr, atoms: dict, memo: dict) -> sp.Expr:
    """Replace every function application (sigmoid(...), tanh(...), ...) by a symbol, innermost
    first and with its argument expanded, so equal applications get the same symbol."""
    if expr in memo:
        return memo[expr]
    if isinstance(expr, sp.Function):
        args = tuple(sp.expand(canonical(a, atoms, memo)) for a in expr.args)
        out = atoms.setdefault((expr.func, args), sp.Symbol(f"atom_{len(atoms)}"))
    elif expr.args:
        out = expr.func(*(canonical(a, atoms, memo) for a in expr.args))
    else:
        out = expr
    memo[expr] = out
    return out


def assert_same(oracle: dict, derived: dict) -> None:
    """Each difference oracle - derived is the zero function.

    Expanding the T = 3 differences takes minutes for an LSTM, so the identity is tested
    instead in exact arithmetic: with every function application replaced by an independent
    symbol (``canonical``), each difference is a rational function of the leaves and those
    atoms; it is evaluated exactly at random rational points. A nonzero rational function
    vanishes there with negligible probability (Schwartz-Zippel), and an identity of the
    atom-polynomial implies the identity of the original expressions.
    """
    assert oracle.keys() == derived.keys()
    atoms, memo = {}, {}
    diffs = {name: canonical(oracle[name] - derived[name], atoms, memo) for name in oracle}
    symbols = sorted(set().union(*(e.free_symbols for e in diffs.values())), key=str)
    rng = random.Random(1)
    for _ in range(2):
        point = {s: sp.Rational(rng.randint(-10**6, 10**6), rng.randint(1, 10**6)) for s in symbols}
        residuals = {name: e.xreplace(point) for name, e in diffs.items()}
        wrong = {name: r for name, r in residuals.items() if r != 0}
        assert not wrong, f"derived gradient differs from sympy.diff for {sorted(wrong)}"


def check_states_agree(cell, leaves, envs):
    """The normalized forward (with introduced pre-activations) computes the spec's states."""
    prev = dict(leaves.init)
    for t in range(leaves.T):
        spec_env = run_step(spec_equations(cell), leaves.params, leaves.x[t], prev)
        for name in (*cell.states, *cell.outputs):
            assert sp.expand(spec_env[name] - envs[t][name]) == 0, (t, name)
        prev = {s: spec_env[s] for s in cell.states}


def check_cell(cell, truncate=None, T=T):
    d = derive(cell, truncate=truncate)
    leaves = Leaves(cell, T)
    derived, envs = derived_gradients(d, leaves)
    check_states_agree(cell, leaves, envs)
    oracle = oracle_gradients(cell, leaves, cut=truncate)
    # The gradient really depends on the sequence: a test that cannot fail proves nothing.
    assert any(oracle[s] != 0 for s in cell.states)
    assert_same(oracle, derived)


#: Cells whose T = 3 oracle takes over half a minute (SymPy's diff walks the whole tree at every
#: node; the peephole to the new c nests c<t-1> in every gate; sLSTM's stabiliser sits in every
#: gate, 130 s; the layer-normalised LSTM has 46 forward equations) are unrolled over 2 steps.
SHORTER = {"peephole_lstm": 2, "slstm": 2, "layernorm_lstm": 2}


@pytest.mark.parametrize("name", builtin_cells())
def test_full_bptt_equals_diff_of_unrolled_loss(name):
    check_cell(load_cell(name), T=SHORTER.get(name, T))


@pytest.mark.parametrize("name", builtin_cells())
def test_truncate_1_equals_diff_with_the_recurrent_path_cut(name):
    check_cell(load_cell(name), truncate=1, T=SHORTER.get(name, T))


def test_truncate_2_equals_diff_with_the_path_cut_after_two_steps():
    check_cell(load_cell("lstm"), truncate=2)


def test_truncation_changes_the_gradient():
    """The cut oracle is not the full one (else the truncated tests could not fail)."""
    cell = load_cell("rnn")
    leaves = Leaves(cell)
    full = oracle_gradients(cell, leaves)
    cut = oracle_gradients(cell, leaves, cut=1)
    assert sp.expand(full["U"] - cut["U"]) != 0


def mutated(d, target, change):
    """``d`` with the expression of one backward equation changed."""
    backward = tuple(dataclasses.replace(eq, expr=change(eq.expr)) if eq.target == target else eq
                     for eq in d.backward)
    return dataclasses.replace(d, backward=backward)


@pytest.mark.parametrize("target, change", [
    ("dh", lambda e: e - sp.Symbol("dh_next")),                   # recurrent branch dropped
    ("da_h", lambda e: e.replace(lambda n: n.is_Pow, lambda n: n.base)),  # tanh' as 1 - tanh
], ids=["missing-fork-branch", "wrong-derivative"])
def test_the_comparison_catches_a_wrong_backward_equation(target, change):
    cell = load_cell("rnn")
    d = derive(cell)
    assert d.backward_eq(target)  # the mutation hits a real equation
    leaves = Leaves(cell)
    derived, _ = derived_gradients(mutated(d, target, change), leaves)
    with pytest.raises(AssertionError, match="differs from sympy.diff"):
        assert_same(oracle_gradients(cell, leaves), derived)
