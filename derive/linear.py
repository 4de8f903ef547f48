"""The linear nodes of a cell: the rows of the op table for ``W @ v`` and its transposes.

A cell is elementwise except for matrix-vector products ``W @ v``. Those are kept as opaque
SymPy nodes so that elementwise calculus never looks inside them; instead each node carries its
transpose rule beside it (JAX's way for linear primitives), and the reverse sweep asks the node:

    m = W v      =>   dv += W^T dm   (MatVecT)      dW += dm v^T   (Outer)
    m = mean(v)  =>   dv += mean(dm)                (RowMean, broadcast over the row)
    m = sum(v)   =>   dv += sum(dm)                 (RowSum, broadcast over the row)

A reduction's result is the row's mean (sum) repeated over the row, so it is a vector of the
operand's size that can enter any elementwise expression (``a - mean(a)``). As a matrix it is
(1/H) 1 1^T (or 1 1^T), which is symmetric: its transpose rule is the reduction itself.

Each node also knows how to evaluate itself on batch arrays (one row per sequence, so vectors
are (N, size) arrays), how it prints for NumPy in that layout, and how it prints in LaTeX, per
sample (the documents' notation) or in the batch layout.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import sympy as sp



class ShapeMismatch(ValueError):
    """Two operands whose shapes do not fit (a matrix where a vector belongs, swapped blocks)."""


class Transposed(NamedTuple):
    """One branch of a transpose rule: ``operand`` receives ``expr``; ``rule`` names the rule."""

    operand: str
    rule: str
    expr: sp.Expr


def _operand_latex(printer, expr) -> str:
    text = printer._print(expr)
    return text if expr.is_Symbol else rf"\left({text}\right)"


def _transposed_latex(printer, expr) -> str:
    """``x^T``, with parentheses when ``x`` already carries a superscript."""
    text = printer._print(expr)
    if expr.is_Symbol and "^" not in text and "'" not in text:
        return rf"{text}^{{\top}}"
    return rf"\left({text}\right)^{{\top}}"


def _matmul(v, m, node):
    if np.ndim(v) == 1 and np.ndim(m) == 2 and np.shape(v)[0] == m.shape[0]:
        return v @ m      # a parameter vector (V @ b), or a value of parameters only: like a bias
    if np.ndim(v) != 2 or np.ndim(m) != 2 or v.shape[1] != m.shape[0]:
        raise ShapeMismatch(f"{type(node).__name__}: a vector of shape {np.shape(v)} "
                            f"cannot be multiplied with a matrix of shape {np.shape(m)}")
    return v @ m


class LinearNode(sp.Function):
    """Base of the linear nodes; ``args`` are (matrix or left, vector or right)."""

    nargs = 2

    def _latex(self, printer, exp=None):
        body = self.latex(printer, batch=False)
        return rf"\left({body}\right)^{{{exp}}}" if exp else body


class MatVec(LinearNode):
    """``W v``: a parameter matrix times a vector (batch: ``v @ W.T``)."""

    @property
    def matrix(self) -> sp.Symbol:
        return self.args[0]

    @property
    def vector(self) -> sp.Expr:
        return self.args[1]

    def transpose(self, adjoint: sp.Expr) -> tuple[Transposed, ...]:
        """The adjoints this product hands to its operands when ``adjoint`` arrives at it."""
        w, v = self.matrix.name, self.vector.name
        return (Transposed(v, f"transpose of {w} @ {v}", MatVecT(self.matrix, adjoint)),
                Transposed(w, f"outer product rule of {w} @ {v}", Outer(adjoint, self.vector)))

    def evaluate(self, ev):
        return _matmul(ev(self.vector), ev(self.matrix).T, self)

    def _numpycode(self, printer):
        return f"({printer._print(self.vector)}) @ {printer._print(self.matrix)}.T"

    def latex(self, printer, batch: bool) -> str:
        if batch:
            return rf"{_operand_latex(printer, self.vector)} {_transposed_latex(printer, self.matrix)}"
        return rf"{printer._print(self.matrix)} {_operand_latex(printer, self.vector)}"


class MatVecT(LinearNode):
    """``W^T d``: the transpose rule of MatVec for the vector operand (batch: ``d @ W``)."""

    @property
    def matrix(self) -> sp.Symbol:
        return self.args[0]

    @property
    def vector(self) -> sp.Expr:
        return self.args[1]

    def evaluate(self, ev):
        return _matmul(ev(self.vector), ev(self.matrix), self)

    def _numpycode(self, printer):
        return f"({printer._print(self.vector)}) @ {printer._print(self.matrix)}"

    def latex(self, printer, batch: bool) -> str:
        if batch:
            return rf"{_operand_latex(printer, self.vector)} {printer._print(self.matrix)}"
        return rf"{_transposed_latex(printer, self.matrix)} {_operand_latex(printer, self.vector)}"


class Outer(LinearNode):
    """``d v^T``: the transpose rule of MatVec for the matrix (batch: ``d.T @ v``, summed over N)."""

    @property
    def left(self) -> sp.Expr:
        return self.args[0]

    @property
    def right(self) -> sp.Expr:
        return self.args[1]

    def evaluate(self, ev):
        left, right = ev(self.left), ev(self.right)
        if np.ndim(left) == 2 and np.ndim(right) == 1:
            # a parameter vector under @ (V @ b): the same for every sample, so its rows repeat
            right = np.broadcast_to(right, (left.shape[0], right.shape[0]))
        if np.ndim(left) != 2 or np.ndim(right) != 2 or left.shape[0] != right.shape[0]:
            raise ShapeMismatch(f"outer product of shapes {np.shape(left)} and {np.shape(right)}")
        return left.T @ right

    def _numpycode(self, printer):
        return f"({printer._print(self.left)}).T @ ({printer._print(self.right)})"

    def latex(self, printer, batch: bool) -> str:
        if batch:
            return rf"{_transposed_latex(printer, self.left)} {_operand_latex(printer, self.right)}"
        return rf"{_operand_latex(printer, self.left)} {_transposed_latex(printer, self.right)}"


class _Reduction(LinearNode):
    """A reduction over the row of a vector, broadcast back over the row (see the module doc)."""

    nargs = 1
    word = ""       # the spec's name of the reduction
    _numpy = ""     # the NumPy function

    @property
    def vector(self) -> sp.Expr:
        return self.args[0]

    def transpose(self, adjoint: sp.Expr) -> tuple[Transposed, ...]:
        v = self.vector.name
        return (Transposed(v, f"transpose of {self.word}({v}): {self.word} of the adjoint",
                           self.func(adjoint)),)

    def evaluate(self, ev):
        v = ev(self.vector)
        if hasattr(v, "expand_as"):          # a torch tensor (the autograd oracle of the tests)
            return getattr(v, self._numpy)(dim=-1, keepdim=True).expand_as(v)
        v = np.asarray(v, dtype=float)
        return np.broadcast_to(getattr(np, self._numpy)(v, axis=-1, keepdims=True), v.shape).copy()

    def _numpycode(self, printer):
        fn = printer._module_format(printer._module + "." + self._numpy)
        return f"{fn}({printer._print(self.vector)}, axis=-1, keepdims=True)"

    def latex(self, printer, batch: bool) -> str:
        return rf"\operatorname{{{self.word}}}\left({printer._print(self.vector)}\right)"

    def _latex(self, printer, exp=None):
        body = self.latex(printer, batch=False)
        return rf"{body}^{{{exp}}}" if exp else body

    def _sympystr(self, printer):
        """The spec's spelling, ``mean(v)``, which ``cellgrad derive`` shows and verify reads."""
        return f"{self.word}({printer._print(self.vector)})"


class RowMean(_Reduction):
    """``mean(v)``: the mean of v's entries, repeated over the row; its transpose is itself."""

    word, _numpy = "mean", "mean"


class RowSum(_Reduction):
    """``sum(v)``: the sum of v's entries, repeated over the row; its transpose is itself."""

    word, _numpy = "sum", "sum"


#: name usable in a spec -> reduction node
REDUCTIONS: dict[str, type[_Reduction]] = {"mean": RowMean, "sum": RowSum}

LINEAR_NODES = (MatVec, MatVecT, Outer, RowMean, RowSum)
