"""Render the module text of a kernel for (derivation, backend).

A backend is one printer plus one template. Everything a template lays out is decided here as
finished strings: statement lines with their ``(B5)`` comments, the packing of products, the
array each value is loaded from or stored to. Templates only place these strings.
"""

from __future__ import annotations

import re
from keyword import iskeyword
from dataclasses import dataclass

import sympy as sp

from derive import Derivation, spec_hash

from .env import environment
from .lower import GroupProduct, Plan, ProductGroup, Reduction, Ref, Segment, Stmt, lower, stacked_text
from .numba_printer import KernelNumbaPrinter, helper_context
from .numpy_printer import KernelNumPyPrinter



@dataclass(frozen=True)
class Line:
    code: str
    comment: str = ""


def render_kernel(d: Derivation, backend: str, spec_text: str, spec_label: str,
                  command: str, numba_cache: bool = True) -> str:
    """The text of the generated module for ``backend`` ("numpy" or "numba").

    ``numba_cache=False`` for a module that has no file (built in memory): Numba caches
    compiled kernels beside their source file."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}: expected one of {', '.join(BACKENDS)}")
    plan = lower(d)
    context = _common_context(plan, spec_text, spec_label, command)
    context["numba_cache"] = bool(numba_cache)
    layout = LAYOUTS[backend](plan)
    context.update(layout.context())
    return layout.template(backend).render(**context)


# -- shared between the backends --------------------------------------------------------------

def _size_text(expr: sp.Expr) -> str:
    return str(expr) if expr != 0 else "0"


def own_arrays(entries: list[tuple[str, str, str]], copy) -> list[tuple[str, str, str]]:
    """Gradients printed like an earlier one (rnn's b_ih and b_hh: the same slice of the bias
    sums) get a copy (``copy``: text -> the copy's text), so that no two gradients share memory:
    accumulating into one would change the other."""
    seen, out = set(), []
    for name, text, tag in entries:
        out.append((name, copy(text) if text in seen else text, tag))
        seen.add(text)
    return out


def _block(offset: sp.Expr, size: str) -> str:
    """Slice text of ``size`` columns at ``offset``: ``:H``, ``H:2*H``."""
    stop = offset + sp.Symbol(size)
    start = "" if offset == 0 else str(offset)
    return f"{start}:{stop}"


def _packed_comment(g: ProductGroup) -> str:
    return f"[{'; '.join(g.matrices)}]"


#: init_params arguments that are not sizes
_INIT_ARGUMENTS = ("seed", "dtype")


def _hidden_size(cell) -> str:
    """The size init_params calls hidden_size: the one whose meaning says so, else the first
    state's size (a projection LSTM's h has size P, its hidden size is H)."""
    said = [s for s, meaning in cell.sizes.items()
            if _words(meaning) == "hidden_size" and s != cell.input_size]
    return said[0] if said else cell.hidden_size


def _words(meaning: str) -> str:
    return "_".join(meaning.lower().split())


def _size_keywords(cell) -> list[tuple[str, str]]:
    """(size, init_params keyword) in argument order: the input size, the hidden size, then the
    others as declared, each named by its meaning (``"output size"`` -> ``output_size``). A
    meaning that is no identifier, or whose name is taken, falls back to ``size_<symbol>``."""
    hidden = _hidden_size(cell)
    out = [(cell.input_size, "input_size")]
    if hidden != cell.input_size:
        out.append((hidden, "hidden_size"))
    taken = {"input_size", "hidden_size", *_INIT_ARGUMENTS}
    for size, meaning in cell.sizes.items():
        if size in (cell.input_size, hidden):
            continue
        keyword = _words(meaning)
        if not keyword.isidentifier() or iskeyword(keyword) or keyword in taken:
            keyword = next(k for k in (f"size_{size}", *(f"size_{size}_{n}" for n in range(2, 99)))
                           if k not in taken)
        taken.add(keyword)
        out.append((size, keyword))
    return out


def _size_order(cell) -> list[str]:
    """Input size, hidden size, then the others (as declared); each once."""
    return [size for size, _ in _size_keywords(cell)]


def _common_context(plan: Plan, spec_text: str, spec_label: str, command: str) -> dict:
    d, cell, q = plan.derivation, plan.cell, plan.derivation.quantities
    size_order = _size_order(cell)
    hidden = _hidden_size(cell)
    extra_sizes = [(s, kw) for s, kw in _size_keywords(cell) if s not in (cell.input_size, hidden)]
    for label, text in (("spec label", spec_label), ("command", command)):
        if not text.isprintable():
            raise ValueError(f"the {label} {text!r} would break the generated header: "
                             "it must be printable text on one line")
    return {
        "cell": cell,
        "spec_label": spec_label,
        "spec_hash": spec_hash(spec_text),
        "command": command,
        "input": cell.inputs[0],
        "input_seq": plan.names("_{}_seq", cell.inputs[0]),
        "inputs": [(i, q[i].shape[0], plan.names("_{}_seq", i)) for i in cell.inputs],
        "input_seqs": [(i, plan.names("_{}_seq", i)) for i in cell.inputs],
        "input_unpack": (", ".join(plan.names("_{}_seq", i) for i in cell.inputs) + " = "
                         + ", ".join(f'_inputs["{i}"]' for i in cell.inputs)),
        "input_size": cell.input_size,
        "hidden_size": hidden,
        "sizes": [(s, cell.sizes[s]) for s in size_order],
        "size_sources": [(s, *plan.sizes[s][:2]) for s in size_order if s != cell.input_size],
        "extra_sizes": extra_sizes,
        "param_shapes": [(p, "(" + "".join(f'"{s}", ' for s in q[p].shape).rstrip(", ")
                          + ("," if len(q[p].shape) == 1 else "") + ")")
                         for p in (*cell.params, *cell.initial.values())],
        "buffers": [p for p in cell.params if not q[p].trainable],
        "initial": list(cell.initial.items()),
        # learnable initial values that init_params draws inside their state's positive domain
        "positive_initial": [(s, p) for s, p in cell.initial.items() if q[s].domain == "positive"],
        "states": [(s, q[s].shape[0]) for s in cell.states],
        "state_init": [(s, q[s].init) for s in cell.states],
        "state_domain": [(s, q[s].domain) for s in cell.states],
        "outputs": [(o, q[o].shape[0]) for o in cell.outputs],
        "forward_equations": [f"({eq.tag}) {eq.lhs} = {_plain(eq.rhs)}" for eq in d.forward],
        "backward_equations": [f"({eq.tag}) {eq.target} {'+=' if eq.accumulates else '='} "
                               f"{_plain(eq.expr)}" for eq in d.backward],
        "saved": ", ".join(d.saved),
    }


def _plain(expr) -> str:
    from derive.linear import LINEAR_NODES
    text = sp.sstr(expr.replace(lambda e: isinstance(e, LINEAR_NODES),
                                lambda e: sp.Symbol(_linear_text(e))))
    return text


def _linear_text(e) -> str:
    from derive.linear import REDUCTIONS, MatVec, MatVecT
    if isinstance(e, tuple(REDUCTIONS.values())):
        return f"{e.word}({e.vector})"
    if isinstance(e, MatVec):
        return f"({e.matrix} @ {e.vector})"
    if isinstance(e, MatVecT):
        return f"({e.matrix}.T @ {e.vector})"
    return f"outer({e.left}, {e.right})"


class _Layout:
    """What both backends share: pre-loop packing, the hoisted GEMM, the after-loop GEMMs."""

    arrays = "numpy"   # the array library the generated module takes (a backend folder may differ)
    every_cell = True  # False: may refuse a cell (NotImplementedError); regenerate then writes no file

    def __init__(self, plan: Plan):
        self.plan = plan
        self.cell = plan.cell
        self.q = plan.derivation.quantities
        self.inputs = self.cell.inputs
        self.x = self.inputs[0]   # the first input (a backend taking one input sequence reads it)
        self.names = plan.names

    def seq(self, name: str) -> str:
        """The array holding ``name`` at every step: ``_h_seq``."""
        return self.names("_{}_seq", name)

    def dpacked(self, g: ProductGroup) -> str:
        """The gradient of a packed matrix: its members' gradients stacked."""
        return self.names("_dpacked_{}", g.vector)

    def packed_T(self, g: ProductGroup) -> str:
        """The contiguous transpose of a packed matrix, for the per-step GEMM."""
        return self.names("{}_T", g.packed)

    def template(self, backend: str):
        """The module's template: templates/<backend>.py.j2 (a backend folder brings its own)."""
        return environment().get_template(f"{backend}.py.j2")

    def size(self, name: str) -> str:
        return self.q[name].shape[0]

    def width(self, g: ProductGroup) -> str:
        return _size_text(sp.Add(*(sp.Symbol(p.rows) for p in g.products)))

    def matmul(self, a: str, b: str) -> str:
        """A GEMM outside the time loop."""
        return f"{a} @ {b}"

    columns_note = ""

    def columns(self, view: str) -> str:
        """A block of columns of dpre_flat as the after-loop GEMMs take it (NumPy: the view)."""
        return view

    def vector_sequence(self, v: str) -> str:
        """All T steps of a group's vector as one (T, N, size) array."""
        loc = self.plan.locations.get(v)
        if loc == "param":
            return f'np.broadcast_to(_params["{v}"], (_T, _N, {self.size(v)}))'
        if loc == "prev_state":
            return f"{self.seq(v.removesuffix('_prev'))}[:-1]"
        if loc == "state":
            return f"{self.seq(v)}[1:]"
        return self.seq(v)

    def packing_lines(self) -> list[Line]:
        lines = []
        for g in self.plan.groups:
            members = ", ".join(f'_params["{m}"]' for m in g.matrices)
            rows = self.width(g)
            if len(g.products) == 1:
                lines.append(Line(f'{g.packed} = _params["{g.matrices[0]}"]', f"({rows}, {g.cols})"))
            else:
                lines.append(Line(f"{g.packed} = np.concatenate([{members}])",
                                  f"({rows}, {g.cols}): {_packed_comment(g)}, one GEMM instead of "
                                  f"{len(g.products)}"))
        return lines

    def hoisted_lines(self) -> list[Line]:
        lines = []
        for g in self.plan.groups:
            if g.constant:
                product = self.matmul(g.packed, f'_params["{g.vector}"]')
                lines.append(Line(f"{g.proj} = np.ascontiguousarray(np.broadcast_to({product}, (_N, {self.width(g)})))",
                                  f"the products with the parameter {g.vector}: the same at every step"))
            if not g.hoisted:
                continue
            rows = self.width(g)
            tags = ", ".join(self.plan.derivation.forward_eq(p.target).tag for p in g.products)
            lines.append(Line(f"{g.proj} = (" + self.matmul(f"{self.vector_sequence(g.vector)}.reshape(_T * _N, {g.cols})", f"{g.packed}.T")
                              + f").reshape(_T, _N, {rows})",
                              f"({tags}) the products with {g.vector} of every step: one GEMM over T*N rows"))
            biases = [(p, self.plan.hoisted_bias.get(p.target, ())) for p in g.products]
            if any(b for _, b in biases):
                parts = []
                for p, bs in biases:
                    if not bs:
                        parts.append(f"np.zeros({p.rows}, _dtype)")
                    else:
                        parts.append(" + ".join(f'_params["{b}"]' for b in bs))
                lines.append(Line(f"{g.proj} += np.concatenate([{', '.join(parts)}])"
                                  if len(parts) > 1 else f"{g.proj} += {parts[0]}",
                                  "biases of the same equations, added once for all steps"))
        return lines

    def allocation_lines(self) -> list[Line]:
        lines = []
        for s in self.cell.states:
            lines.append(Line(f"{self.seq(s)} = np.empty((_T + 1, _N, {self.size(s)}), _dtype)",
                              f"{s}<0>, ..., {s}<T>"))
            init = {"zeros": "0", "ones": "1"}.get(self.q[s].init)
            if init is None:   # a learnable initial value, broadcast over the batch
                init = f'_params["{self.cell.initial[s]}"]'
            lines.append(Line(f'{self.seq(s)}[0] = {init} if _state0 is None else _state0["{s}"]'))
        for name in (*self.plan.saved_seq, *self.plan.output_seq):
            why = "output" if name in self.plan.output_seq else "saved for the backward pass"
            lines.append(Line(f"{self.seq(name)} = np.empty((_T, _N, {self.size(name)}), _dtype)", why))
        return lines

    def forward_results(self) -> dict:
        outputs = []
        for o in self.cell.outputs:
            outputs.append((o, f"{self.seq(o)}[1:]" if o in self.cell.states else self.seq(o)))
        state = [(s, f"{self.seq(s)}[_T]") for s in self.cell.states]
        cache = [("inputs", "_inputs")]
        cache += [(g.packed, g.packed) for g in self.plan.groups]
        cache += [(self.seq(s), self.seq(s)) for s in self.cell.states]
        cache += [(self.seq(n), self.seq(n)) for n in (*self.plan.saved_seq, *self.plan.output_seq)]
        cache += [("params", "_params"), ("lengths", "_lengths")]
        if self.cell.initial:
            cache.append(("initial", "_state0 is None"))
        return {"output_values": outputs, "final_state": state, "cache": cache,
                "cache_keys": ", ".join(f'"{k}"' for k, _ in cache)}

    def backward_unpack(self) -> list[Line]:
        lines = [Line(f'{self.seq(x)} = _cache["inputs"]["{x}"]') for x in self.inputs]
        lines += [Line(f'{g.packed} = _cache["{g.packed}"]') for g in self.plan.groups]
        lines += [Line(f'{self.seq(s)} = _cache["{self.seq(s)}"]') for s in self.cell.states]
        lines += [Line(f'{self.seq(n)} = _cache["{self.seq(n)}"]') for n in (*self.plan.saved_seq, *self.plan.output_seq)]
        return lines

    # -- per-backend spellings of the after-loop code (NumPy's here; a backend overrides them) --

    def concat_columns(self, parts: list[str]) -> str:
        return f"np.concatenate([{', '.join(parts)}], axis=1)"

    def sum_rows(self, text: str) -> str:
        """Sum over the first axis (steps times batch rows, or the batch)."""
        return f"{text}.sum(axis=0)"

    def sum_steps_and_rows(self, text: str) -> str:
        return f"{text}.sum(axis=(0, 1))"

    def zeros_like(self, text: str) -> str:
        return f"np.zeros_like({text})"

    def copy(self, text: str) -> str:
        return f"{text}.copy()"

    def input_grad(self, x: str) -> str:
        """The local holding input x's gradient from the after-loop GEMM."""
        return f"d{x}"

    def loop_grad(self, p: str) -> str:
        """A parameter gradient the loop accumulates, as backward() returns it."""
        return f"d{p}"

    def after_loop_lines(self) -> list[Line]:
        """Weight gradients as one GEMM per group over the stacked per-step adjoints, dx as one
        GEMM, bias gradients as column sums. Written once for every backend: the spellings
        above (and ``matmul``, ``columns``, ``vector_sequence``) are what differ."""
        plan, lines = self.plan, []
        total = _size_text(plan.width(plan.dpre))
        named: dict[str, str] = {}
        lines.append(Line(f"_dpre_flat = _dpre_seq.reshape(_T * _N, {total})", "every step's " + ", ".join(
            "d" + n for n in plan.dpre) + " as rows"))
        for g in plan.groups:
            trained = any(self.cell.quantities[m].trainable for m in g.matrices)
            if not (trained or g.constant or g.hoisted):
                continue      # [buffers] matrices only: no gradient, and their vector is not saved
            block = plan.dpre_block(g)
            rows = self.width(g)
            if block is None:
                stacked = self.concat_columns(
                    [f"_dpre_flat[:, {_block(plan.dpre_offset(plan.dpre.index(p.target)), p.rows)}]"
                     for p in g.products])
            elif _size_text(block[1] - block[0]) == total:
                stacked = "_dpre_flat"
            else:
                stacked = f"_dpre_flat[:, {block[0] if block[0] != 0 else ''}:{block[1]}]"
            if stacked in named:
                stacked = named[stacked]
            elif stacked != "_dpre_flat":
                lines.append(Line(f"{self.names('_dpre_{}', g.vector)} = {self.columns(stacked)}",
                                  f"(T*N, {rows}): the adjoints of {', '.join(p.target for p in g.products)}"
                                  + self.columns_note))
                named[stacked] = self.names("_dpre_{}", g.vector)
                stacked = named[stacked]
            if trained:
                lines.append(Line(f"{self.dpacked(g)} = " + self.matmul(
                    f"{stacked}.T", f"{self.vector_sequence(g.vector)}.reshape(_T * _N, {g.cols})"),
                    f"gradients of {', '.join(g.matrices)}, summed over steps and batch"))
            if g.constant:
                lines.append(Line(f"{g.linear} = {self.sum_rows(f'({self.matmul(stacked, g.packed)})')}",
                                  f"{stacked_text(g)}ᵀ @ the adjoints, summed over steps and batch"))
            if g.hoisted:
                extra = f" + {self.seq('d' + g.vector)}" if g.vector in plan.input_loop else ""
                lines.append(Line(f"{self.input_grad(g.vector)} = ({self.matmul(stacked, g.packed)})"
                                  f".reshape(_T, _N, {g.cols}){extra}",
                                  f"({plan.derivation.backward_eq('d' + g.vector).tag}) for every step "
                                  "at once, one GEMM"))
        if any(part[0] == "bias" for parts in plan.param_grads.values() for part in parts):
            lines.append(Line(f"_dpre_sum = {self.sum_steps_and_rows('_dpre_seq')}",
                              "bias gradients: sums over steps and batch"))
        return lines

    def grads_entries(self) -> dict[str, list[tuple[str, str, str]]]:
        """(name, value, tag) of each gradient, by the part of Gradients it belongs to."""
        plan, out = self.plan, []
        for p in self.cell.trainable_params:
            eq = plan.derivation.backward_eq("d" + p)
            terms = []
            for part in plan.param_grads[p]:
                if part[0] == "gemm":
                    g, k = part[1], part[2]
                    terms.append(f"{self.dpacked(g)}[{_block(plan.group_offset(g, k), g.products[k].rows)}]"
                                 if len(g.products) > 1 else self.dpacked(g))
                elif part[0] == "bias":
                    k = plan.dpre.index(part[1])
                    terms.append(f"_dpre_sum[{_block(plan.dpre_offset(k), self.size(part[1]))}]")
                elif part[0] == "linear":
                    terms.append(part[1].linear)
                else:
                    terms.append(self.loop_grad(p))
            text = " + ".join(terms) if terms else self.zeros_like(f'_params["{p}"]')
            out.append((p, text, eq.tag))
        inputs = []
        for x in self.inputs:
            if x in plan.input_linear:
                dx = self.input_grad(x)   # the after-loop GEMM, plus the loop's part if any
            elif x in plan.input_loop:
                dx = self.seq(f"d{x}")
            else:
                dx = self.zeros_like(self.seq(x))
            inputs.append((x, dx, plan.derivation.backward_eq("d" + x).tag))
        state = [(s, self.carried_variable(plan.derivation.carried[s]), plan.derivation.backward_eq(f"d{s}_prev").tag)
                 for s in self.cell.states]
        for s, p in self.cell.initial.items():
            # the initial state is p broadcast over the batch when no state was passed
            summed = self.sum_rows(self.carried_variable(plan.derivation.carried[s]))
            zeros = self.zeros_like(f'_params["{p}"]')
            out.append((p, f'{summed} if _cache["initial"] else {zeros}',
                        plan.derivation.backward_eq(f"d{s}_prev").tag))
        return {"params": own_arrays(out, self.copy), "inputs": inputs, "state": state}

    def carried_variable(self, name: str) -> str:
        return name

    def loop_accumulators(self) -> list[str]:
        return [p for p, parts in self.plan.param_grads.items() if any(x[0] == "loop" for x in parts)]

    def context(self) -> dict:
        return {
            "packing": self.packing_lines(),
            "hoisted": self.hoisted_lines(),
            "allocations": self.allocation_lines(),
            **self.forward_results(),
            "backward_unpack": self.backward_unpack(),
            "dpre_width": _size_text(self.plan.width(self.plan.dpre)),
            "dpre_names": ", ".join("d" + n for n in self.plan.dpre),
            "after_loop": self.after_loop_lines(),
            "transposed": [(g.packed, self.packed_T(g)) for g in self.plan.groups if g.per_step],
            "grads": self.grads_entries(),
            "biases": [p for p, parts in self.plan.param_grads.items() if parts and all(x[0] == "bias" for x in parts)],
            "state_seqs": [(s, self.seq(s)) for s in self.cell.states],
            "accumulators": [(p, self.size(p)) for p in self.loop_accumulators()],
            "input_loop": [(self.seq("d" + i), self.size(i)) for i in self.plan.input_loop],
            "upstream": [(o, self.seq(self.plan.derivation.upstream[o]), self.size(o)) for o in self.cell.outputs],
            "carried": [(s, self.carried_variable(self.plan.derivation.carried[s]), self.size(s))
                        for s in self.cell.states],
        }


