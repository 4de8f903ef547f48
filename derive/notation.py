"""Notations: how a document names a cell's quantities, so a reader sees the symbols they know.

A notation is a small TOML file (``derive/notations/<name>.toml`` for the built-in ones, or any
path a user gives). It maps the cell's names to LaTeX symbols and says how the time step is
written. From the base symbols it composes every name a ``Derivation`` uses:

* ``c`` (step t) prints ``c^{\\langle t \\rangle}``, ``c_t`` or ``c(t)`` as ``time`` says;
  ``c_prev`` is the same symbol at t-1; parameters carry no time index;
* the adjoint ``dc`` applies the ``adjoint`` template (``'\\delta #'``, ``#`` = base symbol);
* the upstream gradient ``dh_out`` = dE<t>/dh<t> applies the ``upstream`` template;
* the carried adjoint ``dh_next`` (dE<t+1..T>/dh<t>, computed by step t+1) applies the
  ``carried`` template at time t, and ``dh_prev`` (what step t hands to step t-1) is the same
  quantity one step earlier: the ``carried`` template at time t-1.

An entry in ``[symbols]`` for a composed name (``dh_prev = 'dh_{\\mathrm{prev}}'``) is used as
written. A notation with ``auto = true`` (cellgrad's ``default``) invents a symbol for any name it
does not list; every other notation must list what a cell needs, or rendering stops with an
error that names the missing names and the notation file.

The same file says how formulas written in it read (``derive.verify``): ``current_step``
(``"t+1"`` when the document's step computes s_{t+1}), ``pdf_hyphens``, ``scalar``,
``carried_assign`` (min-char-rnn's ``dhnext = Whh^T dhraw`` assigns what the step hands back),
``layout`` (a Jacobian written alone is J, or J^T in ``"denominator"``), the tables ``[read]``
(other spellings with their meaning in the cell's names), ``[adjoints]``, ``[targets]``,
``[losses]`` and ``[sizes]`` (the document's size names, for slices ``w[:, :n_a]``), and
``[[formula]]`` entries (one formula's garbled pieces and how they read); a symbol written transposed (``U_f = '\\hat{w}_f^T'``) makes
its base the transpose. Built-in notations are such files and nothing else.
"""

from __future__ import annotations

import functools
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import sympy as sp

from . import limits

NOTATIONS_DIR = Path(__file__).parent / "notations"

#: how the time index attaches to a symbol, per ``time`` setting; ``{t}`` is t, t-1 or t+1.
TIME_STYLES = ("angle", "sub", "paren", "none")

PLACEHOLDER = "#"
#: a template whose symbol is an operator's subscript with the operand after it: \nabla_{#} L
OPERATOR_SUBSCRIPT = re.compile(r"_\{\s*#\s*\}\s*\S")

#: the tables that say how a document's formulas read (derive.verify uses them; see the guide)
READING_TABLES = ("read", "adjoints", "losses", "targets", "sizes")
#: how a document writes a Jacobian ∂a/∂h standing alone: J (rows: a), or its transpose
LAYOUTS = ("numerator", "denominator")
#: what a derivative of a loss symbol means: the whole-sequence loss, the loss of one step,
#: the sum of the losses from a step on, or the loss of one unrolled block (seed 003)
LOSS_KINDS = ("total", "step", "tail", "block")
#: which written index is the step the forward equations compute (t, or t+1 as in seed 001)
CURRENT_STEPS = {"t": 0, "t+1": 1}

_ALLOWED = re.compile(r"[A-Za-z0-9\\{}_^ ',.()\[\]|+\-*/=:;!<>~#]*")
_COMMAND = re.compile(r"\\([A-Za-z]+|[,;:! ])")


class NotationError(ValueError):
    """A notation file is malformed or lacks a symbol. ``str(err)`` reads ``file:line: problem``."""

    def __init__(self, problem: str, *, path: str | None = None, line: int | None = None):
        self.problem = problem
        self.path = path
        self.line = line
        where = path or "<notation>"
        if line is not None:
            where += f":{line}"
        super().__init__(f"{where}: {problem}")


