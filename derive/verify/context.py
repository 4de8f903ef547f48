"""What the names of a formula mean for one cell: values, adjoints, shapes, local derivatives.

A ``Context`` joins a cell's derivation and a reading table (``vocabulary``). It knows which
symbol a written name stands for at a time offset (``c`` at t-1 is ``c_prev``; the adjoint of a
state at t-1 is ``dc_prev``, what step t hands back), whether a value is a matrix, and what a
product of two operands means (``product``: a matrix beside a vector is a matrix-vector product,
a vector beside a transposed vector an outer product, two vectors an elementwise product).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import sympy as sp

from derive import ops
from derive.ops import FUNCTIONS, sigmoid
from derive.linear import REDUCTIONS, MatVec, MatVecT, Outer, RowMean, RowSum

from .errors import VerifyError
from .nodes import PROBE_PREFIX, HCat, Jacobian, MatMul, MatTranspose, Probed, Row, VCat, VStack
from .sequence import shifted, split_symbol, target_name
from .vocabulary import Entry, Reading, default_reading


@dataclass
class Token:
    kind: str
    text: str
    pos: int
    end: int


@dataclass
class Claim:
    """``sides[0] = sides[1] = ...``; ``at_last``: the formula speaks of the last step T only."""

    sides: list
    at_last: bool
    normalized: str



# -- what names mean ------------------------------------------------------------------------

class Context:
    """The cell (its derivation) and the reading table a formula is read against."""

    def __init__(self, derivation, reading: Reading | None = None):
        self.d = derivation
        self.cell = derivation.cell
        base = default_reading(derivation)
        self.reading = reading or base
        self.symbols: dict[str, Entry] = {}
        for key, entry in self.reading.symbols.items():
            if self._entry_fits(entry):
                self.symbols[key] = entry
        for key, entry in base.symbols.items():
            self.symbols.setdefault(key, entry)
        self.losses = dict(self.reading.losses) or dict(base.losses)
        # words read as functions: the cell's own [functions], the ones it uses, and sigmoid
        used = {ops.op_of(f) for eq in derivation.forward for f in eq.rhs.atoms(sp.Function)}
        # and the reductions it uses, by their spec name and their class's (``mean``, ``RowMean``)
        reductions = {type(r) for eq in derivation.forward for r in eq.rhs.atoms(*REDUCTIONS.values())}
        self.functions = {**{op.name: op.sympy for op in used if op is not None},
                          **getattr(self.cell, "functions", {}), "sigmoid": sigmoid,
                          **{r.word: r for r in reductions}, **{r.__name__: r for r in reductions}}
        self.names = set(derivation.quantities) | {eq.target for eq in derivation.backward} | \
            set(derivation.carried.values()) | set(derivation.upstream.values()) | \
            {s + "_prev" for s in self.cell.states} | {target_name(o) for o in derivation.upstream}
        self.bases = {re.split(r"[_^]", k)[0] for k in [*self.symbols, *self.losses]}
        self.bases |= {k for k in self.functions if k not in self.symbols}
        self.forward_of = {eq.lhs: eq.rhs for eq in derivation.forward}
        self.saved = {eq.rhs: sp.Symbol(eq.lhs) for eq in derivation.forward
                      if isinstance(eq.rhs, sp.Function) and not isinstance(eq.rhs, MatVec)}

    def _entry_fits(self, entry: Entry) -> bool:
        """A notation written for several cells keeps only the entries naming this cell's values."""
        for text in (entry.forward, entry.adjoint):
            if text is None:
                continue
            names = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", text)) - {
                "HCat", "VCat", "VStack", "MatTranspose", "Row", "SumT", "SumN", "MatVec", "MatVecT", "Outer",
                *FUNCTIONS}
            known = set(self.d.quantities) | {eq.target for eq in self.d.backward} | \
                set(self.d.carried.values()) | set(self.d.upstream.values()) | \
                {s + "_prev" for s in self.d.cell.states} | {target_name(o) for o in self.d.upstream}
            if not names <= known:
                return False
        return True

    # names at a time offset ------------------------------------------------------------------
    def is_state(self, name: str) -> bool:
        return name in self.cell.states

    def ref(self, name: str, k: int) -> str:
        """The symbol of cell value ``name`` taken ``k`` steps from t."""
        if name.endswith("_prev") and self.is_state(name[:-5]):
            return name[:-5] if k == 1 else shifted(name, k) if k else name
        if self.is_state(name) and k == -1:
            return name + "_prev"
        return shifted(name, k)

    def adjoint(self, name: str, k: int) -> str:
        """``d`` of cell value ``name`` at offset k, in the per-step convention of BPTT code:
        the adjoint of a state at t-1 is what step t hands back (``dc_prev``)."""
        if name not in self.d.quantities and not (name.endswith("_prev") and self.is_state(name[:-5])):
            raise ValueError(name)
        if self.is_state(name) and k == -1:
            return "d" + name + "_prev"
        return shifted("d" + name, k)

    def is_matrix(self, symbol_name: str) -> bool:
        base = split_symbol(symbol_name)[0]
        q = self.d.quantities.get(base)
        if q is None and base.startswith("d"):
            q = self.d.quantities.get(base[1:])
        return q is not None and len(q.shape) == 2

    def kind(self, e) -> str:
        """'num', 'vec' (per-sample column), 'row' (a transposed vector) or 'mat'."""
        if isinstance(e, sp.Symbol):
            return "mat" if self.is_matrix(e.name) else "vec"
        if e.is_Number:
            return "num"
        if isinstance(e, Row):
            return "row"
        if isinstance(e, (MatTranspose, HCat, VStack, Outer, Jacobian, Probed, MatMul)):
            return "mat"
        if isinstance(e, (MatVec, MatVecT, VCat)):
            return "vec"
        kinds = {self.kind(a) for a in e.args}
        for k in ("mat", "row", "vec"):
            if k in kinds:
                return k
        return "num"

    def shift_expr(self, e, k: int):
        if k == 0:
            return e
        if e.has(Jacobian):                   # a Jacobian keeps its step as its last argument
            held = {J: sp.Dummy("J") for J in e.atoms(Jacobian)}
            moved = self.shift_expr(e.xreplace(held), k)
            return moved.xreplace({z: Jacobian(J.args[0], J.args[1], J.args[2] + k)
                                   for J, z in held.items()})
        return e.xreplace({s: sp.Symbol(self._shift_name(s.name, k)) for s in e.free_symbols})

    def _shift_name(self, name: str, k: int) -> str:
        base, variant, shift = split_symbol(name)
        if self.cell.params and base in self.cell.params:
            return name
        if variant == "full" and shift == 0:
            return self.ref(base, k) if (base in self.d.quantities or base.endswith("_prev")) \
                else shifted(name, k)
        return shifted(name, k)

    def sympy_value(self, text: str):
        from .sympy_syntax import SympySyntaxParser
        return SympySyntaxParser(text, self).parse_expr_only()




