"""The correct formula for a left side, printed in the reader's notation (and in cell names).

The expression is the derivation's own backward equation for the quantity on the left
(``dc = dc_next + dh o (1 - tanh^2 c)``), summed over t for a whole-sequence gradient; for a
left side that is itself an expression (a local derivative, ``dc - dc_next``) it is that
expression's meaning in cell names. LaTeX comes from ``sympy.latex`` with the symbol names of
``derive.notation`` (coursera, cs231n, shg, book, default, or a notation file).
"""

from __future__ import annotations

import re

import sympy as sp
from sympy.printing.str import StrPrinter

from .nodes import HCat, MatTranspose, Probed, SumT
from .sequence import split_symbol

def correct_expression(ctx, lhs):
    whole = isinstance(lhs, SumT)
    inner = lhs.args[0] if whole else lhs

    def one(e):
        if isinstance(e, sp.Symbol):
            base, variant, shift = split_symbol(e.name)
            d = ctx.d
            if variant == "k1":
                from derive import derive
                d = derive(ctx.cell, truncate=1)
            try:
                expr = d.backward_eq(base).expr if any(eq.target == base for eq in d.backward) else e
            except KeyError:
                expr = e
            return ctx.shift_expr(expr, shift) if expr is not e else e
        if isinstance(e, HCat):
            return HCat(*(one(a) for a in e.args))
        return e

    value = one(inner)
    return SumT(value) if whole else value


def latex_names(ctx, notation) -> dict:
    """The reader's notation; names it does not list (a pre-activation a document never
    writes) get cellgrad's automatic symbols, so the correct formula stays in that notation."""
    from dataclasses import replace

    from derive.notation import NotationError, load_notation
    name = ctx.reading.path or (notation if notation is not None else "default")
    for candidate in (name, "default"):
        try:
            table = load_notation(candidate)
        except (NotationError, OSError):
            continue
        for filled in (table, replace(table, auto=True)):
            try:
                return filled, filled.latex_names(ctx.d)
            except NotationError:
                continue
    return None, {}


def render_correct(ctx, lhs, notation) -> tuple[str, str]:
    if isinstance(lhs, Probed):             # a Jacobian: its matrix, in the notation's layout
        matrix = lhs.matrix()
        if matrix is None:
            return None, None
        if ctx.reading.layout == "denominator":
            matrix = matrix.args[0] if isinstance(matrix, MatTranspose) else MatTranspose(matrix)
        lhs = matrix
    expr = correct_expression(ctx, lhs)
    table, names = latex_names(ctx, notation if notation is not None else ctx.reading.name)
    names = dict(names)
    for sym in expr.free_symbols:
        if sym in names:
            continue
        base, variant, shift = split_symbol(sym.name)
        step = f"t{shift:+d}" if shift else "t"
        try:
            if table is not None and base in ctx.d.quantities:
                names[sym] = table.timed(base, step)
                continue
        except Exception:                 # noqa: BLE001 - fall back to a plain subscript
            pass
        inner = names.get(sp.Symbol(base), sp.latex(sp.Symbol(base)))
        names[sym] = rf"\left.{inner}\right|_{{{step}}}" if shift else inner
    grouped = {sym: _grouped(latex) for sym, latex in names.items()}
    text = sp.latex(expr, symbol_names=grouped)
    for latex, group in {(names[s], g) for s, g in grouped.items() if g != names[s]}:
        text = re.sub(re.escape(group) + r"(?!\s*\^)", lambda m: latex, text)   # braces only before ^
    return text, cell_text(expr)


def _grouped(latex: str) -> str:
    r"""A symbol with a superscript of its own in braces, so a transpose or power after it is
    valid LaTeX: ``{h^{\langle t-1 \rangle}}^{\top}``, not ``h^{\langle t-1 \rangle}^{\top}``."""
    depth = 0
    for ch in latex:
        depth += (ch == "{") - (ch == "}")
        if ch == "^" and depth == 0:
            return "{" + latex + "}"
    return latex


class _CellPrinter(StrPrinter):
    """SymPy syntax in the cell's names that ``--formula`` reads back: ``U_f.T @ da_f``,
    ``outer(da_f, x)``, ``sum_t(...)``, ``hcat(dU_f, dW_f)``; no internal node names."""

    def _group(self, e):
        text = self._print(e)
        return text if isinstance(e, (sp.Symbol, sp.Function)) or e.is_Atom else f"({text})"

    def _print_MatVec(self, e):
        return f"{self._group(e.args[0])} @ {self._group(e.args[1])}"

    def _print_MatVecT(self, e):
        return f"{self._group(e.args[0])}.T @ {self._group(e.args[1])}"

    def _print_Outer(self, e):
        return f"outer({self._print(e.args[0])}, {self._print(e.args[1])})"

    def _print_MatTranspose(self, e):
        return f"{self._group(e.args[0])}.T"

    _print_Row = _print_MatTranspose

    def _print_MatMul(self, e):
        return f"{self._group(e.args[0])} @ {self._group(e.args[1])}"

    def _call(self, name, e):
        return f"{name}({', '.join(self._print(a) for a in e.args)})"

    def _print_SumT(self, e):
        return self._call("sum_t", e)

    def _print_SumN(self, e):
        return self._call("sum_n", e)

    def _print_HCat(self, e):
        return self._call("hcat", e)

    def _print_VCat(self, e):
        return self._call("cat", e)

    def _print_VStack(self, e):
        return self._call("vstack", e)

    def _print_Probed(self, e):
        """A matrix claim: the matrix, or its product with a vector v when it has no plain form."""
        m = e.matrix()
        if m is not None:
            return self._print(m)
        return f"jacobian(v -> {self._print(e.args[0].xreplace({e.args[1]: sp.Symbol('v')}))})"


def cell_text(expr) -> str:
    """``expr`` in SymPy syntax over the cell's names, as ``--formula`` reads it."""
    return _CellPrinter().doprint(expr)
