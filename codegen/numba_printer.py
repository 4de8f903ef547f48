"""Print elementwise SymPy expressions as scalar code for the fused loops of Numba kernels.

Inside ``@njit`` NumPy's ufuncs are scalar libm calls that LLVM cannot vectorize (PyPI's Numba
has no SVML). So the op table's (``derive.ops``) scalar code of an activation calls a helper
built on ``_exp``, a polynomial exponential LLVM does vectorize; the printer records which
helpers a module needs.

Numba promotes float32 with a Python number to float64, so every constant prints as ``F(c)``,
``F`` being the kernel's float type: float32 kernels then compute in float32 (twice the SIMD
lanes), float64 ones exactly as before. Integer powers keep their plain exponent (``x**2`` is a
multiplication; ``x**F(2)`` would be a ``pow`` call).
"""

from __future__ import annotations

from sympy import Pow, S
from sympy.printing.precedence import precedence

from derive import ops

from .numpy_printer import KernelNumPyPrinter

FLOAT_TYPE = "_F"  # the kernel's local, named as every generated name: a spec name never shadows it


class KernelNumbaPrinter(KernelNumPyPrinter):
    """The NumPy kernel printer with scalar, vectorizable spellings of the functions and
    constants of the kernel's float type."""

    def __init__(self, names: dict[str, str] | None = None):
        super().__init__(names)
        self.uses_float_type = False

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

    def _code_of(self, op):
        return op.numba_code

    def _format(self, code, args):
        if "{F}" in code.template:
            self.uses_float_type = True
        return code.format(args, FLOAT_TYPE)


def helper_context(printers) -> dict:
    """What a template needs to define the helpers its printers used: ``helpers`` (each one's
    code, needed ones first) and ``helper_imports``."""
    helpers = ops.helper_closure(set().union(*(p.helpers for p in printers)))
    imports = []
    for h in helpers:
        imports += [line for line in h.imports if line not in imports]
    return {"helpers": [h.code for h in helpers], "helper_imports": imports}
