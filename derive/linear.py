"""The linear nodes of a cell and their transpose rules.

A cell is elementwise except for matrix-vector products ``W @ v``. Those are kept as opaque
SymPy nodes so that elementwise calculus never looks inside them; the reverse sweep applies
their transpose rules instead (JAX's way for linear primitives):

    m = W v      =>   dv += W^T dm   (MatVecT)      dW += dm v^T   (Outer)
    m = mean(v)  =>   dv += mean(dm)                (RowMean, broadcast over the row)
    m = sum(v)   =>   dv += sum(dm)                 (RowSum, broadcast over the row)

A reduction's result is the row's mean (sum) repeated over the row, so it is a vector of the
operand's size that can enter any elementwise expression (``a - mean(a)``). As a matrix it is
(1/H) 1 1^T (or 1 1^T), which is symmetric: its transpose rule is the reduction itself.

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


class _Reduction(sp.Function):
    """A reduction over the row of a vector, broadcast back over the row (see the module doc)."""

    nargs = 1
    word = ""       # the spec's name of the reduction
    _numpy = ""     # the NumPy function

    @property
    def vector(self) -> sp.Expr:
        return self.args[0]

    def _numpycode(self, printer):
        fn = printer._module_format(printer._module + "." + self._numpy)
        return f"{fn}({printer._print(self.vector)}, axis=-1, keepdims=True)"

    def _latex(self, printer, exp=None):
        body = rf"\operatorname{{{self.word}}}\left({printer._print(self.vector)}\right)"
        return rf"{body}^{{{exp}}}" if exp else body


class RowMean(_Reduction):
    """``mean(v)``: the mean of v's entries, repeated over the row; its transpose is itself."""

    word, _numpy = "mean", "mean"


class RowSum(_Reduction):
    """``sum(v)``: the sum of v's entries, repeated over the row; its transpose is itself."""

    word, _numpy = "sum", "sum"


#: name usable in a spec -> reduction node
REDUCTIONS: dict[str, type[_Reduction]] = {"mean": RowMean, "sum": RowSum}

LINEAR_NODES = (MatVec, MatVecT, Outer, RowMean, RowSum)
