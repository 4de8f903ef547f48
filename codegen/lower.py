"""Lower a ``Derivation`` to a kernel plan: where every value lives and which products are packed.

The plan makes every layout decision, so that a backend only prints it:

* products ``W @ v`` that share the vector ``v`` form one ``ProductGroup``; their matrices are
  stacked into one packed matrix and computed as one GEMM (the four LSTM gates' ``W @ x`` are one
  (4H x D) product, likewise for ``h_prev``);
* a group whose vector is an input (``x``) depends on nothing recurrent: it is hoisted out of the
  time loop as one GEMM over all T*N rows, with the biases of its equations folded in, and its
  matrices' gradients (and ``dx``) are one GEMM each after the backward loop;
* the adjoints of the products' results (``da_i``, ...) are stored per step in one buffer whose
  columns are ordered so that every group is a contiguous block: the adjoint a vector receives
  (``dh_prev``) is one packed product per step, and each weight gradient is one GEMM over the
  stacked per-step adjoints after the loop; bias gradients are sums of that buffer;
* a reduction over a row (``mu = mean(a)``, and ``mean(dmu)`` in the backward) is a
  ``Reduction`` step of its own: the elementwise statements of one step are cut into
  ``Segment``s at each product and each reduction (a fused loop in Numba); values crossing a
  cut live in per-step scratch arrays;
* the cache keeps the values the backward equations read (activations, not pre-activations).

The plan holds SymPy expressions over symbols named as in the derivation; placeholders stand for
blocks of buffers (``Ref``) and are printed by each backend in its own indexing. Every name the
plan invents (buffers, packed matrices, common subexpressions) starts with ``_``: a spec name
starts with a letter, so the two can never meet.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections import Counter
from dataclasses import dataclass, field

import sympy as sp

from derive import Derivation
from derive.linear import REDUCTIONS, MatVec, MatVecT, Outer

_REDUCTION_TYPES = tuple(REDUCTIONS.values())

MAX_LAYOUT_SEARCH = 8  # stored adjoints up to which a contiguous column order is searched for


@dataclass(frozen=True)
class Product:
    """``matrix @ vector``, a term of the affine equation ``target``."""

    matrix: str
    vector: str
    target: str
    rows: str  # size name of the result


#: Names the templates write as they are (API locals, loop indices, run sizes, fixed buffers).
FIXED_NAMES = ("_T", "_N", "_t", "_n", "_j", "_F", "_dtype", "_sizes", "_params", "_state0",
               "_lengths", "_cache", "_outputs", "_state", "_d_outputs", "_d_state", "_grads",
               "_dpre_seq", "_dpre_flat", "_dpre_sum", "_active", "_held", "_stop", "_acc", "_inputs",
               "_input_dict", "_input_label")


class Namespace:
    """Every name the kernel generator invents: a pattern over a spec name that starts with
    ``_`` (``_{}_seq`` gives ``_h_seq``). Spec names start with a letter, so they never meet these;
    two patterns that give the same text (``_packed_{}`` of ``h_seq``, ``_{}_seq`` of
    ``packed_h``) are told apart by a number, so generated names are unique by construction."""

    def __init__(self, fixed=FIXED_NAMES):
        self._issued: set[str] = set(fixed)
        self._memo: dict[tuple[str, str], str] = {}

    def __call__(self, pattern: str, name: str) -> str:
        key = (pattern, name)
        if key not in self._memo:
            base = pattern.format(name)
            assert base.startswith("_"), pattern
            out = base
            for k in itertools.count(2):
                if out not in self._issued:
                    break
                out = f"{base}{k}"
            self._issued.add(out)
            self._memo[key] = out
        return self._memo[key]


@dataclass(frozen=True)
class ProductGroup:
    """Products sharing one vector, computed as one GEMM with the packed matrix ``packed``.

    ``proj`` holds the products' results: (T, N, R) when hoisted, else (N, R); ``linear`` is
    ``sum_k W_k^T da_k``, this group's part of the adjoint of the vector."""

    vector: str
    products: tuple[Product, ...]
    hoisted: bool              # vector is an input: one GEMM over T*N rows before the loop
    cols: str                  # size name of the vector
    packed: str
    proj: str
    linear: str
    constant: bool = False     # vector is a parameter: one product for all steps and rows

    @property
    def per_step(self) -> bool:
        """Computed by a GEMM inside the time loop (the vector is recurrent or computed)."""
        return not self.hoisted and not self.constant

    @property
    def matrices(self) -> tuple[str, ...]:
        return tuple(p.matrix for p in self.products)