def _statement_comment(stmt: Stmt | Reduction) -> str:
    tag = f"({stmt.tag}) " if stmt.tag else ""
    return f"{tag}{stmt.note}".strip()


# -- NumPy: whole-array statements, one Python iteration per step -----------------------------

class _NumPyLayout(_Layout):

    def ref_text(self, ref: Ref) -> str:
        group = next(g for g in self.plan.groups if g.proj == ref.buffer)
        if len(group.products) == 1:
            return f"{ref.buffer}[_t]" if ref.per_step else ref.buffer
        block = _block(ref.offset, ref.size)
        return f"{ref.buffer}[_t, :, {block}]" if ref.per_step else f"{ref.buffer}[:, {block}]"

    def load_text(self, name: str) -> str | None:
        loc = self.plan.locations.get(name)
        if loc == "prev_state":
            return f"{self.seq(name.removesuffix('_prev'))}[_t]"
        if loc == "state":
            return f"{self.seq(name)}[_t + 1]"
        if loc == "seq":
            return f"{self.seq(name)}[_t]"
        if loc == "upstream":
            return f"{self.seq(name)}[_t]"
        if loc == "input":
            return f"{self.seq(name)}[_t]"
        return None

    def store_text(self, stmt: Stmt, forward: bool) -> str:
        targets = []
        for name in stmt.stores:
            loc = self.plan.locations.get(name)
            if loc == "dpre":
                k = self.plan.dpre.index(name[1:])
                targets.append(f"_dpre_seq[_t, :, {_block(self.plan.dpre_offset(k), stmt.size)}]")
            elif loc == "state":
                targets.append(f"{self.seq(name)}[_t + 1]")
            elif loc in ("seq", "input_grad"):
                targets.append(f"{self.seq(name)}[_t]")
        return "".join(f"{target} = " for target in targets)

    def step_lines(self, steps, forward: bool) -> list[Line]:
        names = {**{n: self.ref_text(r) for n, r in self.plan.refs.items()},
                 **{x: f"{self.seq(x)}[_t]" for x in self.inputs}}
        linear = {}
        for g in self.plan.groups:
            block = self.plan.dpre_block(g)
            if block is None:
                terms = [f"_dpre_seq[_t, :, {_block(self.plan.dpre_offset(self.plan.dpre.index(p.target)), p.rows)}]"
                         f' @ _params["{p.matrix}"]' for p in g.products]
                linear[g.linear] = " + ".join(terms)
            else:
                full = _size_text(block[1] - block[0]) == _size_text(self.plan.width(self.plan.dpre))
                rows = "_dpre_seq[_t]" if full else f"_dpre_seq[_t, :, {_block(block[0], self.width(g))}]"
                linear[g.linear] = f"{rows} @ {g.packed}"
        printer = KernelNumPyPrinter({**names, **{k: f"({v})" for k, v in linear.items()}})
        self.printers.append(printer)
        lines = []
        stmts = [s for st in steps if isinstance(st, Segment) for s in st.stmts]
        defined = {s.target for s in stmts}
        wanted = []
        defined |= {st.target for st in steps if isinstance(st, Reduction)}
        for st in steps:
            if isinstance(st, Reduction):
                symbols = (st.vector,)
            else:
                symbols = (st.loads if isinstance(st, Segment) else ((st.group.vector,) if forward else ()))
            for n in symbols:
                if n not in defined and n not in wanted and n not in self.inputs and self.load_text(n):
                    wanted.append(n)
        for n in wanted:
            lines.append(Line(f"{n} = {self.load_text(n)}"))
        for st in steps:
            if isinstance(st, Reduction):
                # the row's mean (sum) repeated over the row: a full (N, size) array like any value
                vector = names[st.vector] if st.vector in self.inputs else st.vector   # an input: its step's row
                text = f"np.repeat(np.{st.op}({vector}, axis=1, keepdims=True), {st.size}, axis=1)"
                if self.plan.locations.get(st.vector) == "param":    # mean(b): the same for every row
                    text = f"np.full((_N, {st.size}), np.{st.op}({vector}), _dtype)"
                lines.append(Line(f"{self.store_text(st, forward)}{st.target} = {text}",
                                  _statement_comment(st)))
                continue
            if isinstance(st, GroupProduct):
                if forward:
                    lines.append(Line(f"{st.group.proj} = {st.group.vector} @ {self.packed_T(st.group)}",
                                      f"({st.tag}) {st.note}"))
                continue
            for s in st.stmts:
                if s.accumulate:
                    if s.expr.is_zero:      # db = 0 (b only under step or sign): nothing to add
                        continue
                    lines.append(Line(f"{s.target} += ({printer.doprint(s.expr)}).sum(axis=0)",
                                      _statement_comment(s)))
                    continue
                if s.expr in [sp.Symbol(k) for k in linear]:
                    text = linear[s.expr.name]
                elif s.expr.is_Number or not {x.name for x in s.expr.free_symbols} - set(self.cell.params):
                    # the same for every row (``lam = sigmoid(b)``): one (N, size) array like the others
                    text = f"np.full((_N, {s.size}), {printer.doprint(s.expr)}, _dtype)"
                else:
                    text = printer.doprint(s.expr)
                # a stored value keeps its derivation name (``i_seq[_t] = i = ...``) for the reader
                lines.append(Line(f"{self.store_text(s, forward)}{s.target} = {text}", _statement_comment(s)))
        return lines

    def context(self) -> dict:
        self.printers = []
        ctx = super().context()
        ctx["forward_params"] = self.params_in_loop(self.plan.forward_steps)
        ctx["backward_params"] = self.params_in_loop(self.plan.backward_steps)
        ctx["forward_step"] = self.step_lines(self.plan.forward_steps, True)
        ctx["backward_step"] = self.step_lines(self.plan.backward_steps, False)
        carried = [(self.plan.derivation.carried[s], f"d{s}_prev") for s in self.cell.states]
        ctx["carried_update"] = (", ".join(n for n, _ in carried) + " = " + ", ".join(p for _, p in carried))
        ctx.update(helper_context(self.printers))
        return ctx

    def params_in_loop(self, steps) -> list[str]:
        loads = [n for st in steps if isinstance(st, Segment) for n in st.loads]
        loads += [st.vector for st in steps if isinstance(st, Reduction)]
        names = {n for n in loads if self.plan.locations.get(n) == "param"}
        return [p for p in self.cell.params if p in names]


