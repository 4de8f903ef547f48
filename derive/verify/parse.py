"""Read a hand-written gradient formula, strictly, into SymPy over the cell's names.

Two input forms:

* LaTeX as people write it, first rewritten by ``normalize_latex`` and then read here by a small
  recursive-descent parser. It knows time indices (``c^{<t-1>}``, ``x_{t+1}``, ``h(t-1)``),
  adjoints (``\\mathrm{d}c``, ``dc``, ``\\partial c``, ``\\delta a``, ``\\frac{\\partial E}{\\partial a}``),
  local derivatives (``\\frac{\\partial h_t}{\\partial o_t}``), derivatives of functions
  (``\\sigma'(z)``, ``\\tanh'(z)``, ``g'(z)``), products (``*``, ``\\cdot``, ``\\odot``, ``\\otimes``,
  juxtaposition; a matrix next to a vector is a matrix-vector product), ``[h, x]`` stacking,
  transposes, ``\\sum_t`` (over time) and ``\\sum_{axis=1}`` (over the batch).
* SymPy syntax in cell names (``dc_next + dh*o*(1 - tanh(c)**2)``, ``W_f.T @ da_f``), read by
  the same kind of parser, never by ``eval``.

Nothing is skipped: a token the reader cannot place is a ``VerifyError`` saying where.
Symbols come out as cell names at step t (``c``, ``c_prev``, ``dc``, ``dc_next``, ``dW_f``),
shifted ones as ``f@+1`` (f at step t+1), and loss-only adjoints as ``dc#k1``.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass

import sympy as sp

from derive.functions import FUNCTIONS, sigmoid
from derive.linear import MatVec, MatVecT, Outer

from .errors import VerifyError, excerpt
from .nodes import HCat, Row, SumN, SumT, MatTranspose, VCat
from .normalize_latex import normalize_latex
from .sequence import shifted, split_symbol
from .vocabulary import Entry, Reading, default_reading, key_of_name

TOKEN_RE = re.compile(r"(?P<time>@\{[^{}]*\})|(?P<cmd>\\[A-Za-z]+)|(?P<word>[A-Za-z]+)"
                      r"|(?P<num>\d+(?:\.\d+)?)|(?P<sym>[\^_{}()\[\],=+\-*/'|<>:;!.])|(?P<space>\s+)")
TIME_RE = re.compile(r"^(?P<var>[tT])(?P<off>[+-]\d+)?$")
GREEK = {"alpha", "beta", "gamma", "Gamma", "delta", "Delta", "epsilon", "varepsilon", "eta",
         "theta", "lambda", "mu", "nu", "xi", "pi", "rho", "tau", "phi", "varphi", "chi", "psi",
         "omega", "Omega", "Lambda", "Phi", "Psi", "Theta", "zeta", "kappa"}
ACCENTS = {"tilde", "hat", "bar", "dot", "vec", "check", "breve", "acute", "grave"}
ELEMENTWISE_CMDS = {"tanh": sp.tanh, "sigma": sigmoid, "exp": sp.exp, "log": sp.log,
                    "ln": sp.log, "cosh": sp.cosh, "sinh": sp.sinh, "sigmoid": sigmoid,
                    "relu": FUNCTIONS["relu"], "softplus": FUNCTIONS["softplus"]}
PRODUCT_OPS = {"*": "*", r"\cdot": "*", r"\odot": "odot", r"\otimes": "otimes", "/": "/"}
ADJOINT_CMDS = {r"\diff", r"\partial", r"\delta", r"\nabla"}


@dataclass
class Token:
    kind: str
    text: str
    pos: int
    end: int


@dataclass
class Claim:
    """``sides[0] = sides[1] = ...``; ``at_last``: the formula speaks of the last step T only."""

    sides: list
    at_last: bool
    normalized: str


def tokenize(text: str) -> list[Token]:
    tokens, pos = [], 0
    while pos < len(text):
        m = TOKEN_RE.match(text, pos)
        if not m:
            raise VerifyError(f"unexpected character {text[pos]!r}", excerpt(text, pos))
        if m.lastgroup != "space":
            tokens.append(Token(m.lastgroup, m.group(), m.start(), m.end()))
        pos = m.end()
    tokens.append(Token("end", "", len(text), len(text)))
    return tokens


# -- what names mean ------------------------------------------------------------------------

class Context:
    """The cell (its derivation) and the reading table a formula is read against."""

    def __init__(self, derivation, reading: Reading | None = None):
        self.d = derivation
        self.cell = derivation.cell
        base = default_reading(derivation)
        self.reading = reading or base
        self.symbols: dict[str, Entry] = {}
        for key, entry in self.reading.symbols.items():
            if self._entry_fits(entry):
                self.symbols[key] = entry
        for key, entry in base.symbols.items():
            self.symbols.setdefault(key, entry)
        self.losses = dict(self.reading.losses) or dict(base.losses)
        self.unsupported = dict(self.reading.unsupported)
        self.functions = {**{k: FUNCTIONS[v] for k, v in _cell_function_aliases(self.cell).items()},
                          "sigmoid": sigmoid}
        self.names = set(derivation.quantities) | {eq.target for eq in derivation.backward} | \
            set(derivation.carried.values()) | set(derivation.upstream.values()) | \
            {s + "_prev" for s in self.cell.states}
        self.bases = {re.split(r"[_^]", k)[0] for k in [*self.symbols, *self.losses, *self.unsupported]}
        self.bases |= {k for k in self.functions if k not in self.symbols}
        self.forward_of = {eq.lhs: eq.rhs for eq in derivation.forward}
        self.saved = {eq.rhs: sp.Symbol(eq.lhs) for eq in derivation.forward
                      if isinstance(eq.rhs, sp.Function) and not isinstance(eq.rhs, MatVec)}

    def _entry_fits(self, entry: Entry) -> bool:
        """A notation written for several cells keeps only the entries naming this cell's values."""
        for text in (entry.forward, entry.adjoint):
            if text is None:
                continue
            names = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", text)) - {
                "HCat", "VCat", "MatTranspose", "Row", "SumT", "SumN", "MatVec", "MatVecT", "Outer",
                *FUNCTIONS}
            known = set(self.d.quantities) | {eq.target for eq in self.d.backward} | \
                set(self.d.carried.values()) | set(self.d.upstream.values()) | \
                {s + "_prev" for s in self.d.cell.states}
            if not names <= known:
                return False
        return True

    # names at a time offset ------------------------------------------------------------------
    def is_state(self, name: str) -> bool:
        return name in self.cell.states

    def ref(self, name: str, k: int) -> str:
        """The symbol of cell value ``name`` taken ``k`` steps from t."""
        if name.endswith("_prev") and self.is_state(name[:-5]):
            return name[:-5] if k == 1 else shifted(name, k) if k else name
        if self.is_state(name) and k == -1:
            return name + "_prev"
        return shifted(name, k)

    def adjoint(self, name: str, k: int) -> str:
        """``d`` of cell value ``name`` at offset k, in the per-step convention of BPTT code:
        the adjoint of a state at t-1 is what step t hands back (``dc_prev``)."""
        if name not in self.d.quantities and not (name.endswith("_prev") and self.is_state(name[:-5])):
            raise ValueError(name)
        if self.is_state(name) and k == -1:
            return "d" + name + "_prev"
        return shifted("d" + name, k)

    def is_matrix(self, symbol_name: str) -> bool:
        base = split_symbol(symbol_name)[0]
        q = self.d.quantities.get(base)
        if q is None and base.startswith("d"):
            q = self.d.quantities.get(base[1:])
        return q is not None and len(q.shape) == 2

    def kind(self, e) -> str:
        """'num', 'vec' (per-sample column), 'row' (a transposed vector) or 'mat'."""
        if isinstance(e, sp.Symbol):
            return "mat" if self.is_matrix(e.name) else "vec"
        if e.is_Number:
            return "num"
        if isinstance(e, Row):
            return "row"
        if isinstance(e, (MatTranspose, HCat, Outer)):
            return "mat"
        if isinstance(e, (MatVec, MatVecT, VCat)):
            return "vec"
        kinds = {self.kind(a) for a in e.args}
        for k in ("mat", "row", "vec"):
            if k in kinds:
                return k
        return "num"

    def shift_expr(self, e, k: int):
        if k == 0:
            return e
        return e.xreplace({s: sp.Symbol(self._shift_name(s.name, k)) for s in e.free_symbols})

    def _shift_name(self, name: str, k: int) -> str:
        base, variant, shift = split_symbol(name)
        if self.cell.params and base in self.cell.params:
            return name
        if variant == "full" and shift == 0:
            return self.ref(base, k) if (base in self.d.quantities or base.endswith("_prev")) \
                else shifted(name, k)
        return shifted(name, k)

    def sympy_value(self, text: str):
        return SympySyntaxParser(text, self).parse_expr_only()


