"""A notation file (``derive.notation`` format) turned into a reading table for the parser.

``derive.notation`` maps cell names to the LaTeX a document prints. Reading a formula needs the
other direction: from a written symbol (``\\Gamma_u``) to the cell value it names (``i``). Every
built-in notation is such a file; nothing here knows one by name. What a file gives:

* ``[symbols]``: each symbol reads as its cell name; a symbol written transposed
  (``U_f = '\\hat{w}_f^T'``) makes its base the transpose (``\\hat{w}_f`` = U_f^T);
* the ``adjoint``/``carried``/``upstream`` templates: ``\\mathrm{d}\\bar{#}`` makes ``\\bar{a}`` a
  symbol whose ``d`` is the carried adjoint; a template with no adjoint prefix
  (``g_{#}``) is one whole symbol for the adjoint;
* ``[read]``: other spellings, with a meaning in the cell's names (``k = 'i*g'``, a document's
  own intermediate; ``w_f = 'HCat(U_f, W_f)'``, a block concatenation; stacked gate arrays
  ``a = 'VCat(a_i, a_f, a_o, a_g)'``);
* ``[adjoints]``: symbols whose ``d`` means something else (``'\\hat{c}' = 'dc - dc_next'``);
* ``[targets]``: the target ``y`` of the squared error ½(o − y)² of output ``o`` (so o − y is
  the upstream gradient); ``[losses]``: loss symbols and their kind;
* ``layout`` (how a Jacobian written alone is oriented) and ``[[formula]]`` readings of one
  formula's garbled pieces, passed on to the parser as they are.

A table that a reader could not read back is refused here: a symbol that spells another of the
cell's names while that name is written differently (h written ``c``, c written ``h``: a cycle),
or two names written alike (a clash, which ``derive.notation`` reports).
"""

from __future__ import annotations

import re

from .errors import VerifyError
from .normalize_latex import normalize_latex
from .sequence import target_name
from .vocabulary import Entry, Reading, default_reading, key_of_name

TRANSPOSED = re.compile(r"^(.*?)\^\{?(?:T|\\top|\\intercal)\}?$")
ADJOINT_PREFIX = re.compile(r"^(?:\\(?:diff|partial|delta|nabla)(?![A-Za-z])\s*|d(?=[\\A-Za-z{]))")


def canonical_key(latex: str, hyphens: bool = False) -> str:
    """``\\Gamma_u`` -> ``\\Gamma_{u}``, ``\\mathit{rh}`` -> ``rh``: the parser's spelling of a key."""
    s = normalize_latex(latex, hyphen_subscripts=hyphens)
    # spaces go, except one that ends a command before a letter (\delta h)
    s = re.sub(r"\s+", lambda m: " " if re.search(
        r"\\[A-Za-z]+$", s[:m.start()]) and s[m.end():m.end() + 1].isalpha() else "", s)
    out, groups = [], []                # groups: is each open brace a sub/superscript's?
    for n, ch in enumerate(s):
        prev = s[n - 1] if n else ""
        in_script = any(groups)
        if prev in ("_", "^") and not in_script and re.fullmatch(r"[A-Za-z0-9]", ch):
            out.append("{" + ch + "}")          # x_t -> x_{t}, as the parser spells it
            continue
        if ch == "{":
            groups.append(prev in ("_", "^"))
        elif ch == "}" and groups:
            groups.pop()
        out.append(ch)
    return "".join(out)