def builtin_notations() -> list[str]:
    """Names of the built-in notations (files under derive/notations/)."""
    return sorted(p.stem for p in NOTATIONS_DIR.glob("*.toml"))


def notation_path(name_or_path: str | Path) -> Path:
    """The file of a built-in notation name, or ``name_or_path`` itself when it is a path."""
    try:
        limits.check_argument(str(name_or_path), "notation name or path")
        candidate = Path(name_or_path)
        if candidate.suffix == ".toml" or candidate.exists():
            if not candidate.is_file():
                raise NotationError("no such notation file", path=str(candidate))
            return candidate
        path = NOTATIONS_DIR / f"{name_or_path}.toml"
        found = path.is_file()
    except (limits.LimitError, OSError) as exc:   # OSError: a name too long for the file system
        raise NotationError(getattr(exc, "problem", None) or f"cannot look up the notation file: "
                            f"{exc.strerror}", path=limits.clip(str(name_or_path), 80)) from None
    if not found:
        raise NotationError(f"unknown notation {limits.short(str(name_or_path))}: not a built-in notation "
                            f"({', '.join(builtin_notations())}) and not a file path",
                            path=limits.clip(str(name_or_path), 80))
    return path


def load_notation(name_or_path: str | Path) -> "Notation":
    """Load a built-in notation by name (``coursera``) or a notation file by path."""
    path = notation_path(name_or_path)
    try:
        text = limits.read_text(path, limits.NOTATION_BYTES, "notation file")
        limits.scan_toml(text)
    except limits.LimitError as exc:
        raise NotationError(exc.problem, path=str(path)) from None
    except OSError as exc:
        raise NotationError(f"cannot read notation file: {exc.strerror}", path=str(path)) from None
    except UnicodeDecodeError:
        raise NotationError("notation file is not UTF-8 text", path=str(path)) from None
    return parse_notation(text, path=str(path))