def product(ctx: Context, a, b, op: str, where: str):
    """``a op b`` with the meaning the operand kinds give (matrix next to vector: a product)."""
    ka, kb = ctx.kind(a), ctx.kind(b)

    def fail():
        raise VerifyError(f"cannot combine a {KIND_WORD[ka]} and a {KIND_WORD[kb]} with {op!r}", where)

    if op == "otimes":
        if ka == "row" and kb == "vec":
            return Outer(b, a.args[0])
        if ka == "vec" and kb in ("vec", "row"):
            return Outer(a, b.args[0] if kb == "row" else b)
        fail()
    if op == "/":
        if kb not in ("num", "vec") or ka == "row":
            fail()
        return a / b
    if op == "odot":
        if "mat" in (ka, kb) or "row" in (ka, kb):
            fail()
        return a * b
    if ka == "num" or kb == "num" or (ka == "vec" and kb == "vec"):
        return a * b
    if ka == "mat" and kb == "mat" and op == "*":
        return MatMul(a, b)                         # A B, a chain of Jacobians
    if ka == "mat" and kb == "vec" and isinstance(a, MatMul):
        return _apply(a, b, transposed=False, ctx=ctx)
    if ka in ("vec", "row") and kb == "mat" and isinstance(b, MatMul):
        return _apply(b, a.args[0] if ka == "row" else a, transposed=True, ctx=ctx)
    if ka == "mat" and kb == "vec" and _has_jacobian(a):
        return _apply(a, b, transposed=False, ctx=ctx)   # J v: the forward (tangent) product
    if ka in ("vec", "row") and kb == "mat" and _has_jacobian(b):
        v = a.args[0] if ka == "row" else a         # v^T J = (J^T v)^T: the adjoint product
        return _apply(b, v, transposed=True, ctx=ctx)
    if op == "*" and isinstance(b, Outer) and ka == "vec":
        return Outer(a * b.left, b.right)        # δ * (u v^T): δ scales the rows, (δ ⊙ u) v^T
    if op == "*" and isinstance(a, Outer) and kb == "vec":
        return Outer(a.left * b, a.right)
    if ka == "mat" and kb == "vec":
        return MatVecT(a.args[0], b) if isinstance(a, MatTranspose) else MatVec(a, b)
    if ka in ("vec", "row") and kb == "mat":          # v^T M = (M^T v)^T
        v = a.args[0] if ka == "row" else a
        return MatVec(b.args[0], v) if isinstance(b, MatTranspose) else MatVecT(b, v)
    if ka == "vec" and kb == "row":
        coef, v = row_parts(b)
        return Outer(a * coef, v) if v is not None else fail()
    if ka == "row" and kb == "vec":                   # x^T da, rows as samples: sum_n x_n da_n^T
        coef, v = row_parts(a)
        return Outer(v, b * coef) if v is not None else fail()
    fail()


