"""The Triton layout: the kernel plan of ``codegen/lower.py`` printed as a module over torch tensors.

haste's structure, for any cell: the input products of every step are one GEMM before the loop
(``_torch.matmul``, i.e. cuBLAS on a GPU); per step one GEMM per recurrent product group, then one
``@_triton.jit`` kernel per ``Segment`` of the plan fusing its elementwise statements over the
(N, size) block and writing the saved values; the backward step is the same, its kernels writing
the pre-activation adjoints into one (T, N, width) buffer; after the loop the weight and input
gradients are one GEMM each. Kernels load any storage dtype and compute in ``_F`` (float32, or
float64 for float64 tensors), so bfloat16/float16 storage keeps float32 arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import jinja2
import sympy as sp

from codegen.kernels import Line, _block, _Layout, _size_order, _size_text, _statement_comment, own_arrays
from codegen.lower import GroupProduct, Ref, Segment, Stmt

from .printer import TritonPrinter

HERE = Path(__file__).parent
#: names every kernel body writes as they are (its element index, mask, row, column, sizes)
KERNEL_NAMES = ("_k", "_mask", "_n", "_j", "_N", "_F", "_BLOCK")


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
    every_cell = False   # refuses, by name, what it cannot print yet (see refusal())

    def refusal(self) -> str | None:
        """Why this layout cannot print the plan, or None. Checked before anything is printed,
        so a construct the layout does not know is refused, never printed wrong."""
        for s in self.cell.states:
            init = getattr(self.q[s], "init", "zeros")
            if init != "zeros":
                return f"state {s} starts at {init!r}: the triton backend starts every state at zeros"
        if len(self.cell.inputs) != 1:
            return "several inputs: the triton backend takes one input sequence"
        if any(not getattr(self.q[p], "trainable", True) for p in self.cell.params):
            return "[buffers]: the triton backend returns a gradient for every parameter"
        from codegen.lower import Reduction
        if any(isinstance(st, Reduction) for st in (*self.plan.forward_steps, *self.plan.backward_steps)):
            return "reductions (mean, sum): the triton backend has no reduction kernel yet"
        return None

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

    # -- one kernel per segment ----------------------------------------------------------------

    def kernel(self, seg: Segment, name: str, forward: bool, tags: str) -> tuple[dict, Line]:
        pointers: dict[str, str] = {}          # call expression -> pointer argument
        taken: set[str] = set(KERNEL_NAMES)     # the kernel's own generated names

        def fresh(base: str) -> str:
            out = self.unique(base, taken)
            taken.add(out)
            return out

        def pointer(acc: Access, label: str) -> str:
            if acc.call not in pointers:
                pointers[acc.call] = fresh(f"_{(acc.label or label).lstrip('_')}_ptr")
            return pointers[acc.call]

        def address(acc: Access, label: str) -> str:
            ptr = pointer(acc, label)
            if acc.width is None:
                return f"{ptr} + _j"
            width = _size_text(acc.width)
            width = width if width.isidentifier() else f"({width})"
            offset = "" if acc.offset == 0 else f"{_size_text(acc.offset)} + "
            return f"{ptr} + _n * {width} + {offset}_j"

        names: dict[str, str] = {}
        loads: list[Line] = []
        for sym, ref in self.plan.refs.items():
            if any(sp.Symbol(sym) in s.expr.free_symbols for s in seg.stmts):
                g = self.group_of(ref.buffer)
                product = next(p for k, p in enumerate(g.products)
                               if self.plan.group_offset(g, k) == ref.offset)
                local = fresh(f"_{product.matrix}_{product.vector}")
                names[sym] = local
                loads.append(Line(f"{local} = _tl.load({address(self.ref_access(ref), ref.buffer)}, "
                                  f"mask=_mask).to(_F)", f"{product.matrix} @ {product.vector}"))
        for n in seg.loads:
            if n in self.plan.refs:
                continue
            loads.append(Line(f"{n} = _tl.load({address(self.access(n), n)}, mask=_mask).to(_F)"))
        printer = TritonPrinter(names)
        self.printers.append(printer)
        stmts: list[Line] = []
        stores: list[Line] = []
        for s in seg.stmts:
            text = printer.doprint(s.expr)
            if not s.expr.free_symbols:
                text = f"_tl.full((_BLOCK,), {text}, _F)"
            if s.accumulate:
                acc = Access(self.own("_{}_acc", s.target), sp.Symbol(s.size))
                where = address(acc, s.target + "_acc")
                stmts.append(Line(f"{s.target} = {text}", _statement_comment(s)))
                stores.append(Line(f"_tl.store({where}, _tl.load({where}, mask=_mask) + {s.target}, mask=_mask)",
                                   "summed over the steps here, over the batch after the loop"))
                continue
            stmts.append(Line(f"{s.target} = {text}", _statement_comment(s)))
            for target in s.stores:
                where = address(self.access(target), target)
                ptr = where.split(" ", 1)[0]
                stores.append(Line(f"_tl.store({where}, {s.target}.to({ptr}.dtype.element_ty), mask=_mask)"))
        sizes = self.kernel_sizes(seg.size, list(pointers), seg)
        args = [*pointers.values(), "_N", *sizes]
        kernel = {"name": name, "size": seg.size, "args": args, "loads": loads, "stmts": stmts,
                  "stores": stores, "doc": f"({tags}) step t, fused over the (N, {seg.size}) block"}
        call = Line(f"{name}[{self.grid(seg.size)}]({', '.join([*pointers, '_N', *sizes])}, _F=_F, _BLOCK={self.block})",
                    f"({tags}) one fused kernel")
        return kernel, call

    @staticmethod
    def unique(name: str, taken) -> str:
        out, k = name, 2
        while out in taken:
            out, k = f"{name}_{k}", k + 1
        return out

    def kernel_sizes(self, size: str, calls, seg) -> list[str]:
        """The sizes a kernel reads: its block's size and those in row widths and offsets."""
        used = {size}
        for acc in [self.access(n) for n in seg.loads if n not in self.plan.refs] + \
                   [self.ref_access(r) for r in self.plan.refs.values()] + \
                   [self.access(t) for s in seg.stmts for t in s.stores]:
            for e in (acc.width, acc.offset):
                if e is not None:
                    used |= {str(x) for x in sp.sympify(e).free_symbols}
        text = " ".join(calls)
        return [s for s in _size_order(self.cell) if s in used or f"{s}]" in text]

    # -- the Python step loops -----------------------------------------------------------------

    def vector_step(self, v: str) -> str:
        loc = self.plan.locations.get(v)
        if loc == "prev_state":
            return f"{self.seq(v.removesuffix('_prev'))}[_t]"
        if loc == "state":
            return f"{self.seq(v)}[_t + 1]"
        if loc == "seq":
            return f"{self.seq(v)}[_t]"
        raise NotImplementedError(f"the product vector {v} is not stored per step")

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
            lines.append(Line(f'{self.seq(s)}[0] = 0 if _state0 is None else _state0["{s}"]'))
        for name in (*self.plan.saved_seq, *self.plan.output_seq):
            why = "output" if name in self.plan.output_seq else "saved for the backward pass"
            lines.append(Line(f"{self.seq(name)} = {self.empty(f'(_T, _N, {self.size(name)})')}", why))
        for g in self.plan.groups:
            if g.per_step:
                lines.append(Line(f"{g.proj} = {self.empty(f'(_N, {self.width(g)})')}",
                                  f"the step's products with {g.vector}"))
        for n, size in self.plan.scratch_forward:
            lines.append(Line(f"{self.buf(n)} = {self.empty(f'(_N, {size})')}", "crosses a per-step GEMM"))
        return lines

    def grid_lines(self, kernels) -> list[Line]:
        sizes = list(dict.fromkeys(k["size"] for k in kernels))
        return [Line(f"{self.grid(s)} = (_triton.cdiv(_N * {s}, {self.block}),)") for s in sizes]

    def backward_setup(self) -> list[Line]:
        plan, lines = self.plan, []
        for o in self.cell.outputs:
            up = plan.derivation.upstream[o]
            lines.append(Line(f'{self.seq(up)} = (_d_outputs["{o}"] if _lengths is None '
                              f'else _torch.where(_active, _d_outputs["{o}"], 0)).contiguous()'))
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
            lines.append(Line(f"{self.buf(n)} = {self.empty(f'(_N, {size})')}", "crosses a per-step GEMM"))
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

    def after_loop_lines(self) -> list[Line]:
        plan, lines = self.plan, []
        total = _size_text(plan.width(plan.dpre))
        lines.append(Line(f"_dpre_flat = _dpre_seq.reshape(_T * _N, {total})",
                          "every step's " + ", ".join("d" + n for n in plan.dpre) + " as rows"))
        for g in plan.groups:
            block = plan.dpre_block(g)
            if block is None:
                cols = ", ".join(f"_dpre_flat[:, {_block(plan.dpre_offset(plan.dpre.index(p.target)), p.rows)}]"
                                 for p in g.products)
                stacked = f"_torch.cat([{cols}], dim=1)"
            elif _size_text(block[1] - block[0]) == total:
                stacked = "_dpre_flat"
            else:
                stacked = f"_dpre_flat[:, {_block(block[0], self.width(g))}]"
            name = self.dpacked(g)
            lines.append(Line(f"{name} = {stacked}.T @ {self.vector_sequence(g.vector)}.reshape(_T * _N, {g.cols})",
                              f"gradients of {', '.join(g.matrices)}, summed over steps and batch: one GEMM"))
            if g.constant:
                lines.append(Line(f"{g.linear} = ({stacked} @ {self.packed(g)}).sum(dim=0)",
                                  f"[{'; '.join(g.matrices)}]ᵀ @ the adjoints, summed over steps and batch"))
            if g.hoisted:
                extra = f" + {self.seq('d' + g.vector)}" if g.vector in plan.input_loop else ""
                lines.append(Line(f"{self.own('_{}_grad', 'd' + g.vector)} = ({stacked} @ {self.packed(g)}).reshape(_T, _N, {g.cols}){extra}",
                                  f"({plan.derivation.backward_eq('d' + g.vector).tag}) for every step at once, "
                                  "one GEMM"))
        if any(part[0] == "bias" for parts in plan.param_grads.values() for part in parts):
            lines.append(Line(f"_dpre_sum = _dpre_seq.sum(dim=(0, 1), dtype={self.accumulate}).to(_dtype)",
                              "bias gradients: sums over steps and batch"))
        return lines

    def grads_entries(self) -> dict[str, list[tuple[str, str, str]]]:
        plan, out = self.plan, []
        for p in self.cell.params:
            eq = plan.derivation.backward_eq("d" + p)
            terms = []
            for part in plan.param_grads[p]:
                if part[0] == "gemm":
                    g, k = part[1], part[2]
                    name = self.dpacked(g)
                    terms.append(f"{name}[{_block(plan.group_offset(g, k), g.products[k].rows)}]"
                                 if len(g.products) > 1 else name)
                elif part[0] == "bias":
                    k = plan.dpre.index(part[1])
                    terms.append(f"_dpre_sum[{_block(plan.dpre_offset(k), self.size(part[1]))}]")
                elif part[0] == "linear":
                    terms.append(part[1].linear)
                else:
                    terms.append(f"{self.own('_{}_acc', 'd' + p)}.sum(dim=0).to(_dtype)")
            text = " + ".join(terms) if terms else f'_torch.zeros_like(_params["{p}"])'
            out.append((p, text, eq.tag))
        if self.x in plan.input_linear:
            dx = self.own("_{}_grad", "d" + self.x)
        elif self.x in plan.input_loop:
            dx = self.seq("d" + self.x)
        else:
            dx = f"_torch.zeros_like({self.seq(self.x)})"
        inputs = [(self.x, dx, plan.derivation.backward_eq("d" + self.x).tag)]
        state = [(s, self.buf(plan.derivation.carried[s]), plan.derivation.backward_eq(f"d{s}_prev").tag)
                 for s in self.cell.states]
        return {"params": own_arrays(out, "clone"), "inputs": inputs, "state": state}

    def context(self) -> dict:
        reason = self.refusal()
        if reason:
            raise NotImplementedError(reason)
        self.printers = []
        self.block = self.own("_BLOCK{}")
        self.device = self.own("_device{}")
        self.accumulate = self.own("_accumulate{}")
        fwd_kernels, fwd_lines = self.steps(self.plan.forward_steps, True)
        bwd_kernels, bwd_lines = self.steps(self.plan.backward_steps, False)
        # fixed keys "x", "params", "lengths": a spec's input may be named params or lengths
        cache = [("x", self.seq(self.x)), *[(self.packed(g), self.packed(g)) for g in self.plan.groups],
                 *[(self.seq(s), self.seq(s)) for s in self.cell.states],
                 *[(self.seq(n), self.seq(n)) for n in (*self.plan.saved_seq, *self.plan.output_seq)],
                 ("params", "_params"), ("lengths", "_lengths")]
        return {
            "packing": self.packing_lines(),
            "hoisted": self.hoisted_lines(),
            "allocations": self.allocation_lines(),
            "forward_grids": self.grid_lines(fwd_kernels),
            "forward_kernels": fwd_kernels,
            "forward_step": fwd_lines,
            "output_values": [(o, f"{self.seq(o)}[1:]" if o in self.cell.states else self.seq(o))
                              for o in self.cell.outputs],
            "final_state": [(s, f"{self.seq(s)}[_T]") for s in self.cell.states],
            "cache": cache,
            "cache_keys": ", ".join(f'"{k}"' for k, _ in cache),
            "backward_unpack": [Line(f'{v} = _cache["{k}"]') for k, v in cache if k not in ("params", "lengths")],
            "state_seqs": [self.seq(s) for s in self.cell.states],
            "carried": [self.buf(self.plan.derivation.carried[s]) for s in self.cell.states],
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