def _cell_function_aliases(cell) -> dict[str, str]:
    try:
        return dict(tomllib.loads(cell.source_text).get("functions", {})) if cell.source_text else {}
    except tomllib.TOMLDecodeError:
        return {}


def product(ctx: Context, a, b, op: str, where: str):
    """``a op b`` with the meaning the operand kinds give (matrix next to vector: a product)."""
    ka, kb = ctx.kind(a), ctx.kind(b)

    def fail():
        raise VerifyError(f"cannot combine a {_KIND_WORD[ka]} and a {_KIND_WORD[kb]} with {op!r}", where)

    if op == "otimes":
        if ka == "row" and kb == "vec":
            return Outer(b, a.args[0])
        if ka == "vec" and kb in ("vec", "row"):
            return Outer(a, b.args[0] if kb == "row" else b)
        fail()
    if op == "/":
        if kb not in ("num", "vec") or ka == "row":
            fail()
        return a / b
    if op == "odot":
        if "mat" in (ka, kb) or "row" in (ka, kb):
            fail()
        return a * b
    if ka == "num" or kb == "num" or (ka == "vec" and kb == "vec"):
        return a * b
    if ka == "mat" and kb == "vec":
        return MatVecT(a.args[0], b) if isinstance(a, MatTranspose) else MatVec(a, b)
    if ka in ("vec", "row") and kb == "mat":          # v^T M = (M^T v)^T
        v = a.args[0] if ka == "row" else a
        return MatVec(b.args[0], v) if isinstance(b, MatTranspose) else MatVecT(b, v)
    if ka == "vec" and kb == "row":
        return Outer(a, b.args[0])
    fail()


_KIND_WORD = {"num": "number", "vec": "vector", "row": "transposed vector", "mat": "matrix"}


def transpose(ctx: Context, e, where: str):
    k = ctx.kind(e)
    if k == "vec":
        return Row(e)
    if k == "row":
        return e.args[0]
    if k == "mat":
        return e.args[0] if isinstance(e, MatTranspose) else MatTranspose(e)
    raise VerifyError("transpose of a number", where)


# -- LaTeX ----------------------------------------------------------------------------------

@dataclass
class Atom:
    key: str
    time: int | None
    adjoint: bool
    prime: bool
    start: int
    end: int


