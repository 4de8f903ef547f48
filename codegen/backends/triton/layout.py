"""The Triton layout: the kernel plan of ``codegen/lower.py`` printed as a module over torch tensors.

haste's structure, for any cell: the input products of every step are one GEMM before the loop
(``_torch.matmul``, i.e. cuBLAS on a GPU); per step one GEMM per recurrent product group, then one
``@_triton.jit`` kernel per ``Segment`` of the plan fusing its elementwise statements over the
(N, size) block and writing the saved values; the backward step is the same, its kernels writing
the pre-activation adjoints into one (T, N, width) buffer; after the loop the weight and input
gradients are one GEMM each. Kernels load any storage dtype and compute in ``_F`` (float32, or
float64 for float64 tensors), so bfloat16/float16 storage keeps float32 arithmetic.

A ``Reduction`` of the plan (``mean``/``sum`` over a row) is a kernel of its own with one program
per batch row: the whole row is one block (``_ROW``, the next power of two of its size, masked),
summed by ``tl.sum`` and written back over the row. Sequence lengths are kernel arguments (a
per-row length and the step index): a kernel storing a state keeps the previous value past a
row's end, an output stores zero there, and in the backward pass the carried and upstream
adjoints read as zero past the end while the carried adjoint is held.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import jinja2
import sympy as sp

from codegen.kernels import Line, _block, _Layout, _size_order, _size_text, _statement_comment
from codegen.lower import GroupProduct, Reduction, Ref, Segment

from .printer import TritonPrinter

HERE = Path(__file__).parent
#: names every kernel body writes as they are (its element index, mask, row, column, sizes,
#: the step, the sequence lengths and whether the row is still running)
KERNEL_NAMES = ("_k", "_mask", "_n", "_j", "_N", "_F", "_BLOCK", "_ROW", "_t", "_length_ptr", "_active")


@dataclass(frozen=True)
class Access:
    """A (N, width) block the kernel reads or writes: the tensor passed at the call, and where in
    its rows the element (n, j) is (``offset`` + j; params: j only)."""

    call: str          # the Python expression passed for the pointer, e.g. ``_h_seq[t + 1]``
    width: sp.Expr | None  # row length; None for a parameter vector
    offset: sp.Expr = sp.S.Zero
    label: str = ""    # names the pointer when the block is part of a shared buffer


class TritonLayout(_Layout):
    """Lay out the plan for ``triton.py.j2``: kernels as finished lines, the Python step loop."""

    arrays = "torch"
    every_cell = False   # refuses, by name, a function without a Triton spelling (printer.py)

    def template(self, backend: str):
        env = jinja2.Environment(
            loader=jinja2.ChoiceLoader([jinja2.FileSystemLoader(HERE),
                                        jinja2.PackageLoader("codegen", "templates")]),
            undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
            keep_trailing_newline=True, autoescape=False)
        return env.get_template("triton.py.j2")

    # -- names: every one the layout invents comes from the plan's Namespace (starts with _) --

    def own(self, pattern: str, name: str = "") -> str:
        return self.names(pattern, name)

    def buf(self, name: str) -> str:
        """A (N, size) per-step buffer: a value crossing a per-step GEMM, a carried adjoint."""
        return self.names("_{}_buf" if not name.startswith("_") else "{}_buf", name)

    def group_of(self, buffer: str):
        return next(g for g in self.plan.groups if g.proj == buffer)

    def access(self, name: str) -> Access:
        """Where value ``name`` of step t lives, for loads and stores alike."""
        plan, loc = self.plan, self.plan.locations.get(name)
        if loc == "prev_state":
            state = name.removesuffix("_prev")
            return Access(f"{self.seq(state)}[_t]", sp.Symbol(self.size(state)))
        if loc == "state":
            return Access(f"{self.seq(name)}[_t + 1]", sp.Symbol(self.size(name)))
        if loc in ("seq", "upstream"):
            return Access(f"{self.seq(name)}[_t]", sp.Symbol(self.q_size(name)))
        if loc == "input":
            return Access(f"{self.seq(name)}[_t]", sp.Symbol(self.size(name)))
        if loc == "param":
            return Access(f'_params["{name}"]', None)
        if loc == "dpre":
            k = plan.dpre.index(name[1:])
            return Access("_dpre_seq[_t]", plan.width(plan.dpre), plan.dpre_offset(k), "dpre")
        if loc == "input_grad":
            return Access(f"{self.seq(name)}[_t]", sp.Symbol(self.size(name[1:])))
        linear = {g.linear: g for g in plan.groups}
        if name in linear:
            return Access(name, sp.Symbol(linear[name].cols))
        scratch = dict(plan.scratch_forward + plan.scratch_backward)
        return Access(self.buf(name), sp.Symbol(scratch[name] if name in scratch else self.q_size(name)))

    def q_size(self, name: str) -> str:
        """Size of a value or of an adjoint (``dh_next``, ``dh_out``, ``dc``) by its quantity."""
        q = self.q
        if name in q:
            return q[name].shape[0]
        base = name[1:] if name.startswith("d") else name
        for suffix in ("_next", "_prev", "_out", ""):
            stem = base.removesuffix(suffix) if suffix else base
            if stem in q:
                return q[stem].shape[0]
        raise KeyError(name)

    def ref_access(self, ref: Ref) -> Access:
        g = self.group_of(ref.buffer)
        buffer = ref.buffer
        return Access(f"{buffer}[_t]" if ref.per_step else buffer,
                      sp.Add(*(sp.Symbol(p.rows) for p in g.products)), ref.offset, ref.buffer)

    # -- one kernel per segment or reduction ---------------------------------------------------

    def kernel(self, st: Segment | Reduction, name: str, forward: bool, tags: str) -> tuple[dict, Line]:
        """The kernel of one segment (fused over the (N, size) block) or one reduction (one
        program per row), and the line calling it in the step loop."""
        k = _KernelText(self, forward, row=isinstance(st, Reduction))
        if isinstance(st, Reduction):
            vector = st.vector
            k.loads.append(Line(f"{vector} = {k.load(vector)}"))
            total = f"_tl.sum({vector}, axis=0)" + (f" / {st.size}" if st.op == "mean" else "")
            k.stmts.append(Line(f"{st.target} = _tl.full((_ROW,), {total}, _F)", _statement_comment(st)))
            for target in st.stores:
                k.store(target, st.target, {vector})
            doc = f"({tags}) step t: {st.op} over each row, one program per row"
        else:
            loaded = k.segment_loads(st)
            printer = TritonPrinter(k.names)
            self.printers.append(printer)
            for s in st.stmts:
                text = printer.doprint(s.expr)
                if not s.expr.free_symbols:
                    text = f"_tl.full((_BLOCK,), {text}, _F)"
                k.stmts.append(Line(f"{s.target} = {text}", _statement_comment(s)))
                if s.accumulate:
                    where = k.address(Access(self.own("_{}_acc", s.target), sp.Symbol(s.size)), s.target + "_acc")
                    k.stores.append(Line(f"_tl.store({where}, _tl.load({where}, mask=_mask) + {s.target}, mask=_mask)",
                                         "summed over the steps here, over the batch after the loop"))
                    continue
                for target in s.stores:
                    k.store(target, s.target, loaded)
            doc = f"({tags}) step t, fused over the (N, {st.size}) block"
        return k.finish(name, st.size, doc)

    @staticmethod
    def unique(name: str, taken) -> str:
        out, k = name, 2
        while out in taken:
            out, k = f"{name}_{k}", k + 1
        return out

    # -- the Python step loops -----------------------------------------------------------------

    def vector_step(self, v: str) -> str:
        loc = self.plan.locations.get(v)
        if loc == "prev_state":
            return f"{self.seq(v.removesuffix('_prev'))}[_t]"
        if loc == "state":
            return f"{self.seq(v)}[_t + 1]"
        return f"{self.seq(v)}[_t]"   # the plan saves every product vector per step

    def vector_sequence(self, v: str) -> str:
        loc = self.plan.locations.get(v)
        if loc == "param":
            return f'_params["{v}"].expand(_T, _N, -1)'
        if loc == "prev_state":
            return f"{self.seq(v.removesuffix('_prev'))}[:-1]"
        if loc == "state":
            return f"{self.seq(v)}[1:]"
        return self.seq(v)

    def packed(self, g) -> str:
        return g.packed

    def grid(self, size: str) -> str:
        return self.own("_grid_{}", size)

    def row(self, size: str) -> str:
        """The block of a reduction kernel: the row of ``size`` entries, rounded up to a power of 2."""
        return self.own("_row_{}", size)

    def steps(self, steps, forward: bool) -> tuple[list[dict], list[Line]]:
        kernels, lines = [], []
        prefix = "_forward_{}" if forward else "_backward_{}"
        for st in steps:
            if isinstance(st, GroupProduct):
                g = st.group
                if forward:
                    lines.append(Line(f"_torch.matmul({self.vector_step(g.vector)}, {self.packed_T(g)}, "
                                      f"out={g.proj})", f"({st.tag}) {st.note}"))
                    continue
                block = self.plan.dpre_block(g)
                out = g.linear
                if block is None:
                    first = True
                    for p in g.products:
                        k = self.plan.dpre.index(p.target)
                        src = f"_dpre_seq[_t, :, {_block(self.plan.dpre_offset(k), p.rows)}]"
                        if first:
                            lines.append(Line(f'_torch.matmul({src}, _params["{p.matrix}"], out={out})',
                                              f"({st.tag}) {st.note}"))
                        else:
                            lines.append(Line(f'{out}.addmm_({src}, _params["{p.matrix}"])'))
                        first = False
                    continue
                full = _size_text(block[1] - block[0]) == _size_text(self.plan.width(self.plan.dpre))
                src = "_dpre_seq[_t]" if full else f"_dpre_seq[_t, :, {_block(block[0], self.width(g))}]"
                lines.append(Line(f"_torch.matmul({src}, {self.packed(g)}, out={out})", f"({st.tag}) {st.note}"))
                continue
            if isinstance(st, Reduction):
                span = st.tag or st.note.split(" ", 1)[0].strip("()")
            else:
                tags = [s.tag for s in st.stmts if s.tag]
                span = tags[0] if len(tags) == 1 else f"{tags[0]}-{tags[-1]}" if tags else "common subexpressions"
            kernel, call = self.kernel(st, self.own(prefix, str(len(kernels) + 1)), forward, span)
            kernels.append(kernel)
            lines.append(call)
        return kernels, lines

    # -- before and after the loops ------------------------------------------------------------

    def packing_lines(self) -> list[Line]:
        lines = []
        for g in self.plan.groups:
            rows = self.width(g)
            if len(g.products) == 1:
                lines.append(Line(f'{self.packed(g)} = _params["{g.matrices[0]}"]', f"({rows}, {g.cols})"))
            else:
                members = ", ".join(f'_params["{m}"]' for m in g.matrices)
                lines.append(Line(f"{self.packed(g)} = _torch.cat([{members}])",
                                  f"({rows}, {g.cols}): [{'; '.join(g.matrices)}], one GEMM instead of "
                                  f"{len(g.products)}"))
        return lines

    def hoisted_lines(self) -> list[Line]:
        lines = []
        for g in self.plan.groups:
            if g.constant:
                lines.append(Line(f'{g.proj} = _torch.matmul({g.packed}, _params["{g.vector}"]).expand(_N, -1).contiguous()',
                                  f"the products with the parameter {g.vector}: the same at every step"))
            if not g.hoisted:
                continue
            rows, proj = self.width(g), g.proj
            tags = ", ".join(self.plan.derivation.forward_eq(p.target).tag for p in g.products)
            lines.append(Line(f"{proj} = ({self.seq(g.vector)}.reshape(_T * _N, {g.cols}) @ {self.packed(g)}.T)"
                              f".reshape(_T, _N, {rows})",
                              f"({tags}) the products with {g.vector} of every step: one GEMM over T*N rows"))
            biases = [(p, self.plan.hoisted_bias.get(p.target, ())) for p in g.products]
            if any(b for _, b in biases):
                parts = [" + ".join(f'_params["{b}"]' for b in bs) if bs
                         else f"_torch.zeros({p.rows}, dtype=_dtype, device={self.device})" for p, bs in biases]
                text = f"_torch.cat([{', '.join(parts)}])" if len(parts) > 1 else parts[0]
                lines.append(Line(f"{proj} += {text}", "biases of the same equations, added once for all steps"))
        for g in self.plan.groups:
            if g.per_step:
                lines.append(Line(f"{self.packed_T(g)} = {self.packed(g)}.T.contiguous()",
                                  "the per-step GEMM reads it row-major"))
        return lines

    def empty(self, shape: str) -> str:
        return f"_torch.empty({shape}, dtype=_dtype, device={self.device})"

    def allocation_lines(self) -> list[Line]:
        lines = []
        for s in self.cell.states:
            lines.append(Line(f"{self.seq(s)} = {self.empty(f'(_T + 1, _N, {self.size(s)})')}", f"{s}<0>, ..., {s}<T>"))
            init = {"zeros": "0", "ones": "1"}.get(self.q[s].init)
            if init is None:   # a learnable initial value, broadcast over the batch
                init = f'_params["{self.cell.initial[s]}"]'
            lines.append(Line(f'{self.seq(s)}[0] = {init} if _state0 is None else _state0["{s}"]'))
        for name in (*self.plan.saved_seq, *self.plan.output_seq):
            why = "output" if name in self.plan.output_seq else "saved for the backward pass"
            lines.append(Line(f"{self.seq(name)} = {self.empty(f'(_T, _N, {self.size(name)})')}", why))
        for g in self.plan.groups:
            if g.per_step:
                lines.append(Line(f"{g.proj} = {self.empty(f'(_N, {self.width(g)})')}",
                                  f"the step's products with {g.vector}"))
        for n, size in self.plan.scratch_forward:
            lines.append(Line(f"{self.buf(n)} = {self.empty(f'(_N, {size})')}", "crosses a cut of the step"))
        return lines

    def grid_lines(self, kernels) -> list[Line]:
        lines = [Line(f"{self.lengths} = _row_lengths(_T, _N, _lengths, {self.device})",
                      "(N,) int32: the kernels read where each row ends")]
        for s in dict.fromkeys(k["size"] for k in kernels if not k["row"]):
            lines.append(Line(f"{self.grid(s)} = (_triton.cdiv(_N * {s}, {self.block}),)"))
        for s in dict.fromkeys(k["size"] for k in kernels if k["row"]):
            lines.append(Line(f"{self.row(s)} = _triton.next_power_of_2({s})",
                              "a reduction's program holds a whole row"))
        return lines

    def backward_setup(self) -> list[Line]:
        plan, lines = self.plan, []
        for o in self.cell.outputs:
            up = plan.derivation.upstream[o]
            lines.append(Line(f'{self.seq(up)} = _d_outputs["{o}"].contiguous()'))
        for s in self.cell.states:
            nxt, prev = plan.derivation.carried[s], f"d{s}_prev"
            size = self.size(s)
            lines.append(Line(f"{self.buf(nxt)} = {self.empty(f'(_N, {size})')}", f"{nxt}: the adjoint of {s}<t> from step t+1"))
            lines.append(Line(f'{self.buf(nxt)}[:] = 0 if _d_state is None else _d_state["{s}"]'))
            lines.append(Line(f"{self.buf(prev)} = _torch.empty_like({self.buf(nxt)})",
                              f"{prev}: written by step t, then swapped in"))
        lines.append(Line(f"_dpre_seq = {self.empty(f'(_T, _N, {_size_text(plan.width(plan.dpre))})')}",
                          ", ".join("d" + n for n in plan.dpre) + " of every step"))
        for g in plan.groups:
            if g.per_step:
                lines.append(Line(f"{g.linear} = {self.empty(f'(_N, {g.cols})')}",
                                  f"the step's {' + '.join(f'{m}ᵀ @ d{p.target}' for m, p in zip(g.matrices, g.products))}"))
        for n, size in plan.scratch_backward:
            lines.append(Line(f"{self.buf(n)} = {self.empty(f'(_N, {size})')}", "crosses a cut of the step"))
        for p in self.loop_accumulators():
            lines.append(Line(f"{self.own('_{}_acc', 'd' + p)} = _torch.zeros((_N, {self.size(p)}), dtype={self.accumulate}, device={self.device})",
                              f"d{p} per batch row, summed over the steps"))
        for i in plan.input_loop:
            lines.append(Line(f"{self.seq('d' + i)} = {self.empty(f'(_T, _N, {self.size(i)})')}",
                              f"the elementwise part of d{i}"))
        return lines

    def swap_line(self) -> Line:
        carried = [(self.buf(self.plan.derivation.carried[s]), self.buf(f"d{s}_prev")) for s in self.cell.states]
        return Line(", ".join(n + ", " + p for n, p in carried) + " = "
                    + ", ".join(p + ", " + n for n, p in carried), "step t's d<s>_prev is step t-1's d<s>_next")

    # -- the after-loop GEMMs of _Layout.after_loop_lines, spelled for torch ---------------------

    def concat_columns(self, parts: list[str]) -> str:
        return f"_torch.cat([{', '.join(parts)}], dim=1)"

    def sum_rows(self, text: str) -> str:
        return f"{text}.sum(dim=0, dtype={self.accumulate}).to(_dtype)"

    def sum_steps_and_rows(self, text: str) -> str:
        return f"{text}.sum(dim=(0, 1), dtype={self.accumulate}).to(_dtype)"

    def zeros_like(self, text: str) -> str:
        return f"_torch.zeros_like({text})"

    def copy(self, text: str) -> str:
        return f"{text}.clone()"

    def input_grad(self, x: str) -> str:
        return self.own("_{}_grad", "d" + x)

    def loop_grad(self, p: str) -> str:
        return self.sum_rows(self.own("_{}_acc", "d" + p))

    def carried_variable(self, name: str) -> str:
        return self.buf(name)

    def context(self) -> dict:
        self.printers = []
        self.block = self.own("_BLOCK{}")
        self.device = self.own("_device{}")
        self.accumulate = self.own("_accumulate{}")
        self.lengths = self.own("_row_ends{}")
        fwd_kernels, fwd_lines = self.steps(self.plan.forward_steps, True)
        bwd_kernels, bwd_lines = self.steps(self.plan.backward_steps, False)
        return {
            "packing": self.packing_lines(),
            "hoisted": self.hoisted_lines(),
            "allocations": self.allocation_lines(),
            "forward_grids": self.grid_lines(fwd_kernels),
            "forward_kernels": fwd_kernels,
            "forward_step": fwd_lines,
            **self.forward_results(),   # fixed cache keys: a spec's input may be named params or lengths
            "state_outputs": [o for o in self.cell.outputs if o in self.cell.states],
            "backward_unpack": self.backward_unpack(),
            "backward_setup": self.backward_setup(),
            "backward_grids": self.grid_lines(bwd_kernels),
            "backward_kernels": bwd_kernels,
            "backward_step": bwd_lines,
            "swap": self.swap_line(),
            "after_loop": self.after_loop_lines(),
            "grads": self.grads_entries(),
            "block": self.block,
            "biases": [p for p, parts in self.plan.param_grads.items()
                       if parts and all(x[0] == "bias" for x in parts)],
            "accumulate": self.accumulate,
            "device": self.device,
            "helpers": sorted(set().union(*(p.helpers for p in self.printers))),
        }


class _KernelText:
    """The text of one kernel as it is built: its pointer arguments (one per tensor passed at the
    call), loads, statements and stores, and the sizes and masks it reads."""

    def __init__(self, layout: TritonLayout, forward: bool, row: bool):
        self.layout, self.forward, self.row = layout, forward, row
        self.pointers: dict[str, str] = {}          # call expression -> pointer argument
        self.taken: set[str] = set(KERNEL_NAMES)    # the kernel's own generated names
        self.sizes: set[str] = set()
        self.names: dict[str, str] = {}             # placeholder symbol -> local name
        self.loads: list[Line] = []
        self.stmts: list[Line] = []
        self.stores: list[Line] = []
        self.active = False                         # reads the sequence lengths

    def fresh(self, base: str) -> str:
        out = TritonLayout.unique(base, self.taken)
        self.taken.add(out)
        return out

    def pointer(self, acc: Access, label: str) -> str:
        if acc.call not in self.pointers:
            self.pointers[acc.call] = self.fresh(f"_{(acc.label or label).lstrip('_')}_ptr")
        return self.pointers[acc.call]

    def address(self, acc: Access, label: str) -> str:
        ptr = self.pointer(acc, label)
        if acc.width is None:
            return f"{ptr} + _j"
        self.sizes |= {str(x) for e in (acc.width, acc.offset) for x in sp.sympify(e).free_symbols}
        width = _size_text(acc.width)
        width = width if width.isidentifier() else f"({width})"
        offset = "" if acc.offset == 0 else f"{_size_text(acc.offset)} + "
        return f"{ptr} + _n * {width} + {offset}_j"

    def raw_load(self, name: str) -> str:
        other = ", other=0.0" if self.row else ""   # a row's lanes past its end add nothing to a sum
        return f"_tl.load({self.address(self.layout.access(name), name)}, mask=_mask{other}).to(_F)"

    def load(self, name: str) -> str:
        """Load value ``name`` of step t; the adjoints arriving from outside the step (carried from
        step t+1, upstream) read as zero past a row's end, where the step is the identity."""
        text = self.raw_load(name)
        if not self.forward and self.layout.plan.locations.get(name) in ("carried", "upstream"):
            self.active = True
            return f"_tl.where(_active, {text}, 0.0)"
        return text

    def segment_loads(self, seg: Segment) -> set[str]:
        """Load the products' blocks and the segment's other inputs; return the loaded names."""
        plan = self.layout.plan
        for sym, ref in plan.refs.items():
            if any(sp.Symbol(sym) in s.expr.free_symbols for s in seg.stmts):
                g = self.layout.group_of(ref.buffer)
                product = next(p for k, p in enumerate(g.products) if plan.group_offset(g, k) == ref.offset)
                local = self.fresh(f"_{product.matrix}_{product.vector}")
                self.names[sym] = local
                address = self.address(self.layout.ref_access(ref), ref.buffer)
                self.loads.append(Line(f"{local} = _tl.load({address}, mask=_mask).to(_F)",
                                       f"{product.matrix} @ {product.vector}"))
        loaded = set()
        for n in seg.loads:
            if n not in plan.refs:
                self.loads.append(Line(f"{n} = {self.load(n)}"))
                loaded.add(n)
        return loaded

    def store(self, target: str, value: str, loaded) -> None:
        """Store ``value`` to where ``target`` lives. Past a row's end a state keeps its previous
        value, a non-state output is zero, and the carried adjoint keeps the one from step t+1."""
        layout, plan = self.layout, self.layout.plan
        loc, why = plan.locations.get(target), ""
        if self.forward and loc == "state":
            prev = f"{target}_prev"
            held = prev if prev in loaded else self.raw_load(prev)
            value, why = f"_tl.where(_active, {value}, {held})", "held past the row's end"
        elif self.forward and target in plan.output_seq:
            value, why = f"_tl.where(_active, {value}, 0.0)", "zero past the row's end"
        elif not self.forward and loc == "carried_out":
            state = target[1:].removesuffix("_prev")
            value, why = (f"_tl.where(_active, {value}, {self.raw_load(plan.derivation.carried[state])})",
                          "held past the row's end")
        self.active |= bool(why)
        where = self.address(layout.access(target), target)
        ptr = where.split(" ", 1)[0]
        self.stores.append(Line(f"_tl.store({where}, ({value}).to({ptr}.dtype.element_ty), mask=_mask)"
                                if why else f"_tl.store({where}, {value}.to({ptr}.dtype.element_ty), mask=_mask)",
                                why))

    def finish(self, name: str, size: str, doc: str) -> tuple[dict, Line]:
        layout = self.layout
        self.sizes.add(size)
        head = ([Line("_n = _tl.program_id(0)", "one program per batch row"),
                 Line("_j = _tl.arange(0, _ROW)"), Line(f"_mask = _j < {size}")] if self.row else
                [Line("_k = _tl.program_id(0) * _BLOCK + _tl.arange(0, _BLOCK)"),
                 Line(f"_mask = _k < _N * {size}"), Line(f"_n = _k // {size}"), Line(f"_j = _k % {size}")])
        calls = list(self.pointers)
        if self.active:
            self.pointers[layout.lengths] = "_length_ptr"
            calls.append(layout.lengths)
            head.append(Line(f"_active = _t < _tl.load(_length_ptr + _n{', mask=_mask' if not self.row else ''})",
                             "row n has not ended at step t"))
        sizes = [s for s in _size_order(layout.cell) if s in self.sizes]
        step = ["_t"] if self.active else []
        args = [*self.pointers.values(), "_N", *sizes, *step]
        block = f"_ROW={layout.row(size)}" if self.row else f"_BLOCK={layout.block}"
        kernel = {"name": name, "size": size, "row": self.row, "args": args,
                  "block": "_ROW" if self.row else "_BLOCK", "head": head,
                  "lines": self.loads + self.stmts + self.stores, "doc": doc}
        grid = "(_N,)" if self.row else layout.grid(size)
        call = Line(f"{name}[{grid}]({', '.join([*calls, '_N', *sizes, *step])}, _F=_F, {block})",
                    doc.split(" step t")[0] + (" one kernel per row" if self.row else " one fused kernel"))
        return kernel, call
