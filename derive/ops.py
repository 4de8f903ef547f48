"""The op table: one row per elementwise function a cell may call, read by every stage.

A row (``Op``) holds together everything the stages need to know about one function:

* ``sympy``: the SymPy class (its ``fdiff`` is the derivative, written in the function's own
  value where people write it so: sigma' = sigma (1 - sigma), tanh' = 1 - tanh^2; the reverse
  sweep then rewrites it in the saved forward value by itself);
* ``numpy``: the NumPy spelling over whole (N, size) arrays, with the helpers it calls; the
  reference interpreter (``derive.evaluate``) runs exactly this text, so the generated NumPy
  kernels and the reference share one spelling of each function's numerics;
* ``numba``: the scalar spelling inside the fused Numba loops, with its helpers (built on the
  vectorizable ``_exp``);
* ``latex``: how documents print it; ``reads``: the LaTeX commands and words verify reads as it;
* ``rule``: the derivative rule the documents show;
* ``code``: spellings for further backends by name (``"triton"``; ``"torch"``, which the
  reference interpreter runs on tensors so that PyTorch's autograd checks the derivation:
  tests/torch_oracle.py); a backend's printer without one falls back to its own
  ``_print_<name>`` methods.

Code templates hold ``{0}``, ``{1}`` for the arguments and ``{F}`` for the kernel's float
type (Numba's float type, Triton's compute type ``_F``); LaTeX templates hold ``{0}``, ``{1}``.
A row without a ``latex`` template uses SymPy's own printing (``\\tanh``), a row without
``numba`` code uses its NumPy text (NumPy's ufuncs are scalar functions inside ``@njit``).

The linear nodes (``W @ v`` and its transposes) are the rows of ``derive.linear``; each carries
its own transpose rule there.

Adding a function: one ``register(Op(...))`` call below, or from Python
``derive.register_function``; a spec may also define one as an expression of ``z`` over known
functions (``[functions] softsign = "z / (1 + abs(z))"``), which ``define`` turns into a row.

Subgradients at kinks follow PyTorch: relu'(0) = 0, abs'(0) = sign(0) = 0, and at a tie
max(a, a) (and min) gives each argument half the gradient, as ``torch.maximum`` does; the two
halves add up to 1, so max(z, z) = z keeps its derivative 1.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import sympy as sp

# -- helpers: code a generated module defines once, for the rows that call it ----------------


@dataclass(frozen=True)
class Helper:
    """A function a row's code calls, defined once in a generated module. ``needs`` are the
    helpers its code calls in turn; ``imports`` the import lines it needs. Numba helpers write
    ``{cache}`` for the module's njit cache flag."""

    name: str
    code: str
    needs: tuple["Helper", ...] = ()
    imports: tuple[str, ...] = ()


def helper_closure(helpers) -> list[Helper]:
    """``helpers`` and all they need, each once, needed ones first, in a stable order."""
    done: list[Helper] = []

    def visit(h: Helper):
        if h in done:
            return
        for n in h.needs:
            visit(n)
        done.append(h)

    for h in sorted(helpers, key=lambda h: h.name):
        visit(h)
    return done


NUMPY_SIGMOID = Helper("_sigmoid", '''\
def _sigmoid(z):
    """Logistic function as (1 + tanh(z/2)) / 2: equal to 1/(1 + exp(-z)), never overflows."""
    return 0.5 + 0.5 * np.tanh(0.5 * z)''')