def row_parts(e):
    """``c ⊙ v^T`` as (c, v) (the derivative of W v with respect to W is v^T); (None, None) for
    any other transposed vector expression."""
    if isinstance(e, Row):
        return sp.Integer(1), e.args[0]
    if isinstance(e, sp.Mul):
        rows = [a for a in e.args if isinstance(a, Row)]
        if len(rows) == 1:
            return sp.Mul(*(a for a in e.args if a is not rows[0])), rows[0].args[0]
    return None, None


def prod(ctx: Context, a, b, where):
    """d2l's prod(., .): the product of an adjoint and a derivative with whatever transposes
    the shapes need: prod(δ, ∂h_{t+1}/∂h_t) = (∂h_{t+1}/∂h_t)^T δ, prod(δ, ∂o/∂W) = δ h^T."""
    ka, kb = ctx.kind(a), ctx.kind(b)
    if ka == "mat" and kb == "vec":
        a, b, ka, kb = b, a, kb, ka
    if ka == "vec" and kb == "mat":
        if _has_jacobian(b):
            return _apply(b, a, transposed=True, ctx=ctx)
        return MatVec(b.args[0], a) if isinstance(b, MatTranspose) else MatVecT(b, a)
    return product(ctx, a, b, "*", where)


def _has_jacobian(e) -> bool:
    return bool(e.atoms(Jacobian))


#: what is left when SymPy cannot differentiate a node (a reduction, or a function without a
#: derivative): unreadable, never evaluated as a wrong number
NO_DERIVATIVE = "a derivative through a reduction (mean, sum) or a function SymPy cannot differentiate"


def _apply(J, v, transposed: bool, ctx: "Context"):
    """J v or J^T v for a Jacobian (or its transpose, or a sum of them) and a vector."""
    if isinstance(J, sp.Add):
        return sp.Add(*(_apply(term, v, transposed, ctx) for term in J.args))
    if isinstance(J, MatTranspose):
        return _apply(J.args[0], v, not transposed, ctx)
    if isinstance(J, sp.Mul):                 # c J: a number times a matrix
        mats = [a for a in J.args if ctx.kind(a) == "mat"]
        rest = [a for a in J.args if a not in mats]
        if len(mats) != 1 or any(ctx.kind(a) != "num" for a in rest):
            raise VerifyError("a Jacobian in a product this reader cannot form")
        return sp.Mul(*rest) * _apply(mats[0], v, transposed, ctx)
    if isinstance(J, MatMul):                 # (A B) v = A (B v); (A B)^T v = B^T (A^T v)
        first, second = J.args if transposed else J.args[::-1]
        return _apply(second, _apply(first, v, transposed, ctx), transposed, ctx)
    if not isinstance(J, Jacobian):
        if ctx.kind(J) != "mat":
            raise VerifyError("a Jacobian in a product this reader cannot form")
        return MatVecT(J, v) if transposed else MatVec(J, v)     # a plain matrix in the chain
    expr, target, k = J.args
    k = int(k)
    v = ctx.shift_expr(v, -k)
    out = _chain(expr, target, v, transposed)
    if out.has(sp.Derivative):                # through a node SymPy cannot differentiate
        raise VerifyError(NO_DERIVATIVE)
    return ctx.shift_expr(out.xreplace(ctx.saved), k)


def _pieces(e, target):
    """e as F(z_0 = target, z_1 = W_1 u_1, ...): F with dummies, and the products it replaced
    (the outermost matrix-vector products that contain target)."""
    nodes = [n for n in e.atoms(MatVec, MatVecT) if target in n.free_symbols]
    outermost = [n for n in nodes if not any(m is not n and m.has(n) for m in nodes)]
    dummies = {n: sp.Dummy("z") for n in outermost}
    zero = sp.Dummy("z0")
    return e.xreplace(dummies).xreplace({target: zero}), zero, dummies


