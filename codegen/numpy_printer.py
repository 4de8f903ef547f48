"""Print elementwise SymPy expressions as whole-array NumPy code over (N, size) arrays.

SymPy's NumPyPrinter does the work; this subclass only spells the module ``np``, renames the
symbols that stand for blocks of buffers, and prints ``sigmoid`` as a call of a stable helper
defined once in the generated module (``derive.functions`` prints it with ``logaddexp``, which
is exact but several times slower than one ``tanh``).
"""

from __future__ import annotations

from sympy.printing.numpy import NumPyPrinter


class KernelNumPyPrinter(NumPyPrinter):
    """``names`` maps symbol names to code text; ``helpers`` collects the helpers printed."""

    def __init__(self, names: dict[str, str] | None = None):
        super().__init__({"fully_qualified_modules": True, "allow_unknown_functions": False})
        # Dispatch on the _print_<Function> methods below, not on the functions' own _numpycode.
        self.printmethod = "_cellgrad_kernel_code"
        self.names = names or {}
        self.helpers: set[str] = set()

    def _module_format(self, fqn, register=True):
        return super()._module_format(fqn, register).replace("numpy.", "np.", 1)

    def _print_Symbol(self, expr):
        return self.names.get(expr.name, expr.name)

    def _print_sigmoid(self, expr):
        self.helpers.add("sigmoid")
        return f"_sigmoid({self._print(expr.args[0])})"

    def _print_relu(self, expr):
        return f"np.maximum({self._print(expr.args[0])}, 0)"

    def _print_softplus(self, expr):
        return f"np.logaddexp(0, {self._print(expr.args[0])})"

    def _print_Heaviside(self, expr):
        # derive writes relu' as Heaviside(relu(z), 0): 1 where z > 0, else 0
        return f"np.heaviside({self._print(expr.args[0])}, 0)"