class LatexParser:
    def __init__(self, text: str, ctx: Context):
        self.ctx = ctx
        self.text = normalize_latex(text, hyphen_subscripts=ctx.reading.hyphen_subscripts)
        if not self.text:
            raise VerifyError("empty formula")
        self.tokens = tokenize(self.text)
        self.i = 0
        self.at_last = False
        self.offsets = self._time_mode()

    # tokens ------------------------------------------------------------------------------------
    def peek(self, k: int = 0) -> Token:
        return self.tokens[min(self.i + k, len(self.tokens) - 1)]

    def next(self) -> Token:
        tok = self.peek()
        self.i += 1
        return tok

    def where(self, tok: Token | None = None, end: int | None = None) -> str:
        tok = tok or self.peek()
        return excerpt(self.text, tok.pos, end or tok.end)

    def fail(self, problem: str, tok: Token | None = None, end: int | None = None):
        raise VerifyError(problem, self.where(tok, end))

    def expect(self, text: str) -> Token:
        tok = self.peek()
        if tok.text != text:
            what = "the end" if tok.kind == "end" else repr(tok.text)
            self.fail(f"expected {text!r}, found {what}")
        return self.next()

    # time indices --------------------------------------------------------------------------
    def _time_mode(self):
        """Scan every time index first: free step t, last step T, or absolute steps (3, 2)."""
        kinds, absolute = set(), []
        toks = self.tokens
        for n, tok in enumerate(toks):
            raws = []
            if tok.kind == "time":
                raws.append(tok.text[2:-1])
            elif tok.text == "_" and n + 1 < len(toks):
                raws.append(self._group_text(n + 1)[0])
            elif tok.text == "(" and n + 2 < len(toks) and toks[n + 1].text in ("t", "T"):
                j, raw = n + 1, ""
                while j < len(toks) and toks[j].text != ")" and j < n + 5:
                    raw += toks[j].text
                    j += 1
                raws.append(raw)
            for raw in raws:
                m = TIME_RE.match(raw)
                if m:
                    kinds.add("last" if m["var"] == "T" else "free")
                elif raw.isdigit() and tok.kind == "time":
                    kinds.add("absolute")
                    absolute.append(int(raw))
        if "free" in kinds and "absolute" in kinds:
            raise VerifyError("the formula mixes the free step t with absolute steps "
                              f"({', '.join(map(str, sorted(set(absolute))))})", self.text)
        if "free" in kinds and "last" in kinds:
            raise VerifyError("the formula mixes the free step t with the last step T", self.text)
        self.at_last = kinds == {"last"}
        return {"anchor": max(absolute) if absolute else None}

    def _group_text(self, n: int) -> tuple[str, int]:
        """Raw text of the group starting at token n ({...} or one token) and the next index."""
        toks = self.tokens
        if toks[n].text != "{":
            return toks[n].text, n + 1
        depth, j = 0, n
        while j < len(toks):
            if toks[j].text == "{":
                depth += 1
            elif toks[j].text == "}":
                depth -= 1
                if depth == 0:
                    return self.text[toks[n].end:toks[j].pos].replace(" ", ""), j + 1
            j += 1
        return self.text[toks[n].end:].replace(" ", ""), len(toks) - 1

    def time_offset(self, raw: str, tok: Token) -> int:
        m = TIME_RE.match(raw)
        if m:
            off = int(m["off"] or 0)
            return off if m["var"] == "T" else off - self.ctx.reading.step_label
        if raw.isdigit() and self.offsets["anchor"] is not None:
            return int(raw) - self.offsets["anchor"]
        self.fail(f"unreadable time index {raw!r}", tok)

    # grammar ---------------------------------------------------------------------------------
    def parse(self) -> Claim:
        sides = [self.expr()]
        while self.peek().text == "=":
            self.next()
            sides.append(self.expr())
        if self.peek().kind != "end":
            self.fail(f"cannot read {self.peek().text!r} here")
        return Claim(sides, self.at_last, self.text)

    def expr(self):
        tok = self.peek()
        if tok.text in ("=", "end") or tok.kind == "end":
            self.fail("missing expression")
        terms = [self.term()]
        while self.peek().text in ("+", "-"):
            sign = -1 if self.next().text == "-" else 1
            terms.append(sign * self.term())
        kinds = {self.ctx.kind(t) for t in terms} - {"num"}
        if len(kinds) > 1:
            self.fail("adds a " + " and a ".join(sorted(_KIND_WORD[k] for k in kinds)), tok,
                      self.tokens[self.i - 1].end)
        return sp.Add(*terms)

    def starts_factor(self, tok: Token) -> bool:
        if tok.kind in ("word", "num"):
            return True
        if tok.text in ("(", "[", "{"):
            return True
        if tok.kind == "cmd":
            return tok.text not in PRODUCT_OPS and tok.text not in (r"\sum",)
        return False

    def term(self):
        """Products joined by ⊗, which binds loosest: [x, h]^T ⊗ δ (1 - g^2)."""
        sign = 1
        while self.peek().text in ("+", "-"):
            if self.next().text == "-":
                sign = -sign
        value = self.product_chain()
        while self.peek().text == r"\otimes":
            tok = self.next()
            value = product(self.ctx, value, self.product_chain(), "otimes", self.where(tok))
        return -value if sign == -1 else value

    def product_chain(self):
        start = self.peek()
        if start.text == r"\sum":
            value = self.sum()
        else:
            value = self.factor()
        while True:
            tok = self.peek()
            if tok.text in PRODUCT_OPS and tok.text != r"\otimes":
                self.next()
                if self.peek().text == r"\sum":
                    right = self.sum()
                else:
                    right = self.signed_factor()
                value = product(self.ctx, value, right, PRODUCT_OPS[tok.text], self.where(tok))
            elif tok.text == r"\sum":
                value = product(self.ctx, value, self.sum(), "*", self.where(tok))
            elif self.starts_factor(tok):
                value = product(self.ctx, value, self.factor(), "*", self.where(tok))
            else:
                break
        return value

    def signed_factor(self):
        if self.peek().text == "-":
            self.next()
            return -self.signed_factor()
        return self.factor()

    def sum(self):
        tok = self.expect(r"\sum")
        index = None
        for _ in range(2):
            if self.peek().text in ("_", "^"):
                mark = self.next().text
                raw, self.i = self._group_text(self.i)
                if mark == "_":
                    index = raw.split("=")[0]
        if not self.starts_factor(self.peek()) and self.peek().text != "-":
            self.fail("Σ without a body", tok)
        body = self.signed_factor()
        while True:
            nxt = self.peek()
            if nxt.text in PRODUCT_OPS and nxt.text != r"\otimes":
                self.next()
                body = product(self.ctx, body, self.signed_factor(), PRODUCT_OPS[nxt.text], self.where(nxt))
            elif self.starts_factor(nxt):
                body = product(self.ctx, body, self.factor(), "*", self.where(nxt))
            else:
                break
        if index in (None, "t", "s", "tau") or (index and index[0] == "t"):
            return SumT(body)
        return SumN(body)

    def factor(self):
        tok = self.peek()
        value = self.primary()
        while self.peek().text == "^":
            hat = self.next()
            raw, j = self._group_text(self.i)
            if raw in ("T", r"\top", "top", r"\intercal", "⊤"):
                self.i = j
                value = transpose(self.ctx, value, self.where(hat))
            else:
                exponent = self.group_expr()
                if self.ctx.kind(exponent) != "num":
                    self.fail("an exponent must be a number", hat)
                if self.ctx.kind(value) in ("mat", "row"):
                    self.fail("power of a matrix", hat)
                value = value ** exponent
        if self.peek().text == "'":
            self.fail("a prime belongs to a function (\\sigma'(z), \\tanh'(z))", tok)
        return value

    def group_expr(self):
        if self.peek().text == "{":
            self.next()
            value = self.expr()
            self.expect("}")
            return value
        tok = self.next()
        if tok.kind == "num":
            return sp.Rational(tok.text) if "." not in tok.text else sp.Float(tok.text)
        if tok.text == "-" and self.peek().kind == "num":
            return -sp.Integer(self.next().text)
        self.fail("expected a group", tok)

    def primary(self):
        tok = self.peek()
        if tok.kind == "num":
            self.next()
            return sp.Rational(tok.text) if "." not in tok.text else sp.Float(tok.text)
        if tok.text == "(":
            self.next()
            value = self.expr()
            self.expect(")")
            return value
        if tok.text == "{":
            self.next()
            value = self.expr()
            self.expect("}")
            return value
        if tok.text == "[":
            self.next()
            items = [self.expr()]
            while self.peek().text == ",":
                self.next()
                items.append(self.expr())
            self.expect("]")
            if len(items) == 1:
                return items[0]
            if any(self.ctx.kind(v) != "vec" for v in items):
                self.fail("[a, b] stacks vectors only", tok)
            return VCat(*items)
        if tok.kind == "cmd":
            name = tok.text[1:]
            if tok.text == r"\frac":
                return self.frac()
            if name in ELEMENTWISE_CMDS:
                return self.call(ELEMENTWISE_CMDS[name], tok)
            if tok.text in ADJOINT_CMDS:
                self.next()
                if not self.starts_atom(self.peek()):
                    self.fail(f"{tok.text} must be followed by a symbol", tok)
                return self.resolve(self.atom(adjoint=True))
            if name in ("bar", "hat") and [t.text for t in self.tokens[self.i + 1:self.i + 4]] == \
                    ["{", r"\delta", "}"]:
                # derive.notation's default: \bar{\delta} h = carried adjoint, \hat{\delta} h = upstream
                self.i += 4
                if not self.starts_atom(self.peek()):
                    self.fail(f"\\{name}{{\\delta}} must be followed by a symbol", tok)
                return self.external(self.atom(), "carried" if name == "bar" else "upstream")
            if name in GREEK or name in ACCENTS:
                return self.resolve(self.atom())
            self.fail(f"unknown command {tok.text}", tok)
        if tok.kind == "word":
            atom = self.atom()
            if atom.key in self.ctx.functions and atom.key not in self.ctx.symbols and not atom.adjoint:
                return self.call(self.ctx.functions[atom.key], tok, prime=atom.prime, consumed=True)
            return self.resolve(atom)
        if tok.kind == "time":
            self.fail("a time index without a symbol", tok)
        if tok.kind == "end":
            self.fail("the formula ends too early", tok)
        self.fail(f"cannot read {tok.text!r} here", tok)

    def call(self, func, tok: Token, prime: bool = False, consumed: bool = False):
        if not consumed:
            self.next()
        power = None
        for _ in range(3):
            if self.peek().text == "'":
                self.next()
                prime = True
            elif self.peek().text == "^":
                self.next()
                power = self.group_expr()
            else:
                break
        nxt = self.peek()
        if nxt.text in ("(", "{"):
            self.next()
            arg = self.expr()
            self.expect(")" if nxt.text == "(" else "}")
        elif self.starts_atom(nxt):
            arg = self.resolve(self.atom())
        else:
            self.fail("a function without an argument", tok)
        if self.ctx.kind(arg) not in ("vec", "num"):
            self.fail("an elementwise function of a matrix", tok)
        z = sp.Dummy("z")
        value = sp.diff(func(z), z).subs(z, arg) if prime else func(arg)
        return value ** power if power is not None else value

    def starts_atom(self, tok: Token) -> bool:
        return tok.kind == "word" or (tok.kind == "cmd" and tok.text[1:] in GREEK | ACCENTS)

    # symbols ---------------------------------------------------------------------------------
    def atom(self, adjoint: bool = False) -> Atom:
        """Read ``base _{label or time} ^{label} @{time} (time) '`` into a key and a time."""
        start = self.peek()
        tok = self.next()
        if tok.kind == "cmd" and tok.text[1:] in ACCENTS:
            self.expect("{")
            inner = self.atom()
            self.expect("}")
            if inner.adjoint:
                self.fail("an accent over an adjoint", tok)
            key, time = f"\\{tok.text[1:]}{{{inner.key}}}", inner.time
        elif tok.kind == "cmd" and tok.text[1:] in GREEK:
            key, time = tok.text, None
        elif tok.kind == "word":
            key, time, adjoint = self.split_word(tok, adjoint)
        else:
            self.fail("expected a symbol", tok)
        prime = False
        while True:
            nxt = self.peek()
            if nxt.text == "_":
                self.next()
                raw, j = self._group_text(self.i)
                if self.peek().kind == "word" and self.peek().text != raw:     # x_tb: subscript t only
                    raw = self.peek().text[0]
                    self._split_current(1)
                    j = self.i + 1
                self.i = j
                if TIME_RE.match(raw):
                    time = self._set_time(time, raw, nxt)
                else:
                    key += f"_{{{raw}}}"
            elif nxt.kind == "time":
                self.next()
                time = self._set_time(time, nxt.text[2:-1], nxt)
            elif nxt.text == "^":
                raw, j = self._group_text(self.i + 1)
                if TIME_RE.match(raw) and raw not in ("T",):
                    self.i = j
                    time = self._set_time(time, raw, nxt)
                elif re.fullmatch(r"[A-Za-z]+", raw) and raw != "T" and \
                        f"{key}^{{{raw}}}" in self.ctx.symbols:
                    self.i = j
                    key += f"^{{{raw}}}"
                else:
                    break
            elif nxt.text == "'":
                self.next()
                prime = True
            elif nxt.text == "(" and time is None and self._time_call():
                self.next()
                raw = ""
                while self.peek().text != ")":
                    raw += self.next().text
                self.next()
                time = self._set_time(time, raw, nxt)
            else:
                break
        return Atom(key, time, adjoint, prime, start.pos, self.tokens[self.i - 1].end)

    def _time_call(self) -> bool:
        toks = self.tokens[self.i:self.i + 5]
        text = "".join(t.text for t in toks[1:])
        return bool(re.match(r"^[tT](?:[+-]\d+)?\)", text))

    def _set_time(self, current, raw: str, tok: Token) -> int:
        if current is not None:
            self.fail("two time indices on one symbol", tok)
        return self.time_offset(raw, tok)

    def _split_current(self, n: int) -> None:
        """Split the current word token after n letters (``ws`` is w times s)."""
        tok = self.tokens[self.i]
        head = Token("word", tok.text[:n], tok.pos, tok.pos + n)
        rest = Token("word", tok.text[n:], tok.pos + n, tok.end)
        self.tokens[self.i:self.i + 1] = [head, rest] if rest.text else [head]

    def split_word(self, tok: Token, adjoint: bool):
        """A run of letters: the longest known name, or d + a known name (an adjoint)."""
        w = tok.text
        if w == "d" and not adjoint and self.starts_atom(self.peek()):
            inner = self.atom(adjoint=True)              # d\Gamma_f: the adjoint of \Gamma_f
            return inner.key, inner.time, True
        best = None
        for n in range(len(w), 0, -1):
            p = w[:n]
            if p in self.ctx.bases:
                best = (p, adjoint)
                break
            if not adjoint and p.startswith("d") and len(p) > 1 and p[1:] in self.ctx.bases:
                best = (p[1:], True)
                break
        if best is None:
            if w == "d" and not adjoint and self.starts_atom(self.peek()):
                inner = self.atom(adjoint=True)
                return inner.key, inner.time, True
            best = (w[0], adjoint) if not (len(w) > 1 and w[0] == "d" and not adjoint) else (w, adjoint)
            if len(w) > 1 and best[0] == w[0]:
                self.fail(f"unknown symbol {w!r}", tok)
        name, adj = best
        used = len(name) + (1 if adj and not adjoint else 0)
        if used < len(w):
            self.i -= 1
            self.tokens[self.i:self.i + 1] = [Token("word", w[:used], tok.pos, tok.pos + used),
                                              Token("word", w[used:], tok.pos + used, tok.end)]
            self.i += 1
        return name, None, adj

    def resolve(self, atom: Atom):
        """The SymPy value of a symbol read in the formula."""
        ctx = self.ctx
        where = excerpt(self.text, atom.start, atom.end)
        if atom.key in ctx.unsupported:
            raise VerifyError(f"{atom.key}: {ctx.unsupported[atom.key]}", where)
        if atom.key in ctx.losses:
            raise VerifyError(f"the loss {atom.key} appears outside a derivative", where)
        entry = ctx.symbols.get(atom.key)
        if entry is None and not atom.adjoint and atom.key.startswith("d") and len(atom.key) > 1:
            rest = atom.key[1:]                  # "da" read as one name: d + a
            if rest in ctx.symbols or rest in ctx.unsupported:
                return self.resolve(Atom(rest, atom.time, True, atom.prime, atom.start, atom.end))
        if entry is None:
            raise VerifyError(f"unknown symbol {atom.key} in notation {ctx.reading.name} "
                              f"for cell {ctx.cell.name}", where)
        if atom.prime:
            raise VerifyError(f"{atom.key}' is not a function of this cell", where)
        k = atom.time or 0
        if atom.adjoint:
            if entry.adjoint is not None:
                return ctx.shift_expr(ctx.sympy_value(entry.adjoint), k)
            if entry.forward is None:
                raise VerifyError(f"{atom.key} has no adjoint", where)
            return self._adjoint_of(ctx.sympy_value(entry.forward), k, where, atom.key)
        if entry.forward is None:
            raise VerifyError(f"{atom.key} is used only as an adjoint (d{atom.key})", where)
        value = ctx.sympy_value(entry.forward)
        if isinstance(value, sp.Symbol) and k:
            return sp.Symbol(ctx.ref(value.name, k))
        return ctx.shift_expr(value, k)

    def external(self, atom: Atom, kind: str):
        """The adjoint a state receives from step t+1 (carried), or an output from the loss."""
        ctx = self.ctx
        where = excerpt(self.text, atom.start, atom.end)
        entry = ctx.symbols.get(atom.key)
        value = ctx.sympy_value(entry.forward) if entry and entry.forward else None
        if not isinstance(value, sp.Symbol):
            raise VerifyError(f"unknown symbol {atom.key} in notation {ctx.reading.name} "
                              f"for cell {ctx.cell.name}", where)
        name, k = _unprev(ctx, value.name)
        k += atom.time or 0
        if kind == "carried" and name in ctx.d.carried:
            return sp.Symbol("d" + name + "_prev" if k == -1 else shifted(ctx.d.carried[name], k))
        if kind == "upstream" and name in ctx.d.upstream:
            return sp.Symbol(shifted(ctx.d.upstream[name], k))
        raise VerifyError(f"{name} has no {kind} adjoint in cell {ctx.cell.name}", where)

    def _adjoint_of(self, value, k: int, where: str, key: str):
        ctx = self.ctx
        if isinstance(value, sp.Symbol):
            try:
                return sp.Symbol(ctx.adjoint(value.name, k))
            except ValueError:
                raise VerifyError(f"{key} stands for {value.name}, which has no adjoint", where)
        if isinstance(value, (HCat, MatTranspose)) and all(isinstance(a, sp.Symbol) for a in value.args):
            return value.func(*(sp.Symbol(ctx.adjoint(a.name, 0)) for a in value.args))
        raise VerifyError(f"{key} stands for an expression and has no adjoint", where)

    # derivatives -----------------------------------------------------------------------------
    def frac(self):
        tok = self.expect(r"\frac")
        if self._is_derivative():
            self.expect("{")
            top = self.operand()
            self.expect("}")
            self.expect("{")
            bottom = self.operand()
            self.expect("}")
            return self.derivative(top, bottom, tok)
        num = self.group_expr()
        den = self.group_expr()
        if self.ctx.kind(den) != "num":
            return product(self.ctx, num, den, "/", self.where(tok))
        return num / den

    def _is_derivative(self) -> bool:
        if self.peek().text != "{":
            return False
        _, j = self._group_text(self.i)
        first_top, first_bottom = self.peek(1), self.tokens[j + 1] if j + 1 < len(self.tokens) else None
        def is_d(t):
            return t is not None and (t.text in (r"\partial", r"\diff") or
                                      (t.kind == "word" and t.text.startswith("d")))
        return is_d(first_top) and is_d(first_bottom)

    def operand(self) -> Atom:
        tok = self.next()
        if tok.kind == "word" and tok.text != "d":
            self.i -= 1
            self._split_current(1)
            self.next()
        if self.peek().text in ("(", "{"):
            self.fail("the derivative of an expression; name the quantity instead", self.peek())
        if not self.starts_atom(self.peek()):
            self.fail("expected the quantity after ∂ / d", self.peek())
        tok = self.peek()
        if tok.kind == "word" and tok.text in self.ctx.losses:
            self.next()
            time = None
            nxt = self.peek()
            if nxt.kind == "time":
                self.next()
                time = self.time_offset(nxt.text[2:-1], nxt)
            elif nxt.text == "(" and self._time_call():
                self.next()
                raw = ""
                while self.peek().text != ")":
                    raw += self.next().text
                self.next()
                time = self.time_offset(raw, nxt)
            elif nxt.text == "_":
                self.next()
                raw, self.i = self._group_text(self.i)
                time = self.time_offset(raw, nxt)
            return Atom(tok.text, time, False, False, tok.pos, self.tokens[self.i - 1].end)
        return self.atom()

    def derivative(self, top: Atom, bottom: Atom, tok: Token):
        ctx = self.ctx
        where = excerpt(self.text, tok.pos, self.tokens[self.i - 1].end)
        if bottom.key in ctx.losses:
            raise VerifyError("a derivative with respect to the loss", where)
        entry = ctx.symbols.get(bottom.key)
        if entry is None or entry.forward is None:
            if bottom.key in ctx.unsupported:
                raise VerifyError(f"{bottom.key}: {ctx.unsupported[bottom.key]}", where)
            raise VerifyError(f"unknown symbol {bottom.key} in notation {ctx.reading.name} "
                              f"for cell {ctx.cell.name}", where)
        wrt = ctx.sympy_value(entry.forward)
        tau = bottom.time or 0
        if top.key in ctx.losses:
            return self.loss_derivative(ctx.losses[top.key], top, wrt, tau, where)
        if not isinstance(wrt, sp.Symbol):
            raise VerifyError(f"a derivative with respect to {bottom.key}, which is not one quantity",
                              where)
        top_entry = ctx.symbols.get(top.key)
        if top_entry is None or top_entry.forward is None:
            raise VerifyError(f"unknown symbol {top.key} in notation {ctx.reading.name} "
                              f"for cell {ctx.cell.name}", where)
        of = ctx.sympy_value(top_entry.forward)
        if not isinstance(of, sp.Symbol):
            raise VerifyError(f"a derivative of {top.key}, which is not one quantity", where)
        return local_derivative(ctx, of.name, top.time or 0, wrt.name, tau, where)

    def loss_derivative(self, kind: str, top: Atom, wrt: sp.Symbol, tau: int, where: str):
        ctx = self.ctx
        if kind != "total" and top.time is None:
            kind = "total"                  # Error, L without a step: the whole-sequence loss
        if isinstance(wrt, (HCat, MatTranspose)) and all(
                isinstance(p, sp.Symbol) and p.name in ctx.cell.params for p in wrt.args):
            grad = wrt.func(*(sp.Symbol("d" + p.name) for p in wrt.args))
            if kind == "total" and top.time is None:
                return SumT(grad)
            if kind == "tail":
                return ctx.shift_expr(grad, top.time or 0)
            raise VerifyError(f"cannot read the derivative of the {kind} loss {top.key} with "
                              f"respect to a parameter", where)
        if not isinstance(wrt, sp.Symbol):
            raise VerifyError("a derivative with respect to an expression", where)
        name = wrt.name
        is_param = name in ctx.cell.params
        if kind == "total":
            if top.time is not None:
                raise VerifyError(f"{top.key} is the whole-sequence loss; it has no step", where)
            if is_param:
                return SumT(sp.Symbol("d" + name))
            return sp.Symbol(shifted("d" + _unprev(ctx, name)[0], tau + _unprev(ctx, name)[1]))
        t_loss = top.time if top.time is not None else 0
        base, k = _unprev(ctx, name)
        tau += k
        if kind == "tail":
            if is_param:
                return sp.Symbol(shifted("d" + name, t_loss))
            if tau >= t_loss:
                return sp.Symbol(shifted("d" + base, tau))
            if tau == t_loss - 1 and ctx.is_state(base):
                return sp.Symbol(shifted("d" + base + "_next", tau))
        if kind in ("step", "block") and not is_param:
            if tau == t_loss:
                return sp.Symbol(shifted("d" + base + "#k1", tau))
            if kind == "block" and tau == t_loss - 1 and ctx.is_state(base):
                return sp.Symbol(shifted("d" + base + "_next", tau))
        raise VerifyError(f"cannot read the derivative of the {kind} loss {top.key} at step "
                          f"offset {t_loss} with respect to {name} at offset {tau}", where)


