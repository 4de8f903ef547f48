"""Print elementwise SymPy expressions as Triton block code (``_tl.`` calls on (BLOCK,) tensors).

Triton has no ``**`` and no ``tanh``: integer powers print as products, ``tanh`` as a jitted
helper on ``_tl.sigmoid``. A function this printer has no spelling for is refused by name when the
module is generated, never printed as a call that would fail (or differ) on the GPU.
"""

from __future__ import annotations

import sympy as sp
from sympy.printing.precedence import PRECEDENCE

from codegen.numpy_printer import KernelNumPyPrinter
from derive import ops


class TritonPrinter(KernelNumPyPrinter):
    """``names`` maps symbol names to code text; ``helpers`` collects the jitted helpers used."""

    #: functions printed by a jitted helper of this backend; the others by their op-table row's
    #: "triton" spelling (``derive/ops.py``); anything else is refused in ``doprint``
    FUNCTIONS = {"tanh", "softplus"}

    def _code_of(self, op):
        """The op table's Triton spelling of a row, if it has one (``derive/ops.py``)."""
        return op.code.get("triton")

    def doprint(self, expr, assign_to=None):
        expr = sp.sympify(expr)
        while any(getattr(ops.op_of(f), "definition", None) is not None for f in expr.atoms(sp.Function)):
            expr = expr.replace(lambda e: getattr(ops.op_of(e), "definition", None) is not None,
                                ops.expand)
        for f in expr.atoms(sp.Function):
            if "triton" in getattr(ops.op_of(f), "code", {}):
                continue
            if type(f).__name__ not in self.FUNCTIONS:
                raise NotImplementedError(f"the triton backend has no spelling for {type(f).__name__}")
        return super().doprint(expr, assign_to)

    def _format(self, code, args: list[str]) -> str:
        # {F} is the kernel's compute type: a spelling made of constants (step's 1.0 and 0.0,
        # float32 literals) is cast to it, or float64 kernels would round it to float32 values
        return code.format(args, float_type="_F")

    def _call(self, name, expr):
        return f"{name}({', '.join(self._print(a) for a in expr.args)})"

    def _helper(self, name, expr):
        self.helpers.add(name)
        return self._call(f"_{name}", expr)

    def _print_tanh(self, expr):
        return self._helper("tanh", expr)

    def _print_softplus(self, expr):
        return self._helper("softplus", expr)

    def _print_Rational(self, expr):
        return repr(float(expr))

    def _print_Half(self, expr):
        return "0.5"

    def _print_Pow(self, expr, rational=False):
        base, exp = expr.base, expr.exp
        if exp == sp.S.Half:
            return f"_tl.sqrt({self._print(base)})"
        if exp == -sp.S.Half:
            return f"1.0 / _tl.sqrt({self._print(base)})"
        if exp.is_number and exp.is_real and float(exp).is_integer() and exp != 0:   # 2 and 2.0 alike: x**2.0 of x < 0 is real
            factor = self.parenthesize(base, PRECEDENCE["Mul"], strict=True)
            # parenthesized: the Mul printer puts a power right after "/" (x/(y*y), not x/y*y)
            product = factor if abs(int(exp)) == 1 else f"({' * '.join([factor] * abs(int(exp)))})"
            return product if exp > 0 else f"1.0 / {product if abs(int(exp)) > 1 else f'({product})'}"
        return f"_tl.exp({self.parenthesize(exp, PRECEDENCE['Mul'], strict=True)} * _tl.log({self._print(base)}))"