@dataclass(frozen=True)
class Ref:
    """A block of ``size`` columns starting at ``offset`` in ``buffer``."""

    buffer: str
    offset: sp.Expr
    size: str
    per_step: bool             # the buffer has a leading time axis


@dataclass(frozen=True)
class Stmt:
    """``target = expr`` elementwise over (N, size); stored to ``stores`` if the value outlives it.

    ``accumulate`` marks a parameter gradient summed over the batch (and time) into ``target``.
    """

    target: str
    expr: sp.Expr
    size: str
    tag: str
    note: str
    stores: tuple[str, ...] = ()   # array locations, see Plan.locations
    accumulate: bool = False


@dataclass(frozen=True)
class GroupProduct:
    """The per-step GEMM of a non-hoisted group: forward ``proj = v @ packed.T`` or backward
    ``d<v>_linear = dpre[t, :, block] @ packed``."""

    group: ProductGroup
    tag: str
    note: str


@dataclass(frozen=True)
class Reduction:
    """``target = mean(vector)`` (or ``sum``) over each row, repeated over the row's ``size``
    columns; ``vector`` is a value or an adjoint computed before it."""

    target: str
    op: str                        # "mean" | "sum"
    vector: str
    size: str
    tag: str
    note: str
    stores: tuple[str, ...] = ()


@dataclass(frozen=True)
class Segment:
    """Statements fused into one loop over (N, size); ``loads`` are read from arrays first."""

    size: str
    stmts: tuple[Stmt, ...]
    loads: tuple[str, ...]


@dataclass
class Plan:
    """A kernel plan: the product groups, the per-step statements of both passes (segments and
    per-step GEMMs), where every value lives, and how each parameter's gradient is formed."""

    derivation: Derivation
    groups: tuple[ProductGroup, ...]
    dpre: tuple[str, ...]                    # targets whose adjoints are stored, in column order
    forward_steps: list                      # Segment | GroupProduct
    backward_steps: list
    refs: dict[str, Ref]                     # placeholder symbol name -> buffer block
    locations: dict[str, str] = field(default_factory=dict)   # value -> kind of array holding it
    saved_seq: tuple[str, ...] = ()          # intermediates stored per step for the backward
    output_seq: tuple[str, ...] = ()         # outputs that are not states, stored per step
    scratch_forward: tuple[tuple[str, str], ...] = ()   # (name, size) crossing segments
    scratch_backward: tuple[tuple[str, str], ...] = ()
    hoisted_bias: dict[str, tuple[str, ...]] = field(default_factory=dict)  # target -> biases
    param_grads: dict[str, list] = field(default_factory=dict)   # param -> how its grad is formed
    input_linear: dict[str, ProductGroup] = field(default_factory=dict)  # input -> hoisted group
    input_loop: tuple[str, ...] = ()         # inputs with an elementwise gradient part
    sizes: dict[str, tuple[str, int, str]] = field(default_factory=dict)
    names: Namespace = field(default_factory=Namespace)

    @property
    def cell(self):
        return self.derivation.cell

    def group(self, vector: str) -> ProductGroup:
        return next(g for g in self.groups if g.vector == vector)

    def dpre_block(self, group: ProductGroup) -> tuple[sp.Expr, sp.Expr] | None:
        """(start, stop) columns of the group in the dpre buffer, None if not contiguous."""
        idx = [self.dpre.index(p.target) for p in group.products]
        if idx != list(range(idx[0], idx[0] + len(idx))):
            return None
        return self.dpre_offset(idx[0]), self.dpre_offset(idx[-1] + 1)

    def dpre_offset(self, k: int) -> sp.Expr:
        q = self.derivation.quantities
        return sp.Add(*(sp.Symbol(q[name].shape[0]) for name in self.dpre[:k]))

    def group_offset(self, group: ProductGroup, k: int) -> sp.Expr:
        return sp.Add(*(sp.Symbol(p.rows) for p in group.products[:k]))

    def width(self, names) -> sp.Expr:
        q = self.derivation.quantities
        return sp.Add(*(sp.Symbol(q[n].shape[0]) for n in names))


def _products(d: Derivation) -> list[Product]:
    return [Product(m.matrix.name, m.vector.name, eq.lhs, d.quantities[m.matrix.name].shape[0])
            for eq in d.forward for m in sp.Add.make_args(eq.rhs) if isinstance(m, MatVec)]


