"""What the symbols of a formula mean: a reading table from written symbols to cell names.

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

from derive import limits

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
    unsupported: dict[str, str] = field(default_factory=dict)   # key -> why it cannot be read
    step_label: int = 0             # the notation's index of the current step: t -> 0, t+1 -> 1
    hyphen_subscripts: bool = False
    scalar: bool = False            # the document treats every size as 1 (seed 001)
    cells: tuple[str, ...] = ()     # cells the notation was written for (documentation only)


def _gates(mapping: dict[str, str]) -> dict[str, Entry]:
    return {k: Entry(v) for k, v in mapping.items()}


_COURSERA = Reading(
    "coursera",
    symbols={
        **_gates({"a": "h", "c": "c", "x": "x", r"\Gamma_{f}": "f", r"\Gamma_{u}": "i",
                  r"\Gamma_{i}": "i", r"\Gamma_{o}": "o", r"\tilde{c}": "g",
                  # pre-activations, as derive.notation's coursera prints them
                  "z_{f}": "a_f", "z_{u}": "a_i", "z_{c}": "a_g", "z_{o}": "a_o"}),
        # W_f acts on the stacked [a<t-1>, x<t>]: its columns are U_f then W_f.
        **{f"{w}_{{{g}}}": Entry(f"HCat(U_{c}, W_{c})") for w in ("W", "w")
           for g, c in (("f", "f"), ("u", "i"), ("i", "i"), ("c", "g"), ("o", "o"))},
        **{f"b_{{{g}}}": Entry(f"b_{c}") for g, c in (("f", "f"), ("u", "i"), ("i", "i"),
                                                      ("c", "g"), ("o", "o"))},
        # Seed 000: "\hat{w}^T denotes w[:, :n_a], \tilde{w}^T denotes w[:, n_a:n_a+n_x]".
        **{rf"\hat{{w}}_{{{g}}}": Entry(f"MatTranspose(U_{c})") for g, c in
           (("f", "f"), ("u", "i"), ("c", "g"), ("o", "o"))},
        **{rf"\tilde{{w}}_{{{g}}}": Entry(f"MatTranspose(W_{c})") for g, c in
           (("f", "f"), ("u", "i"), ("c", "g"), ("o", "o"))},
        # Seed 000: d\bar{.} comes from the next cell, d\hat{.} from this cell's own loss.
        r"\bar{a}": Entry(adjoint="dh_next"), r"\hat{a}": Entry(adjoint="dh_out"),
        r"\bar{c}": Entry(adjoint="dc_next"), r"\hat{c}": Entry(adjoint="dc - dc_next"),
    },
    losses={"J": "total", "L": "total", "E": "total", r"\mathcal{L}": "total"},
    cells=("lstm",),
)

_CS231N = Reading(
    "cs231n",
    symbols={
        **_gates({"h": "h", "c": "c", "x": "x", "i": "i", "f": "f", "o": "o", "g": "g",
                  "c_{prev}": "c_prev", "h_{prev}": "h_prev", "a_{i}": "a_i", "a_{f}": "a_f",
                  "a_{o}": "a_o", "a_{g}": "a_g"}),
        # cs231n's lstm_step_backward(dnext_h, dnext_c): dnext_h is the whole gradient on h<t>.
        "d_{next_h}": Entry("dh"), "d_{next_c}": Entry("dc_next"),
    },
    unsupported={
        "w_{x}": "cs231n's Wx stacks the four gates' input weights as one (D, 4H) matrix; "
                 "stacked-gate layouts are not supported",
        "w_{h}": "cs231n's Wh stacks the four gates' recurrent weights as one (H, 4H) matrix; "
                 "stacked-gate layouts are not supported",
        r"\omega_{wh}": "cs231n's Wh stacks the four gates' recurrent weights as one (H, 4H) "
                        "matrix; stacked-gate layouts are not supported",
        "a": "cs231n's a is the (N, 4H) stack of the four gates' pre-activations; stacked-gate "
             "layouts are not supported",
        "b": "cs231n's b stacks the four gates' biases (4H,); stacked-gate layouts are not "
             "supported",
    },
    losses={"L": "total", "loss": "total"},
    hyphen_subscripts=True,
    cells=("lstm",),
)

_SHG = Reading(
    "shg",
    symbols={
        **_gates({"h": "h", "s": "c", "x": "x", "i": "i", "f": "f", "o": "o", "g": "g",
                  r"\tilde{s}": "g"}),
        # W_g acts on [h(t-1), x(t)]: its columns are U_g then W_g.
        **{f"W_{{{g}}}": Entry(f"HCat(U_{g}, W_{g})") for g in "gifo"},
        **{f"b_{{{g}}}": Entry(f"b_{g}") for g in "gifo"},
    },
    losses={"L": "tail", "l": "step"},
    cells=("lstm_no_tanh", "lstm"),
)

_BOOK = Reading(
    "book",
    symbols={
        **_gates({"s": "s", "x": "x", "o": "o", "u": "u", "v": "v", "w": "w", "b_{f}": "b_f",
                  "b_{g}": "b_g", "f": "f", "i": "i", "h": "h", "C": "C", r"\tilde{C}": "Ct"}),
        **{f"{p}^{{{g}}}": Entry(f"{p}_{g}") for p in "uvb" for g in ("f", "i", "C", "o")},
        # Err = sum of (o - y)^2 / 2, so do_out = o - y at every step.
        "y": Entry("o - do_out"),
    },
    losses={"Err": "total", "E": "total"},
    step_label=1,            # the book's current step is t+1: s_{t+1} = f(u x_{t+1} + v s_t + b_f)
    scalar=True,             # u, v, w are "constants": every size is 1
    cells=("minimal_rnn", "book_lstm"),
)

_KANG = Reading(
    "kang",
    symbols={
        **_gates({"a": "h", "c": "c", "C": "c", "x": "x", r"\Gamma_{f}": "f", r"\Gamma_{u}": "i",
                  r"\Gamma_{o}": "o", r"\tilde{c}": "g", "sum_{f}": "a_f", "sum_{u}": "a_i",
                  "sum_{c}": "a_g", "sum_{o}": "a_o"}),
        **{f"W_{{{g}}}": Entry(f"HCat(U_{c}, W_{c})") for g, c in
           (("f", "f"), ("u", "i"), ("c", "g"), ("o", "o"))},
        **{f"b_{{{g}}}": Entry(f"b_{c}") for g, c in (("f", "f"), ("u", "i"), ("c", "g"), ("o", "o"))},
        # Error = (\hat{a} - a)^2 / 2 with \hat{a} the target, so dh_out = a - \hat{a}.
        r"\hat{a}": Entry("h - dh_out"),
    },
    losses={"Error": "block"},
    cells=("lstm",),
)

BUILTIN_READINGS = {r.name: r for r in (_COURSERA, _CS231N, _SHG, _BOOK, _KANG)}
#: The seed documents' notations under the names the notation module gives them.
ALIASES = {"seed000": "coursera", "seed002": "cs231n", "seed003": "kang", "seed004": "shg",
           "seed001": "book"}


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
    """A built-in reading by name, the default one for None; a file through ``derive.notation``."""
    if name in (None, "default"):
        return default_reading(derivation)
    key = ALIASES.get(str(name), str(name))
    if key in BUILTIN_READINGS:
        return BUILTIN_READINGS[key]
    from pathlib import Path
    try:
        exists = Path(str(name)).exists()
    except (OSError, ValueError):             # a name too long for the file system, a NUL
        exists = False
    if not exists and not str(name).endswith(".toml"):
        try:
            from derive.notation import builtin_notations
            printable = builtin_notations()
        except ImportError:
            printable = []
        if str(name) not in printable:
            raise VerifyError(f"unknown notation {limits.short(str(name))}: not one of "
                              f"{', '.join(known_readings())} and not a notation file")
    from .notation_file import reading_from_notation
    return reading_from_notation(name, derivation)


def known_readings() -> list[str]:
    return ["default", *BUILTIN_READINGS]


def check_reading(reading: Reading) -> None:
    """A reading must not give one key two meanings (checked when tables are merged)."""
    if not isinstance(reading.symbols, dict):
        raise VerifyError(f"notation {reading.name}: symbols must be a table")
