"""Print elementwise SymPy expressions as whole-array NumPy code over (N, size) arrays.

SymPy's NumPyPrinter does the work; this subclass spells the module ``np``, renames the symbols
that stand for blocks of buffers, and prints every function of the op table (``derive.ops``)
with the row's own NumPy text, recording the helpers that text calls (``_sigmoid``) so the
generated module defines each once. The reference interpreter runs the same text.
"""

from __future__ import annotations

from sympy.printing.numpy import NumPyPrinter

from derive import ops


class KernelNumPyPrinter(NumPyPrinter):
    """``names`` maps symbol names to code text; ``helpers`` collects the helpers printed."""

    backend = "numpy"

    def __init__(self, names: dict[str, str] | None = None):
        super().__init__({"fully_qualified_modules": True, "allow_unknown_functions": False})
        # Dispatch on the op table below, not on the functions' own printing methods.
        self.printmethod = "_cellgrad_kernel_code"
        self.names = names or {}
        self.helpers: set[ops.Helper] = set()

    def _module_format(self, fqn, register=True):
        return super()._module_format(fqn, register).replace("numpy.", "np.", 1)

    def _print_Symbol(self, expr):
        return self.names.get(expr.name, expr.name)

    def _code_of(self, op: ops.Op) -> ops.Code | None:
        return op.numpy

    def _print(self, expr, **kwargs):
        op = ops.op_of(expr)
        if op is None:
            return super()._print(expr, **kwargs)
        if op.definition is not None:
            # in parentheses: the caller placed the call as an atom (2*f(a), -f(a)), and the body
            # of f(z) = z - tanh(z) is a sum
            return f"({self._print(ops.expand(expr), **kwargs)})"
        code = self._code_of(op)
        if code is None:
            return super()._print(expr, **kwargs)
        self.helpers.update(code.helpers)
        return self._format(code, [self._print(a) for a in expr.args])

    def _format(self, code: ops.Code, args: list[str]) -> str:
        return code.format(args)