NUMBA_EXP = Helper("_exp", '''\
@intrinsic
def _float_from_bits(typingctx, bits):
    """The float whose IEEE-754 bits are ``bits``: float32 from int32, float64 from int64 (builds 2**k)."""
    float_type = types.float32 if bits.bitwidth == 32 else types.float64
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(float_type))
    return float_type(bits), codegen


def _exp(z):
    """e**z in the precision of z: Numba compiles _exp_float32 or _exp_float64 in its place."""


@overload(_exp, inline="always", jit_options={"error_model": "numpy"})
def _exp_in_precision_of(z):
    return _exp_float32 if z == types.float32 else _exp_float64


def _exp_float64(z):
    """e**z as 2**k * e**r with |r| <= ln(2)/2 and a degree-13 Taylor polynomial for e**r.

    Relative error below 1e-15; saturates outside [-708, 709] instead of overflowing. Unlike
    np.exp inside @njit (a scalar libm call: PyPI's Numba has no SVML), LLVM vectorizes it.
    """
    z = min(max(z, -708.0), 709.0)
    k = np.floor(z * 1.4426950408889634 + 0.5)                           # round(z / ln 2)
    r = (z - k * 0.6931471803691238) - k * 1.9082149292705877e-10         # z - k ln 2, in two parts
    p = 1.0 + r * (1.0 + r * (1 / 2 + r * (1 / 6 + r * (1 / 24 + r * (1 / 120 + r * (
        1 / 720 + r * (1 / 5040 + r * (1 / 40320 + r * (1 / 362880 + r * (1 / 3628800 + r * (
            1 / 39916800 + r * (1 / 479001600 + r * (1 / 6227020800)))))))))))))
    return p * _float_from_bits((np.int64(k) + 1023) << 52)


def _exp_float32(z):
    """_exp_float64 in float32 arithmetic: a degree-7 polynomial suffices (relative error about
    1e-7) and 2**k has 8 exponent bits, so it saturates outside [-87, 88]."""
    F = np.float32
    z = min(max(z, F(-87.0)), F(88.0))
    k = np.floor(z * F(1.442695) + F(0.5))                                   # round(z / ln 2)
    r = (z - k * F(0.693359375)) + k * F(2.1219444e-4)                       # z - k ln 2, in two parts
    p = F(1) + r * (F(1) + r * (F(1 / 2) + r * (F(1 / 6) + r * (F(1 / 24) + r * (F(1 / 120) + r * (
        F(1 / 720) + r * F(1 / 5040)))))))
    return p * _float_from_bits(np.int32((np.int64(k) + 127) << 23))''',
                   imports=("from numba import types", "from numba.extending import intrinsic, overload"))

NUMBA_SIGMOID = Helper("_sigmoid", '''\
@nb.njit(inline="always", error_model="numpy", cache={cache})
def _sigmoid(z):
    """1 / (1 + e**-z): e**-z saturates for very negative z, so the result tends to 0, no overflow."""
    F = type(z)
    return F(1) / (F(1) + _exp(-z))''', needs=(NUMBA_EXP,))

NUMBA_TANH = Helper("_tanh", '''\
@nb.njit(inline="always", error_model="numpy", cache={cache})
def _tanh(z):
    """tanh(z) = 1 - 2 / (e**(2z) + 1), from the vectorizable _exp."""
    F = type(z)
    return F(1) - F(2) / (_exp(F(2) * z) + F(1))''', needs=(NUMBA_EXP,))

NUMBA_SOFTPLUS = Helper("_softplus", '''\
@nb.njit(inline="always", error_model="numpy", cache={cache})
def _softplus(z):
    """log(1 + e**z) = max(z, 0) + log(1 + e**-|z|): no overflow for large z."""
    F = type(z)
    return max(z, F(0)) + np.log(F(1) + _exp(-abs(z)))''', needs=(NUMBA_EXP,))


# -- rows --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Code:
    """One backend's spelling of a row: a template over ``{0}``, ``{1}`` (and ``{F}``)."""

    template: str
    helpers: tuple[Helper, ...] = ()

    def format(self, args, float_type: str = "F") -> str:
        return fill(self.template.replace("{F}", float_type), args)


def fill(template: str, args) -> str:
    """``template`` with ``{0}``, ``{1}`` replaced by ``args`` in one pass (an argument's own
    text is never searched again)."""
    return re.sub(r"\{(\d)\}", lambda m: args[int(m.group(1))], template)


@dataclass(eq=False)
class Op:
    """One row of the table; see the module docstring for what each field is for."""

    name: str
    sympy: Callable
    numpy: Code | None = None
    numba: Code | None = None
    latex: str | None = None
    reads: tuple[str, ...] = ()
    rule: str | None = None
    arity: int = 1
    definition: sp.Expr | None = None     # composite rows: the body, over ARGUMENT
    code: dict[str, Code] = field(default_factory=dict)   # other backends: name -> spelling
    doc: str = ""
    _references: dict = field(default_factory=dict, repr=False)   # backend -> compiled function

    @property
    def numba_code(self) -> Code | None:
        return self.numba or self.numpy

    def reference(self, backend: str = "numpy") -> Callable:
        """The function the reference interpreter calls: the row's own NumPy text, or with
        ``backend="torch"`` its PyTorch spelling (an autograd oracle: tests/torch_oracle.py)."""
        if backend not in self._references:
            code = self.numpy if backend == "numpy" else self.code.get(backend)
            if code is None:
                raise ValueError(f"function {self.name!r} has no {backend} code")
            # The table's own code text (never a spec's): run once, exactly as kernels print it.
            if backend == "torch":
                import torch
                namespace = {"torch": torch}
            else:
                namespace = {"np": np}
            for helper in helper_closure(code.helpers):
                exec(compile(helper.code, f"<op {self.name}: {helper.name}>", "exec"), namespace)  # noqa: S102
            names = [f"_{k}" for k in range(self.arity)]
            self._references[backend] = eval(f"lambda {', '.join(names)}: {code.format(names)}", namespace)  # noqa: S307
        return self._references[backend]


