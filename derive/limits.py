"""Limits on everything cellgrad reads, checked before any parser sees the text.

The parsers recurse (``tomllib``, Python's ``ast``, the verifier's recursive descent) and SymPy
evaluates powers of numbers, so an input of any size must be measured first: a 10 MB sum, a
power tower or 100,000 nested signs are refused here in linear time, with one line that names
the limit, instead of a RecursionError, a MemoryError or a hang later.

Each limit is far above what a real cell or formula needs: the largest built-in spec is 1.2 kB
with 9 equations of at most 60 characters nested 3 deep; the longest seed formula has 3,562
characters, 640 operators and brackets nested 7 deep. ``LIMITS`` is the table docs/guide.md
lists (tests/test_hostile.py checks that the two agree).
"""

from __future__ import annotations

import math
import re

import sympy as sp

SPEC_BYTES = 262_144          # size of a spec file
SPEC_NESTING = 16             # [ and { nested in the TOML itself
NAMES = 500                   # names declared in one spec (sizes, inputs, states, params, ...)
NAME_CHARS = 64               # characters in one name (cell, size, quantity, function alias)
EQUATIONS = 200               # equations in one spec
EQUATION_CHARS = 2_000        # characters in one equation
EQUATION_NESTING = 32         # parentheses nested in one equation
EQUATION_OPERATORS = 200      # operators (+ - * / ** @) in one equation
CALL_NESTING = 5              # function calls nested in one equation or formula
SPEC_OPERATORS = 4_000        # operators in all equations of one spec
EXPONENT = 16                 # |n| of a number used as an exponent (x ** n, x^{n})
NUMBER_DIGITS = 300           # a number (literal or computed) lies within 10**±300
FORMULA_CHARS = 20_000        # characters in a formula given to verify
FORMULA_NESTING = 40          # brackets ( [ { nested in a formula
WORD_CHARS = 100              # letters and digits in a row in a formula (one name or number)
SIGNS_IN_A_ROW = 4            # + and - in a row in a formula (a - -b is two)
ARGUMENT_CHARS = 4_096        # a cell name or path given on the command line
NOTATION_BYTES = 262_144      # size of a notation file
NOTATION_ENTRIES = 500        # entries in one table of a notation file ([symbols], [read], ...)
NOTATION_CHARS = 400          # characters in one name or LaTeX value of a notation file
DOCUMENT_BYTES = 2_000_000    # size of a document given to verify --document
DOCUMENT_FORMULAS = 2_000     # formulas judged in one document (each takes up to a second)

#: (name, value, what it bounds): the table docs/guide.md shows.
LIMITS = (
    ("SPEC_BYTES", SPEC_BYTES, "bytes in a spec file"),
    ("SPEC_NESTING", SPEC_NESTING, "`[` and `{` nested in a spec file's TOML"),
    ("NAMES", NAMES, "names declared in one spec"),
    ("NAME_CHARS", NAME_CHARS, "characters in a name (cell, size, quantity, alias)"),
    ("EQUATIONS", EQUATIONS, "equations in one spec"),
    ("EQUATION_CHARS", EQUATION_CHARS, "characters in one equation"),
    ("EQUATION_NESTING", EQUATION_NESTING, "parentheses nested in one equation"),
    ("EQUATION_OPERATORS", EQUATION_OPERATORS, "operators (`+ - * / ** @`) in one equation"),
    ("CALL_NESTING", CALL_NESTING, "function calls nested in one equation or formula "
                                   "(SymPy's tanh takes time exponential in its nesting)"),
    ("SPEC_OPERATORS", SPEC_OPERATORS, "operators in all equations of one spec"),
    ("EXPONENT", EXPONENT, "absolute value of a number used as an exponent"),
    ("NUMBER_DIGITS", NUMBER_DIGITS, "decimal exponent of any number, written or computed "
                                     "(within 10^±300)"),
    ("FORMULA_CHARS", FORMULA_CHARS, "characters in a formula given to verify"),
    ("FORMULA_NESTING", FORMULA_NESTING, "brackets `( [ {` nested in a formula"),
    ("WORD_CHARS", WORD_CHARS, "letters and digits in a row in a formula"),
    ("SIGNS_IN_A_ROW", SIGNS_IN_A_ROW, "`+` and `-` signs in a row in a formula"),
    ("ARGUMENT_CHARS", ARGUMENT_CHARS, "characters in a cell, notation or file name argument"),
    ("NOTATION_BYTES", NOTATION_BYTES, "bytes in a notation file"),
    ("NOTATION_ENTRIES", NOTATION_ENTRIES, "entries in one table of a notation file"),
    ("NOTATION_CHARS", NOTATION_CHARS, "characters in one name or value of a notation file"),
    ("DOCUMENT_BYTES", DOCUMENT_BYTES, "bytes in a document given to `verify --document`"),
    ("DOCUMENT_FORMULAS", DOCUMENT_FORMULAS, "formulas in one document"),
)

