"""A notation file (``derive.notation`` format) turned into a reading table for the parser.

``derive.notation`` maps cell names to the LaTeX a document prints. Reading a formula needs the
other direction: from a written symbol (``\\Gamma_u``) to the cell value it names (``i``). Each
base symbol of the file becomes one key; time indices and adjoints are the parser's business.
A table that a reader could not read back is refused here: a symbol that spells another of the
cell's names while that name is written differently (h written ``c``, c written ``h``: a cycle),
or two names written alike (a clash, which ``derive.notation`` reports).
"""

from __future__ import annotations

import re

from .errors import VerifyError
from .normalize_latex import normalize_latex
from .vocabulary import Entry, Reading, key_of_name

_TIME_STEP = {"angle": 0, "sub": 0, "paren": 0, "none": 0}


def canonical_key(latex: str) -> str:
    """``\\Gamma_u`` -> ``\\Gamma_{u}``, ``\\mathit{rh}`` -> ``rh``: the parser's spelling of a key."""
    s = normalize_latex(latex).replace(" ", "")
    s = re.sub(r"_([A-Za-z0-9])", r"_{\1}", s)
    s = re.sub(r"\^([A-Za-z0-9])", r"^{\1}", s)
    return s


def reading_from_notation(name_or_path, derivation) -> Reading:
    from derive.notation import NotationError, load_notation
    try:
        notation = load_notation(name_or_path)    # refuses two names written alike
    except NotationError as err:
        raise VerifyError(f"notation: {err}") from None
    own = {key_of_name(n): n for n in derivation.quantities}
    symbols: dict[str, Entry] = {}
    written: dict[str, str] = {}
    for name in derivation.quantities:
        if name.endswith("_prev"):
            continue
        try:
            key = canonical_key(notation.symbol(name))
        except NotationError:
            continue
        if key in symbols:
            raise VerifyError(f"notation {notation.name}: {name} and {symbols[key].forward} are "
                              f"both written {key}")
        symbols[key] = Entry(name)
        written[name] = key
    for name, key in written.items():
        other = own.get(key)
        if other is not None and other != name and written.get(other, key) != key:
            raise VerifyError(f"notation {notation.name}: {name} is written {key}, which is the "
                              f"cell's name for {other}, itself written {written[other]} (a cycle: "
                              f"a formula could not say which is meant)")
    return Reading(notation.name, symbols=symbols,
                   losses={canonical_key(notation.loss): "total", "L": "total", "E": "total"})
