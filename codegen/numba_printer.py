"""Print elementwise SymPy expressions as scalar code for the fused loops of Numba kernels.

Inside ``@njit`` NumPy's ufuncs are scalar libm calls that LLVM cannot vectorize (PyPI's Numba
has no SVML). So every function of an activation prints as a helper built on ``_exp``, a
polynomial exponential LLVM does vectorize; the printer records which helpers a module needs.

Numba promotes float32 with a Python number to float64, so every constant prints as ``F(c)``,
``F`` being the kernel's float type: float32 kernels then compute in float32 (twice the SIMD
lanes), float64 ones exactly as before. Integer powers keep their plain exponent (``x**2`` is a
multiplication; ``x**F(2)`` would be a ``pow`` call).
"""

from __future__ import annotations

from sympy import Pow, S
from sympy.printing.precedence import precedence

from .numpy_printer import KernelNumPyPrinter

FLOAT_TYPE = "_F"  # the kernel's local, named as every generated name: a spec name never shadows it


class KernelNumbaPrinter(KernelNumPyPrinter):
    """The NumPy kernel printer with scalar, vectorizable spellings of the functions and
    constants of the kernel's float type."""

    def __init__(self, names: dict[str, str] | None = None):
        super().__init__(names)
        self.uses_float_type = False

    def _helper(self, name, expr):
        self.helpers.add(name)
        return f"_{name}({self._print(expr.args[0])})"

    def _constant(self, text: str) -> str:
        self.uses_float_type = True
        return f"{FLOAT_TYPE}({text})"

    def _print_Integer(self, expr):
        return self._constant(str(expr.p))

    def _print_Rational(self, expr):
        return self._constant(f"{expr.p}/{expr.q}")

    def _print_Half(self, expr):
        return self._print_Rational(expr)

    def _print_Float(self, expr):
        return self._constant(super()._print_Float(expr))

    def _print_Pow(self, expr, rational=False):
        if expr.exp.is_Integer and expr.exp != -1:
            power = f"{self.parenthesize(expr.base, precedence(expr), strict=False)}**{abs(expr.exp)}"
            return power if expr.exp > 0 else f"{self._print(S.One)}/{power}"
        return self._hprint_Pow(Pow(expr.base, expr.exp, evaluate=False), rational=rational,
                                sqrt=self._module + ".sqrt")

    def _print_sigmoid(self, expr):
        return self._helper("sigmoid", expr)

    def _print_tanh(self, expr):
        return self._helper("tanh", expr)

    def _print_exp(self, expr):
        return self._helper("exp", expr)

    def _print_softplus(self, expr):
        return self._helper("softplus", expr)

    def _print_relu(self, expr):
        return f"max({self._print(expr.args[0])}, {self._print(S.Zero)})"

    def _print_Heaviside(self, expr):
        # derive writes relu' as Heaviside(relu(z), 0): 1 where z > 0, else 0
        zero = self._print(S.Zero)
        return f"({self._print(S.One)} if {self._print(expr.args[0])} > {zero} else {zero})"

    def _print_log(self, expr):
        return f"np.log({self._print(expr.args[0])})"
