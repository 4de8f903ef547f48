"""Print elementwise SymPy expressions as scalar code for the fused loops of Numba kernels.

Inside ``@njit`` NumPy's ufuncs are scalar libm calls that LLVM cannot vectorize (PyPI's Numba
has no SVML). So every function of an activation prints as a helper built on ``_exp``, a
polynomial exponential LLVM does vectorize; the printer records which helpers a module needs.
"""

from __future__ import annotations

from .numpy_printer import KernelNumPyPrinter


class KernelNumbaPrinter(KernelNumPyPrinter):
    """The NumPy kernel printer with scalar, vectorizable spellings of the functions."""

    def _helper(self, name, expr):
        self.helpers.add(name)
        return f"_{name}({self._print(expr.args[0])})"

    def _print_sigmoid(self, expr):
        return self._helper("sigmoid", expr)

    def _print_tanh(self, expr):
        return self._helper("tanh", expr)

    def _print_exp(self, expr):
        return self._helper("exp", expr)

    def _print_softplus(self, expr):
        return self._helper("softplus", expr)

    def _print_relu(self, expr):
        return f"max({self._print(expr.args[0])}, 0.0)"

    def _print_Heaviside(self, expr):
        # derive writes relu' as Heaviside(relu(z), 0): 1 where z > 0, else 0
        return f"(1.0 if {self._print(expr.args[0])} > 0.0 else 0.0)"

    def _print_log(self, expr):
        return f"np.log({self._print(expr.args[0])})"
