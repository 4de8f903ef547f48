"""cellgrad derive: a cell's forward and backward equations as readable text."""

from __future__ import annotations

import sympy as sp

from derive import Derivation, derive, load_cell

from . import Example
from .check import _positive  # K >= 1 steps, as check's -T

NAME = "derive"
HELP = "print the forward and backward (BPTT) equations of a cell, fork sums marked"
EXAMPLES = (
    Example("cellgrad derive lstm", "the LSTM's forward and BPTT equations"),
    Example("cellgrad derive my_cell.toml", "a spec file of your own"),
    Example("cellgrad derive minimal_rnn --truncate 1", "1-step truncated BPTT"),
)


def add_arguments(parser):
    parser.add_argument("cell", metavar="CELL_OR_SPEC", help="built-in cell name or path to a spec file")
    parser.add_argument("--truncate", type=_positive, metavar="K", default=None,
                        help="truncated BPTT: propagate each loss back K steps only (default: full BPTT)")


def run(args) -> int:
    print(render_text(derive(load_cell(args.cell), truncate=args.truncate)))
    return 0




def _linear(expr: sp.Expr) -> str:
    """Print products as W @ v, W.T @ d, d ⊗ v instead of the node names."""
    from derive.linear import MatVec, MatVecT, Outer

    def show(e):
        if isinstance(e, MatVec):
            return f"{e.matrix} @ {e.vector}"
        if isinstance(e, MatVecT):
            return f"{e.matrix}ᵀ @ {e.vector}"
        if isinstance(e, Outer):
            return f"{e.left} ⊗ {e.right}"
        if isinstance(e, sp.Add) and any(isinstance(a, (MatVec, MatVecT, Outer)) for a in e.args):
            return " + ".join(show(a) for a in e.args)
        return sp.sstr(e)

    return show(expr)


def render_text(d: Derivation) -> str:
    cell = d.cell
    lines = [f"cell {cell.name}: {cell.description}".rstrip(": "), ""]
    sizes = ", ".join(f"{k} = {v}" for k, v in cell.sizes.items())
    lines += [f"sizes: {sizes}", f"inputs: {', '.join(cell.inputs)}   states: "
              f"{', '.join(f'{s} (previous: {s}_prev)' for s in cell.states)}   outputs: {', '.join(cell.outputs)}",
              "", "forward, step t:"]
    for eq in d.forward:
        note = f"   ({d.quantities[eq.lhs].doc}, named by cellgrad)" if eq.introduced else ""
        lines.append(f"  ({eq.tag}) {eq.lhs} = {_linear(eq.rhs)}{note}")
    lines += ["", "backward, step t (d<name> = dL/d<name>; "
              + ", ".join(f"{v} = upstream gradient of {k}" for k, v in d.upstream.items())
              + ("; " + ", ".join(f"{v} = adjoint of {k} from step t+1" for k, v in d.carried.items())
                 if d.truncate != 1 else "") + "):"]
    for eq in d.backward:
        acc = " += " if eq.accumulates else " = "
        mark = "   <- fork sum: " + " + ".join(b.source if b.source in ("loss", "next") else
                                               f"via {b.consumer} ({b.source})" for b in eq.branches) \
            if eq.is_fork else ""
        lines.append(f"  ({eq.tag}) {eq.target}{acc}{_linear(eq.expr)}{mark}")
    lines += ["", f"saved by the forward pass: {', '.join(d.saved)}"]
    for note in d.notes:
        lines.append(f"note: {note}")
    return "\n".join(lines)
