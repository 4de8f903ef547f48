"""SymPy nodes a hand-written formula needs beyond the derivation's own.

A formula may sum over time steps (``SumT``) or over the batch (``SumN``), stack vectors
(``[h, x]``: ``VCat``) or matrices (a concatenated ``W_f`` acting on ``[h, x]``: ``HCat``),
transpose a matrix (``MatTranspose``) or a vector (``Row``). They stay opaque to SymPy's calculus;
``derive.verify.sequence`` gives them their numeric meaning and ``sympy.latex`` prints them.
"""

from __future__ import annotations

import sympy as sp


class SumT(sp.Function):
    """Sum over all time steps of a per-step expression (a whole-sequence gradient)."""

    nargs = 1

    def _latex(self, printer, exp=None):
        return rf"\sum_{{t}} {printer.parenthesize(self.args[0], 40)}"


class SumN(sp.Function):
    """Sum over the batch (``np.sum(..., axis=...)`` in the documents' code)."""

    nargs = 1

    def _latex(self, printer, exp=None):
        return rf"\sum_{{n}} {printer.parenthesize(self.args[0], 40)}"


class VCat(sp.Function):
    """``[a, b]``: vectors stacked into one (features of ``a`` first)."""

    def _latex(self, printer, exp=None):
        return r"\left[" + ", ".join(printer._print(a) for a in self.args) + r"\right]"


class HCat(sp.Function):
    """``[A | B]``: matrices side by side, as one matrix acting on ``VCat`` of their operands."""

    def _latex(self, printer, exp=None):
        return r"\left[" + r" \mid ".join(printer._print(a) for a in self.args) + r"\right]"


class VStack(sp.Function):
    """Matrices stacked by rows: a stacked gate array (cs231n's Wx of shape (D, 4H) is the
    transpose of the four (H, D) gate matrices stacked)."""

    def _latex(self, printer, exp=None):
        return r"\left[" + ", ".join(printer._print(a) for a in self.args) + r"\right]"


class MatTranspose(sp.Function):
    """A matrix transposed."""

    nargs = 1

    def _latex(self, printer, exp=None):
        return rf"{printer.parenthesize(self.args[0], 1000)}^{{\top}}"


class MatMul(sp.Function):
    """``A B``: two matrices (or Jacobians) multiplied, ``∂h_t/∂h_{t-1} ∂h_{t-1}/∂h_{t-2}``; a
    product with Jacobians is only ever applied to a vector (``context``)."""

    nargs = 2

    def _latex(self, printer, exp=None):
        return " ".join(printer.parenthesize(a, 1000) for a in self.args)


class Row(sp.Function):
    """A vector written transposed (``v^T``): only meaningful as a factor of an outer product."""

    nargs = 1

    def _latex(self, printer, exp=None):
        return rf"{printer.parenthesize(self.args[0], 1000)}^{{\top}}"


class Jacobian(sp.Function):
    """``∂expr/∂target`` of one step taken ``shift`` steps from t (args ``expr, target, shift``),
    where target sits in matrix-vector products: a matrix a formula only ever multiplies with a
    vector (``J^T δ``, ``prod(δ, J)``, the forward ``J v``); ``context`` forms those products in
    the cell's own nodes. Never evaluated."""

    nargs = 3

    def _latex(self, printer, exp=None):
        return rf"\frac{{\partial {printer._print(self.args[0])}}}{{\partial {printer._print(self.args[1])}}}"


class Probed(sp.Function):
    """A matrix claim made numeric (args ``body, probe``): the matrix whose column j is ``body``
    with the vector ``probe`` set to the j-th unit vector. ``∂a/∂h_prev = W`` is checked as
    ``Probed(J p, p) = Probed(W p, p)``: both sides' whole matrices, sample by sample."""

    nargs = 2

    def matrix(self):
        """The matrix itself when the body is a plain product with the probe (W p, W^T p, v ⊙ p,
        stacked blocks of those), else None."""
        body, probe = self.args

        def of(e):
            if e == probe:
                return sp.Integer(1)
            if isinstance(e, sp.Mul) and probe in e.args and not (e / probe).has(probe):
                return e / probe
            if type(e).__name__ in ("MatVec", "MatVecT"):
                m = e.args[0] if type(e).__name__ == "MatVec" else MatTranspose(e.args[0])
                inner = of(e.args[1])
                return None if inner is None else m if inner == 1 else MatMul(m, inner)
            if isinstance(e, VCat):
                blocks = [of(a) for a in e.args]
                return VStack(*blocks) if all(b is not None for b in blocks) else None
            return None
        return of(body)

    def _latex(self, printer, exp=None):
        m = self.matrix()
        return printer._print(m if m is not None else self.args[0])


#: the probe vector of a matrix claim with respect to ``name``: a verifier name (leading ``_``)
PROBE_PREFIX = "_probe_"


FORMULA_NODES = (SumT, SumN, VCat, HCat, VStack, MatTranspose, MatMul, Row, Jacobian, Probed)
