"""The verdict on a formula: holds (proved, or agreeing at many random points), does not hold
(with a counterexample, the correct formula and a diagnosis), or unreadable (saying where).

A formula is checked against the derivation of its cell, never against another hand-written
formula: its left side names a quantity (``dc``, ``dW_f``, ``\\frac{\\partial Err}{\\partial v}``)
whose value the derivation defines, and every right side must equal it

* per step: at every step t of random sequences (forward values of step t, the adjoints
  arriving at t), when the formula has no Σ_t;
* for the whole sequence: the summed gradient, when one side sums over t.

Points are drawn by running the cell forward on random parameters and inputs (so gates lie in
(0, 1) and c = f c_prev + i g holds); adjoints come from the full reverse sweep. When the
numbers agree and the formula is a per-step one, SymPy is asked for a proof: both sides are
written in the carried and upstream adjoints and the forward values, and their difference
must expand to zero.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from functools import lru_cache

import numpy as np
import sympy as sp

from derive import derive, load_cell
from derive.linear import MatVec, MatVecT, Outer

from .compare import agree, align, worst_index
from .diagnose import Diagnosis, diagnose
from .errors import VerifyError
from .nodes import FORMULA_NODES, PROBE_PREFIX, HCat, Probed, SumN, SumT
from .context import Claim, Context
from .parse import parse_formula, parse_quantity
from .render import cell_text, render_correct
from .sequence import (Evaluator, OutOfRange, ShapeMismatch, StepFree, simulate, split_symbol,
                       target_name)
from .vocabulary import get_reading

DRAWS = 3          # random sequences per verdict
STEPS = 5          # steps per sequence (a k-step truncation with k >= STEPS would pass)
BATCH = 2          # sequences per batch


@dataclass
class Verdict:
    verdict: str                         # "holds" | "does not hold" | "unreadable"
    how: str = ""                        # "symbolic proof" | "numeric agreement at N points" | ...
    detail: str = ""
    diagnosis: list[Diagnosis] = field(default_factory=list)
    counterexample: dict | None = None
    correct: str | None = None           # LaTeX in the formula's notation
    correct_cell: str | None = None      # in the cell's names (SymPy syntax)
    claim: list[str] = field(default_factory=list)
    whole_sequence: bool = False
    caret: list[str] = field(default_factory=list)   # unreadable: the typed line, ^ under the place

    def to_json(self) -> dict:
        data = asdict(self)
        data["diagnosis"] = [asdict(d) for d in self.diagnosis]
        return data

    @property
    def diagnosis_text(self) -> str:
        return "; ".join(f"{d.kind}: {d.text}" for d in self.diagnosis)

    def __repr__(self) -> str:
        why = self.diagnosis_text or self.detail
        why = why if len(why) <= 100 else why[:99] + "…"
        return f"<Verdict: {self.verdict}" + (f" ({why})" if why else "") + ">"

    def _repr_markdown_(self) -> str:
        """For notebooks: the verdict, how it was reached, the diagnosis and the correct formula."""
        lines = [f"**{self.verdict}**" + (f", by {self.how}" if self.how else "")
                 + (f": {self.detail}" if self.detail else "")]
        if self.claim:
            lines += ["", "claim, in the cell's names: `" + " = ".join(self.claim) + "`"]
        lines += [f"- {d.kind}: {d.text}" for d in self.diagnosis]
        if self.verdict == "does not hold" and self.correct:
            left = f" of `{self.claim[0]}`" if self.claim else ""
            lines += ["", f"correct right side{left}:", "", f"$$ {self.correct} $$"]
        return "\n".join(lines)


@lru_cache(maxsize=32)
def _derivation(cell: str):
    return derive(load_cell(cell))


def verify(cell, formula: str, quantity: str | None = None, notation: str | None = None,
           scalar: bool | None = None, draws: int = DRAWS) -> Verdict:
    """Check ``formula`` (LaTeX or SymPy syntax) for ``cell`` (name, spec path or Derivation).

    Raises ``VerifyError`` for a bad request (unknown notation, a quantity the cell lacks, no
    left side); an unreadable formula is a verdict, with the reason and where.
    """
    d = cell if hasattr(cell, "backward") else _derivation(str(cell))
    reading = get_reading(notation, d)
    ctx = Context(d, reading)
    target = parse_quantity(quantity, ctx) if quantity else None
    try:
        claim = parse_formula(formula, ctx)
    except VerifyError as err:
        garbled = garbled_indices(formula)
        why = (f"; its time indices look garbled ({', '.join(garbled[:3])}): a notation file's "
               f"[[formula]] entry can say how they read") if garbled else ""
        return Verdict("unreadable", detail=str(err) + why, caret=err.caret())
    sides = list(claim.sides)
    handed_back = {sp.Symbol(c): sp.Symbol(f"d{s}_prev") for s, c in d.carried.items()}
    if reading.carried_assign and sides[0] in handed_back:
        sides[0] = handed_back[sides[0]]   # dhnext = Whh^T dhraw: assigned for step t-1
    if target is not None:
        if len(sides) == 1:
            sides = [target, *sides]
        elif not _same_quantity(sides[0], target):
            raise VerifyError(f"the formula's left side is {sides[0]} but --quantity names {target}")
    elif len(sides) == 1:
        raise VerifyError("the formula has no left side: write 'LHS = RHS' or give --quantity")
    scalar = reading.scalar if scalar is None else scalar
    return _check(ctx, Claim(sides, claim.at_last, claim.normalized), scalar, draws, notation)


#: a superscript that is a time index as written: <t>, <t-1>, <T>, <3>, \langle t+1 \rangle
_READABLE_STEP = re.compile(r"(?:<|\\lt|\\langle)\s*(?:[tT](?:\s*[+-]\s*\d+)?|\d+)\s*(?:>|\\gt|\\rangle)")


def garbled_indices(text: str) -> list[str]:
    """Superscripts that look like time indices an extraction garbled: empty (``^{}``), or
    opened like one (``<``, ``\\lt``, ``\\triangle``) without reading as a step (``^{<p}``)."""
    out = []
    for m in re.finditer(r"\^\{([^{}]*(?:\{[^{}]*\}[^{}]*)*)\}", text):
        inner = re.sub(r"\\[!,;]|\\mathsf\{([^{}]*)\}|\s", lambda g: g.group(1) or "", m.group(1))
        looks = inner == "" or inner.startswith(("<", "\\lt", "\\triangle", "\\langle"))
        if looks and not _READABLE_STEP.fullmatch(inner) and m.group(0) not in out:
            out.append(m.group(0))
    return out


def _same_quantity(a, b) -> bool:
    strip = lambda e: e.args[0] if isinstance(e, SumT) else e  # noqa: E731
    return strip(a) == strip(b)


def _is_param_adjoint(ctx: Context, e) -> bool:
    if isinstance(e, HCat):
        return all(_is_param_adjoint(ctx, a) for a in e.args)
    if isinstance(e, sp.Symbol):
        base, variant, shift = split_symbol(e.name)
        return variant == "full" and base.startswith("d") and base[1:] in ctx.cell.params
    return False


def _check(ctx: Context, claim: Claim, scalar: bool, draws: int, notation) -> Verdict:
    d = ctx.d
    sides = claim.sides
    whole = any(s.has(SumT) for s in sides)
    missing_sum: list[int] = []
    if whole:
        fixed = []
        for k, side in enumerate(sides):
            if not side.has(SumT) and _is_param_adjoint(ctx, side):
                side = SumT(side)
            elif not side.has(SumT) and side.free_symbols:
                missing_sum.append(k)
            fixed.append(side)
        sides = fixed
    lhs = sides[0]
    shown = [cell_text(s) for s in sides]
    correct_latex, correct_cell = render_correct(ctx, lhs, notation)
    runs = [simulate(d, seed=seed, T=STEPS, N=BATCH, scalar=scalar) for seed in range(draws)]

    if 0 in missing_sum:
        return Verdict("unreadable", detail="the left side is one step's term but a right side "
                       "sums over t", claim=shown, whole_sequence=True)
    points = 0
    for k, side in enumerate(sides[1:], start=1):
        what = f"member {k + 1} of the chain" if len(sides) > 2 else "the right side"
        if k in missing_sum:
            diagnosis = [Diagnosis("missing sum", "the left side is a whole-sequence gradient but "
                                   "the right side is one step's term: Σ_t is missing")]
            summed = SumT(side)
            if _agrees_everywhere(runs, lhs, summed, True, claim.at_last, scalar)[0]:
                diagnosis.append(Diagnosis("missing sum", "with Σ_t the right side holds"))
            else:
                diagnosis += diagnose(ctx, lhs, summed, runs, whole=True, at_last=False, scalar=scalar)
            return Verdict("does not hold", detail=f"{what} has no Σ_t",
                           diagnosis=diagnosis, counterexample=None, correct=correct_latex,
                           correct_cell=correct_cell, claim=shown, whole_sequence=True)
        ok, info = _agrees_everywhere(runs, lhs, side, whole, claim.at_last, scalar)
        if info.get("error") and isinstance(lhs, Probed):
            # a matrix of another shape: wrong only when a slip explains it (a transpose); else
            # it may be no claim about this cell at all (a calculus aside: df/dx = 2 cos(2x+2))
            found = diagnose(ctx, lhs, side, runs, whole=whole, at_last=claim.at_last, scalar=scalar)
            if not found:
                return Verdict("unreadable", detail=f"{what} is not a matrix of the Jacobian's "
                               f"shape ({info['error']})", claim=shown)
            return Verdict("does not hold", detail=f"{what} is not a matrix of the Jacobian's shape",
                           diagnosis=found, correct=correct_latex, correct_cell=correct_cell,
                           claim=shown)
        if info.get("error"):
            return Verdict("does not hold", detail=info["error"], correct=correct_latex,
                           correct_cell=correct_cell, claim=shown, whole_sequence=whole,
                           counterexample=info.get("counterexample"),
                           diagnosis=diagnose(ctx, lhs, side, runs, whole=whole,
                                              at_last=claim.at_last, scalar=scalar))
        if not ok:
            truth = "the derived gradient" if _speaks_of_adjoints(ctx, lhs) else \
                "the cell's forward pass"
            return Verdict("does not hold", detail=f"{what} differs from {truth}",
                           diagnosis=diagnose(ctx, lhs, side, runs, whole=whole,
                                              at_last=claim.at_last, scalar=scalar),
                           counterexample=info["counterexample"], correct=correct_latex,
                           correct_cell=correct_cell, claim=shown, whole_sequence=whole)
        if info.get("points", 0) == 0:
            return Verdict("unreadable", detail="no step of the random sequences has every time "
                           "index of the formula", claim=shown, whole_sequence=whole)
        points += info["points"]

    if not whole and not claim.at_last and all(_proves(ctx, lhs, side) for side in sides[1:]):
        how = "symbolic proof: the two sides' difference expands to 0 in SymPy"
    else:
        how = (f"numeric agreement at {points} points: {draws} random sequences of {STEPS} steps, "
               f"batch {BATCH}; no symbolic proof")
    return Verdict("holds", how=how, correct=correct_latex, correct_cell=correct_cell, claim=shown,
                   whole_sequence=whole)


def _speaks_of_adjoints(ctx: Context, e) -> bool:
    """The left side is a gradient (an adjoint, or a local derivative), not a forward value."""
    if e.atoms(sp.Derivative) or not e.free_symbols:
        return True
    forward = {eq.lhs for eq in ctx.d.forward} | set(ctx.cell.inputs) | set(ctx.cell.params) | \
        {s + "_prev" for s in ctx.cell.states}
    return not all(split_symbol(s.name)[0] in forward for s in e.free_symbols) or \
        not isinstance(e, sp.Symbol)


def _agrees_everywhere(runs, lhs, rhs, whole: bool, at_last: bool, scalar: bool):
    points = 0
    for run in runs:
        ev = Evaluator(run)
        steps = [None] if whole else ([run.T - 1] if at_last else range(run.T))
        for t in steps:
            try:
                expected = ev.at(lhs, t)
                got = ev.at(rhs, t)
            except OutOfRange:
                continue
            except (ShapeMismatch, ValueError) as err:
                return False, {"error": f"the formula does not fit the cell's shapes: {err}",
                               "points": points}
            except StepFree as err:
                return False, {"error": f"{err} is a per-step value outside Σ_t", "points": points}
            try:
                align(expected, got, scalar)
            except ValueError as err:
                return False, {"error": str(err), "points": points,
                               "counterexample": {"seed": run.seed, "step": t,
                                                  "expected_shape": list(np.shape(expected)),
                                                  "got_shape": list(np.shape(got))}}
            if not agree(expected, got, scalar):
                index, e, g = worst_index(expected, got, scalar)
                return False, {"points": points, "counterexample": {
                    "seed": run.seed, "step": t, "sizes": run.sizes, "index": list(index),
                    "expected": e, "got": g, "values": _point_values(run, t, rhs, lhs, index)}}
            points += 1
    return True, {"points": points}


def _point_values(run, t, rhs, lhs, index) -> dict:
    """The inputs of the formula at the counterexample's point (elementwise values only)."""
    out = {}
    if t is None:
        return out
    for sym in sorted(rhs.free_symbols | lhs.free_symbols, key=lambda s: s.name):
        if sym.name.startswith(PROBE_PREFIX):
            continue
        try:
            value = Evaluator(run).at(sym, t)
        except (OutOfRange, StepFree, KeyError):
            continue
        value = np.asarray(value)
        if value.ndim == len(index) and all(i < n for i, n in zip(index, value.shape)):
            out[sym.name] = float(value[tuple(index)])
    return out