def parse_notation(text: str, path: str = "<notation>") -> "Notation":
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        found = re.search(r"line (\d+)", str(err))
        line = int(found.group(1)) if found else len(text.splitlines()) or None
        raise NotationError(f"not valid TOML: {err}", path=path, line=line) from None

    def line_of(key: str, section: str | None = None) -> int | None:
        return _line_of(text, key, section)

    unknown = set(data) - {"notation", "symbols", "formula", *READING_TABLES}
    if unknown:
        raise NotationError(f"unknown table(s) {sorted(unknown)}; expected [notation], [symbols] "
                            f"and optionally {', '.join(f'[{t}]' for t in READING_TABLES)}",
                            path=path)
    meta = data.get("notation")
    if not isinstance(meta, dict):
        raise NotationError("missing [notation] table", path=path)
    symbols = data.get("symbols", {})
    if not isinstance(symbols, dict):
        raise NotationError("[symbols] must be a table of name = 'LaTeX'", path=path)
    for table in ("symbols", *READING_TABLES):
        entries = data.get(table, {})
        if isinstance(entries, dict) and len(entries) > limits.NOTATION_ENTRIES:
            raise NotationError(f"[{table}] has {len(entries):,} entries, more than the limit of "
                                f"{limits.NOTATION_ENTRIES}", path=path, line=line_of(table))
    for table in ("notation", "symbols", *READING_TABLES):
        entries = data.get(table, {})
        for key, value in (entries.items() if isinstance(entries, dict) else ()):
            for what, written in (("name", key), ("value", value)):
                if isinstance(written, str) and len(written) > limits.NOTATION_CHARS:
                    raise NotationError(f"[{table}] {key[:40]!r}: the {what} is {len(written):,} "
                                        f"characters long, more than the limit of "
                                        f"{limits.NOTATION_CHARS}", path=path,
                                        line=line_of(key, table))

    def text_field(key: str, default: str | None, template: bool = False) -> str:
        value = meta.get(key, default)
        if value is None:
            raise NotationError(f"[notation] needs {key} = ...", path=path, line=line_of("notation"))
        if not isinstance(value, str):
            raise NotationError(f"[notation] {key} must be a string", path=path,
                                line=line_of(key, "notation"))
        if template:
            if value.count(PLACEHOLDER) != 1:
                raise NotationError(f"[notation] {key} = {value!r} must contain the placeholder "
                                    f"{PLACEHOLDER!r} (the base symbol) exactly once", path=path,
                                    line=line_of(key, "notation"))
            _check_latex(value.replace(PLACEHOLDER, "x"), f"[notation] {key}", path,
                         line_of(key, "notation"))
        return value

    known_meta = {"name", "description", "time", "cells", "auto", "adjoint", "upstream", "carried",
                  "loss", "product", "current_step", "pdf_hyphens", "scalar", "carried_assign",
                  "layout", "indices"}
    extra = set(meta) - known_meta
    if extra:
        key = sorted(extra)[0]
        raise NotationError(f"unknown [notation] key(s) {sorted(extra)}; known: {sorted(known_meta)}",
                            path=path, line=line_of(key, "notation"))
    name = text_field("name", None)
    time = text_field("time", "angle")
    if time not in TIME_STYLES:
        raise NotationError(f"time = {time!r}: expected one of {', '.join(TIME_STYLES)}", path=path,
                            line=line_of("time", "notation"))
    cells = meta.get("cells", [])
    if not isinstance(cells, list) or not all(isinstance(c, str) for c in cells):
        raise NotationError("cells must be a list of cell names", path=path,
                            line=line_of("cells", "notation"))
    flags = {}
    for key in ("auto", "pdf_hyphens", "scalar", "carried_assign"):
        flags[key] = meta.get(key, False)
        if not isinstance(flags[key], bool):
            raise NotationError(f"{key} must be true or false", path=path,
                                line=line_of(key, "notation"))
    current_step = meta.get("current_step", "t")
    if current_step not in CURRENT_STEPS:
        raise NotationError(f"current_step = {current_step!r}: expected one of "
                            f"{', '.join(map(repr, CURRENT_STEPS))}", path=path,
                            line=line_of("current_step", "notation"))
    layout = meta.get("layout", "numerator")
    if layout not in LAYOUTS:
        raise NotationError(f"layout = {layout!r}: expected one of {', '.join(map(repr, LAYOUTS))}",
                            path=path, line=line_of("layout", "notation"))
    indices = meta.get("indices", [])
    if not isinstance(indices, list) or len(indices) not in (0, 2) or \
            not all(isinstance(x, str) and len(x) == 1 and x.isalpha() and x not in "tT"
                    for x in indices) or len(set(indices)) != len(indices):
        raise NotationError("indices must be two different letters other than t and T: the row "
                            "and the column index of an entry (indices = [\"i\", \"j\"])",
                            path=path, line=line_of("indices", "notation"))
    tables = {t: _reading_table(data, t, text, path) for t in READING_TABLES}
    formulas = _formula_readings(data.get("formula", []), text, path)
    loss = text_field("loss", "E")
    _check_latex(loss, "[notation] loss", path, line_of("loss", "notation"))
    product = text_field("product", r"\odot")
    _check_latex(product, "[notation] product", path, line_of("product", "notation"))

    seen: dict[str, str] = {}
    for key, value in symbols.items():
        if not isinstance(value, str):
            raise NotationError(f"symbol of {key!r} must be a string of LaTeX", path=path,
                                line=line_of(key, "symbols"))
        _check_latex(value, f"symbol of {key!r}", path, line_of(key, "symbols"))
        if PLACEHOLDER in value:
            raise NotationError(f"symbol of {key!r} contains {PLACEHOLDER!r}", path=path,
                                line=line_of(key, "symbols"))
        norm = _normalize(value)
        if norm in seen:
            raise NotationError(f"symbol clash: {key!r} and {seen[norm]!r} are both {value!r}",
                                path=path, line=line_of(key, "symbols"))
        seen[norm] = key
    return Notation(name=name, description=str(meta.get("description", "")), time=time,
                    cells=tuple(cells), auto=flags["auto"],
                    adjoint=text_field("adjoint", r"\delta #", template=True),
                    upstream=text_field("upstream", r"\hat{\delta} #", template=True),
                    carried=text_field("carried", r"\bar{\delta} #", template=True),
                    loss=loss, product=product, symbols=dict(symbols), path=path,
                    current_step=CURRENT_STEPS[current_step], pdf_hyphens=flags["pdf_hyphens"],
                    scalar=flags["scalar"], carried_assign=flags["carried_assign"], layout=layout,
                    indices=tuple(indices),
                    formulas=formulas, **tables)