def _groups(d: Derivation, names: Namespace) -> tuple[ProductGroup, ...]:
    products = _products(d)
    vectors = list(dict.fromkeys(p.vector for p in products))
    groups = []
    for v in vectors:
        members = tuple(p for p in products if p.vector == v)
        targets = [p.target for p in members]
        if len(set(targets)) != len(targets):
            raise NotImplementedError(f"two products with vector {v} in one equation")
        hoisted = d.quantities[v].role == "input"
        groups.append(ProductGroup(v, members, hoisted, d.quantities[v].shape[0], names("_packed_{}", v),
                                   names("_proj_{}", v), names("_d{}_linear", v),
                                   constant=d.quantities[v].role == "param"))
    # hoisted and constant groups first: their GEMM runs before the loop
    return tuple(sorted(groups, key=lambda g: g.per_step))


def _dpre_order(d: Derivation, groups) -> tuple[str, ...]:
    """Order the stored adjoints so that every group's targets are contiguous, if possible,
    keeping each group's own order (so packed matrices and dpre blocks agree)."""
    first = list(dict.fromkeys(p.target for g in groups for p in g.products))
    if len(first) > MAX_LAYOUT_SEARCH:
        return tuple(first)
    forward_order = [eq.lhs for eq in d.forward]
    candidates = sorted(itertools.permutations(first),
                        key=lambda perm: [forward_order.index(n) for n in perm])
    for perm in candidates:
        if all(_contiguous(perm, [p.target for p in g.products]) for g in groups):
            return perm
    return tuple(first)


def _contiguous(order, members) -> bool:
    idx = sorted(order.index(m) for m in members)
    return idx == list(range(idx[0], idx[0] + len(idx)))


def _reorder_groups(groups, dpre):
    """Sort each group's products by their column in dpre, so block k of the packed matrix is
    block k of the group's dpre columns."""
    return tuple(dataclasses.replace(g, products=tuple(sorted(g.products, key=lambda p: dpre.index(p.target))))
                 for g in groups)


def lower(d: Derivation) -> Plan:
    cell = d.cell
    q = d.quantities
    names = Namespace()
    groups = _groups(d, names)
    dpre = _dpre_order(d, groups)
    groups = _reorder_groups(groups, dpre)
    plan = Plan(d, groups, dpre, [], [], {}, names=names)

    # -- where values live ------------------------------------------------------------------
    states = set(cell.states)
    # what the backward reads, and the vectors of the products (a [buffers] matrix's vector is
    # not saved by the derivation, but the backends compute each step's products from the row)
    vectors = {g.vector for g in groups}
    saved_seq = tuple(eq.lhs for eq in d.forward
                      if eq.lhs not in states and (eq.lhs in d.saved or eq.lhs in vectors))
    output_seq = tuple(o for o in cell.outputs if o not in states)
    plan.saved_seq = tuple(n for n in saved_seq if n not in output_seq)
    plan.output_seq = output_seq
    loc = plan.locations
    for s in cell.states:
        loc[s] = "state"
        loc[f"{s}_prev"] = "prev_state"
        loc[d.carried[s]] = "carried"
        loc[f"d{s}_prev"] = "carried_out"
    for name in (*plan.saved_seq, *output_seq):
        loc[name] = "seq"
    for name in cell.inputs:
        loc[name] = "input"
    for up in d.upstream.values():
        loc[up] = "upstream"
    for p in cell.params:
        loc[p] = "param"
    for name in dpre:
        loc["d" + name] = "dpre"
    for name in cell.inputs:
        loc["d" + name] = "input_grad"

    # -- sizes: where each is read at run time -----------------------------------------------
    # the first input, then the parameters, then other inputs: _check_forward reads them in turn
    for name in (cell.inputs[0], *cell.params, *cell.inputs[1:]):
        for axis, size in enumerate(q[name].shape):
            if size not in plan.sizes:
                plan.sizes[size] = (name, axis + (2 if name in cell.inputs else 0), q[name].role)
    missing = set(cell.sizes) - set(plan.sizes)
    if missing:
        raise NotImplementedError(f"sizes {sorted(missing)} are not the shape of any input or parameter")

    _lower_forward(plan)
    _lower_backward(plan)
    return plan


def _placeholder(plan: Plan, ref: Ref, label: str) -> sp.Symbol:
    name = plan.names("_ref{}", f"{ref.buffer}_{label}")
    plan.refs[name] = ref
    return sp.Symbol(name)


