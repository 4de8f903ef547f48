"""The linear nodes of a cell and their transpose rules.

A cell is elementwise except for matrix-vector products ``W @ v``. Those are kept as opaque
SymPy nodes so that elementwise calculus never looks inside them; the reverse sweep applies
their transpose rules instead (JAX's way for linear primitives):

    m = W v      =>   dv += W^T dm   (MatVecT)      dW += dm v^T   (Outer)

Each node prints itself for NumPy in the batch layout every kernel uses (one row per sequence,
so vectors are (N, size) arrays) and for LaTeX in the per-sample notation of the documents.
"""

from __future__ import annotations

import sympy as sp
from sympy.printing.precedence import PRECEDENCE

_ATOM = PRECEDENCE["Atom"]


class MatVec(sp.Function):
    """``W v``: a parameter matrix times a vector (batch: ``v @ W.T``)."""

    nargs = 2

    @property
    def matrix(self) -> sp.Symbol:
        return self.args[0]

    @property
    def vector(self) -> sp.Expr:
        return self.args[1]

    def _numpycode(self, printer):
        return f"({printer._print(self.vector)}) @ {printer._print(self.matrix)}.T"

    def _latex(self, printer, exp=None):
        body = rf"{printer._print(self.matrix)} {printer.parenthesize(self.vector, _ATOM, strict=True)}"
        return rf"\left({body}\right)^{{{exp}}}" if exp else body


class MatVecT(sp.Function):
    """``W^T d``: the transpose rule of MatVec for the vector operand (batch: ``d @ W``)."""

    nargs = 2

    @property
    def matrix(self) -> sp.Symbol:
        return self.args[0]

    @property
    def vector(self) -> sp.Expr:
        return self.args[1]

    def _numpycode(self, printer):
        return f"({printer._print(self.vector)}) @ {printer._print(self.matrix)}"

    def _latex(self, printer, exp=None):
        body = rf"{printer._print(self.matrix)}^{{\top}} {printer.parenthesize(self.vector, _ATOM, strict=True)}"
        return rf"\left({body}\right)^{{{exp}}}" if exp else body


class Outer(sp.Function):
    """``d v^T``: the transpose rule of MatVec for the matrix (batch: ``d.T @ v``, summed over N)."""

    nargs = 2

    @property
    def left(self) -> sp.Expr:
        return self.args[0]

    @property
    def right(self) -> sp.Expr:
        return self.args[1]

    def _numpycode(self, printer):
        return f"({printer._print(self.left)}).T @ ({printer._print(self.right)})"

    def _latex(self, printer, exp=None):
        body = (rf"{printer.parenthesize(self.left, _ATOM, strict=True)} "
                rf"{printer.parenthesize(self.right, _ATOM, strict=True)}^{{\top}}")
        return rf"\left({body}\right)^{{{exp}}}" if exp else body


LINEAR_NODES = (MatVec, MatVecT, Outer)