def _reading_table(data: dict, table: str, text: str, path: str) -> dict[str, str]:
    """One of the reading tables: written LaTeX symbol = meaning (checked as LaTeX)."""
    entries = data.get(table, {})
    if not isinstance(entries, dict):
        raise NotationError(f"[{table}] must be a table of 'symbol' = '...'", path=path)
    for key, value in entries.items():
        line = _line_of(text, key, table)
        if not isinstance(value, str):
            raise NotationError(f"[{table}] {key!r} must be a string", path=path, line=line)
        _check_latex(key, f"[{table}] symbol", path, line)
        if table == "losses" and value not in LOSS_KINDS:
            raise NotationError(f"[losses] {key!r} = {value!r}: expected one of "
                                f"{', '.join(LOSS_KINDS)}", path=path, line=line)
        if table == "sizes" and not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", value):
            raise NotationError(f"[sizes] {key!r} = {value!r}: the meaning is one of the cell's size "
                                f"names (H, D)", path=path, line=line)
        if table in ("read", "adjoints", "targets") and not re.fullmatch(r"[A-Za-z0-9_ +\-*/(),.]+",
                                                                          value):
            raise NotationError(f"[{table}] {key!r} = {value!r}: the meaning is written in the "
                                f"cell's names (SymPy syntax: i*g, HCat(U_f, W_f), o - do_out)",
                                path=path, line=line)
    return dict(entries)


def _formula_readings(entries, text: str, path: str) -> tuple:
    """``[[formula]]`` entries: in a formula whose typed text contains ``where``, each piece of
    ``read`` (as typed) reads as its value; a list of values gives each occurrence in turn
    (seed 003's garbled time indices: ``'^{}' = ['^{<t+1>}', '^{<t>}', '^{<t+1>}']``)."""
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise NotationError("[[formula]] entries must be tables: where = '...', read = {...}",
                            path=path)
    out = []
    for n, entry in enumerate(entries, start=1):
        line = _nth_line(text, "[[formula]]", n)
        where, read = entry.get("where"), entry.get("read")
        extra = set(entry) - {"where", "read", "why"}
        if extra or not isinstance(where, str) or not where.strip() or not isinstance(read, dict) \
                or not read:
            raise NotationError(f"[[formula]] entry {n}: expected where = 'a piece of the formula as "
                                f"typed', read = {{'typed' = 'read as'}} and optionally why = '...'"
                                + (f"; unknown key(s) {sorted(extra)}" if extra else ""),
                                path=path, line=line)
        pieces = []
        for typed, meant in read.items():
            values = meant if isinstance(meant, list) else [meant]
            if not typed or not values or not all(isinstance(v, str) for v in values):
                raise NotationError(f"[[formula]] entry {n}: read {typed!r} must be a string or a "
                                    f"list of strings", path=path, line=line)
            for v in values:
                _check_latex(v, f"[[formula]] entry {n} read {typed!r}", path, line)
            pieces.append((typed, tuple(values), isinstance(meant, list)))
        out.append((where, tuple(pieces)))
    return tuple(out)


def _nth_line(text: str, marker: str, n: int) -> int | None:
    lines = [k for k, line in enumerate(text.splitlines(), start=1) if line.strip() == marker]
    return lines[n - 1] if len(lines) >= n else None


