"""Why a formula that does not hold is wrong, when one of the usual slips explains it exactly.

Each diagnosis is a hypothesis tested numerically on the same random runs as the verdict: the
formula's values must equal, at every step and every draw, those of a *variant* of the correct
computation. The variants are the mistakes the documents make:

* ``truncated``: the gradient of k-step truncated BPTT (the recurrent path dropped);
* ``missing branch``: one branch of a fork sum left out (dc without dc_next, dh_prev without
  one gate);
* ``sigma' as sigma`` / ``sigma' as 1-sigma`` / ``tanh' as 1-tanh``: a derivative written wrong;
* ``sign flip``: the whole result or one branch negated;
* ``wrong factor``: one symbol where another quantity is needed (di where i is needed);
* ``tanh' as (1-tanh)^2``: 1 − tanh² c written as (1 − tanh c)²;
* ``missing transpose``: W v where W^T v belongs (or the reverse);
* ``wrong time index``: a value one step off (c where c_prev belongs);
* ``block order``: a concatenated gradient [dU | dW] written with its blocks swapped;
* ``missing sum``: a whole-sequence gradient written as one step's term (found by ``check``).
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from derive.linear import MatVec, MatVecT
from derive.ops import sigmoid

from .compare import agree
from .nodes import PROBE_PREFIX, HCat, SumT
from .sequence import (Evaluator, OutOfRange, ShapeMismatch, StepFree, restep, simulate,
                       split_symbol, truncated_totals)


@dataclass(frozen=True)
class Diagnosis:
    kind: str
    text: str


class _Values:
    """The formula's right side evaluated once per run and step, for comparison with variants."""

    def __init__(self, rhs, runs, whole: bool, at_last: bool, scalar: bool):
        self.runs, self.whole, self.at_last, self.scalar = runs, whole, at_last, scalar
        self.rhs = rhs
        try:
            self.values = [self.evaluate(Evaluator(run), rhs, run) for run in runs]
        except (ShapeMismatch, StepFree, ValueError):
            self.values = None        # the right side does not fit: only rewrites of it can match

    def steps(self, run):
        if self.whole:
            return [None]
        return [run.T - 1] if self.at_last else list(range(run.T))

    def evaluate(self, ev, expr, run):
        out = {}
        for t in self.steps(run):
            try:
                out[t] = ev.at(expr, t)
            except OutOfRange:
                continue
        return out

    def matches(self, make_evaluator, lhs) -> bool:
        """True when ``lhs`` on the variant evaluators equals the formula at every checked point."""
        if self.values is None:
            return False
        seen = False
        for run, values in zip(self.runs, self.values):
            ev = make_evaluator(run)
            if ev is None:
                return False
            for t, got in values.items():
                try:
                    expected = ev.at(lhs, t)
                except OutOfRange:
                    continue
                except (ShapeMismatch, StepFree):
                    return False
                if not agree(expected, got, self.scalar):
                    return False
                seen = True
        return seen

    def matches_rhs(self, rhs, lhs) -> bool:
        seen = False
        for run in self.runs:
            ev = Evaluator(run)
            for t in self.steps(run):
                try:
                    got = ev.at(rhs, t)
                    expected = ev.at(lhs, t)
                except OutOfRange:
                    continue
                except (ShapeMismatch, StepFree, ValueError):
                    return False
                if not agree(expected, got, self.scalar):
                    return False
                seen = True
        return seen