def _unprev(ctx: Context, name: str) -> tuple[str, int]:
    if name.endswith("_prev") and ctx.is_state(name[:-5]):
        return name[:-5], -1
    return name, 0


def local_derivative(ctx: Context, of: str, a: int, wrt: str, b: int, where: str):
    """∂(of at t+a)/∂(wrt at t+b) through the forward equations of one step."""
    wrt_base, kb = _unprev(ctx, wrt)
    b += kb
    of_base, ka = _unprev(ctx, of)
    a += ka
    if a == b:
        leaf = wrt_base
    elif a == b + 1 and ctx.is_state(wrt_base):
        leaf = wrt_base + "_prev"
    else:
        raise VerifyError("a derivative across more than one step", where)
    if of_base not in ctx.forward_of:
        raise VerifyError(f"{of_base} is not computed by the cell's forward step", where)
    target = sp.Symbol(leaf)
    depends = _dependents(ctx, leaf)
    expr = sp.Symbol(of_base)
    for _ in range(len(ctx.forward_of) + 1):
        subs = {s: ctx.forward_of[s.name] for s in expr.free_symbols
                if s.name in depends and s != target and s.name in ctx.forward_of}
        if not subs:
            break
        expr = expr.xreplace(subs)
    for node in expr.atoms(MatVec):
        if target in node.free_symbols:
            raise VerifyError("this derivative is a matrix (Jacobian); write it through an adjoint",
                              where)
    value = sp.diff(expr, target).xreplace(ctx.saved)
    return ctx.shift_expr(value, a)


