"""What the symbols of a formula mean: a reading table from written symbols to cell names.

Every reading comes from a notation file (``notation_file``); this module holds the table's
shape and the names every notation can fall back on (the cell's own, ``default_reading``).

A written symbol is read as a *key* (``\\Gamma_{f}``, ``\\tilde{c}``, ``u^{f}``, ``W_{f}``) plus a
time index, which the parser takes from ``^{<t-1>}``, ``_{t+1}``, ``(t-1)`` or ``-t``. The table
maps each key to the cell quantity it names at the notation's current step (``forward``), and,
for the few symbols only used as adjoints (``d\\bar{a}``: the adjoint from step t+1), to what
``d`` of it means (``adjoint``). A value is a cell name or a short expression in cell names in
SymPy syntax (``HCat(U_f, W_f)`` for a matrix acting on ``[h_prev, x]``, ``o - do_out`` for a
squared-error target y), read by ``parse.parse_sympy_syntax``, never evaluated.

``losses`` name the loss symbols and how a derivative of them reads:
``total`` (the whole-sequence loss: dL/dW is the summed gradient), ``step`` (the loss of one
step: dl(t)/dh(t) is the upstream gradient), ``tail`` (L(t) = sum of the losses from step t
on) and ``block`` (seed 003's Error<t>: the loss of block t, whose derivative with respect to
a state of step t-1 is the adjoint that block hands back).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import VerifyError


@dataclass(frozen=True)
class Entry:
    forward: str | None = None      # cell name or expression at the current step
    adjoint: str | None = None      # what "d" of the symbol means, when not d + forward


@dataclass
class Reading:
    """A notation as the parser reads it (the printing side lives in ``derive.notation``)."""

    name: str
    symbols: dict[str, Entry] = field(default_factory=dict)
    losses: dict[str, str] = field(default_factory=dict)
    step_label: int = 0             # the notation's index of the current step: t -> 0, t+1 -> 1
    hyphen_subscripts: bool = False
    scalar: bool = False            # the document treats every size as 1 (seed 001)
    carried_assign: bool = False    # a carried adjoint on a left side is the one handed back
    sizes: dict[str, str] = field(default_factory=dict)   # the document's size names: n_a -> H
    layout: str = "numerator"       # a written Jacobian ∂a/∂h is J ("denominator": J^T, a = h W)
    formulas: tuple = ()            # [[formula]] readings of garbled pieces, formula by formula
    cells: tuple[str, ...] = ()     # cells the notation was written for (documentation only)
    path: str | None = None         # the notation file, for printing in the same notation


def default_reading(derivation) -> Reading:
    """The cell's own names, as SymPy prints them: ``W_f`` is ``W_{f}``, ``dh_next`` is ``dh_{next}``."""
    names = set(derivation.quantities)
    names |= {eq.target for eq in derivation.backward}
    names |= set(derivation.carried.values()) | set(derivation.upstream.values())
    names |= {s + "_prev" for s in derivation.cell.states}
    symbols = {key_of_name(n): Entry(n) for n in sorted(names)}
    for name, key in _printed_default_symbols(derivation).items():
        symbols.setdefault(key, Entry(name))               # \tilde{C} where the cell says Ct
    for state, carried in derivation.carried.items():      # d c_{next}: the carried adjoint
        symbols.setdefault(f"{state}_{{next}}", Entry(adjoint=carried))
    for output, upstream in derivation.upstream.items():   # d h_{out}: the upstream gradient
        symbols.setdefault(f"{output}_{{out}}", Entry(adjoint=upstream))
    return Reading("default", symbols=symbols,
                   losses={"L": "total", "E": "total", r"\mathcal{L}": "total"})


def _printed_default_symbols(derivation) -> dict[str, str]:
    """The symbols ``derive.notation``'s default notation prints, so its output reads back."""
    try:
        from derive.notation import NotationError, load_notation
        from .notation_file import canonical_key
        notation = load_notation("default")
    except (ImportError, OSError, ValueError):
        return {}
    out = {}
    for name in derivation.quantities:
        if name.endswith("_prev"):
            continue
        try:
            out[name] = canonical_key(notation.symbol(name))
        except NotationError:
            continue
    return out


def key_of_name(name: str) -> str:
    """``dh_next`` -> ``dh_{next}``: the key SymPy's LaTeX printer gives a cell name."""
    head, sep, rest = name.partition("_")
    return f"{head}_{{{rest}}}" if sep else name


def get_reading(name: str | None, derivation) -> Reading:
    """The reading of a notation file, built-in (``derive/notations/<name>.toml``) or a path;
    None is cellgrad's ``default``. Built-in notations are files like any other."""
    from .notation_file import reading_from_notation
    return reading_from_notation("default" if name is None else name, derivation)


def known_readings() -> list[str]:
    from derive.notation import builtin_notations
    return builtin_notations()


def retyped(text: str, reading: Reading) -> str:
    """``text`` with the notation's ``[[formula]]`` readings applied: in a formula containing an
    entry's ``where``, each typed piece reads as its value (a list: occurrence by occurrence).
    A list whose length is not the number of occurrences is refused: the reading is unclear."""
    for where, pieces in reading.formulas:
        if where not in text:
            continue
        for typed, values, by_occurrence in pieces:
            found = text.count(typed)
            if by_occurrence and found != len(values):
                raise VerifyError(f"notation {reading.name}: [[formula]] where {where!r} reads "
                                  f"{typed!r} {len(values)} times, but the formula has it "
                                  f"{found} times")
            parts = text.split(typed)
            text = parts[0] + "".join((values[k] if by_occurrence else values[0]) + rest
                                      for k, rest in enumerate(parts[1:]))
    return text