def _lower_forward(plan: Plan) -> None:
    d, q, cell = plan.derivation, plan.derivation.quantities, plan.derivation.cell
    by_target = {(p.target, g.vector): (g, k) for g in plan.groups for k, p in enumerate(g.products)}
    # biases fold into the hoisted GEMM's result only where one hoisted group serves the equation:
    # with two (``W @ x + V @ u + b``) each group's result would add them
    hoisted_groups = Counter(p.target for g in plan.groups if g.hoisted for p in g.products)
    hoisted_targets = {target for target, groups in hoisted_groups.items() if groups == 1}
    pending = [g for g in plan.groups if g.per_step]
    defined = set(cell.inputs) | {f"{s}_prev" for s in cell.states} | set(cell.params)
    items: list = []
    for eq in d.forward:
        rhs = eq.rhs
        products = sorted(rhs.atoms(MatVec), key=sp.default_sort_key)
        for g in list(pending):
            if any(m.vector.name == g.vector for m in products):
                assert g.vector in defined, f"{g.vector} used before it is computed"
                items.append(GroupProduct(g, eq.tag, f"{stacked_text(g)} @ {g.vector}"
                                          + (" as one packed product" if len(g.products) > 1 else "")))
                pending.remove(g)
        terms = []
        for term in sp.Add.make_args(rhs):
            if isinstance(term, MatVec):
                g, k = by_target[(eq.lhs, term.vector.name)]
                ref = Ref(g.proj, plan.group_offset(g, k), q[eq.lhs].shape[0], g.hoisted)
                terms.append(_placeholder(plan, ref, eq.lhs))
            elif eq.lhs in hoisted_targets and isinstance(term, sp.Symbol) and term.name in cell.params \
                    and not q[term.name].is_matrix:
                plan.hoisted_bias.setdefault(eq.lhs, ())
                plan.hoisted_bias[eq.lhs] += (term.name,)
            else:
                terms.append(term)
        stores = ()
        loc = plan.locations.get(eq.lhs)
        if loc in ("state", "seq"):
            stores = (eq.lhs,)
        note = _forward_note(eq, plan)
        if isinstance(rhs, _REDUCTION_TYPES):
            # normalization makes a reduction the whole right side, over a named vector
            items.append(Reduction(eq.lhs, rhs.word, rhs.vector.name, q[eq.lhs].shape[0], eq.tag,
                                   note or f"{rhs.word} over the row", stores))
            defined.add(eq.lhs)
            continue
        items.append(Stmt(eq.lhs, sp.Add(*terms), q[eq.lhs].shape[0], eq.tag, note, stores))
        defined.add(eq.lhs)
    plan.forward_steps, plan.scratch_forward = _segments(plan, items, forward=True)


def stacked_text(g: ProductGroup) -> str:
    return g.matrices[0] if len(g.matrices) == 1 else f"[{'; '.join(g.matrices)}]"


def _forward_note(eq, plan) -> str:
    """The spec's own comment on the line the equation comes from (``# forget gate``)."""
    lines = plan.cell.source_text.splitlines()
    raw = lines[eq.line - 1] if eq.line and eq.line <= len(lines) else ""
    comment = raw.split("#", 1)[1].strip() if "#" in raw else ""
    if eq.introduced:
        return f"pre-activation of {eq.source.split('=', 1)[0].strip()}"
    return comment