def _dependents(ctx: Context, leaf: str) -> set[str]:
    """Forward values that depend on ``leaf`` within one step."""
    out = {leaf}
    for eq in ctx.d.forward:
        if any(s.name in out for s in eq.rhs.free_symbols):
            out.add(eq.lhs)
    return out


# -- SymPy syntax ---------------------------------------------------------------------------

PLAIN_TOKEN_RE = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*(?:#k1)?(?:@[+-]\d+)?)"
                            r"|(?P<num>\d+(?:\.\d+)?)|(?P<op>\*\*|[-+*/^@(),=]|\.T)|(?P<space>\s+)")
PLAIN_FUNCTIONS = {"HCat": HCat, "VCat": VCat, "MatTranspose": MatTranspose, "Row": Row, "SumT": SumT,
                   "SumN": SumN, "MatVec": MatVec, "MatVecT": MatVecT, "Outer": Outer,
                   "outer": Outer, "sum_t": SumT, "sum_n": SumN, "cat": VCat}


class SympySyntaxParser:
    """``dc_next + dh*o*(1 - tanh(c)**2)``: cell names, + - * / ** @ .T, known functions."""

    def __init__(self, text: str, ctx: Context):
        self.text, self.ctx = text, ctx
        self.tokens, pos = [], 0
        while pos < len(text):
            m = PLAIN_TOKEN_RE.match(text, pos)
            if not m:
                raise VerifyError(f"unexpected character {text[pos]!r}", excerpt(text, pos))
            if m.lastgroup != "space":
                self.tokens.append(Token(m.lastgroup, m.group(), m.start(), m.end()))
            pos = m.end()
        self.tokens.append(Token("end", "", len(text), len(text)))
        self.i = 0

    def peek(self):
        return self.tokens[self.i]

    def next(self):
        self.i += 1
        return self.tokens[self.i - 1]

    def fail(self, problem, tok=None):
        tok = tok or self.peek()
        raise VerifyError(problem, excerpt(self.text, tok.pos, tok.end))

    def parse(self) -> Claim:
        sides = [self.expr()]
        while self.peek().text == "=":
            self.next()
            sides.append(self.expr())
        if self.peek().kind != "end":
            self.fail(f"cannot read {self.peek().text!r} here")
        return Claim(sides, False, self.text)

    def parse_expr_only(self):
        value = self.expr()
        if self.peek().kind != "end":
            self.fail(f"cannot read {self.peek().text!r} here")
        return value

    def expr(self):
        value = self.term()
        while self.peek().text in ("+", "-"):
            sign = -1 if self.next().text == "-" else 1
            value = value + sign * self.term()
        return value

    def term(self):
        value = self.unary()
        while self.peek().text in ("*", "/", "@"):
            tok = self.next()
            right = self.unary()
            op = {"*": "*", "/": "/", "@": "*"}[tok.text]
            if tok.text == "@" and self.ctx.kind(value) != "mat":
                self.fail("@ needs a matrix on its left", tok)
            value = product(self.ctx, value, right, op, excerpt(self.text, tok.pos, tok.end))
        return value

    def unary(self):
        if self.peek().text == "-":
            self.next()
            return -self.unary()
        if self.peek().text == "+":
            self.next()
            return self.unary()
        return self.power()

    def power(self):
        base = self.postfix()
        if self.peek().text in ("**", "^"):
            self.next()
            exponent = self.unary()
            if self.ctx.kind(exponent) != "num":
                self.fail("an exponent must be a number")
            return base ** exponent
        return base

    def postfix(self):
        value = self.atom()
        while self.peek().text == ".T":
            tok = self.next()
            value = transpose(self.ctx, value, excerpt(self.text, tok.pos, tok.end))
        return value

    def atom(self):
        tok = self.next()
        if tok.kind == "num":
            return sp.Rational(tok.text) if "." not in tok.text else sp.Float(tok.text)
        if tok.text == "(":
            value = self.expr()
            if self.next().text != ")":
                self.fail("expected ')'", self.tokens[self.i - 1])
            return value
        if tok.kind == "name":
            if self.peek().text == "(":
                return self.call(tok)
            base = split_symbol(tok.text)[0]
            if base not in self.ctx.names:
                self.fail(f"unknown name {base!r} for cell {self.ctx.cell.name}", tok)
            return sp.Symbol(tok.text)
        if tok.kind == "end":
            self.fail("the formula ends too early", tok)
        self.fail(f"cannot read {tok.text!r} here", tok)

    def call(self, tok):
        self.next()
        args = [self.expr()]
        while self.peek().text == ",":
            self.next()
            args.append(self.expr())
        if self.next().text != ")":
            self.fail("expected ')'", self.tokens[self.i - 1])
        name = tok.text
        if name in FUNCTIONS or name in self.ctx.functions:
            func = FUNCTIONS.get(name) or self.ctx.functions[name]
            if len(args) != 1:
                self.fail(f"{name} takes one argument", tok)
            return func(args[0])
        if name in PLAIN_FUNCTIONS:
            return PLAIN_FUNCTIONS[name](*args)
        self.fail(f"unknown function {name!r}", tok)


