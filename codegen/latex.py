"""LaTeX printing of a Derivation's expressions in a chosen notation.

SymPy's ``LatexPrinter`` does the work; this file adds the two things a BPTT document needs:

* names come from a ``Notation`` (``symbol_names``), so ``dc_next`` prints ``\\bar{\\delta} c^{<t>}``;
* elementwise products print with the notation's product sign (``\\odot`` by default), because
  every product of two vectors in a cell is elementwise;
* functions print as their op-table row says (``derive.ops``), linear nodes as they say
  (``derive.linear``).

``BatchLatexPrinter`` prints the same expressions in the batch layout of the kernels: every
vector is an (N, size) matrix with one row per sequence, so ``W v`` is ``V W^T``, ``W^T d`` is
``D W`` and ``d v^T`` (a parameter gradient) is ``D^T V``.
"""

from __future__ import annotations

import sympy as sp
from sympy.printing.latex import LatexPrinter
from sympy.printing.precedence import PRECEDENCE

from derive import ops
from derive.linear import LinearNode


class CellLatexPrinter(LatexPrinter):
    """sympy's LaTeX printer with a notation's names and an explicit elementwise product.

    Per sample: ``W v``, ``W^T d`` and ``d v^T`` for the linear nodes of ``derive.linear``.
    """

    batch = False

    def __init__(self, names: dict[sp.Symbol, str], product: str = r"\odot"):
        super().__init__({"symbol_names": names})
        self.product = product

    def _print(self, expr, **kwargs):
        exp = kwargs.get("exp")
        if isinstance(expr, LinearNode):
            body = expr.latex(self, batch=self.batch)
            return rf"\left({body}\right)^{{{exp}}}" if exp else body
        op = ops.op_of(expr)
        if op is not None and op.latex is not None:
            body = ops.fill(op.latex, [self._print(a) for a in expr.args])
            return rf"{body}^{{{exp}}}" if exp else body
        return super()._print(expr, **kwargs)

    def _print_Mul(self, expr):
        coeff, factors = expr.as_coeff_mul()
        if len(factors) < 2 or any(f.is_Pow and f.exp.is_negative for f in factors):
            return super()._print_Mul(expr)
        ordered = sp.Mul(*factors).as_ordered_factors()
        sep = rf" {self.product} " if self.product.strip() else " "
        body = sep.join(self.parenthesize(f, PRECEDENCE["Mul"], strict=False) for f in ordered)
        if coeff == 1:
            return body
        if coeff == -1:
            return "- " + body
        return f"{self._print(coeff)} {body}"


class BatchLatexPrinter(CellLatexPrinter):
    """Same names, batch layout: each vector is an (N, size) matrix, one row per sequence."""

    batch = True


def latex(expr: sp.Expr, names: dict[sp.Symbol, str], product: str = r"\odot",
          batch: bool = False) -> str:
    """Print ``expr`` with a notation's names (``Notation.latex_names``)."""
    printer = BatchLatexPrinter(names, product) if batch else CellLatexPrinter(names, product)
    return printer.doprint(expr)