def _lower_backward(plan: Plan) -> None:
    d, q = plan.derivation, plan.derivation.quantities
    vector_group = {g.vector: g for g in plan.groups}
    dpre_targets = {"d" + t for t in plan.dpre}
    items: list = []
    input_loop = []
    for eq in d.backward:
        eq = _reduce_adjoints(plan, eq, items)
        if eq.role == "param":
            plan.param_grads[eq.of] = _param_grad(plan, eq)
            if any(r[0] == "loop" for r in plan.param_grads[eq.of]):
                items.append(Stmt("d" + eq.of, plan.param_grads[eq.of][-1][1], q[eq.of].shape[0],
                                  eq.tag, f"gradient of {eq.of}, summed over the batch", (),
                                  accumulate=True))
            continue
        linear = [t for t in sp.Add.make_args(eq.expr) if isinstance(t, MatVecT)]
        rest = [t for t in sp.Add.make_args(eq.expr) if not isinstance(t, MatVecT)]
        terms = list(rest)
        if linear:
            g = vector_group[eq.of]
            assert {t.matrix.name for t in linear} == set(g.matrices)
            if g.hoisted:
                plan.input_linear[eq.of] = g
            else:
                items.append(GroupProduct(g, eq.tag, f"{stacked_text(g)}ᵀ @ the adjoints of "
                                          f"{', '.join(p.target for p in g.products)}"
                                          + (" as one packed product" if len(g.products) > 1 else "")))
                terms.append(sp.Symbol(g.linear))
        if eq.role == "input":
            if rest:
                input_loop.append(eq.of)
                items.append(Stmt(eq.target, sp.Add(*rest), q[eq.of].shape[0], eq.tag,
                                  _backward_note(eq, plan), (eq.target,)))
            continue
        stores = ()
        if eq.target in dpre_targets:
            stores = (eq.target,)
        elif eq.role == "prev_state":
            stores = (eq.target,)
        items.append(Stmt(eq.target, sp.Add(*terms), q[eq.of].shape[0], eq.tag, _backward_note(eq, plan),
                          stores))
    plan.input_loop = tuple(input_loop)
    items = _cse(items, plan.names)
    plan.backward_steps, plan.scratch_backward = _segments(plan, items, forward=False)


def _reduce_adjoints(plan: Plan, eq, items: list):
    """``mean(dmu)`` in a backward equation: a Reduction step right before it, into a named value
    that the equation then reads."""
    reductions = sorted(eq.expr.atoms(*_REDUCTION_TYPES), key=sp.default_sort_key)
    if not reductions:
        return eq
    size = plan.derivation.quantities[eq.of].shape[0]
    replace = {}
    for r in reductions:
        target = plan.names(f"_{r.word}_{{}}", r.vector.name)
        items.append(Reduction(target, r.word, r.vector.name, size, "",
                               f"({eq.tag}) {r.word} of {r.vector.name} over the row"))
        replace[r] = sp.Symbol(target)
    return dataclasses.replace(eq, expr=eq.expr.xreplace(replace))


def _backward_note(eq, plan: Plan) -> str:
    """``through f, forget gate (F4)``; a fork sum names each branch."""
    if eq.is_fork:
        return "fork sum: " + " + ".join(
            {"loss": "loss", "next": "next step"}.get(b.source, f"via {b.consumer} ({b.source})")
            for b in eq.branches)
    b = eq.branches[0] if eq.branches else None
    if b is None:
        return "no path to the loss"
    if b.source == "loss":
        return "upstream gradient"
    if b.source == "next":
        return "from step t+1"
    forward = plan.derivation.forward_eq(b.consumer)
    comment = _forward_note(forward, plan) if not forward.introduced else ""
    return f"through {b.consumer}{', ' + comment if comment else ''} ({b.source})"


def _param_grad(plan: Plan, eq) -> list:
    """How a parameter's gradient is formed: ('gemm', group, k) rows of a group's weight
    gradient, ('bias', target) a column sum of dpre, ('linear', group) the transposed products
    of a parameter vector under @ (summed over steps and batch after the loop), ('loop', expr)
    accumulated per step."""
    parts, loop = [], []
    dpre = set(plan.dpre)
    for term in sp.Add.make_args(eq.expr):
        if isinstance(term, Outer):
            g = plan.group(term.right.name)
            k = [p.target for p in g.products].index(term.left.name[1:])
            assert g.products[k].matrix == eq.of
            parts.append(("gemm", g, k))
        elif isinstance(term, sp.Symbol) and term.name.startswith("d") and term.name[1:] in dpre:
            parts.append(("bias", term.name[1:]))
        elif isinstance(term, MatVecT):
            g = plan.group(eq.of)          # a parameter vector under @: constant products
            if ("linear", g) not in parts:
                parts.append(("linear", g))
        else:
            loop.append(term)
    if loop:
        parts.append(("loop", sp.Add(*loop)))
    return parts


