"""The elementwise functions a spec may call: one table, one entry per function.

Each entry knows three things, kept together so that adding a function touches one place:
how to build it in SymPy, its derivative (SymPy's ``fdiff``, written in terms of the function's
own value where the documents do so: sigma' = sigma (1 - sigma), tanh' = 1 - tanh^2), and how it
prints (``_numpycode`` for NumPy, ``_latex`` for documents). SymPy's own ``tanh``, ``exp`` and
``log`` already differentiate and print themselves; they are used as they are.
"""

from __future__ import annotations

from typing import Callable

import sympy as sp


class sigmoid(sp.Function):
    """Logistic function 1 / (1 + e^-z); its derivative is sigma (1 - sigma)."""

    nargs = 1

    def fdiff(self, argindex=1):
        return self * (1 - self)

    def _numpycode(self, printer):
        # exp(-logaddexp(0, -z)) never overflows, whatever the sign of z.
        np = printer._module_format(printer._module + ".exp")
        lae = printer._module_format(printer._module + ".logaddexp")
        return f"{np}(-{lae}(0, -({printer._print(self.args[0])})))"

    def _latex(self, printer, exp=None):
        body = rf"\sigma\left({printer._print(self.args[0])}\right)"
        return rf"{body}^{{{exp}}}" if exp else body

    def _eval_rewrite_as_exp(self, z, **kwargs):
        return 1 / (1 + sp.exp(-z))


class relu(sp.Function):
    """max(z, 0); its derivative is the step H(relu(z)) (0 at z = 0, as PyTorch takes it)."""

    nargs = 1

    def fdiff(self, argindex=1):
        return sp.Heaviside(self, 0)

    def _numpycode(self, printer):
        mx = printer._module_format(printer._module + ".maximum")
        return f"{mx}({printer._print(self.args[0])}, 0)"

    def _latex(self, printer, exp=None):
        body = rf"\operatorname{{relu}}\left({printer._print(self.args[0])}\right)"
        return rf"{body}^{{{exp}}}" if exp else body


class softplus(sp.Function):
    """log(1 + e^z); its derivative sigma(z) equals 1 - e^(-softplus(z))."""

    nargs = 1

    def fdiff(self, argindex=1):
        return 1 - sp.exp(-self)

    def _numpycode(self, printer):
        lae = printer._module_format(printer._module + ".logaddexp")
        return f"{lae}(0, {printer._print(self.args[0])})"

    def _latex(self, printer, exp=None):
        body = rf"\operatorname{{softplus}}\left({printer._print(self.args[0])}\right)"
        return rf"{body}^{{{exp}}}" if exp else body


def _identity(z):
    return z


#: name usable in a spec -> function building the SymPy expression of one argument.
FUNCTIONS: dict[str, Callable[[sp.Expr], sp.Expr]] = {
    "sigmoid": sigmoid,
    "tanh": sp.tanh,
    "relu": relu,
    "exp": sp.exp,
    "log": sp.log,
    "softplus": softplus,
    "identity": _identity,
}