def diagnose(ctx, lhs, rhs, runs, *, whole: bool, at_last: bool, scalar: bool) -> list[Diagnosis]:
    d = ctx.d
    values = _Values(rhs, runs, whole, at_last, scalar)
    if values.matches(lambda run: Evaluator(run), -lhs):
        return [Diagnosis("sign flip", "the right side is the negative of the correct gradient")]

    for kind, text, slipped in _expression_slips(lhs):
        if values.matches(lambda run: Evaluator(run), slipped):
            return [Diagnosis(kind, text)]

    found = _truncation(values, lhs, whole)
    if found:
        return [found]
    found = _block_order(d, values, lhs)
    if found:
        return [found]

    needed = _adjoints_needed(d, lhs)
    for kind, text, backward in _variants(d, needed):
        # whole-sequence: the slip made at every step (it reaches the earlier adjoints too), or
        # made in each step's local factor with the true adjoints (Σ_t ∂E/∂s_t (1 - s_t) x_t);
        # per step: at step t only
        for everywhere in ((True, False) if whole else (False,)):
            variant_runs = {}

            def make(run, backward=backward, everywhere=everywhere, variant_runs=variant_runs):
                key = run.seed
                if key not in variant_runs:
                    variant_runs[key] = (simulate(d, seed=run.seed, T=run.T, N=run.N, scalar=scalar,
                                                  backward=backward).steps if everywhere
                                         else restep(run, backward))
                return Evaluator(run, steps=variant_runs[key])

            if values.matches(make, lhs):
                return [Diagnosis(kind, text)]

    found = _missing_transpose(values, lhs, rhs) or _wrong_time(ctx, values, lhs, rhs) or \
        _wrong_factor(ctx, values, lhs, rhs)
    return [found] if found else []


def _missing_transpose(values: _Values, lhs, rhs) -> Diagnosis | None:
    """One matrix product of the right side with the matrix transposed makes it hold."""
    for node in sorted(rhs.atoms(MatVec, MatVecT), key=sp.default_sort_key):
        other = (MatVecT if isinstance(node, MatVec) else MatVec)(*node.args)
        if values.matches_rhs(rhs.xreplace({node: other}), lhs):
            from .render import cell_text
            m = cell_text(node.args[0])
            said = f"{m}^T" if isinstance(node, MatVec) else f"{m}"
            wrote = f"{m}" if isinstance(node, MatVec) else f"{m}^T"
            vector = node.args[1]
            product = "" if vector.has(*_probes(vector)) else f" (the product {wrote} {vector})"
            return Diagnosis("missing transpose", f"{wrote} is used where {said} is needed{product}")
    return None


def _probes(e) -> set:
    """The probe vectors of a matrix claim (``Probed``): not the formula's own symbols."""
    return {s for s in e.free_symbols if s.name.startswith(PROBE_PREFIX)}


def _written_symbols(e) -> list:
    return sorted(e.free_symbols - _probes(e), key=lambda s: s.name)


def _wrong_time(ctx, values: _Values, lhs, rhs) -> Diagnosis | None:
    """One symbol of the right side taken one step off (c where c_prev is meant) makes it hold."""
    for sym in _written_symbols(rhs):
        base, variant, shift = split_symbol(sym.name)
        if base in ctx.cell.params or (base.startswith("d") and base[1:] in ctx.cell.params):
            continue
        for k in (-1, 1):
            try:
                moved = ctx.shift_expr(sym, k)
            except ValueError:
                continue
            if moved == sym:
                continue
            if values.matches_rhs(rhs.xreplace({sym: moved}), lhs):
                return Diagnosis("wrong time index", f"{sym} is used where {moved} is needed "
                                 f"(one step {'later' if k == 1 else 'earlier'})")
    return None


def _truncation(values: _Values, lhs, whole: bool) -> Diagnosis | None:
    run0 = values.runs[0]
    if whole:
        for k in range(1, run0.T):
            totals = {run.seed: truncated_totals(run, k) for run in values.runs}
            if values.matches(lambda run: Evaluator(run, totals=totals[run.seed]), lhs):
                return Diagnosis("truncated", f"it is the gradient of {k}-step truncated BPTT: "
                                 f"each loss is propagated back {k} step(s) only, the recurrent "
                                 f"path through earlier steps is dropped")
        return None

    def k1(run):
        return Evaluator(run, steps={"full": run.steps["k1"], "k1": run.steps["k1"]})

    if values.matches(k1, lhs):
        return Diagnosis("truncated", "it is the gradient of 1-step truncated BPTT: the adjoints "
                         "carried back from step t+1 are dropped (the recurrent path)")
    return None


