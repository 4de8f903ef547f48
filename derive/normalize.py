"""Rewrite a cell's equations so every matrix product sits in an affine equation of its own.

``i = sigmoid(W_i @ x + U_i @ h_prev + b_i)`` becomes ``a_i = W_i x + U_i h_prev + b_i`` and
``i = sigmoid(a_i)``. After this, the reverse sweep meets each ``W @ v`` only where its
coefficient is 1, so its transpose rules (dv += W^T da, dW += da v^T) apply directly and the
pre-activation adjoint ``da_i`` gets a name, as every BPTT text gives it.

Reductions get the same treatment: each ``mean(v)`` / ``sum(v)`` ends up as the whole right side
of an equation of its own, over a named vector (``var = mean((a - mu)**2)`` becomes
``var_in = (a - mu)**2`` and ``var = mean(var_in)``), so its transpose rule applies directly.
"""

from __future__ import annotations

import itertools

import sympy as sp

from .cell import Cell, Equation, Quantity, adjoint_name
from .linear import REDUCTIONS, MatVec

_REDUCTION_TYPES = tuple(REDUCTIONS.values())


def normalize(cell: Cell) -> tuple[list[Equation], dict[str, Quantity]]:
    """Return the rewritten equations and the quantities they introduce (pre-activations)."""
    taken = set(cell.quantities) | {adjoint_name(n) for n in cell.quantities}
    introduced: dict[str, Quantity] = {}
    out: list[Equation] = []
    for eq in cell.equations:
        new_eqs: list[Equation] = []
        extractor = _Extractor(cell, eq, taken, introduced, new_eqs)
        rhs = extractor.run()
        done = [*new_eqs, Equation(eq.lhs, rhs, eq.text, eq.line)]
        for e in done:
            out.extend(_one_product_per_vector(e, extractor))
    return out, introduced


def _one_product_per_vector(eq: Equation, extractor: "_Extractor") -> list[Equation]:
    """``y = W1 x + W2 x``: every product of one equation has a vector of its own, so the kernels
    stack the matrices of one vector (one row block per equation). A second product with the
    same vector becomes a pre-activation of its own (``a_y = W2 x``; ``y = W1 x + a_y``)."""
    seen: set[sp.Expr] = set()
    moved: dict[sp.Expr, sp.Symbol] = {}
    before = len(extractor.new_eqs)
    for term in sp.Add.make_args(eq.rhs):
        if isinstance(term, MatVec):
            if term.vector in seen:
                moved[term] = extractor.define(extractor.fresh(f"a_{eq.lhs}"), term,
                                               f"pre-activation of {eq.lhs}")
            seen.add(term.vector)
    if not moved:
        return [eq]
    added = extractor.new_eqs[before:]
    return [*added, Equation(eq.lhs, eq.rhs.xreplace(moved), eq.text, eq.line, eq.introduced)]