def _chain(e, target, v, transposed: bool):
    """(∂e/∂target)^T v (``transposed``: the adjoint product) or (∂e/∂target) v (the tangent
    one), by the chain rule: the elementwise factor of target itself, then each outermost
    matrix-vector product that contains it (W^T into the product going back, W coming forth)."""
    if target not in e.free_symbols:
        return sp.Integer(0)
    if isinstance(e, VCat) and not transposed:      # a stacked array: each block's tangent
        blocks = [_chain(a, target, v, False) for a in e.args]
        if any(b == 0 for b in blocks):
            raise VerifyError(f"a derivative of a stack whose blocks do not all depend on {target}")
        return VCat(*blocks)
    F, zero, dummies = _pieces(e, target)
    undo = {z: n for n, z in dummies.items()} | {zero: target}
    out = sp.diff(F, zero).xreplace(undo) * v
    for node, z in dummies.items():
        if target in node.matrix.free_symbols:
            raise VerifyError("a derivative with respect to a vector inside a matrix")
        factor = sp.diff(F, z).xreplace(undo)
        if transposed:
            back = MatVecT if isinstance(node, MatVec) else MatVec
            out += _chain(node.vector, target, back(node.matrix, factor * v), True)
        else:
            out += factor * type(node)(node.matrix, _chain(node.vector, target, v, False))
    return out


def _input_of(e):
    """The vector a Jacobian (or a chain of them, A B: B's) takes its derivative with respect
    to; None when it has no one such vector (a sum of Jacobians w.r.t. different vectors)."""
    if isinstance(e, Jacobian):
        return e.args[1]
    if isinstance(e, MatMul):
        return _input_of(e.args[1]) if e.args[1].has(Jacobian) else None
    if isinstance(e, sp.Add):
        found = {_input_of(a) for a in e.args}
        return found.pop() if len(found) == 1 else None
    if isinstance(e, sp.Mul):
        mats = [a for a in e.args if a.has(Jacobian)]
        return _input_of(mats[0]) if len(mats) == 1 else None
    return None


def matrix_claim(ctx: Context, sides: list, where):
    """``∂a/∂h_prev = W_h``: a Jacobian claimed equal to a matrix, judged as a matrix. Every side
    is applied to a probe vector p in the space of h and evaluated at each unit vector
    (``Probed``), so the whole matrix is compared, sample by sample. A written matrix is J in the
    notation's ``layout = "numerator"`` (d2l's ∂h_t/∂h_{t-1} = W_hh), J^T in ``"denominator"``
    (rows as samples, a = h W: CS231n's ∂a/∂h_prev = W_h); an elementwise value v is diag(v)."""
    targets = {_input_of(side) for side in sides if side.has(Jacobian)}
    if len(targets) != 1 or None in targets:
        raise VerifyError("a matrix claim with derivatives with respect to different vectors", where)
    probe = sp.Symbol(PROBE_PREFIX + targets.pop().name)
    out = []
    for side in sides:
        kind = ctx.kind(side)
        if side.has(Jacobian):
            if kind != "mat":
                raise VerifyError("a Jacobian in a product this reader cannot form", where)
            value = _apply(side, probe, transposed=False, ctx=ctx)
        elif kind == "mat":
            written = transpose(ctx, side, where) if ctx.reading.layout == "denominator" else side
            value = product(ctx, written, probe, "*", where)
        elif kind in ("vec", "num"):
            value = side * probe
        else:
            raise VerifyError(f"a {KIND_WORD[kind]} where the Jacobian's matrix belongs", where)
        out.append(Probed(value, probe))
    return out


KIND_WORD = {"num": "number", "vec": "vector", "row": "transposed vector", "mat": "matrix"}


def transpose(ctx: Context, e, where: str):
    k = ctx.kind(e)
    if k == "vec":
        return Row(e)
    if k == "row":                  # (c ⊙ v^T)^T = c ⊙ v: the coefficient stays
        coef, v = row_parts(e)
        if v is None:
            raise VerifyError("transpose of a transposed vector expression it cannot split", where)
        return coef * v
    if k == "mat":
        return e.args[0] if isinstance(e, MatTranspose) else MatTranspose(e)
    raise VerifyError("transpose of a number", where)