def looks_like_latex(text: str) -> bool:
    return "\\" in text or "{" in text or "^" in text and "**" not in text or \
        any(ch in text for ch in "（）⊙⊗σΓ∂Σ")


def parse_formula(text: str, ctx: Context) -> Claim:
    """LaTeX (anything with a backslash, a brace or ^) or SymPy syntax, into a ``Claim``."""
    text = text.strip()
    if not text:
        raise VerifyError("empty formula")
    if looks_like_latex(text):
        return LatexParser(text, ctx).parse()
    try:
        return SympySyntaxParser(text, ctx).parse()
    except VerifyError as sympy_error:         # "dc i" is LaTeX without a backslash
        try:
            return LatexParser(text, ctx).parse()
        except VerifyError:
            raise sympy_error from None


def parse_quantity(name: str, ctx: Context):
    """``--quantity``: a cell name (``c`` or its adjoint ``dc``) or a symbol of the notation."""
    d = ctx.d
    targets = {eq.target for eq in d.backward}
    if name in targets:
        return sp.Symbol(name)
    if name in d.quantities and "d" + name in targets:
        return sp.Symbol("d" + name)
    if looks_like_latex(name) or key_of_name(name) in ctx.symbols or name in ctx.symbols:
        try:
            claim = LatexParser(name if "\\" in name or name.startswith("d") else r"\diff " + name,
                                ctx).parse()
        except VerifyError:
            claim = None
        if claim and len(claim.sides) == 1 and isinstance(claim.sides[0], (sp.Symbol, HCat, SumT)):
            return claim.sides[0]
    raise VerifyError(f"cell {ctx.cell.name} has no quantity {name!r} (quantities: "
                      f"{', '.join(sorted(d.quantities))}; adjoints: {', '.join(sorted(targets))})")