@dataclass(frozen=True)
class Notation:
    """Cell name -> LaTeX symbol, plus how time steps and adjoints are written."""

    name: str
    description: str
    time: str
    cells: tuple[str, ...]
    auto: bool
    adjoint: str
    upstream: str
    carried: str
    loss: str
    product: str            # the elementwise product sign: \odot, or \ast (*) as seed 000 writes it
    symbols: dict[str, str]
    path: str = field(default="<notation>", compare=False)
    current_step: int = 0       # 1: the document's current step is t+1
    pdf_hyphens: bool = False   # c-t means c_t (a PDF extraction turned _ into -)
    scalar: bool = False        # the document treats every size as 1
    carried_assign: bool = False  # dh_next = ... on a left side: what the step hands back (code)
    layout: str = "numerator"   # a Jacobian written alone: J, or J^T ("denominator": a = h W)
    indices: tuple = ()         # entry indices (row, column): ∂L/∂W_{ij} is entry (i, j) of dL/dW
    read: dict[str, str] = field(default_factory=dict)       # symbol -> meaning in cell names
    adjoints: dict[str, str] = field(default_factory=dict)   # symbol whose d-form means this
    losses: dict[str, str] = field(default_factory=dict)     # loss symbol -> LOSS_KINDS entry
    targets: dict[str, str] = field(default_factory=dict)    # target y -> output o, ½(o - y)²
    sizes: dict[str, str] = field(default_factory=dict)      # n_a -> H: size names in slices
    formulas: tuple = ()        # [[formula]]: (where, ((typed, read-as values, by occurrence), ...))

    # -- base symbols -------------------------------------------------------------------------
    def symbol(self, name: str) -> str:
        """The base symbol of a cell name (no time index)."""
        if name in self.symbols:
            return self.symbols[name]
        if self.auto:
            return auto_symbol(name)
        cells = f" (it is written for: {', '.join(self.cells)})" if self.cells else ""
        raise NotationError(f"notation {self.name!r} has no symbol for {name!r}{cells}; add "
                            f"{name} = '...' under [symbols]", path=self.path)

    def at(self, symbol: str, step: str | None) -> str:
        """``symbol`` at time ``step`` (``"t"``, ``"t-1"``, ``"t+1"``), or as is for None."""
        if step is None or self.time == "none":
            return symbol
        if self.current_step:                 # the document calls the current step t+1
            m = re.fullmatch(r"t([+-]\d+)?", step)
            if m:
                k = int(m.group(1) or 0) + self.current_step
                step = "t" if k == 0 else f"t{k:+d}"
        if self.time == "angle":
            return rf"{symbol}^{{\langle {step} \rangle}}"
        if self.time == "paren":
            return rf"{symbol}({step})"
        return _with_subscript(symbol, step)

    def loss_at(self, step: str = "t") -> str:
        return self.at(self.loss, step)

    def timed(self, name: str, step: str | None) -> str:
        return self.at(self.symbol(name), step)

    # -- every name of a derivation ---------------------------------------------------------
    def latex_table(self, derivation) -> dict[str, str]:
        """``{name: LaTeX}`` for every name a derivation's equations use (see latex_names)."""
        cell = derivation.cell
        plain = {n for n in derivation.quantities if not n.endswith("_prev")}
        prev_of = {f"{s}_prev": s for s in cell.states}
        missing: list[str] = []
        table: dict[str, str] = {}

        def put(name: str, make) -> None:
            if name in self.symbols and name not in plain:
                table[name] = self.symbols[name]      # a composed name written out in the file
                return
            try:
                table[name] = make()
            except NotationError:
                missing.append(name)

        def template(tpl: str, base: str, step: str | None) -> str:
            """The template at a step: an operator's subscript (``\\nabla_{#} L``) takes the
            step on the symbol inside it, ``\\nabla_{h(t)} L``; any other template after it."""
            if OPERATOR_SUBSCRIPT.search(tpl):
                return tpl.replace(PLACEHOLDER, self.at(self.symbol(base), step))
            return self.at(tpl.replace(PLACEHOLDER, self.symbol(base)), step)

        for name, q in derivation.quantities.items():
            if name in prev_of:
                state = prev_of[name]
                put(name, lambda s=state: self.timed(s, "t-1"))
                put("d" + name, lambda s=state: template(self.carried, s, "t-1"))
            else:
                step = None if q.role == "param" else "t"
                put(name, lambda n=name, st=step: self.timed(n, st))
                put("d" + name, lambda n=name, st=step: template(self.adjoint, n, st))
        for out, up in derivation.upstream.items():
            put(up, lambda o=out: template(self.upstream, o, "t"))
        for state, carried in derivation.carried.items():
            put(carried, lambda s=state: template(self.carried, s, "t"))
        if missing:
            bases = sorted({_base_of(m, derivation) for m in missing})
            cells = f"; it is written for: {', '.join(self.cells)}" if self.cells else ""
            raise NotationError(
                f"notation {self.name!r} cannot render cell {cell.name!r}: no symbol for "
                f"{', '.join(bases)}{cells}. Add them under [symbols].", path=self.path)
        clashes: dict[str, str] = {}
        for name, latex in table.items():
            key = _normalize(latex)
            if key in clashes and clashes[key] != name:
                raise NotationError(f"notation {self.name!r} prints both {clashes[key]!r} and "
                                    f"{name!r} of cell {cell.name!r} as {latex!r}", path=self.path)
            clashes[key] = name
        return table

    def latex_names(self, derivation) -> dict[sp.Symbol, str]:
        """``{Symbol: LaTeX}`` for ``sympy.latex(expr, symbol_names=...)``: quantities at their
        time step, ``_prev`` values at t-1, adjoints, upstream and carried adjoints."""
        return {sp.Symbol(name): latex for name, latex in self.latex_table(derivation).items()}

    def reverse(self, derivation=None) -> dict[str, str]:
        """LaTeX symbol -> cell name (for reading formulas written in this notation).

        Without a derivation: the base symbols listed in the file. With one: every printed
        name of that derivation (``c^{\\langle t-1 \\rangle}`` -> ``c_prev``, adjoints too).
        """
        if derivation is None:
            return {latex: name for name, latex in self.symbols.items()}
        return {latex: name for name, latex in self.latex_table(derivation).items()}