ARGUMENT = sp.Symbol("z")
"""The argument of a function defined by an expression (``z / (1 + abs(z))``)."""


class OpFunction(sp.Function):
    """Base of the SymPy classes the table makes: ``op`` is the row the class belongs to."""

    op: Op

    def fdiff(self, argindex=1):
        return self.op_derivative(self, argindex)

    @staticmethod
    def op_derivative(expr, argindex):  # replaced per class
        raise sp.ArgumentIndexError(expr, argindex)

    def _latex(self, printer, exp=None):
        """Printed as the row says, by any SymPy LaTeX printer (``sympy.latex`` too)."""
        body = fill(self.op.latex, [printer._print(a) for a in self.args])
        return rf"{body}^{{{exp}}}" if exp else body


def function_class(name: str, arity: int, derivative: Callable, doc: str) -> type:
    """A ``sympy.Function`` subclass named ``name`` whose ``fdiff`` is ``derivative(self, k)``."""
    return type(name, (OpFunction,), {"nargs": arity, "__doc__": doc,
                                      "op_derivative": staticmethod(derivative)})


#: spec name -> row. ``FUNCTIONS`` (name -> SymPy builder) is a view of it for the spec parser.
TABLE: dict[str, Op] = {}
FUNCTIONS: dict[str, Callable] = {}
_BY_CLASS: dict[type, Op] = {}


def register(op: Op) -> Op:
    """Add ``op`` to the table (every stage sees it from now on) and return it."""
    if not op.name.isidentifier() or op.name.startswith("_"):
        raise ValueError(f"function name {op.name!r} must be an identifier not starting with '_'")
    if op.name in TABLE and TABLE[op.name] is not op:
        raise ValueError(f"function {op.name!r} is already in the op table")
    if isinstance(op.sympy, type) and issubclass(op.sympy, OpFunction):
        op.sympy.op = op
    TABLE[op.name] = op
    FUNCTIONS[op.name] = op.sympy
    if isinstance(op.sympy, type):
        _BY_CLASS[op.sympy] = op
    return op


def unregister(name: str) -> None:
    """Take a registered row out again (tests that register one clean up with this)."""
    op = TABLE.pop(name)
    FUNCTIONS.pop(name, None)
    _BY_CLASS.pop(op.sympy, None)


def op_of(expr) -> Op | None:
    """The row of a function application (``sigmoid(a)``), None for anything else."""
    cls = type(expr)
    row = getattr(cls, "op", None)
    if isinstance(row, Op):
        return row
    return _BY_CLASS.get(cls)


def define(name: str, body: sp.Expr, *, latex: str | None = None, reads: tuple[str, ...] = ()) -> Op:
    """A row for a function given by an expression of ``ARGUMENT`` over known functions. SymPy
    differentiates the body; printers and the interpreter expand the body at each use. The row
    is not registered: a spec's own functions belong to its cell, not to every cell."""
    unknown = body.free_symbols - {ARGUMENT}
    if unknown:
        raise ValueError(f"the body of {name} may only use {ARGUMENT}, not {sorted(map(str, unknown))}")
    derivative_body = sp.diff(body, ARGUMENT)

    def derivative(expr, argindex):
        if argindex != 1:
            raise sp.ArgumentIndexError(expr, argindex)
        return derivative_body.xreplace({ARGUMENT: expr.args[0]})

    cls = function_class(name, 1, derivative, f"{name}(z) = {body}")
    tex = rf"\operatorname{{{_tex_name(name)}}}"
    rule = (rf"{tex}(z) = {sp.latex(body)}\text{{, so }} {tex}'(z) = {sp.latex(derivative_body)}")
    op = Op(name, cls, latex=latex or tex + r"\left({0}\right)", reads=reads or (name,),
            rule=rule, definition=body, doc=f"{name}(z) = {body}")
    cls.op = op
    return op