def _block_order(d, values: _Values, lhs) -> Diagnosis | None:
    inner = lhs.args[0] if isinstance(lhs, SumT) else lhs
    if isinstance(inner, HCat) and len(inner.args) > 1:
        swapped = HCat(*reversed(inner.args))
        swapped = SumT(swapped) if isinstance(lhs, SumT) else swapped
        if values.matches(lambda run: Evaluator(run), swapped):
            params = [str(a)[1:] for a in inner.args]
            operands = [_operand_of(d, p) for p in params]
            return Diagnosis("block order", "the blocks of the concatenated gradient are swapped: "
                             f"the forward pass multiplies [{' | '.join(params)}] with "
                             f"[{', '.join(operands)}]")
    return None


def _operand_of(d, param: str) -> str:
    """The vector a parameter matrix multiplies in the forward pass (``U_f`` -> ``h_prev``)."""
    from derive.linear import MatVec
    for eq in d.forward:
        for node in eq.rhs.atoms(MatVec):
            if str(node.matrix) == param:
                return str(node.vector)
    return "?"


def _expression_slips(lhs):
    """The slips applied to a left side that is an expression (a local derivative)."""
    for term in sp.Add.make_args(lhs):
        factors = list(sp.Mul.make_args(term))
        for factor in factors:
            if isinstance(factor, sp.Add) and len(factor.args) == 2 and 1 in factor.args:
                other = factor - 1
                if other.could_extract_minus_sign() and isinstance(-other, sp.Pow) and (-other).exp == 2:
                    v = (-other).base
                    yield ("tanh' as 1-tanh", f"tanh′ written as 1 − tanh for {v}",
                           lhs - term + term.xreplace({factor: 1 - v}))
                    yield ("tanh' as (1-tanh)^2", f"tanh′ = 1 − tanh² written as (1 − tanh)² for {v}",
                           lhs - term + term.xreplace({factor: (1 - v) ** 2}))
                if other.could_extract_minus_sign() and (-other) in factors:
                    v = -other
                    rest = list(factors)
                    rest.remove(factor)
                    yield ("sigma' as sigma", f"σ′ written as σ for {v}", lhs - term + sp.Mul(*rest))
                    rest = list(factors)
                    rest.remove(v)
                    yield ("sigma' as 1-sigma", f"σ′ written as (1 − σ) for {v}",
                           lhs - term + sp.Mul(*rest))


def _adjoints_needed(d, lhs) -> set[str]:
    """Backward targets the left side's value depends on (transitively)."""
    exprs = {eq.target: eq.expr for eq in d.backward}
    todo = [split_symbol(s.name)[0] for s in lhs.free_symbols]
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        if name in exprs:
            todo.extend(s.name for s in exprs[name].free_symbols)
        elif name.endswith("_next"):
            todo.append(name[:-5] + "_prev")
    return seen


def _describe(branch, carried, upstream) -> str:
    if branch.source == "next":
        return f"from step t+1 ({branch.expr})"
    if branch.source == "loss":
        return f"from the loss at step t ({branch.expr})"
    return f"through {branch.consumer} ({branch.source})"