#: names printed as their Greek letter (\\alpha); sigma and delta stay words: \\sigma is the
#: sigmoid and \\delta the adjoint prefix when a formula is read back
GREEK = {"alpha", "beta", "gamma", "Gamma", "Delta", "epsilon", "varepsilon", "eta", "theta",
         "Theta", "lambda", "Lambda", "mu", "nu", "xi", "Xi", "pi", "Pi", "rho", "tau", "phi",
         "varphi", "Phi", "chi", "psi", "Psi", "omega", "Omega", "zeta", "kappa"}
#: a name ending in one of these is the accented letter: hhat -> \\hat{h}, ctilde -> \\tilde{c}
ACCENT_SUFFIXES = ("hat", "tilde", "bar", "check")


def auto_symbol(name: str) -> str:
    """cellgrad's own symbol for a name, as a reader writes it: ``W_i`` -> ``W_{i}``, ``m_1`` ->
    ``m_{1}``, ``W_m_1`` -> ``W_{m,1}``, ``alpha`` -> ``\\alpha``, ``hhat`` -> ``\\hat{h}``,
    ``rh`` -> ``\\mathit{rh}``. ``derive.verify`` reads every one back."""
    base, _, sub = name.partition("_")
    head = _auto_head(base)
    if not sub:
        return head
    pieces = sub.split("_")
    if len(pieces) > 1 and pieces[-1] in ("t", "T"):    # W_{f,t} would read as W_f at step t
        return rf"{head}_{{{','.join(pieces[:-1])}_{{{pieces[-1]}}}}}"
    return rf"{head}_{{{','.join(pieces)}}}"


def _auto_head(base: str) -> str:
    if base in GREEK:
        return "\\" + base
    for accent in ACCENT_SUFFIXES:
        letter = base[:-len(accent)]
        if base.endswith(accent) and (len(letter) == 1 and letter.isalpha() or letter in GREEK):
            return rf"\{accent}{{{_auto_head(letter)}}}"
    return base if len(base) == 1 else rf"\mathit{{{base}}}"