def expand(expr) -> sp.Expr:
    """A composite row's application replaced by its body (the others are left alone)."""
    op = op_of(expr)
    assert op is not None and op.definition is not None
    return op.definition.xreplace({ARGUMENT: expr.args[0]})


def _tex_name(name: str) -> str:
    return name.replace("_", r"\_")


def _call_latex(name: str, arity: int = 1) -> str:
    args = ", ".join("{%d}" % k for k in range(arity))
    return rf"\operatorname{{{name}}}\left({args}\right)"


# The derivatives, in the function's own value where people write them so.
sigmoid = function_class("sigmoid", 1, lambda f, k: f * (1 - f),
                    "Logistic function 1 / (1 + e^-z); its derivative is sigma (1 - sigma).")
relu = function_class("relu", 1, lambda f, k: step(f),
                 "max(z, 0); its derivative is step(relu(z)): 0 at z = 0, as PyTorch takes it.")
softplus = function_class("softplus", 1, lambda f, k: 1 - sp.exp(-f),
                     "log(1 + e^z); its derivative sigma(z) equals 1 - e^(-softplus(z)).")
step = function_class("step", 1, lambda f, k: sp.Integer(0),
                 "1 where z > 0, else 0 (also at z = 0): relu' (0 almost everywhere).")
sign = function_class("sign", 1, lambda f, k: sp.Integer(0),
                 "-1, 0 or 1 by the sign of z: abs' (0 almost everywhere).")
sqrt = function_class("sqrt", 1, lambda f, k: 1 / (2 * f),
                 "Square root; its derivative is 1 / (2 sqrt(z)).")
abs_ = function_class("abs", 1, lambda f, k: sign(f.args[0]),
                 "|z|; its derivative is sign(z), 0 at z = 0 as in PyTorch.")


def _max_derivative(f, k):
    a, b = f.args
    return (1 + sign(a - b)) / 2 if k == 1 else (1 - sign(a - b)) / 2


def _min_derivative(f, k):
    a, b = f.args
    return (1 - sign(a - b)) / 2 if k == 1 else (1 + sign(a - b)) / 2


max_ = function_class("max", 2, _max_derivative,
                 "Elementwise maximum; at a tie each argument gets half the gradient (torch.maximum).")
min_ = function_class("min", 2, _min_derivative,
                 "Elementwise minimum; at a tie each argument gets half the gradient (torch.minimum).")


def _identity(z):
    return z


register(Op("sigmoid", sigmoid, Code("_sigmoid({0})", (NUMPY_SIGMOID,)),
            Code("_sigmoid({0})", (NUMBA_SIGMOID,)),
            latex=r"\sigma\left({0}\right)", reads=("sigma", "sigmoid"),
            code={"triton": Code("_tl.sigmoid({0})"), "torch": Code("torch.sigmoid({0})")},
            rule=r"\sigma' = \sigma (1 - \sigma)"))
register(Op("tanh", sp.tanh, Code("np.tanh({0})"), Code("_tanh({0})", (NUMBA_TANH,)),
            reads=("tanh",), rule=r"\tanh' = 1 - \tanh^2", code={"torch": Code("torch.tanh({0})")}))
register(Op("relu", relu, Code("np.maximum({0}, 0)"), Code("max({0}, {F}(0))"),
            latex=_call_latex("relu"), reads=("relu", "ReLU"),
            code={"triton": Code("_tl.maximum({0}, 0.0)"), "torch": Code("torch.relu({0})")},
            rule=r"\operatorname{relu}'(z) = \operatorname{step}(\operatorname{relu}(z))"
                 r" = \operatorname{step}(z)\text{, 0 at } z = 0"))
register(Op("exp", sp.exp, Code("np.exp({0})"), Code("_exp({0})", (NUMBA_EXP,)),
            reads=("exp",), rule=r"\exp' = \exp",
            code={"triton": Code("_tl.exp({0})"), "torch": Code("torch.exp({0})")}))
register(Op("log", sp.log, Code("np.log({0})"), reads=("log", "ln"),
            rule=r"\log'(z) = 1 / z",
            code={"triton": Code("_tl.log({0})"), "torch": Code("torch.log({0})")}))
register(Op("softplus", softplus, Code("np.logaddexp(0, {0})"),
            Code("_softplus({0})", (NUMBA_SOFTPLUS,)), latex=_call_latex("softplus"),
            reads=("softplus",),
            code={"torch": Code("torch.logaddexp(torch.zeros_like({0}), {0})")},
            rule=r"\operatorname{softplus}' = \sigma = 1 - e^{-\operatorname{softplus}}"))
