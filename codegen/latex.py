"""LaTeX printing of a Derivation's expressions in a chosen notation.

SymPy's ``LatexPrinter`` does the work; this file adds the two things a BPTT document needs:

* names come from a ``Notation`` (``symbol_names``), so ``dc_next`` prints ``\\bar{\\delta} c^{<t>}``;
* elementwise products print with the notation's product sign (``\\odot`` by default), because
  every product of two vectors in a cell is elementwise.

``BatchLatexPrinter`` prints the same expressions in the batch layout of the kernels: every
vector is an (N, size) matrix with one row per sequence, so ``W v`` is ``V W^T``, ``W^T d`` is
``D W`` and ``d v^T`` (a parameter gradient) is ``D^T V``.
"""

from __future__ import annotations

import sympy as sp
from sympy.printing.latex import LatexPrinter
from sympy.printing.precedence import PRECEDENCE

from derive.linear import MatVec, MatVecT, Outer


class CellLatexPrinter(LatexPrinter):
    """sympy's LaTeX printer with a notation's names and an explicit elementwise product.

    Per sample: ``W v``, ``W^T d`` and ``d v^T`` for the linear nodes of ``derive.linear``.
    """

    def __init__(self, names: dict[sp.Symbol, str], product: str = r"\odot"):
        super().__init__({"symbol_names": names})
        self.product = product

    def _print(self, expr, **kwargs):
        if isinstance(expr, (MatVec, MatVecT, Outer)):
            return self._linear(expr)
        return super()._print(expr, **kwargs)

    def _linear(self, expr) -> str:
        if isinstance(expr, MatVec):
            return rf"{self._print(expr.matrix)} {self._operand(expr.vector)}"
        if isinstance(expr, MatVecT):
            return rf"{self._transposed(expr.matrix)} {self._operand(expr.vector)}"
        return rf"{self._operand(expr.left)} {self._transposed(expr.right)}"

    def _operand(self, expr) -> str:
        text = self._print(expr)
        return text if expr.is_Symbol else rf"\left({text}\right)"

    def _transposed(self, expr) -> str:
        """``x^T``, with parentheses when ``x`` already carries a superscript."""
        text = self._print(expr)
        if expr.is_Symbol and "^" not in text and "'" not in text:
            return rf"{text}^{{\top}}"
        return rf"\left({text}\right)^{{\top}}"

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

    def _linear(self, expr) -> str:
        if isinstance(expr, MatVec):
            return rf"{self._operand(expr.vector)} {self._transposed(expr.matrix)}"
        if isinstance(expr, MatVecT):
            return rf"{self._operand(expr.vector)} {self._print(expr.matrix)}"
        return rf"{self._transposed(expr.left)} {self._operand(expr.right)}"


def latex(expr: sp.Expr, names: dict[sp.Symbol, str], product: str = r"\odot",
          batch: bool = False) -> str:
    """Print ``expr`` with a notation's names (``Notation.latex_names``)."""
    printer = BatchLatexPrinter(names, product) if batch else CellLatexPrinter(names, product)
    return printer.doprint(expr)