def unprev(ctx: Context, name: str) -> tuple[str, int]:
    if name.endswith("_prev") and ctx.is_state(name[:-5]):
        return name[:-5], -1
    return name, 0


def local_derivative(ctx: Context, of, a: int, wrt: str, b: int, where: str):
    """∂(of at t+a)/∂(wrt at t+b) through the forward equations of one step, the step's other
    inputs held fixed. ``of`` is a cell name or an expression at step t (a document's own
    intermediate, k = i g)."""
    wrt_base, kb = unprev(ctx, wrt)
    b += kb
    if wrt_base in ctx.cell.params:
        b = a                               # a parameter is the same at every step
    if isinstance(of, str):
        of_base, ka = unprev(ctx, of)
        a += ka
        if of_base not in ctx.forward_of:
            raise VerifyError(f"{of_base} is not computed by the cell's forward step", where)
        expr = sp.Symbol(of_base)
    else:
        expr = of
        if any("@" in s.name or "#" in s.name for s in expr.free_symbols):
            raise VerifyError("a derivative of an expression across steps", where)
    if a == b:
        leaf = wrt_base
    elif a == b + 1 and ctx.is_state(wrt_base):
        leaf = wrt_base + "_prev"
    else:
        raise VerifyError("a derivative across more than one step", where)
    target = sp.Symbol(leaf)
    depends = _dependents(ctx, leaf)
    for _ in range(len(ctx.forward_of) + 1):
        subs = {s: ctx.forward_of[s.name] for s in expr.free_symbols
                if s.name in depends and s != target and s.name in ctx.forward_of}
        if not subs:
            break
        expr = expr.xreplace(subs)
    mixed = [r for r in expr.atoms(RowMean, RowSum) if target in r.free_symbols]
    if mixed:       # its Jacobian is not diagonal: no elementwise local derivative exists
        raise VerifyError(f"a local derivative through {mixed[0].word}() of {target}: the reduction "
                          "mixes the entries of the vector, so it has no elementwise derivative", where)
    if ctx.reading.scalar:                  # every size is 1: W v is the number W times v
        expr = expr.replace(lambda e: isinstance(e, MatVec), lambda e: e.args[0] * e.args[1])
        value = _products_back(ctx, sp.diff(expr, target))
    else:
        value = _through_products(ctx, expr, target, where, a)
        if isinstance(value, Jacobian):
            return value              # shifted and written in saved values when applied
    if value.has(sp.Derivative):              # through a node SymPy cannot differentiate
        raise VerifyError(NO_DERIVATIVE, where)
    return ctx.shift_expr(value.xreplace(ctx.saved), a)


def _through_products(ctx: Context, expr, target, where, a: int):
    """∂expr/∂target where target sits in matrix-vector products: with respect to a matrix W,
    W v contributes v^T (a row: δ ∂a/∂W is δ v^T); with respect to a vector, a ``Jacobian``."""
    nodes = [n for n in expr.atoms(MatVec, MatVecT) if target in n.free_symbols]
    if not nodes:
        return sp.diff(expr, target)
    if not ctx.is_matrix(target.name):
        return Jacobian(expr, target, sp.Integer(a))
    jacobian = VerifyError("this derivative is a matrix (Jacobian); write it through an adjoint",
                           where)
    dummies = {n: sp.Dummy("z") for n in nodes}
    outer = expr.xreplace(dummies)
    if target in outer.free_symbols or any(not isinstance(n, MatVec) or n.matrix != target or
                                           target in n.vector.free_symbols for n in nodes):
        raise jacobian
    back = {z: n for n, z in dummies.items()}
    return sp.Add(*(sp.diff(outer, z).xreplace(back) * Row(n.vector) for n, z in dummies.items()))
def _products_back(ctx: Context, e):
    """A product with a matrix factor as the matrix-vector product it stands for (sizes 1)."""
    if not e.args:
        return e
    args = [_products_back(ctx, a) for a in e.args]
    if isinstance(e, sp.Mul):
        mats = [a for a in args if isinstance(a, sp.Symbol) and ctx.is_matrix(a.name)]
        rest = [a for a in args if a not in mats]
        if mats and rest:
            value = sp.Mul(*rest)
            for m in mats:
                value = MatVec(m, value)
            return value
    return e.func(*args)


def _dependents(ctx: Context, leaf: str) -> set[str]:
    """Forward values that depend on ``leaf`` within one step."""
    out = {leaf}
    for eq in ctx.d.forward:
        if any(s.name in out for s in eq.rhs.free_symbols):
            out.add(eq.lhs)
    return out