def _base_of(name: str, derivation) -> str:
    """The name whose symbol is missing, for the error message (``da_i`` -> ``a_i``)."""
    if name in derivation.quantities:
        return name.removesuffix("_prev") if name.endswith("_prev") else name
    for suffix in ("_next", "_out"):
        if name.endswith(suffix):
            return name[1:-len(suffix)]
    return name[1:].removesuffix("_prev")


def _with_subscript(symbol: str, step: str) -> str:
    """``x`` -> ``x_{t}``; ``\\Gamma_u`` -> ``\\Gamma_{u,t}``; ``W_{xi}`` -> ``W_{xi,t}``."""
    m = re.fullmatch(r"(.*)_\{([^{}]*)\}", symbol) or re.fullmatch(r"(.*)_([A-Za-z0-9])", symbol)
    if m and m.group(1) and _balanced(m.group(1)):
        return rf"{m.group(1)}_{{{m.group(2)},{step}}}"
    sup = re.fullmatch(r"([^_^]+)(\^\{.*\})", symbol)
    if sup and _balanced(sup.group(1)) and _balanced(sup.group(2)):
        return rf"{sup.group(1)}_{{{step}}}{sup.group(2)}"      # dh^{out} -> dh_{t}^{out}
    if "_" in symbol or "^" in symbol:
        return rf"{{{symbol}}}_{{{step}}}"
    return rf"{symbol}_{{{step}}}"


def _balanced(text: str) -> bool:
    depth = 0
    for ch, prev in zip(text, " " + text):
        if prev == "\\":
            continue
        depth += (ch == "{") - (ch == "}")
        if depth < 0:
            return False
    return depth == 0


def _normalize(latex: str) -> str:
    """Compare symbols up to spacing and optional braces around one character: a_i == a_{i}."""
    text = re.sub(r"\s+", "", latex)
    return re.sub(r"([_^])\{(\\?[A-Za-z0-9])\}", r"\1\2", text)


def _check_latex(value: str, what: str, path: str, line: int | None) -> None:
    """Reject text that would break a LaTeX document: unbalanced braces, $, %, newlines."""
    problem = None
    if not value.strip():
        problem = "is empty"
    elif "\n" in value or "\r" in value:
        problem = "spans lines"
    elif "$" in value or "%" in value or "&" in value:
        problem = "contains $, % or &; give the math only, without delimiters"
    elif not _ALLOWED.fullmatch(value):
        bad = sorted({c for c in value if not _ALLOWED.fullmatch(c)})
        problem = f"contains characters LaTeX math does not take as is: {''.join(bad)!r}"
    elif not _balanced(value):
        problem = "has unbalanced braces"
    elif value.rstrip().endswith("\\") or re.search(r"\\(?![A-Za-z,;:! {}_#\\])", value):
        problem = "has a backslash that starts no command"
    elif re.search(r"[_^]\s*$", value) or re.search(r"[_^]\s*[_^]", value):
        problem = "has a sub/superscript with nothing after it"
    if problem:
        raise NotationError(f"{what} {value!r} {problem}", path=path, line=line)


def _line_of(text: str, key: str, section: str | None = None) -> int | None:
    """1-based line where ``key`` is set (inside ``[section]`` when given), or the section header."""
    return _line_index(text).get((section, key))


@functools.lru_cache(maxsize=8)
def _line_index(text: str) -> dict[tuple[str | None, str], int]:
    """(section, key) -> line of its first setting, and (None, section) -> its header's line,
    read in one pass (a lookup per key would read the file once per key)."""
    index: dict[tuple[str | None, str], int] = {}
    current = None
    for number, line in enumerate(text.splitlines(), start=1):
        header = re.match(r"^\s*\[([^\]]+)\]", line)
        if header:
            current = header.group(1).strip()
            index.setdefault((None, current), number)
            continue
        setting = re.match(r"""^\s*("[^"]*"|'[^']*'|[^=\s]+)\s*=""", line)
        if setting and current is not None:
            index.setdefault((current, setting.group(1).strip("\"'")), number)
    return index