def _cse(items: list, names: Namespace) -> list:
    """Common subexpressions of the elementwise backward statements that call a function
    (``tanh(c)``), each defined right before its first use (its operands are defined there: it is
    part of that statement). Cheaper shared terms stay inline, where a reader expects them."""
    stmts = [it for it in items if isinstance(it, Stmt)]
    temps, reduced = sp.cse([s.expr for s in stmts], symbols=sp.numbered_symbols("_cse"), order="none")
    inline: dict[sp.Symbol, sp.Expr] = {}     # cse symbol -> what replaces it in the statements
    temp_defs: dict[sp.Symbol, sp.Expr] = {}  # kept temporary -> its definition
    for sym, expr in temps:
        expr = expr.xreplace(inline)
        if expr.atoms(sp.Function):
            kept = sp.Symbol(_temp_name(expr, len(temp_defs) + 1, names))
            temp_defs[kept] = expr
            inline[sym] = kept
        else:
            inline[sym] = expr
    if not temp_defs:
        return items
    new_exprs = {id(s): e.xreplace(inline) for s, e in zip(stmts, reduced)}
    users: dict[sp.Symbol, list[str]] = {}
    for s in stmts:
        for sym in new_exprs[id(s)].free_symbols & set(temp_defs):
            users.setdefault(sym, []).append(s.tag)
    out, placed = [], set()
    for it in items:
        if isinstance(it, Stmt):
            expr = new_exprs[id(it)]
            for sym in _temps_needed(expr, temp_defs, placed):
                placed.add(sym)
                out.append(Stmt(sym.name, temp_defs[sym], it.size, "",
                                f"({', '.join(users.get(sym, []))}) common subexpression"))
            it = Stmt(it.target, expr, it.size, it.tag, it.note, it.stores, it.accumulate)
        out.append(it)
    return out


def _temp_name(expr, number: int, names: Namespace) -> str:
    """``tanh(c)`` -> ``_tanh_c``; anything else ``_tmp1``, ``_tmp2``, ..."""
    if isinstance(expr, sp.Function) and len(expr.args) == 1 and isinstance(expr.args[0], sp.Symbol):
        return names("_{}", f"{type(expr).__name__}_{expr.args[0].name}")
    return names("_tmp{}", str(number))


def _temps_needed(expr, temp_defs, placed):
    needed = []
    for sym in sorted(expr.free_symbols & set(temp_defs), key=lambda s: s.name):
        if sym in placed or sym in needed:
            continue
        for inner in _temps_needed(temp_defs[sym], temp_defs, placed | set(needed)):
            if inner not in needed:
                needed.append(inner)
        needed.append(sym)
    return needed


def _segments(plan: Plan, items: list, forward: bool):
    """Cut the step at each product and at each change of vector size; find what each segment
    loads and which values cross a cut (scratch arrays)."""
    linear_names = {g.linear for g in plan.groups}
    chunks: list = []
    for it in items:
        if isinstance(it, GroupProduct | Reduction):
            chunks.append(it)
        elif chunks and isinstance(chunks[-1], list) and chunks[-1][0].size == it.size:
            chunks[-1].append(it)
        else:
            chunks.append([it])
    defined_in: dict[str, int] = {}
    size_of: dict[str, str] = {}
    for k, ch in enumerate(chunks):
        if isinstance(ch, list):
            for s in ch:
                defined_in[s.target] = k
                size_of[s.target] = s.size
        elif isinstance(ch, Reduction):
            defined_in[ch.target] = k
            size_of[ch.target] = ch.size
        elif not forward:
            defined_in[ch.group.linear] = k
    scratch: dict[str, str] = {}
    steps = []
    for ch in chunks:
        if isinstance(ch, Reduction):
            n = ch.vector
            if n in defined_in and n not in plan.locations and n not in linear_names:
                scratch[n] = size_of[n]
        if not isinstance(ch, list):
            steps.append(ch)
            continue
        local: set[str] = set()
        loads: list[str] = []
        for s in ch:
            for sym in sorted(s.expr.free_symbols, key=lambda x: x.name):
                n = sym.name
                if n in local or n in loads or n in plan.refs:
                    continue
                if n in defined_in and n not in plan.locations and n not in linear_names:
                    scratch[n] = size_of[n]
                loads.append(n)
            local.add(s.target)
        steps.append(Segment(ch[0].size, tuple(ch), tuple(loads)))
    # a value defined in one segment and loaded by a later one must be stored to its scratch
    steps = [Segment(st.size, tuple(Stmt(s.target, s.expr, s.size, s.tag, s.note,
                                         s.stores + ((s.target,) if s.target in scratch else ()),
                                         s.accumulate) for s in st.stmts), st.loads)
             if isinstance(st, Segment) else st for st in steps]
    steps = [dataclasses.replace(st, stores=st.stores + (st.target,))
             if isinstance(st, Reduction) and st.target in scratch else st for st in steps]
    return steps, tuple(scratch.items())