# -- Numba: the whole time loop in one @njit kernel, elementwise work fused per segment --------

class _NumbaLayout(_Layout):

    def __init__(self, plan: Plan):
        super().__init__(plan)
        self.n, self.j = "_n", "_j"   # loop indices over the batch and the columns
        self.param_arrays: dict[str, str] = {}   # kernel argument -> parameter

    def buf(self, name: str) -> str:
        """One step's values of ``name`` between fused loops: ``_dh_next_buf``."""
        return self.names("{}_buf" if name.startswith("_") else "_{}_buf", name)

    def gathered(self, g: ProductGroup) -> str:
        """One step's adjoints of a group side by side, when dpre cannot hold every group so."""
        return self.names("_dpre_{}_rows", g.vector)

    def param_array(self, name: str) -> str:
        array = self.names("_{}_param", name)
        self.param_arrays[array] = name
        return array

    def ref_text(self, ref: Ref) -> str:
        col = self.j if ref.offset == 0 else f"{ref.offset} + {self.j}"
        return f"{ref.buffer}[_t, {self.n}, {col}]" if ref.per_step else f"{ref.buffer}[{self.n}, {col}]"

    def load_text(self, name: str) -> str:
        loc = self.plan.locations.get(name)
        if loc == "prev_state":
            return f"{self.seq(name.removesuffix('_prev'))}[_t, {self.n}, {self.j}]"
        if loc == "state":
            return f"{self.seq(name)}[_t + 1, {self.n}, {self.j}]"
        if loc in ("seq", "upstream", "input"):
            return f"{self.seq(name)}[_t, {self.n}, {self.j}]"
        if loc == "param":
            return f"{self.param_array(name)}[{self.j}]"
        if loc == "dpre":
            k = self.plan.dpre.index(name[1:])
            off = self.plan.dpre_offset(k)
            return f"_dpre_seq[_t, {self.n}, {self.j if off == 0 else f'{off} + {self.j}'}]"
        return f"{self.buf(name)}[{self.n}, {self.j}]"  # carried adjoints, linear results, values crossing loops

    def dpre_row(self, name: str) -> tuple[str, str]:
        """A row view of _dpre_seq for one adjoint, and the line that makes it.

        Stores into one array at column offsets H apart (``_dpre_seq[_t, _n, H + _j]``) keep LLVM
        from vectorizing the loop (it cannot rule out overlap for a runtime H); one view per
        adjoint makes them separate arrays to it."""
        k = self.plan.dpre.index(name[1:])
        block = _block(self.plan.dpre_offset(k), self.size(name[1:]))
        row = self.names("_{}_row", name)
        return row, f"{row} = _dpre_seq[_t, {self.n}, {block}]"

    def store_targets(self, stmt: Stmt) -> list[str]:
        out = []
        for name in stmt.stores:
            loc = self.plan.locations.get(name)
            if loc == "dpre":
                out.append(f"{self.dpre_row(name)[0]}[{self.j}]")
            elif loc == "state":
                out.append(f"{self.seq(name)}[_t + 1, {self.n}, {self.j}]")
            elif loc in ("seq", "input_grad"):
                out.append(f"{self.seq(name)}[_t, {self.n}, {self.j}]")
            elif loc == "carried_out":
                out.append(f"{self.buf(self.carried_of(name))}[{self.n}, {self.j}]")
            else:
                out.append(f"{self.buf(name)}[{self.n}, {self.j}]")
        return out

    def carried_of(self, prev_adjoint: str) -> str:
        return self.plan.derivation.carried[prev_adjoint[1:].removesuffix("_prev")]

    def kernel(self, steps, forward: bool) -> dict:
        names = {**{n: self.ref_text(r) for n, r in self.plan.refs.items()},
                 **{x: self.load_text(x) for x in self.inputs}}
        printer = KernelNumbaPrinter(names)
        self.printers.append(printer)
        body = []   # (kind, payload)
        arrays: list[str] = []

        def use(array: str):
            base = array.split("[", 1)[0]
            if base not in arrays:
                arrays.append(base)

        for st in steps:
            if isinstance(st, Reduction):
                body.append(("reduce", self.reduction(st, printer, use)))
                continue
            if isinstance(st, GroupProduct):
                g = st.group
                if forward:
                    vec = self.vector_step(g.vector)
                    use(vec), use(self.packed_T(g)), use(g.proj)
                    body.append(("gemm", Line(f"np.dot({vec}, {self.packed_T(g)}, {g.proj})", f"({st.tag}) {st.note}")))
                else:
                    block = self.plan.dpre_block(g)
                    use("_dpre_seq"), use(g.packed), use(self.buf(g.linear))
                    if block is None:
                        # the group's adjoints are not side by side in dpre: gather them first
                        src = self.gathered(g)
                        use(src)
                        for k, p in enumerate(g.products):
                            column = self.plan.dpre_offset(self.plan.dpre.index(p.target))
                            body.append(("gemm", Line(f"{src}[:, {_block(self.plan.group_offset(g, k), p.rows)}] = "
                                                      f"_dpre_seq[_t, :, {_block(column, p.rows)}]",
                                                      f"({st.tag}) d{p.target}")))
                    elif _size_text(block[1] - block[0]) == _size_text(self.plan.width(self.plan.dpre)):
                        src = "_dpre_seq[_t]"
                    else:
                        src = f"np.ascontiguousarray(_dpre_seq[_t, :, {_block(block[0], self.width(g))}])"
                    body.append(("gemm", Line(f"np.dot({src}, {g.packed}, {self.buf(g.linear)})", f"({st.tag}) {st.note}")))
                continue
            for s in st.stmts:
                for sym in sorted(s.expr.free_symbols, key=lambda x: x.name):
                    if sym.name in self.plan.refs:
                        use(self.plan.refs[sym.name].buffer)
            loads = []
            for n in st.loads:
                text = self.load_text(n)
                use(text)
                if n not in self.inputs:   # an input is read in place from its sequence
                    loads.append(Line(f"{n} = {text}"))
            stmts, stores, rows = [], [], []
            for s in st.stmts:
                if s.accumulate:
                    use(s.target)
                    stmts.append(Line(f"{s.target}[{self.j}] += {printer.doprint(s.expr)}", _statement_comment(s)))
                    continue
                stmts.append(Line(f"{s.target} = {printer.doprint(s.expr)}", _statement_comment(s)))
                for target in self.store_targets(s):
                    if self.plan.locations.get(s.target) == "dpre":
                        use("_dpre_seq")
                        why = "" if rows else "a view per adjoint: LLVM vectorizes stores to separate arrays"
                        rows.append(Line(self.dpre_row(s.target)[1], why))
                    else:
                        use(target)
                    stores.append(Line(f"{target} = {s.target}"))
            body.append(("loop", {"size": st.size, "rows": rows, "lines": loads + stmts + stores}))
        if not forward:
            self._check_carried_in_place(body)
        return {"body": body, "arrays": arrays, "float_type": printer.uses_float_type}

    def reduction(self, st: Reduction, printer, use) -> dict:
        """A loop over the row accumulating ``_acc``, then a loop storing it to every column."""
        load = self.load_text(st.vector)
        use(load)
        stores = self.store_targets(st)
        for target in stores:
            use(target)
        printer.uses_float_type = True   # the accumulator starts at F(0)
        return {"size": st.size, "load": load, "mean": st.op == "mean", "stores": stores,
                "comment": _statement_comment(st)}

    def _check_carried_in_place(self, body) -> None:
        """ds_prev overwrites ds_next in place: safe when no loop reads ds_next after that store."""
        for name in self.plan.derivation.carried.values():
            buffer = f"{self.buf(name)}["
            loops = [item["lines"] if kind == "loop" else [Line(f"{s} = {item['load']}") for s in item["stores"]]
                     for kind, item in body if kind in ("loop", "reduce")]
            reads = [k for k, lines in enumerate(loops) if any(buffer in l.code.split(" = ", 1)[1]
                                                               for l in lines if " = " in l.code)]
            writes = [k for k, lines in enumerate(loops) if any(l.code.startswith(buffer) for l in lines)]
            if reads and writes and max(reads) > min(writes):
                raise NotImplementedError(f"{name} is read after step t's adjoint overwrote it")

    def carried_variable(self, name: str) -> str:
        return self.buf(name)

    def matmul(self, a: str, b: str) -> str:
        """GEMMs go through the BLAS Numba calls inside the loop too: one BLAS thread pool."""
        return f"_matmul({a}, {b})"

    columns_note = ", copied once: Numba's np.dot takes only contiguous arrays"

    def columns(self, view: str) -> str:
        return f"np.ascontiguousarray({view})"

    @staticmethod
    def _mentions(kernel: dict, size: str) -> bool:
        """Whether a kernel's body uses the size (loop bounds, column offsets)."""
        pattern = re.compile(rf"\b{re.escape(size)}\b")
        for kind, item in kernel["body"]:
            lines = {"gemm": lambda: [item], "loop": lambda: item["lines"],
                     "reduce": lambda: [Line(item["load"]), *map(Line, item["stores"])]}[kind]()
            if kind in ("loop", "reduce") and item["size"] == size:
                return True
            if any(pattern.search(line.code) for line in lines):
                return True
        return False

    def argument(self, array: str) -> str:
        """How the Python wrapper passes a kernel's array argument."""
        if array in self.param_arrays:
            return f'np.ascontiguousarray(_params["{self.param_arrays[array]}"])'
        if array in {self.seq(name) for name in self.cell.inputs}:
            return f"np.ascontiguousarray({array})"
        return array

    def vector_step(self, v: str) -> str:
        loc = self.plan.locations.get(v)
        if loc == "prev_state":
            return f"{self.seq(v.removesuffix('_prev'))}[_t]"
        if loc == "state":
            return f"{self.seq(v)}[_t + 1]"
        return f"{self.seq(v)}[_t]"

    def context(self) -> dict:
        self.printers = []
        ctx = super().context()
        fwd = self.kernel(self.plan.forward_steps, True)
        bwd = self.kernel(self.plan.backward_steps, False)
        # the steps past a sequence's end copy every state and hold every carried adjoint
        fwd["arrays"] += [self.seq(s) for s in self.cell.states if self.seq(s) not in fwd["arrays"]]
        carried = [self.carried_variable(self.plan.derivation.carried[s]) for s in self.cell.states]
        bwd["arrays"] += [c for c in carried if c not in bwd["arrays"]]
        ctx["held_carried"] = [(c, self.names("_{}_held", self.plan.derivation.carried[s]), self.size(s))
                               for c, s in zip(carried, self.cell.states)]
        cell = self.cell
        sizes = _size_order(cell)
        ctx["forward_args"] = [self.argument(a) for a in fwd["arrays"]]
        ctx["backward_args"] = [self.argument(a) for a in bwd["arrays"]]
        ctx["forward_kernel"] = fwd
        ctx["backward_kernel"] = bwd
        ctx["kernel_sizes"] = [s for s in sizes if self._mentions(fwd, s) or self._mentions(bwd, s)]
        ctx["n"], ctx["j"] = self.n, self.j
        ctx["forward_buffers"] = [(g.proj, self.width(g)) for g in self.plan.groups if g.per_step]
        ctx["backward_buffers"] = ([(self.buf(g.linear), g.cols) for g in self.plan.groups if g.per_step]
                                   + [(self.gathered(g), self.width(g)) for g in self.plan.groups
                                      if g.per_step and self.plan.dpre_block(g) is None]
                                   + [(self.buf(n), size) for n, size in self.plan.scratch_backward])
        ctx["forward_scratch"] = [(self.buf(n), size) for n, size in self.plan.scratch_forward]
        ctx.update(helper_context(self.printers))
        return ctx


#: backend name -> its layout; the template is templates/<backend>.py.j2. A new backend is one
#: entry here, one layout class (with its printer) and one template.
LAYOUTS = {"numpy": _NumPyLayout, "numba": _NumbaLayout}
BACKENDS = tuple(LAYOUTS)


def register(name: str, layout) -> None:
    """Add a backend; each folder of codegen/backends calls this when imported."""
    global BACKENDS
    LAYOUTS[name] = layout
    BACKENDS = tuple(LAYOUTS)


from . import backends  # noqa: E402,F401  the backend folders register themselves