register(Op("identity", _identity, rule=None))
register(Op("sqrt", sqrt, Code("np.sqrt({0})"), latex=r"\sqrt{{0}}", reads=("sqrt",),
            code={"triton": Code("_tl.sqrt({0})"), "torch": Code("torch.sqrt({0})")},
            rule=r"\sqrt{z}' = 1 / (2 \sqrt{z})"))
register(Op("abs", abs_, Code("np.abs({0})"), Code("abs({0})"), latex=r"\left|{0}\right|",
            code={"triton": Code("_tl.abs({0})"), "torch": Code("torch.abs({0})")},
            reads=("abs",), rule=r"|z|' = \operatorname{sign}(z)\text{, 0 at } z = 0"))
register(Op("max", max_, Code("np.maximum({0}, {1})"), Code("max({0}, {1})"),
            latex=r"\max\left({0}, {1}\right)", reads=("max",), arity=2,
            code={"triton": Code("_tl.maximum({0}, {1})"), "torch": Code("torch.maximum({0}, {1})")},
            rule=r"\partial \max(a, b) / \partial a = \operatorname{step}(a - b)\text{, } "
                 r"\tfrac{1}{2} \text{ at a tie}"))
register(Op("min", min_, Code("np.minimum({0}, {1})"), Code("min({0}, {1})"),
            latex=r"\min\left({0}, {1}\right)", reads=("min",), arity=2,
            code={"triton": Code("_tl.minimum({0}, {1})"), "torch": Code("torch.minimum({0}, {1})")},
            rule=r"\partial \min(a, b) / \partial a = \operatorname{step}(b - a)\text{, } "
                 r"\tfrac{1}{2} \text{ at a tie}"))
register(Op("step", step, Code("np.heaviside({0}, 0)"), Code("({F}(1) if {0} > {F}(0) else {F}(0))"),
            latex=_call_latex("step"), reads=("step",),
            code={"triton": Code("_tl.where({0} > 0, 1.0, 0.0).to({F})"),
                  "torch": Code("({0} > 0).to({0}.dtype)")}))
register(Op("sign", sign, Code("np.sign({0})"), latex=_call_latex("sign"), reads=("sign", "sgn"),
            code={"triton": Code("_tl.where({0} > 0, 1.0, _tl.where({0} < 0, -1.0, 0.0)).to({F})"),
                  "torch": Code("torch.sign({0})")}))


#: SymPy functions that appear in derivatives without being rows (sin' = cos) and that LaTeX
#: writes with a standard command: verify reads them, SymPy prints them, NumPy evaluates them.
STANDARD_LATEX = {"sin": sp.sin, "cos": sp.cos, "tan": sp.tan, "sinh": sp.sinh, "cosh": sp.cosh,
                  "tanh": sp.tanh, "exp": sp.exp, "log": sp.log, "ln": sp.log}


def latex_reads() -> dict[str, Callable]:
    """LaTeX command or word -> SymPy builder, for every row and the standard functions."""
    names = dict(STANDARD_LATEX)
    for op in TABLE.values():
        if isinstance(op.sympy, type):
            for r in op.reads:
                names[r] = op.sympy
    return names


def arity_of(func) -> int:
    op = _BY_CLASS.get(func) or getattr(func, "op", None)
    return op.arity if isinstance(op, Op) else 1


_STANDARD_REFERENCES: dict[type, Callable] = {}


def reference_of(expr) -> Callable | None:
    """The NumPy function that evaluates the head of ``expr``: its row's own code, or for a SymPy
    function outside the table (``cos`` in sin') SymPy's NumPy spelling of it."""
    op = op_of(expr)
    if op is not None and op.numpy is not None:
        return op.reference()
    cls = type(expr)
    if op is None and isinstance(expr, sp.Function) and len(expr.args) == 1 \
            and cls.__module__.startswith("sympy."):
        if cls not in _STANDARD_REFERENCES:
            _STANDARD_REFERENCES[cls] = sp.lambdify(ARGUMENT, cls(ARGUMENT), modules="numpy")
        return _STANDARD_REFERENCES[cls]
    return None


def rules_of(exprs) -> list[str]:
    """The derivative rules (LaTeX) of the rows used in ``exprs``, each once, by name."""
    ops = {}
    for e in exprs:
        for f in sp.sympify(e).atoms(sp.Function):
            op = op_of(f)
            if op is not None and op.rule:
                ops[op.name] = op.rule
    return [ops[k] for k in sorted(ops)]