class _Extractor:
    def __init__(self, cell, eq, taken, introduced, new_eqs):
        self.cell, self.eq, self.taken = cell, eq, taken
        self.introduced, self.new_eqs = introduced, new_eqs
        self.named: dict = {}   # what this equation already named

    def run(self) -> sp.Expr:
        rhs = self.eq.rhs
        # Products whose vector operand is an expression: name the operand first.
        rhs = rhs.replace(lambda e: isinstance(e, MatVec) and not isinstance(e.vector, sp.Symbol),
                          lambda e: MatVec(e.matrix, self.name_vector(e.vector)))
        rhs = self.reductions(rhs)
        if not rhs.atoms(MatVec):
            return rhs
        top_call = isinstance(rhs, sp.Function) and len(rhs.args) == 1 and not isinstance(rhs, MatVec)
        if top_call and rhs.args[0].atoms(MatVec):
            # i = sigmoid(W x + ...)  ->  a_i = W x + ...;  i = sigmoid(a_i)
            argument = self.unit_products(rhs.args[0], f"a_{self.eq.lhs}")
            return rhs.func(self.introduce(f"a_{self.eq.lhs}", argument))
        return self.unit_products(rhs, f"a_{self.eq.lhs}")

    def reductions(self, rhs: sp.Expr) -> sp.Expr:
        """Name the operand of every reduction, then every reduction that is not the whole rhs."""
        rhs = rhs.replace(lambda e: isinstance(e, _REDUCTION_TYPES) and not isinstance(e.vector, sp.Symbol),
                          lambda e: e.func(self.name_vector(e.vector)))
        if isinstance(rhs, _REDUCTION_TYPES):
            return rhs
        inner = sorted(rhs.atoms(*_REDUCTION_TYPES), key=sp.default_sort_key)
        return rhs.xreplace({r: self.define(self.fresh(f"{self.eq.lhs}_{r.word}"), r,
                                            f"{r.word} over the row in {self.eq.lhs}")
                             for r in inner})

    def unit_products(self, e: sp.Expr, base: str) -> sp.Expr:
        """Name each sum of products and biases in which a product has a coefficient other than 1
        (``r * (W h + b)``), so that every product left in ``e`` enters it with coefficient 1."""
        placeholders = {m: sp.Dummy() for m in e.atoms(MatVec)}
        flat = e.xreplace(placeholders)
        if all(sp.diff(flat, d) == 1 for d in placeholders.values()):
            return e
        counter = itertools.count(1)
        return self.extract(e, lambda: f"{base}_{next(counter)}")

    def extract(self, e: sp.Expr, next_name) -> sp.Expr:
        if isinstance(e, sp.Add):
            affine = [t for t in e.args if isinstance(t, MatVec) or self.is_param_vector(t)]
            if not any(isinstance(t, MatVec) for t in affine):
                affine = []
            rest = [self.extract(t, next_name) for t in e.args if t not in affine]
            head = [self.introduce(next_name, sp.Add(*affine))] if affine else []
            return sp.Add(*head, *rest)
        if isinstance(e, MatVec):
            return self.introduce(next_name, e)
        if not e.args:
            return e
        return e.func(*(self.extract(arg, next_name) for arg in e.args))

    def is_param_vector(self, e) -> bool:
        q = self.cell.quantities.get(getattr(e, "name", None))
        return isinstance(e, sp.Symbol) and q is not None and q.role == "param" and not q.is_matrix

    def fresh(self, base: str) -> str:
        name, k = base, 1
        while name in self.taken or adjoint_name(name) in self.taken:
            k += 1
            name = f"{base}_{k}"
        self.taken.update({name, adjoint_name(name)})
        return name

    def introduce(self, base, rhs: sp.Expr) -> sp.Symbol:
        """A new quantity ``base`` (made unique; a callable gives it on demand) defined by ``rhs``:
        a pre-activation. The same product twice in one equation is named once."""
        if rhs not in self.named:
            name = self.fresh(base if isinstance(base, str) else base())
            self.named[rhs] = self.define(name, rhs, f"pre-activation of {self.eq.lhs}")
        return self.named[rhs]

    def define(self, name: str, rhs: sp.Expr, doc: str) -> sp.Symbol:
        self.introduced[name] = Quantity(name, "intermediate", (self.shape_of(rhs),), doc)
        self.new_eqs.append(Equation(name, rhs, self.eq.text, self.eq.line, introduced=True))
        return sp.Symbol(name)

    def name_vector(self, vector: sp.Expr) -> sp.Symbol:
        """Name the operand of ``U @ (expression)`` or ``mean(expression)``; its own products and
        reductions are normalized first."""
        key = ("operand", vector)
        if key not in self.named:
            name = self.fresh(f"{self.eq.lhs}_in")
            operand = Equation(name, vector, self.eq.text, self.eq.line)
            rhs = _Extractor(self.cell, operand, self.taken, self.introduced, self.new_eqs).run()
            self.named[key] = self.define(name, rhs, f"operand of a product in {self.eq.lhs}")
        return self.named[key]

    def shape_of(self, e: sp.Expr) -> str:
        if isinstance(e, MatVec):
            return self.cell.quantities[e.matrix.name].shape[0]
        for s in sp.preorder_traversal(e):
            if isinstance(s, MatVec):
                return self.cell.quantities[s.matrix.name].shape[0]
            if isinstance(s, sp.Symbol):
                q = self.cell.quantities.get(s.name) or self.introduced.get(s.name)
                if q is not None and not q.is_matrix:
                    return q.shape[0]
        raise AssertionError(f"no vector in {e}")