def _variants(d, needed: set[str]):
    """(kind, text, backward list) for every single slip in an equation the result depends on."""
    base = [(eq.target, eq.expr) for eq in d.backward]
    sig = {sp.Symbol(eq.lhs) for eq in d.forward if isinstance(eq.rhs, sigmoid)}
    tanh_vals = {sp.Symbol(eq.lhs) for eq in d.forward if isinstance(eq.rhs, sp.tanh)}
    tanh_vals |= {a for eq in d.backward for a in eq.expr.atoms(sp.tanh)}

    def replaced(index, expr):
        out = list(base)
        out[index] = (out[index][0], expr)
        return out

    for index, eq in enumerate(d.backward):
        if eq.target not in needed:
            continue
        if eq.is_fork:
            for branch in eq.branches:
                yield ("missing branch",
                       f"the fork sum {eq.target} ({eq.tag}) misses its branch "
                       f"{_describe(branch, d.carried, d.upstream)}",
                       replaced(index, eq.expr - branch.expr))
        for term in sp.Add.make_args(eq.expr):
            factors = list(sp.Mul.make_args(term))
            for q in sig:
                if q in factors and (1 - q) in factors:
                    for kind, drop in (("sigma' as sigma", 1 - q), ("sigma' as 1-sigma", q)):
                        rest = list(factors)
                        rest.remove(drop)
                        new = eq.expr - term + sp.Mul(*rest)
                        written = "σ" if drop == 1 - q else "(1 − σ)"
                        yield (kind, f"σ′ written as {written} for {q} in {eq.target} ({eq.tag})",
                               replaced(index, new))
            for v in tanh_vals:
                square = 1 - v ** 2
                if square in factors:
                    new = eq.expr - term + sp.Mul(*factors).xreplace({square: 1 - v})
                    yield ("tanh' as 1-tanh", f"tanh′ written as 1 − tanh for {v} in {eq.target} "
                           f"({eq.tag})", replaced(index, new))
                    new = eq.expr - term + sp.Mul(*factors).xreplace({square: (1 - v) ** 2})
                    yield ("tanh' as (1-tanh)^2", f"tanh′ = 1 − tanh² written as (1 − tanh)² for "
                           f"{v} in {eq.target} ({eq.tag})", replaced(index, new))
        if eq.is_fork:
            for branch in eq.branches:
                yield ("sign flip", f"the branch {_describe(branch, d.carried, d.upstream)} of "
                       f"{eq.target} ({eq.tag}) has the wrong sign",
                       replaced(index, eq.expr - 2 * branch.expr))
        else:
            yield ("sign flip", f"{eq.target} ({eq.tag}) has the wrong sign",
                   replaced(index, -eq.expr))


def _wrong_factor(ctx, values: _Values, lhs, rhs) -> Diagnosis | None:
    """One symbol of the right side replaced by another quantity makes it hold."""
    names = sorted(ctx.names)
    for sym in _written_symbols(rhs):
        base, variant, shift = split_symbol(sym.name)
        related = []
        if base.startswith("d") and base[1:] in ctx.d.quantities:
            related.append(base[1:])
        if "d" + base in ctx.names:
            related.append("d" + base)
        for suffix in ("_prev", "_next", "_out"):
            if base.endswith(suffix):
                related.append(base[: -len(suffix)])
            elif base + suffix in ctx.names:
                related.append(base + suffix)
        others = [n for n in names if n not in related and n != base]
        for candidate in [*related, *others]:
            if ctx.is_matrix(candidate) != ctx.is_matrix(base):
                continue
            new_name = candidate + ("" if variant == "full" else f"#{variant}") + \
                (f"@{shift:+d}" if shift else "")
            for new_rhs in _replace_each(rhs, sym, sp.Symbol(new_name)):
                if new_rhs != rhs and values.matches_rhs(new_rhs, lhs):
                    at = f" (at step t{shift:+d})" if shift else ""
                    return Diagnosis("wrong factor", f"{base} is used where {candidate} is needed{at}")
    return None


def _replace_each(e, old, new):
    """``e`` with one occurrence of ``old`` replaced by ``new``, for each occurrence in turn."""
    if e == old:
        yield new
        return
    for k, arg in enumerate(e.args):
        for variant in _replace_each(arg, old, new):
            yield _rebuilt(e, (*e.args[:k], variant, *e.args[k + 1:]))


def _rebuilt(e, args):
    """``e``'s node over new ``args``, left unevaluated: SymPy's automatic evaluation of nested
    calls asks assumptions of every level (five nested tanh took seconds per candidate), and the
    numeric check that follows needs only the tree."""
    try:
        return e.func(*args, evaluate=False)
    except TypeError:                       # a node class without the evaluate keyword
        return e.func(*args)
