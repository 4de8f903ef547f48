"""The linear nodes of a cell: the rows of the op table for ``W @ v`` and its transposes.

A cell is elementwise except for matrix-vector products ``W @ v``. Those are kept as opaque
SymPy nodes so that elementwise calculus never looks inside them; instead each node carries its
transpose rule beside it (JAX's way for linear primitives), and the reverse sweep asks the node:

    m = W v      =>   dv += W^T dm   (MatVecT)      dW += dm v^T   (Outer)

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
        if np.ndim(left) != 2 or np.ndim(right) != 2 or left.shape[0] != right.shape[0]:
            raise ShapeMismatch(f"outer product of shapes {np.shape(left)} and {np.shape(right)}")
        return left.T @ right

    def _numpycode(self, printer):
        return f"({printer._print(self.left)}).T @ ({printer._print(self.right)})"

    def latex(self, printer, batch: bool) -> str:
        if batch:
            return rf"{_transposed_latex(printer, self.left)} {_operand_latex(printer, self.right)}"
        return rf"{_operand_latex(printer, self.left)} {_transposed_latex(printer, self.right)}"


LINEAR_NODES = (MatVec, MatVecT, Outer)
