"""The reverse sweep: from a cell's forward equations to its one-step backward equations.

Walk the (normalized) forward equations last to first. Each quantity's adjoint is emitted when
its last consumer has been visited, as the sum of one branch per consumer (the fork sum);
then each operand of its equation receives a branch:

* elementwise operands: ``adjoint * d(rhs)/d(operand)``, differentiated by SymPy and rewritten
  in saved forward values (``sigmoid(a_f)`` becomes ``f``);
* ``W @ v``: the node's own transpose rules (``derive.linear``), ``W^T da`` for v and
  ``da v^T`` for W.

External branches seed the sweep: ``d<out>_out`` for each output (the loss at step t) and
``d<state>_next`` for each state (the adjoint step t+1 hands back; dropped when truncating
after one step).
"""

from __future__ import annotations

from collections import defaultdict

import sympy as sp

from .cell import Cell, adjoint_name, carried_name, upstream_name
from .derivation import BackwardEq, Branch, Derivation, ForwardEq
from .linear import MatVec
from .normalize import normalize


def derive(cell: Cell, truncate: int | None = None) -> Derivation:
    """Derive the BPTT equations of ``cell``; ``truncate=k`` gives k-step truncated BPTT."""
    if truncate is not None and (not isinstance(truncate, int) or truncate < 1):
        raise ValueError(f"truncate must be a positive number of steps, not {truncate!r}")
    equations, introduced = normalize(cell)
    quantities = {**cell.quantities, **introduced}
    forward = tuple(ForwardEq(f"F{k}", eq.lhs, eq.rhs, eq.text, eq.line, eq.introduced)
                    for k, eq in enumerate(equations, start=1))
    upstream = {out: upstream_name(out) for out in cell.outputs}
    carried = {s: carried_name(s) for s in cell.states}

    saved_values = _saved_value_map(forward)
    branches: dict[str, list[Branch]] = defaultdict(list)
    for out in cell.outputs:
        branches[out].append(Branch("loss", "E<t>", "upstream gradient of the loss at step t",
                                    None, sp.Symbol(upstream[out])))
    if truncate != 1:
        for state in cell.states:
            branches[state].append(Branch("next", "step t+1", "adjoint carried back from step t+1",
                                          None, sp.Symbol(carried[state])))

    backward: list[BackwardEq] = []

    def emit(name: str) -> sp.Symbol:
        parts = tuple(branches.pop(name, ()))
        expr = sp.Add(*(b.expr for b in parts)) if parts else sp.Integer(0)
        target = adjoint_name(name)
        backward.append(BackwardEq(f"B{len(backward) + 1}", target, name, quantities[name].role,
                                   parts, expr))
        return sp.Symbol(target)

    for eq in reversed(forward):
        adj = emit(eq.lhs)
        for operand, branch in _branches_of(eq, adj, quantities, saved_values):
            branches[operand].append(branch)

    leaves = ([sp_name for sp_name in (f"{s}_prev" for s in cell.states)]
              + list(cell.inputs) + list(cell.params))
    for name in leaves:
        emit(name)
    assert not branches, f"branches left unassigned: {sorted(branches)}"

    forward_names = {eq.lhs for eq in forward} | set(cell.inputs) | {f"{s}_prev" for s in cell.states}
    used = set()
    for eq in backward:
        used |= {s.name for s in eq.expr.free_symbols}
    saved = tuple(name for name in (*cell.inputs, *(f"{s}_prev" for s in cell.states),
                                    *(eq.lhs for eq in forward)) if name in used and name in forward_names)
    notes = ()
    if truncate == 1:
        notes = ("Truncated after 1 step: the carried adjoints are zero, so the recurrent path "
                 "(the dependence of later losses on this step's states) is dropped.",)
    elif truncate is not None:
        notes = (f"Truncated after {truncate} steps: the one-step equations are those of full BPTT; "
                 f"each loss E<t> is propagated back through steps t, ..., t-{truncate - 1} only.",)
    return Derivation(cell=cell, quantities=quantities, forward=forward, backward=tuple(backward),
                      upstream=upstream, carried=carried, saved=saved, truncate=truncate, notes=notes)


def _saved_value_map(forward: tuple[ForwardEq, ...]) -> dict[sp.Expr, sp.Symbol]:
    """``{sigmoid(a_f): f, ...}``: how a derivative is rewritten in the values the forward saves."""
    return {eq.rhs: sp.Symbol(eq.lhs) for eq in forward
            if isinstance(eq.rhs, sp.Function) and not isinstance(eq.rhs, MatVec)}


def _branches_of(eq: ForwardEq, adj: sp.Symbol, quantities, saved_values):
    """Yield (operand name, Branch) for every operand of ``eq`` that needs an adjoint."""
    products = sorted(eq.rhs.atoms(MatVec), key=sp.default_sort_key)
    placeholders = {m: sp.Dummy(f"{m.matrix.name}_{m.vector}") for m in products}
    flat = eq.rhs.xreplace(placeholders)

    for m in products:
        coefficient = sp.diff(flat, placeholders[m])
        # Normalization puts every product in an affine equation with coefficient 1.
        assert coefficient == 1, f"{eq.lhs}: product {m} has coefficient {coefficient}"
        for operand, rule, expr in m.transpose(adj):
            yield operand, Branch(eq.tag, eq.lhs, rule, None, expr)

    for sym in sorted(flat.free_symbols - set(placeholders.values()), key=lambda s: s.name):
        q = quantities.get(sym.name)
        if q is None:
            continue
        local = sp.diff(flat, sym).xreplace(saved_values)
        if local == 0:
            continue
        yield sym.name, Branch(eq.tag, eq.lhs, _rule_name(flat, sym), local, adj * local)


def _rule_name(rhs: sp.Expr, sym: sp.Symbol) -> str:
    """Name the calculus rule that the local derivative d(rhs)/d(sym) applies."""
    if isinstance(rhs, sp.Function) and rhs.args == (sym,):
        return f"derivative of {type(rhs).__name__}"
    terms = [t for t in sp.Add.make_args(rhs) if sym in t.free_symbols]
    if len(terms) == 1:
        term = terms[0]
        if term == sym:
            return "sum rule"
        if isinstance(term, sp.Mul) and sym in term.args and sum(sym in f.free_symbols for f in term.args) == 1:
            return "product rule"
    return "chain rule"