# -- symbolic proof ----------------------------------------------------------------------------

def _proves(ctx: Context, lhs, rhs) -> bool:
    """Both sides in the carried/upstream adjoints and forward values; the difference is 0.
    A matrix claim is proved on its probed products: W p = W p for a symbolic vector p."""
    if isinstance(lhs, Probed) and isinstance(rhs, Probed) and lhs.args[1] == rhs.args[1]:
        lhs, rhs = lhs.args[0], rhs.args[0]
    exotic = (*FORMULA_NODES,)
    for side in (lhs, rhs):
        if side.atoms(*exotic) or any("@" in s.name or "#" in s.name for s in side.free_symbols):
            return False
    try:
        a, b = _ground(ctx, lhs), _ground(ctx, rhs)
        diff = _linear_expand(a - b)
        if diff == 0:
            return True
        if sp.count_ops(diff) > 300:
            return False
        return sp.simplify(diff) == 0
    except Exception:                       # noqa: BLE001 - a proof attempt may fail; numbers stand
        return False


def _ground(ctx: Context, e):
    """Replace every adjoint by its backward expression, and written pre-activations and
    activations by the saved values they equal (``sigma(W_f x + U_f h_prev + b_f)`` -> ``f``)."""
    exprs = {sp.Symbol(eq.target): eq.expr for eq in ctx.d.backward}
    for _ in range(len(exprs) + 1):
        new = e.xreplace({s: exprs[s] for s in e.free_symbols if s in exprs})
        if new == e:
            break
        e = new
    e = e.xreplace({sp.Symbol(target_name(o)): sp.Symbol(o) - sp.Symbol(up)
                    for o, up in ctx.d.upstream.items()})
    pre = {eq.rhs: sp.Symbol(eq.lhs) for eq in ctx.d.forward if eq.introduced}
    e = e.xreplace(pre)
    return e.xreplace(ctx.saved)


def _linear_expand(e):
    """Expand, distributing the linear nodes over sums: W^T (a + b) = W^T a + W^T b."""
    def lin(x):
        if isinstance(x, (MatVec, MatVecT, Outer)):
            first, second = (lin(a) for a in x.args)
            if isinstance(x, Outer):
                return sp.Add(*(_coefficient(t) * _coefficient(u) * Outer(_core(t), _core(u))
                                for t in sp.Add.make_args(sp.expand(first))
                                for u in sp.Add.make_args(sp.expand(second))))
            return sp.Add(*(_coefficient(t) * type(x)(first, _core(t))
                            for t in sp.Add.make_args(sp.expand(second))))
        if not x.args:
            return x
        return x.func(*(lin(a) for a in x.args))
    return sp.expand(lin(e))


def _coefficient(term):
    c, _ = term.as_coeff_Mul()
    return c


def _core(term):
    _, rest = term.as_coeff_Mul()
    return rest


__all__ = ["Verdict", "verify", "VerifyError", "SumN"]