QUOTE_CHARS = 80              # an error message quotes at most this much of the input


class LimitError(ValueError):
    """An input exceeds one of the limits above; ``pos`` is the offset where (or None)."""

    def __init__(self, problem: str, pos: int | None = None):
        self.problem = problem
        self.pos = pos
        super().__init__(problem)


def _breach(what: str, got: int, limit: int, unit: str = "") -> str:
    unit = f" {unit}" if unit else ""
    return f"{what}: {got:,}{unit} (limit {limit:,})"


# -- quoting -----------------------------------------------------------------------------------

def clip(text: str, width: int = 40) -> str:
    """``text``, cut in the middle when longer than ``width``: safe to put in a message."""
    if len(text) <= width:
        return text
    return f"{text[:width // 2]}…{text[-(width // 2):]} ({len(text):,} characters)"


def short(value, width: int = 40) -> str:
    """``repr(value)``, cut in the middle when longer than ``width``."""
    return clip(repr(value), width)


def line_column(text: str, pos: int) -> tuple[int, int]:
    """1-based line and column of offset ``pos`` in ``text``."""
    line = text.count("\n", 0, pos) + 1
    return line, pos - (text.rfind("\n", 0, pos) + 1) + 1


def quote(text: str, pos: int | None = None, width: int = QUOTE_CHARS) -> str:
    """At most ``width`` characters of ``text`` around ``pos`` (on its line), ``…`` where cut."""
    pos = 0 if pos is None else max(0, min(pos, len(text)))
    start = text.rfind("\n", 0, pos) + 1
    end = text.find("\n", pos)
    end = len(text) if end < 0 else end
    left = max(start, pos - width // 2)
    right = min(end, left + width)
    left = max(start, min(left, right - width))
    return ("…" if left > start else "") + text[left:right] + ("…" if right < end else "")


# -- scans (linear time, no recursion) ---------------------------------------------------------

def check_size(nbytes: int, limit: int, what: str) -> None:
    if nbytes > limit:
        raise LimitError(_breach(f"{what} too large", nbytes, limit, "bytes"))


def check_argument(text: str, what: str) -> None:
    """A name or path from the command line or the API, before the file system sees it."""
    if len(text) > ARGUMENT_CHARS or "\0" in text:
        raise LimitError(f"not a {what}: {len(text):,} characters (at most {ARGUMENT_CHARS:,}, "
                         "no NUL)")


def read_text(path, limit: int, what: str) -> str:
    """The UTF-8 text of the regular file ``path``, of at most ``limit`` bytes: only regular
    files, since a FIFO would block and /dev/zero never ends. Raises LimitError, OSError or
    UnicodeDecodeError."""
    if not path.is_file():
        raise LimitError(f"{what} is not a regular file")
    with path.open("rb") as handle:
        data = handle.read(limit + 1)
    check_size(len(data), limit, what)
    return data.decode("utf-8")


def scan_toml(text: str) -> None:
    """Bracket depth of a TOML document outside strings and comments (tomllib recurses on it)."""
    depth, i, n = 0, 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "#":
            nl = text.find("\n", i)
            i = n if nl < 0 else nl
            continue
        if ch in "\"'":
            triple = text.startswith(ch * 3, i)
            close = ch * 3 if triple else ch
            j = i + len(close)
            while j < n:
                if ch == '"' and text[j] == "\\":
                    j += 2
                    continue
                if text.startswith(close, j):
                    break
                if not triple and text[j] == "\n":
                    break
                j += 1
            i = j + len(close)
            continue
        if ch in "[{":
            depth += 1
            if depth > SPEC_NESTING:
                raise LimitError(_breach("the TOML nests too deeply", depth, SPEC_NESTING,
                                         "levels of [ and {"), i)
        elif ch in "]}":
            depth = max(0, depth - 1)
        i += 1


def scan_equation(text: str) -> int:
    """Length, parenthesis depth and operator count of one spec equation, before ``ast``.
    Returns the number of operators."""
    if len(text) > EQUATION_CHARS:
        raise LimitError(_breach("equation too long", len(text), EQUATION_CHARS, "characters"),
                         EQUATION_CHARS)
    depth = operators = 0
    calls = _Calls({i for i, ch in enumerate(text) if ch == "(" and i and (text[i - 1].isalnum()
                                                                         or text[i - 1] == "_")})
    for i, ch in enumerate(text):
        if ch in "([{":
            depth += 1
            if depth > EQUATION_NESTING:
                raise LimitError(_breach("equation nests too deeply", depth, EQUATION_NESTING,
                                         "levels of brackets"), i)
            calls.open(i)
        elif ch in ")]}":
            depth = max(0, depth - 1)
            calls.close()
        elif ch in "+-/@" or (ch == "*" and not text.startswith("**", i - 1)):
            if ch in "+-" and i and text[i - 1] in "eE" and i > 1 and text[i - 2].isdigit():
                continue                      # the sign of an exponent: 1e-3
            operators += 1
            if operators > EQUATION_OPERATORS:
                raise LimitError(_breach("equation has too many operators", operators,
                                         EQUATION_OPERATORS), i)
    return operators


class _Calls:
    """Tracks how many of the open brackets are function calls (``tanh(``)."""

    def __init__(self, openers: set[int]):
        self.openers, self.stack, self.depth = openers, [], 0

    def open(self, i: int) -> None:
        call = i in self.openers
        self.stack.append(call)
        self.depth += call
        if self.depth > CALL_NESTING:
            raise LimitError(_breach("function calls nested too deeply", self.depth, CALL_NESTING), i)

    def close(self) -> None:
        if self.stack:
            self.depth -= self.stack.pop()


_LINE_BREAKS = re.compile(r"\\{3,}")
_FORMULA_CALL = re.compile(r"(?<![A-Za-z])\\?(?:tanh|sigma|sigmoid|exp|log|ln|cosh|sinh|relu|softplus)"
                           r"(?:\s*(?:\^\s*\{[^{}]*\}|\^\s*\w|'))*\s*([({])")


def scan_formula(text: str) -> None:
    """Length, bracket depth, word length, sign runs and line-break runs of a formula."""
    if len(text) > FORMULA_CHARS:
        raise LimitError(_breach("formula too long", len(text), FORMULA_CHARS, "characters"),
                         FORMULA_CHARS)
    depth = word = signs = 0
    calls = _Calls({m.start(1) for m in _FORMULA_CALL.finditer(text)})
    for i, ch in enumerate(text):
        if ch.isalnum():
            word += 1
            if word > WORD_CHARS:
                raise LimitError(_breach("a name or number in the formula is too long", word,
                                         WORD_CHARS, "characters"), i)
        else:
            word = 0
        if ch in "+-":
            signs += 1
            if signs > SIGNS_IN_A_ROW:
                raise LimitError(_breach("too many signs in a row", signs, SIGNS_IN_A_ROW), i)
        elif not ch.isspace():
            signs = 0
        if ch in "([{":
            depth += 1
            if depth > FORMULA_NESTING:
                raise LimitError(_breach("formula nests too deeply", depth, FORMULA_NESTING,
                                         "levels of brackets"), i)
            calls.open(i)
        elif ch in ")]}":
            depth = max(0, depth - 1)
            calls.close()
    for m in _LINE_BREAKS.finditer(text):
        # \\ is a line break and \x a command: a run of 3+ backslashes is neither once the
        # command's own backslash (when a letter or symbol follows) is set aside.
        breaks = len(m.group()) - (1 if m.end() < len(text) and not text[m.end()].isspace() else 0)
        if breaks > 2:
            raise LimitError(f"{len(m.group()):,} backslashes in a row: at most one line break "
                             r"'\\' at a time", m.start())


# -- numbers -----------------------------------------------------------------------------------

def _digits(value: sp.Expr) -> float:
    """log10 |value| of a nonzero SymPy number, without evaluating it in full."""
    if isinstance(value, sp.Rational):
        p, q = abs(int(value.p)), int(value.q)
        return (p.bit_length() - q.bit_length()) * math.log10(2)
    _, mantissa, exponent, bits = value._mpf_      # a Float: mantissa * 2**exponent
    return (exponent + bits) * math.log10(2)


def check_number(value: sp.Expr) -> None:
    """A number within 10**±NUMBER_DIGITS (floats overflow beyond ~1e308)."""
    if value.is_Number and value != 0 and value.is_finite and abs(_digits(value)) > NUMBER_DIGITS:
        raise LimitError(f"a number is too large or too small: about 10^{_digits(value):.0f} "
                         f"(limit 10^±{NUMBER_DIGITS})")


def check_numbers(expr: sp.Expr) -> None:
    for number in expr.atoms(sp.Number):
        check_number(number)


def power(base: sp.Expr, exponent: sp.Expr) -> sp.Expr:
    """``base ** exponent`` once the exponent is small and a number's power is in range.

    SymPy evaluates a power of numbers at once (``2**(2**40)`` is a 2**40-bit integer), so the
    size of the result is estimated first.
    """
    if exponent.is_Number:
        if abs(exponent) > EXPONENT:
            raise LimitError(f"exponent too large: {short(exponent)} (limit ±{EXPONENT})")
        if base.is_Number and base != 0 and base.is_finite:
            if abs(float(exponent) * _digits(base)) > NUMBER_DIGITS:
                raise LimitError(f"a power of numbers is too large or too small: about "
                                 f"10^{float(exponent) * _digits(base):.0f} "
                                 f"(limit 10^±{NUMBER_DIGITS})")
    return base ** exponent
