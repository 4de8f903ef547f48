"""Slices of stacked arrays: ``da[:, H:2H]`` (cs231n's gate columns), ``W[:H]`` (a stacked
weight's first gate), ``w_f[:, :n_a]`` (the block of a concatenated matrix acting on a<t-1>).

A slice is read only where it falls on the blocks of a value the notation declares stacked
(``VCat`` of vectors, ``VStack`` of matrices by rows, ``HCat`` side by side, or the transpose
of one): the bounds are sums of size names (the cell's ``H``, ``D`` or the document's own,
``[sizes] n_a = 'H'``) and numbers, compared with the blocks' offsets exactly. A slice that
cuts a block is an error, never a guess.
"""

from __future__ import annotations

import re

import sympy as sp

from .errors import VerifyError
from .nodes import HCat, MatTranspose, VCat, VStack
from .sequence import split_symbol

TERM = re.compile(r"([+-]?)(\d*)\*?([A-Za-z][A-Za-z0-9_{}]*)?")


def size_of(ctx, text: str, where) -> sp.Expr:
    """A bound such as ``2H``, ``2*H``, ``n_a + n_x`` as a sum of size symbols."""
    names = dict(ctx.reading.sizes)
    text = text.replace(" ", "")
    total, pos = sp.Integer(0), 0
    while pos < len(text):
        m = TERM.match(text, pos)
        if not m or m.end() == pos or not (m.group(2) or m.group(3)):
            raise VerifyError(f"cannot read the slice bound {text!r} (sizes: "
                              f"{', '.join(sorted({*ctx.cell.sizes, *names}))})", where)
        count = int(m.group(2) or 1) * (-1 if m.group(1) == "-" else 1)
        name = m.group(3)
        if name is not None:
            name = names.get(name) or names.get(_braced(name)) or name    # n_a or n_{a}
            if name not in ctx.cell.sizes:
                raise VerifyError(f"{m.group(3)} in a slice is not a size of cell {ctx.cell.name} "
                                  f"(declare it under [sizes])", where)
        total += count * (sp.Symbol(name) if name else 1)
        pos = m.end()
    return total


def _braced(name: str) -> str:
    head, sep, rest = name.partition("_")
    return f"{head}_{{{rest}}}" if sep and not rest.startswith("{") else name


def _extent(ctx, e, axis: int, where) -> sp.Expr:
    """The size of value ``e`` along axis 0 (rows, or a vector's features) or 1 (columns)."""
    if isinstance(e, MatTranspose):
        return _extent(ctx, e.args[0], 1 - axis, where)
    if isinstance(e, (VCat, VStack)) and axis == 0 or isinstance(e, HCat) and axis == 1:
        return sp.Add(*(_extent(ctx, a, axis, where) for a in e.args))
    if isinstance(e, (VCat, VStack, HCat)):
        return _extent(ctx, e.args[0], axis, where)
    if isinstance(e, sp.Symbol):
        base = split_symbol(e.name)[0]
        q = ctx.d.quantities.get(base) or ctx.d.quantities.get(base[1:])
        if q is not None and axis < len(q.shape):
            return sp.Symbol(q.shape[axis])
    raise VerifyError("cannot tell the size of a sliced block", where)


def _along(ctx, e, axis: int, lo, hi, where):
    """``e`` restricted to [lo, hi) along ``axis``, on block boundaries."""
    if isinstance(e, MatTranspose):
        return MatTranspose(_along(ctx, e.args[0], 1 - axis, lo, hi, where))
    full = _extent(ctx, e, axis, where)
    lo = sp.Integer(0) if lo is None else lo
    hi = full if hi is None else hi
    if sp.expand(lo) == 0 and sp.expand(hi - full) == 0:
        return e
    stacked = isinstance(e, (VCat, VStack)) and axis == 0 or isinstance(e, HCat) and axis == 1
    if not stacked:
        raise VerifyError("a slice of a value that is not stacked from blocks (declare the "
                          "stacking under [read], e.g. 'a' = 'VCat(a_i, a_f, a_o, a_g)')", where)
    offsets, at = [sp.Integer(0)], sp.Integer(0)
    for block in e.args:
        at += _extent(ctx, block, axis, where)
        offsets.append(at)
    same = lambda u, v: sp.expand(u - v) == 0  # noqa: E731
    first = next((k for k, o in enumerate(offsets) if same(o, lo)), None)
    last = next((k for k, o in enumerate(offsets) if same(o, hi)), None)
    if first is None or last is None or last <= first:
        raise VerifyError(f"the slice {lo}:{hi} does not fall on the blocks of the stacked value "
                          f"(block offsets {', '.join(str(o) for o in offsets)})", where)
    blocks = e.args[first:last]
    return blocks[0] if len(blocks) == 1 else e.func(*blocks)


def slice_value(ctx, e, items: list[str], where):
    """``e[items]``: one index per axis (``:``, ``a:b``, ``:b``, ``a:``); a vector's first index
    of two is the batch (``da[:, H:2H]``, rows are samples in the documents' code)."""
    kind = ctx.kind(e)
    bounds = []
    for item in items:
        if ":" not in item:
            raise VerifyError("a single index selects one entry; slice whole blocks (a:b)", where)
        lo, _, hi = item.partition(":")
        bounds.append((size_of(ctx, lo, where) if lo.strip() else None,
                       size_of(ctx, hi, where) if hi.strip() else None))
    if kind == "vec":
        if len(bounds) == 2:
            if bounds[0] != (None, None):
                raise VerifyError("the first index of a vector slice is the batch: write ':'", where)
            bounds = bounds[1:]
        if len(bounds) != 1:
            raise VerifyError("a vector has one axis to slice", where)
        return _along(ctx, e, 0, *bounds[0], where)
    if kind != "mat" or len(bounds) > 2:
        raise VerifyError("only a stacked vector or matrix can be sliced", where)
    for axis, (lo, hi) in enumerate(bounds):
        e = _along(ctx, e, axis, lo, hi, where)
    return e