def reading_from_notation(name_or_path, derivation) -> Reading:
    from derive.notation import NotationError, load_notation
    try:
        notation = load_notation(name_or_path)    # refuses two names written alike
    except NotationError as err:
        raise VerifyError(f"notation: {err}") from None
    hyphens = notation.pdf_hyphens
    key = lambda latex: canonical_key(latex, hyphens)  # noqa: E731
    symbols: dict[str, Entry] = {}
    origin: dict[str, str] = {}

    def put(k: str, where: str, forward: str | None = None, adjoint: str | None = None) -> None:
        old = symbols.get(k, Entry())
        for field, new in (("forward", forward), ("adjoint", adjoint)):
            have = getattr(old, field)
            if new is not None and have is not None and have != new:
                raise VerifyError(f"notation {notation.name}: {k} means both {have} "
                                  f"({origin.get(k + field)}) and {new} ({where})")
            if new is not None:
                origin[k + field] = where
        symbols[k] = Entry(forward if forward is not None else old.forward,
                           adjoint if adjoint is not None else old.adjoint)

    names = _names(derivation)
    written: dict[str, str] = {}
    for name, latex in notation.symbols.items():
        if name not in names:
            continue                       # a notation written for several cells
        k = key(latex)
        transposed = TRANSPOSED.match(k)
        if transposed and name in derivation.quantities and \
                len(derivation.quantities[name].shape) == 2:
            put(transposed.group(1), f"[symbols] {name}", forward=f"MatTranspose({name})")
        else:
            put(k, f"[symbols] {name}", forward=name)
        written[name] = k
    _refuse_cycles(notation.name, written, derivation)

    def spelled(template: str, base: str, meaning: str, what: str) -> None:
        try:
            symbol = notation.symbol(base)
        except NotationError:
            return
        text = normalize_latex(template.replace("#", symbol), hyphen_subscripts=hyphens)
        prefix = ADJOINT_PREFIX.match(text)
        if prefix and text[prefix.end():].startswith("_"):
            return          # \nabla_{#} L: the parser reads it as the loss's derivative itself
        if prefix:
            rest = key(text[prefix.end():])
            if rest != key(symbol):
                put(rest, f"the {what} template", adjoint=meaning)
        elif key(text) != key(symbol):
            put(key(text), f"the {what} template", forward=meaning)

    for state, carried in derivation.carried.items():
        spelled(notation.carried, state, carried, "carried")
    for output, upstream in derivation.upstream.items():
        spelled(notation.upstream, output, upstream, "upstream")
    if not ADJOINT_PREFIX.match(normalize_latex(notation.adjoint.replace("#", "x"))):
        for name, q in derivation.quantities.items():
            if not name.endswith("_prev"):
                spelled(notation.adjoint, name, "d" + name, "adjoint")

    for latex, meaning in notation.read.items():
        put(key(latex), f"[read] {latex}", forward=meaning)
    for latex, meaning in notation.adjoints.items():
        put(key(latex), f"[adjoints] {latex}", adjoint=meaning)
    for latex, output in notation.targets.items():
        if output in derivation.upstream:
            put(key(latex), f"[targets] {latex}", forward=target_name(output))
    if notation.auto:
        for k, entry in default_reading(derivation).symbols.items():
            if k not in symbols:
                symbols[k] = entry
    losses = {key(notation.loss): "total"}
    losses.update({key(latex): kind for latex, kind in notation.losses.items()})
    return Reading(notation.name, symbols=symbols, losses=losses,
                   step_label=notation.current_step, hyphen_subscripts=hyphens,
                   scalar=notation.scalar, cells=notation.cells, path=notation.path,
                   carried_assign=notation.carried_assign, layout=notation.layout,
                   indices=notation.indices,
                   formulas=notation.formulas,
                   sizes={key(k): v for k, v in notation.sizes.items()})


def _names(derivation) -> set[str]:
    d = derivation
    return set(d.quantities) | {eq.target for eq in d.backward} | set(d.carried.values()) | \
        set(d.upstream.values()) | {s + "_prev" for s in d.cell.states} | \
        {"d" + s + "_prev" for s in d.cell.states}


def _refuse_cycles(name: str, written: dict[str, str], derivation) -> None:
    own = {key_of_name(n): n for n in derivation.quantities}
    for cell_name, k in written.items():
        other = own.get(k)
        if other is not None and other != cell_name and written.get(other, k) != k:
            raise VerifyError(f"notation {name}: {cell_name} is written {k}, which is the "
                              f"cell's name for {other}, itself written {written[other]} (a cycle: "
                              f"a formula could not say which is meant)")
