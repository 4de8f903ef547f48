"""Read a hand-written gradient formula, strictly, into SymPy over the cell's names.

Two input forms:

* LaTeX as people write it, first rewritten by ``normalize_latex`` and then read here by a small
  recursive-descent parser. It knows time indices (``c^{<t-1>}``, ``x_{t+1}``, ``h(t-1)``),
  adjoints (``\\mathrm{d}c``, ``dc``, ``\\partial c``, ``\\delta a``, ``\\frac{\\partial E}{\\partial a}``),
  the gradient operator (``\\nabla_{h^{(t)}} L``, the same as ``\\frac{\\partial L}{\\partial h^{(t)}}``),
  local derivatives (``\\frac{\\partial h_t}{\\partial o_t}``), derivatives of functions
  (``\\sigma'(z)``, ``\\tanh'(z)``, ``g'(z)``), products (``*``, ``\\cdot``, ``\\odot``, ``\\otimes``,
  juxtaposition; a matrix next to a vector is a matrix-vector product), ``\\mathrm{diag}(v)`` in a
  product (``A \\mathrm{diag}(v) B`` is ``A (v ⊙ B)``), ``[h, x]`` stacking,
  transposes, ``\\sum_t`` (over time) and ``\\sum_{axis=1}`` (over the batch).
* SymPy syntax in cell names (``dc_next + dh*o*(1 - tanh(c)**2)``, ``W_f.T @ da_f``), read by
  ``sympy_syntax``, never by ``eval``.

Nothing is skipped: a token the reader cannot place is a ``VerifyError`` saying where.
Symbols come out as cell names at step t (``c``, ``c_prev``, ``dc``, ``dc_next``, ``dW_f``),
shifted ones as ``f@+1`` (f at step t+1), and loss-only adjoints as ``dc#k1``.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

import sympy as sp

from derive import limits, ops
from derive.limits import LimitError

from derive.linear import Outer

from .context import (KIND_WORD, Claim, Context, Token, local_derivative, matrix_claim, prod,
                      product, row_parts, transpose, unprev)
from .errors import Place, VerifyError, excerpt
from .nodes import HCat, Jacobian, MatTranspose, Row, SumN, SumT, VCat, VStack
from .normalize_latex import normalize_latex
from .vocabulary import retyped
from .sequence import shifted, split_symbol
from .slices import slice_value
from .sympy_syntax import SympySyntaxParser

TOKEN_RE = re.compile(r"(?P<time>@\{[^{}]*\})|(?P<cmd>\\[A-Za-z]+)|(?P<word>[A-Za-z]+)"
                      r"|(?P<num>\d+(?:\.\d+)?)|(?P<sym>[\^_{}()\[\],=+\-*/'|<>:;!.])|(?P<space>\s+)")
TIME_RE = re.compile(r"^(?P<var>[tT])(?P<off>[+-]\d+)?$")
GREEK = {"alpha", "beta", "gamma", "Gamma", "delta", "Delta", "epsilon", "varepsilon", "eta",
         "theta", "lambda", "mu", "nu", "xi", "pi", "rho", "tau", "phi", "varphi", "chi", "psi",
         "omega", "Omega", "Lambda", "Phi", "Psi", "Theta", "zeta", "kappa"}
ACCENTS = {"tilde", "hat", "bar", "dot", "vec", "check", "breve", "acute", "grave"}
PRODUCT_OPS = {"*": "*", r"\cdot": "*", r"\odot": "odot", r"\otimes": "otimes", "/": "/"}
ADJOINT_CMDS = {r"\diff", r"\partial", r"\delta", r"\nabla"}


def tokenize(text: str) -> list[Token]:
    tokens, pos = [], 0
    while pos < len(text):
        m = TOKEN_RE.match(text, pos)
        if not m:
            err = VerifyError(f"unexpected character {text[pos]!r}", excerpt(text, pos))
            err.pos = pos
            raise err
        if m.lastgroup != "space":
            tokens.append(Token(m.lastgroup, m.group(), m.start(), m.end()))
        pos = m.end()
    tokens.append(Token("end", "", len(text), len(text)))
    return tokens



# -- LaTeX ----------------------------------------------------------------------------------

@dataclass
class Atom:
    key: str
    time: int | None
    adjoint: bool
    prime: bool
    start: int
    end: int
    value: object = None        # the top of a derivative of an expression: ∂(u x + v s)/∂v
    entries: str = ""           # entry indices (the notation's indices): W_{ij}, h_j, δ_{t,i}


@dataclass(frozen=True)
class Diagonal:
    """``diag(v)`` (times the matrices ``then`` after it) that no vector followed: only a
    transposed vector on its left can take it (``g^T diag(v) W`` is ``(v ⊙ g)^T W``); any other
    use is unreadable."""

    vector: object
    where: Place
    then: object = None


class LatexParser:
    def __init__(self, text: str, ctx: Context):
        self.ctx = ctx
        self.original = text
        self.text = normalize_latex(retyped(text, ctx.reading),
                                    hyphen_subscripts=ctx.reading.hyphen_subscripts)
        if not self.text:
            raise VerifyError("empty formula")
        self._blocks = None
        try:
            self.tokens = tokenize(self.text)
        except VerifyError as err:
            raise VerifyError(err.problem, self.excerpt(err.pos, err.pos + 1)) from None
        self.i = 0
        self.bars = 0               # open [ ] or | | : a bar inside closes or separates
        self.at_last = False
        self.jacobian_at = None     # where a derivative that is a matrix was read
        self.diagonal = set()       # token spans of elementwise derivatives (∂c_t/∂c_{t-1} = f)
        self.indexed = False        # an entry index was read: products of entries commute
        self._frac_start = 0
        self.offsets = self._time_mode()

    # tokens ------------------------------------------------------------------------------------
    def peek(self, k: int = 0) -> Token:
        return self.tokens[min(self.i + k, len(self.tokens) - 1)]

    def next(self) -> Token:
        tok = self.peek()
        self.i += 1
        return tok

    def where(self, tok: Token | None = None, end: int | None = None) -> Place:
        tok = tok or self.peek()
        return self.excerpt(tok.pos, end or tok.end)

    def excerpt(self, start: int, end: int) -> Place:
        """The excerpt of what the user typed (not the normalized text) around [start, end)."""
        return excerpt(self.original, self.to_original(start), self.to_original(end, True))

    @property
    def blocks(self):
        """Matching blocks of the normalized and the typed text, computed on the first error only:
        SequenceMatcher is quadratic, so a long formula gets its heuristic (autojunk)."""
        if self._blocks is None:
            if self.text == self.original:
                self._blocks = [(0, 0, len(self.text)), (len(self.text), len(self.text), 0)]
            else:
                self._blocks = difflib.SequenceMatcher(None, self.text, self.original,
                                                       autojunk=len(self.original) > 2000
                                                       ).get_matching_blocks()
        return self._blocks

    def to_original(self, pos: int, is_end: bool = False) -> int:
        """A position in the normalized text mapped to the same place in the typed text."""
        best = 0
        for a, b, size in self.blocks:
            if a <= pos < a + size or (is_end and a < pos <= a + size):
                return b + pos - a
            if a + size <= pos:
                best = b + size
        return min(best, len(self.original))

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
        first_absolute = None
        toks = self.tokens
        for n, tok in enumerate(toks):
            raws = []
            if tok.kind == "time":
                raws.append(tok.text[2:-1])
            elif tok.text == "_" and n + 1 < len(toks):
                raws.append(self._group_text(n + 1)[0].rpartition(",")[2])
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
                    first_absolute = first_absolute or tok
        if "free" in kinds and "absolute" in kinds:
            raise VerifyError("the formula mixes the free step t with absolute steps "
                              f"({', '.join(map(str, sorted(set(absolute))))})", self.where(first_absolute))
        # t beside T in a statement about the last step (dl(T)/dh(T) * o(t)): t is that step
        self.at_last = "last" in kinds
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
            if m["var"] == "T" or self.at_last:
                return off
            return off - self.ctx.reading.step_label
        if raw.isdigit() and self.offsets["anchor"] is not None:
            return int(raw) - self.offsets["anchor"]
        self.fail(f"unreadable time index {raw!r}", tok)

    # grammar ---------------------------------------------------------------------------------
    def parse(self) -> Claim:
        sides = [self.expr()]
        while self.peek().text in ("=", r"\pluseq"):
            tok = self.next()
            if tok.text == r"\pluseq" and (len(sides) > 1 or not self._param_gradient(sides[0])):
                self.fail("+= accumulates a parameter's gradient over the steps: its left side "
                          "must be one (dW += ...), and it must come first", tok)
            sides.append(self.expr())
        if self.peek().kind != "end":
            self.fail(f"cannot read {self.peek().text!r} here")
        kinds = {self.ctx.kind(side) for side in sides} - {"num"}
        if self.indexed and len(kinds) > 1:
            self.fail("index notation: the sides carry different entry indices ("
                      + " and ".join(sorted(KIND_WORD[k] for k in kinds)) + ")")
        if any(side.has(Jacobian) for side in sides):
            sides = matrix_claim(self.ctx, sides, self.jacobian_at)
        return Claim(sides, self.at_last, self.text)

    def _param_gradient(self, e) -> bool:
        """``dW`` (or a block ``[dU | dW]``): one step's term when the formula has no Σ_t."""
        if isinstance(e, (HCat, VStack, MatTranspose)):
            return all(self._param_gradient(a) for a in e.args)
        return isinstance(e, sp.Symbol) and e.name.startswith("d") and \
            e.name[1:] in self.ctx.cell.params

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
            self.fail("adds a " + " and a ".join(sorted(KIND_WORD[k] for k in kinds)), tok,
                      self.tokens[self.i - 1].end)
        return sp.Add(*terms)

    def starts_factor(self, tok: Token) -> bool:
        if tok.kind in ("word", "num"):
            return True
        if tok.text == "|":             # |x| beside a factor, unless it closes |...| or splits [A | B]
            return self.bars == 0
        if tok.text in ("(", "[", "{"):
            return True
        if tok.kind == "cmd":
            return tok.text not in PRODUCT_OPS and tok.text not in (r"\sum", r"\pluseq")
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
            value = self.times(value, self.product_chain(), "otimes", self.where(tok))
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
                value = self._times(value, right, PRODUCT_OPS[tok.text], self.where(tok))
            elif tok.text == r"\sum":
                value = self._times(value, self.sum(), "*", self.where(tok))
            elif self.starts_factor(tok):
                value = self._times(value, self.factor(), "*", self.where(tok))
            else:
                break
        return self._no_pending_diagonal(value)

    def _times(self, a, b, op: str, where: Place):
        """``product``, and the one product a pending ``diag(v)`` takes: ``g^T diag(v)``, and
        ``g^T diag(v) W`` (also with g untransposed: a vector beside a matrix is g^T W)."""
        if isinstance(b, Diagonal) and op == "*" and self.ctx.kind(a) == "row":
            coef, g = row_parts(a)
            if g is not None:
                scaled = transpose(self.ctx, coef * g * b.vector, where)
                return scaled if b.then is None else product(self.ctx, scaled, b.then, "*", where)
        if isinstance(b, Diagonal) and op == "*" and self.ctx.kind(a) == "vec" and b.then is not None:
            return product(self.ctx, a * b.vector, b.then, "*", where)
        for side in (a, b):
            self._no_pending_diagonal(side)
        return self.times(a, b, op, where)

    def _no_pending_diagonal(self, value):
        if isinstance(value, Diagonal):
            raise VerifyError("diag(v) must multiply what follows it (diag(v) g, A diag(v) g) or "
                              "a transposed vector before it (g^T diag(v))", value.where)
        return value

    def signed_factor(self):
        if self.peek().text == "-":
            self.next()
            return -self.signed_factor()
        return self.factor()

    def sum(self):
        tok = self.expect(r"\sum")
        index, bounds, low = None, "", ""
        for _ in range(2):
            if self.peek().text in ("_", "^"):
                mark = self.next().text
                raw, self.i = self._group_text(self.i)
                if mark == "_":
                    index, _, low = raw.partition("=")
                    bounds += " " + low
                else:
                    bounds += " " + raw
        if index and index in self.ctx.reading.indices:
            self.fail(f"index notation: a sum over the entry index {index} (a matrix product "
                      "written entry by entry) is not read yet", tok, self.tokens[self.i - 1].end)
        step_index = index in ("t", "s", "tau") or bool(index and index[0] == "t")
        if index and index != "t" and (re.search(r"(?<![A-Za-z])t(?![A-Za-z])", low) or not
                                       step_index and re.search(r"(?<![A-Za-z])T(?![A-Za-z])", bounds)):
            self.fail(f"a sum over a range of steps with its own index {index} (Σ_{{{index}=t}}^T) "
                      "is not read yet", tok, self.tokens[self.i - 1].end)
        if not self.starts_factor(self.peek()) and self.peek().text != "-":
            self.fail("Σ without a body", tok)
        body = self.signed_factor()
        while True:
            nxt = self.peek()
            if nxt.text in PRODUCT_OPS and nxt.text != r"\otimes":
                self.next()
                body = self._times(body, self.signed_factor(), PRODUCT_OPS[nxt.text], self.where(nxt))
            elif self.starts_factor(nxt):
                body = self._times(body, self.factor(), "*", self.where(nxt))
            else:
                break
        body = self._no_pending_diagonal(body)
        if index in (None, "t", "s", "tau") or (index and index[0] == "t"):
            return SumT(body)
        if not body.free_symbols:           # Σ_n ∂a/∂b with ∂a/∂b = 1: the adjoint is missing
            self.fail(f"a sum over the batch of the number {body}: nothing in it belongs to a "
                      "sample (is the adjoint it multiplies missing?)", tok, self.tokens[self.i - 1].end)
        return SumN(body)

    def times(self, a, b, op: str, where: str):
        """``a op b``; in index notation (δ_i h_j) entries commute, and a row-index entry beside a
        column-index entry is the outer product, in either order."""
        if self.indexed and op in ("*", "odot"):
            ka, kb = self.ctx.kind(a), self.ctx.kind(b)
            if "mat" in (ka, kb) and "num" not in (ka, kb):
                raise VerifyError("index notation: a product with a matrix or with an entry of "
                                  "one is not read yet (only entries of vectors, δ_i h_j)", where)
            if {ka, kb} == {"vec", "row"}:
                col, row = (a, b) if ka == "vec" else (b, a)
                return Outer(col, _unrow(row))
            if ka == kb == "row":
                return Row(_unrow(a) * _unrow(b))
        return product(self.ctx, a, b, op, where)

    def factor(self):
        if self._at_diagonal():
            return self.diagonal_product()
        tok = self.peek()
        first = self.i
        value = self.primary()
        span = (first, self.i)
        if self.tokens[first].text == "(" and self.tokens[self.i - 1].text == ")":
            span = (first + 1, self.i - 1)
        if self.peek().text == "[" and self._slice_items() is not None:
            start = self.peek()
            items, self.i = self._slice_items()
            value = slice_value(self.ctx, value, items, self.where(start, self.tokens[self.i - 1].end))
        while self.peek().text == "^":
            hat = self.next()
            raw, j = self._group_text(self.i)
            if raw in ("T", r"\top", "top", r"\intercal", "⊤"):
                self.i = j
                if span in self.diagonal:       # an elementwise derivative: diagonal, symmetric
                    continue
                value = transpose(self.ctx, value, self.where(hat))
            else:
                if self.ctx.kind(value) in ("mat", "row") and re.search(r"[A-Za-z]", raw):
                    self.fail("a power of a matrix with a symbolic exponent (a sum of matrix "
                              "powers, (W^T)^{T-i}) is not read yet", hat, self.tokens[j - 1].end)
                exponent = self.group_expr()
                if self.ctx.kind(exponent) != "num":
                    self.fail("an exponent must be a number", hat)
                if self.ctx.kind(value) in ("mat", "row"):
                    self.fail("power of a matrix", hat)
                try:
                    value = limits.power(value, exponent)
                except LimitError as exc:
                    self.fail(exc.problem, hat)
        if self.peek().text == "'":
            self.fail("a prime belongs to a function (\\sigma'(z), \\tanh'(z))", tok)
        return value

    def _not_read_yet(self, problem: str, tok: Token):
        """Refuse a form with its sub- and superscript groups underlined (∏_{k=t+1}^{T})."""
        j = self.i + 1
        for _ in range(2):
            if j < len(self.tokens) and self.tokens[j].text in ("_", "^"):
                _, j = self._group_text(j + 1)
        self.fail(problem, tok, self.tokens[j - 1].end)

    def _at_diagonal(self) -> bool:
        tok = self.peek()
        return tok.text in ("diag", r"\diag") and "diag" not in self.ctx.symbols and \
            "diag" not in self.ctx.functions and self.peek(1).text in ("(", "{")

    def diagonal_product(self):
        """``diag(v) B``: the diagonal matrix of v times what follows it in the product, read as
        v ⊙ B (B a vector, or matrices ending in one: diag(v) W h = v ⊙ (W h)). A parse node, not
        a rewrite to ⊙: ``W^T diag(v) g`` is W^T (v ⊙ g), never (W^T v) ⊙ g."""
        tok = self.next()
        opener = self.next()
        vector = self.expr()
        self.expect(")" if opener.text == "(" else "}")
        where = self.where(tok, self.tokens[self.i - 1].end)
        if self.ctx.kind(vector) not in ("vec", "num"):
            raise VerifyError("diag(v) takes a vector", where)
        while self.peek().text == "^" and self._group_text(self.i + 1)[0] in ("T", r"\top", r"\intercal"):
            self.i = self._group_text(self.i + 1)[1]      # a diagonal matrix is its own transpose
        if not self.starts_factor(self.peek()) or self._ends_group():
            return Diagonal(vector, where)
        right = self._no_pending_diagonal(self.factor())
        while self.ctx.kind(right) == "mat" and self.starts_factor(self.peek()):
            right = product(self.ctx, right, self._no_pending_diagonal(self.factor()), "*", where)
        if self.ctx.kind(right) == "mat" and not self.starts_factor(self.peek()):
            return Diagonal(vector, where, right)
        if self.ctx.kind(right) != "vec":
            raise VerifyError(f"diag(v) times a {KIND_WORD[self.ctx.kind(right)]}: only diag(v) "
                              f"times a vector is read", where)
        return vector * right

    def _ends_group(self) -> bool:
        return self.peek().text == "|" and self.bars > 0

    def _slice_items(self):
        """``[a:b, :]`` after a value: the raw items and the index after ``]``; None when the
        bracket holds no ``:`` at its top level (then it is a stacked vector, ``W [h, x]``)."""
        depth, items, raw, j = 0, [], "", self.i + 1
        while j < len(self.tokens) and self.tokens[j].kind != "end":
            text = self.tokens[j].text
            if text in ("[", "(", "{"):
                depth += 1
            elif text in ("]", ")", "}"):
                if depth == 0:
                    break
                depth -= 1
            if text == "," and depth == 0:
                items.append(raw)
                raw = ""
            else:
                raw += text
            j += 1
        if j >= len(self.tokens) or self.tokens[j].text != "]":
            return None
        items.append(raw)
        if not any(":" in item for item in items):
            return None
        return items, j + 1

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
        if tok.text == "|":                      # |z|: the op table's abs, elementwise
            self.next()
            self.bars += 1
            value = self.expr()
            self.expect("|")
            self.bars -= 1
            if self.ctx.kind(value) not in ("vec", "num"):
                self.fail("|x| of a matrix", tok)
            return ops.FUNCTIONS["abs"](value)
        if tok.text == "[":
            self.next()
            self.bars += 1
            items = [self.expr()]
            seps = set()
            while self.peek().text in (",", ";", "|"):
                seps.add(self.next().text)
                items.append(self.expr())
            self.expect("]")
            self.bars -= 1
            if len(items) == 1:
                return items[0]
            if seps == {"|"}:                      # [U | W]: matrices side by side
                if any(self.ctx.kind(v) != "mat" for v in items):
                    self.fail("[A | B] puts matrices side by side only", tok)
                return HCat(*items)
            if "|" in seps or any(self.ctx.kind(v) != "vec" for v in items):
                self.fail("[a, b] and [a; b] stack vectors only", tok)
            return VCat(*items)
        if tok.kind == "cmd":
            name = tok.text[1:]
            if tok.text == r"\frac":
                return self.frac()
            if tok.text == r"\underline":
                self.fail("\\underline{...} here is the numerator of a fraction whose bar and "
                          "denominator were lost (a PDF extraction): write the fraction", tok)
            functions = {**ops.latex_reads(), **self.ctx.functions}   # the cell's own too
            if name in functions:
                return self.call(functions[name], tok)
            if tok.text == r"\nabla" and self.peek(1).text == "_":
                return self.gradient()
            if tok.text in ADJOINT_CMDS and not self.starts_atom(self.peek(1)) and \
                    tok.text in self.ctx.symbols:       # δ_i: the notation's own symbol δ
                return self.resolve(self.atom())
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
            if tok.text == r"\prod":
                self._not_read_yet("a product over a range of steps (∏) is not read yet", tok)
            self.fail(f"unknown command {tok.text}", tok)
        if tok.kind == "word" and tok.text == "prod" and self.peek(1).text == "(" and \
                "prod" not in self.ctx.symbols:          # d2l's prod(δ, ∂h/∂W)
            self.next()
            self.next()
            first = self.expr()
            self.expect(",")
            second = self.expr()
            self.expect(")")
            return prod(self.ctx, first, second, self.where(tok))
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
        arity = ops.arity_of(func)
        nxt = self.peek()
        if nxt.text in ("(", "{"):
            self.next()
            args = [self.expr()]
            while nxt.text == "(" and self.peek().text == "," and len(args) < arity:
                self.next()
                args.append(self.expr())
            self.expect(")" if nxt.text == "(" else "}")
        elif self.starts_atom(nxt) and arity == 1:
            args = [self.resolve(self.atom())]
        else:
            self.fail("a function without an argument", tok)
        if len(args) != arity:
            self.fail(f"{tok.text.lstrip(chr(92))} takes {arity} arguments", tok)
        if self.indexed and any(self.ctx.kind(a) == "row" for a in args):
            self.fail("index notation: a function of an entry with the column index "
                      f"{self.ctx.reading.indices[1]} is not read yet", tok)
        if any(self.ctx.kind(a) not in ("vec", "num") for a in args):
            self.fail("an elementwise function of a matrix", tok)
        if prime:
            if arity != 1:
                self.fail("a prime on a function of several arguments", tok)
            z = sp.Dummy("z")
            value = sp.diff(func(z), z).subs(z, args[0])
        else:
            value = func(*args)
        try:
            return limits.power(value, power) if power is not None else value
        except LimitError as exc:
            self.fail(exc.problem, tok)

    def starts_atom(self, tok: Token) -> bool:
        return tok.kind == "word" or (tok.kind == "cmd" and tok.text[1:] in GREEK | ACCENTS)

    # symbols ---------------------------------------------------------------------------------
    def atom(self, adjoint: bool = False) -> Atom:
        """Read ``base _{label or time} ^{label} @{time} (time) '`` into a key and a time."""
        start = self.peek()
        tok = self.next()
        entries = ""
        if tok.kind == "cmd" and tok.text[1:] in ACCENTS:
            self.expect("{")
            inner = self.atom()
            self.expect("}")
            if inner.adjoint:
                self.fail("an accent over an adjoint", tok)
            key, time, entries = f"\\{tok.text[1:]}{{{inner.key}}}", inner.time, inner.entries
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
                label, comma, last = raw.rpartition(",")
                if TIME_RE.match(raw):
                    time = self._set_time(time, raw, nxt)
                elif comma and label and TIME_RE.match(last):      # W_{f,t}: label f at step t
                    key += f"_{{{label}}}"
                    time = self._set_time(time, last, nxt)
                elif self._is_entry(key, raw):                      # W_{ij}, h_j
                    entries = raw
                elif comma and TIME_RE.match(label) and self._is_entry(key, last):   # δ_{t,i}
                    time = self._set_time(time, label, nxt)
                    entries = last
                elif comma and label and self._is_entry(f"{key}_{{{label}}}", last):  # W_{hh,ij}
                    key += f"_{{{label}}}"
                    entries = last
                else:
                    key += f"_{{{raw}}}"
            elif nxt.kind == "time":
                self.next()
                time = self._set_time(time, nxt.text[2:-1], nxt)
            elif nxt.text == "^":
                raw, j = self._group_text(self.i + 1)
                paren = re.fullmatch(r"\((.*)\)", raw)
                if TIME_RE.match(raw) and raw not in ("T",):
                    self.i = j
                    time = self._set_time(time, raw, nxt)
                elif paren and TIME_RE.match(paren.group(1)):      # h^{(t-1)}: Goodfellow et al.
                    self.i = j
                    time = self._set_time(time, paren.group(1), nxt)
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
        return Atom(key, time, adjoint, prime, start.pos, self.tokens[self.i - 1].end,
                    entries=entries)

    def _is_entry(self, key: str, raw: str) -> bool:
        """``raw`` is entry indices of ``key``: only letters the notation declares as indices,
        each at most once, and ``key_{raw}`` is not a symbol of its own (W_{i}, a gate's label)."""
        indices = self.ctx.reading.indices
        return bool(indices) and 0 < len(raw) <= 2 and all(c in indices for c in raw) and \
            len(set(raw)) == len(raw) and f"{key}_{{{raw}}}" not in self.ctx.symbols

    def oriented(self, value, entries: str, key: str, where):
        """An entry read as its whole value: row index -> the vector, column index -> its
        transpose; a matrix's (i, j) -> the matrix, (j, i) -> its transpose."""
        if not entries:
            return value
        self.indexed = True
        row, col = self.ctx.reading.indices
        kind = self.ctx.kind(value)
        if kind == "vec" and len(entries) == 1:
            return value if entries == row else transpose(self.ctx, value, where)
        if kind == "mat" and len(entries) == 2:
            return value if entries == row + col else transpose(self.ctx, value, where)
        raise VerifyError(f"{key}_{{{entries}}}: a {KIND_WORD[kind]} with {len(entries)} entry "
                          f"index(es) ({row} the row, {col} the column)", where)

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
            if len(w) > 1:
                self.fail(f"unknown symbol {w!r} in notation {self.ctx.reading.name} for cell "
                          f"{self.ctx.cell.name}", tok)
            best = (w, adjoint)                          # one unknown letter: resolve() says so
        name, adj = best
        used = len(name) + (1 if adj and not adjoint else 0)
        if used < len(w):
            self.i -= 1
            self.tokens[self.i:self.i + 1] = [Token("word", w[:used], tok.pos, tok.pos + used),
                                              Token("word", w[used:], tok.pos + used, tok.end)]
            self.i += 1
        return name, None, adj

    def resolve(self, atom: Atom):
        """The SymPy value of a symbol read in the formula (an entry: as its whole value)."""
        return self.oriented(self._resolve(atom), atom.entries, atom.key,
                             self.excerpt(atom.start, atom.end))

    def _resolve(self, atom: Atom):
        ctx = self.ctx
        where = self.excerpt(atom.start, atom.end)
        if atom.key in ctx.losses:
            raise VerifyError(f"the loss {atom.key} appears outside a derivative", where)
        entry = ctx.symbols.get(atom.key)
        if entry is None and not atom.adjoint and atom.key.startswith("d") and len(atom.key) > 1:
            rest = atom.key[1:]                  # "da" read as one name: d + a
            if rest in ctx.symbols:
                return self._resolve(Atom(rest, atom.time, True, atom.prime, atom.start, atom.end))
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
        return self.oriented(self._external(atom, kind), atom.entries, atom.key,
                             self.excerpt(atom.start, atom.end))

    def _external(self, atom: Atom, kind: str):
        ctx = self.ctx
        where = self.excerpt(atom.start, atom.end)
        entry = ctx.symbols.get(atom.key)
        value = ctx.sympy_value(entry.forward) if entry and entry.forward else None
        if not isinstance(value, sp.Symbol):
            raise VerifyError(f"unknown symbol {atom.key} in notation {ctx.reading.name} "
                              f"for cell {ctx.cell.name}", where)
        name, k = unprev(ctx, value.name)
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
                raise VerifyError(f"{key} stands for {value.name}, which has no adjoint", where) from None
        if isinstance(value, (HCat, VCat, VStack, MatTranspose)):
            return value.func(*(self._adjoint_of(a, k, where, key) for a in value.args))
        raise VerifyError(f"{key} stands for an expression and has no adjoint", where)

    # derivatives -----------------------------------------------------------------------------
    def frac(self):
        first = self.i
        tok = self.expect(r"\frac")
        if self._is_derivative():
            self.expect("{")
            if self._top_without_d():              # \frac{\frac{1}{2}(o - y)^2}{\partial w}: ∂ left out
                start = self.peek()
                value = self.expr()
                top = Atom("", None, False, False, start.pos, self.tokens[self.i - 1].end, value)
            else:
                top = self.operand()
            self.expect("}")
            self.expect("{")
            bottom = self.operand()
            self.expect("}")
            self._frac_start = first
            return self.derivative(top, bottom, tok)
        num = self.group_expr()
        den = self.group_expr()
        if self.ctx.kind(den) != "num":
            return self.times(num, den, "/", self.where(tok))
        return num / den

    def _is_derivative(self) -> bool:
        if self.peek().text != "{":
            return False
        _, j = self._group_text(self.i)
        first_top, first_bottom = self.peek(1), self.tokens[j + 1] if j + 1 < len(self.tokens) else None
        def is_d(t):
            return t is not None and (t.text in (r"\partial", r"\diff") or
                                      (t.kind == "word" and t.text.startswith("d")))
        return (is_d(first_top) or self._top_without_d(1)) and first_bottom is not None and \
            (first_bottom.text == r"\partial" or is_d(first_bottom) and is_d(first_top))

    def _top_without_d(self, k: int = 0) -> bool:
        """A derivative's top written without its ∂ before an expression (a typo a reader skips)."""
        return self.peek(k).text in (r"\frac", "(")

    def operand(self) -> Atom:
        tok = self.next()
        if tok.kind == "word" and tok.text != "d":
            self.i -= 1
            self._split_current(1)
            self.next()
        if self._starts_expression():
            start = self.peek()
            value = self.expr()
            return Atom("", None, False, False, start.pos, self.tokens[self.i - 1].end, value)
        if not self.starts_atom(self.peek()):
            self.fail("expected the quantity after ∂ / d", self.peek())
        if self.peek().kind == "word" and self.peek().text in self.ctx.losses:
            return self._loss_atom()
        return self.atom()

    def _loss_atom(self) -> Atom:
        """The loss symbol with its step, if any: ``L``, ``L@{t}``, ``l(t)``, ``E_t``."""
        tok = self.next()
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

    def gradient(self):
        """``\\nabla_{X} L``: exactly ``\\frac{\\partial L}{\\partial X}`` (L the notation's loss or
        one of its [losses])."""
        first = self.i
        tok = self.next()
        self.expect("_")
        if self.peek().text == "{":
            self.next()
            bottom = self.atom()
            self.expect("}")
        elif self.starts_atom(self.peek()):
            bottom = self.atom()
        else:
            self.fail("\\nabla_{X} needs the symbol X it differentiates by", self.peek())
        if not (self.peek().kind == "word" and self.peek().text in self.ctx.losses):
            self.fail(f"\\nabla_{{X}} must be followed by a loss of notation "
                      f"{self.ctx.reading.name} ({', '.join(sorted(self.ctx.losses))})", self.peek())
        top = self._loss_atom()
        self._frac_start = first
        return self.derivative(top, bottom, tok)

    def _starts_expression(self) -> bool:
        """After ∂ or d: an expression (``(``, ``\\frac``, a function, a product), not one symbol."""
        tok, nxt = self.peek(), self.peek(1)
        if tok.text in ("(", "{") or tok.kind == "num" or tok.text == r"\frac":
            return True
        if tok.kind == "cmd" and tok.text[1:] in {**ops.latex_reads(), **self.ctx.functions}:
            return True
        if tok.kind == "word" and nxt.text == "(" and tok.text in self.ctx.functions and \
                tok.text not in self.ctx.symbols:
            return True
        if tok.kind == "word" and tok.text not in self.ctx.losses:     # ∂ ws_{t+1}: w times s
            save = (self.i, list(self.tokens))
            try:
                self.atom()
                more = self.starts_factor(self.peek()) or self.peek().text in ("+", "-", "*")
            except VerifyError:
                more = False
            self.i, self.tokens = save
            return more
        return False

    def derivative(self, top: Atom, bottom: Atom, tok: Token):
        where = self.excerpt(tok.pos, self.tokens[self.i - 1].end)
        if top.entries:
            raise VerifyError("index notation: an entry on the top of a derivative (an entry of "
                              "a Jacobian) is not read yet", where)
        value = self.oriented(self._derivative(top, bottom, where), bottom.entries, bottom.key, where)
        if self.jacobian_at is None and value.has(Jacobian):
            self.jacobian_at = where
        if self.ctx.kind(value) in ("vec", "num"):
            self.diagonal.add((self._frac_start, self.i))
        return value

    def _derivative(self, top: Atom, bottom: Atom, where):
        ctx = self.ctx
        if bottom.key in ctx.losses:
            raise VerifyError("a derivative with respect to the loss", where)
        if top.value is not None:
            entry = ctx.symbols.get(bottom.key)
            if entry is None or entry.forward is None:
                raise VerifyError(f"unknown symbol {bottom.key} in notation {ctx.reading.name} "
                                  f"for cell {ctx.cell.name}", where)
            wrt = ctx.sympy_value(entry.forward)
            if ctx.kind(top.value) not in ("vec", "num"):
                raise VerifyError("a derivative of a matrix", where)
            return self._local(top.value, 0, wrt, bottom.time or 0, where, bottom.key)
        entry = ctx.symbols.get(bottom.key)
        if entry is None or entry.forward is None:
            raise VerifyError(f"unknown symbol {bottom.key} in notation {ctx.reading.name} "
                              f"for cell {ctx.cell.name}", where)
        wrt = ctx.sympy_value(entry.forward)
        tau = bottom.time or 0
        if top.key in ctx.losses:
            return self.loss_derivative(ctx.losses[top.key], top, wrt, tau, where)
        top_entry = ctx.symbols.get(top.key)
        if top_entry is None or top_entry.forward is None:
            raise VerifyError(f"unknown symbol {top.key} in notation {ctx.reading.name} "
                              f"for cell {ctx.cell.name}", where)
        of = ctx.sympy_value(top_entry.forward)
        if isinstance(of, sp.Symbol):
            return self._local(of.name, top.time or 0, wrt, tau, where, bottom.key)
        if ctx.kind(of) not in ("vec", "num"):
            raise VerifyError(f"a derivative of {top.key}, which is not an elementwise value", where)
        return self._local(of, top.time or 0, wrt, tau, where, bottom.key)

    def _local(self, of, a: int, wrt, b: int, where, key: str):
        """A local derivative with respect to one quantity, or to a concatenated matrix [U | W]
        acting on [h, x]: its rows are the stacked operand, [h, x]^T (seed 003's ∂sum_f/∂W_f)."""
        ctx = self.ctx
        if isinstance(wrt, sp.Symbol):
            return local_derivative(ctx, of, a, wrt.name, b, where)
        stack = wrt.args[0] if isinstance(wrt, MatTranspose) else wrt
        if isinstance(stack, (VCat, VStack)) and isinstance(of, VCat) and \
                len(stack.args) == len(of.args):
            return self._stacked(of, a, stack, b, where, key)
        if isinstance(wrt, HCat) and all(isinstance(p, sp.Symbol) for p in wrt.args):
            rows = [row_parts(local_derivative(ctx, of, a, p.name, b, where)) for p in wrt.args]
            if all(v is not None for _, v in rows) and len({c for c, _ in rows}) == 1:
                return rows[0][0] * Row(VCat(*(v for _, v in rows)))
        raise VerifyError(f"a derivative with respect to {key}, which is not one quantity", where)

    def _stacked(self, of, a: int, wrt, b: int, where, key: str):
        """∂a/∂b of a stack with respect to a stack of as many blocks, when block j of a depends
        on block j of b only: CS231n's a (N, 4H) and b (4H), ∂a/∂b = 1, elementwise; with
        respect to the stacked weights w_x, through their rows, x^T when every gate gives it."""
        ctx = self.ctx
        diagonal = []
        for j, top in enumerate(of.args):
            for k, bottom in enumerate(wrt.args):
                if not (isinstance(top, sp.Symbol) and isinstance(bottom, sp.Symbol)):
                    raise VerifyError(f"a derivative with respect to {key}, which is not one "
                                      "quantity", where)
                block = local_derivative(ctx, top.name, a, bottom.name, b, where)
                if j == k:
                    diagonal.append(block)
                elif block != 0:
                    raise VerifyError(f"a derivative of a stack with respect to the stack {key} "
                                      f"whose block {k + 1} reaches block {j + 1}", where)
        kinds = {ctx.kind(block) for block in diagonal}
        if kinds in ({"num"}, {"row"}) and len(set(diagonal)) == 1:
            return diagonal[0]                        # the same for every block: 1, or x^T
        if kinds == {"vec"}:
            return VCat(*diagonal)
        raise VerifyError(f"a derivative of a stack with respect to {key} whose blocks are not "
                          "all elementwise vectors", where)

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
            return sp.Symbol(shifted("d" + unprev(ctx, name)[0], tau + unprev(ctx, name)[1]))
        t_loss = top.time if top.time is not None else 0
        base, k = unprev(ctx, name)
        tau += k
        if kind == "tail":
            if is_param:
                return sp.Symbol(shifted("d" + name, t_loss))
            if tau >= t_loss:
                return sp.Symbol(shifted("d" + base, tau))
            if tau == t_loss - 1 and ctx.is_state(base):
                return sp.Symbol(shifted("d" + base + "_next", tau))
        if kind == "step" and is_param:
            # the gradient of step t's loss alone, through every earlier step (Σ_t of it is dW)
            return sp.Symbol(shifted("d" + name + "#loss", t_loss))
        if kind in ("step", "block") and not is_param:
            if tau == t_loss:
                return sp.Symbol(shifted("d" + base + "#k1", tau))
            if kind == "block" and tau == t_loss - 1 and ctx.is_state(base):
                return sp.Symbol(shifted("d" + base + "_next", tau))
        raise VerifyError(f"cannot read the derivative of the {kind} loss {top.key} at step "
                          f"offset {t_loss} with respect to {name} at offset {tau}", where)



def _unrow(e):
    """The vector of a row value (h^T, 2 h^T + x^T)."""
    return e.replace(lambda n: isinstance(n, Row), lambda n: n.args[0])


def looks_like_latex(text: str) -> bool:
    return "\\" in text or "{" in text or "+=" in text or "^" in text and "**" not in text or \
        any(ch in text for ch in "（）⊙⊗σΓ∂Σ")


def parse_formula(text: str, ctx: Context) -> Claim:
    """LaTeX (anything with a backslash, a brace or ^) or SymPy syntax, into a ``Claim``.

    The limits (``derive.limits``: length, nesting, names, signs, line breaks) are checked
    first, in one pass: both readers recurse."""
    text = text.strip()
    if not text:
        raise VerifyError("empty formula")
    _within_limits(text)
    with _bounded_recursion(text):
        if looks_like_latex(text):
            claim = LatexParser(text, ctx).parse()
        else:
            try:
                claim = SympySyntaxParser(text, ctx).parse()
            except VerifyError as sympy_error:         # "dc i" is LaTeX without a backslash
                try:
                    claim = LatexParser(text, ctx).parse()
                except VerifyError:
                    raise sympy_error from None
    for side in claim.sides:
        try:
            limits.check_numbers(side)             # products of numbers: 10^{300} 10^{300}
        except LimitError as exc:
            raise VerifyError(exc.problem) from None
    return claim


def _within_limits(text: str) -> None:
    try:
        limits.scan_formula(text)
    except LimitError as exc:
        raise VerifyError(exc.problem, excerpt(text, exc.pos or 0)) from None


class _bounded_recursion:
    """The scan bounds the nesting the readers recurse on; should a form it does not count
    still recurse too deeply, the reader stops with the same kind of message, not a traceback."""

    def __init__(self, text: str):
        self.text = text

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if kind is RecursionError:
            raise VerifyError(f"the formula nests too deeply to read (limits: "
                              f"{limits.FORMULA_NESTING} levels of brackets, "
                              f"{limits.SIGNS_IN_A_ROW} signs in a row)") from None
        return False


def parse_quantity(name: str, ctx: Context):
    """``--quantity``: a cell name (``c`` or its adjoint ``dc``) or a symbol of the notation
    (``\\Gamma_f`` or ``\\mathrm{d}\\Gamma_f``); either way the formula gives the adjoint."""
    d = ctx.d
    targets = {eq.target for eq in d.backward}
    adjoints = targets | set(d.carried.values()) | set(d.upstream.values())
    if name in targets:
        return sp.Symbol(name)
    if name in d.quantities and "d" + name in targets:
        return sp.Symbol("d" + name)
    _within_limits(name)
    try:
        with _bounded_recursion(name):
            claim = LatexParser(name, ctx).parse()
    except VerifyError:
        claim = None
    if claim is not None and len(claim.sides) == 1:
        value = claim.sides[0]
        if isinstance(value, sp.Symbol):
            base, _, shift = split_symbol(value.name)
            if base in adjoints:
                return value
            if base in d.quantities:
                return sp.Symbol(ctx.adjoint(*unprev(ctx, base)) if not shift else
                                 ctx.adjoint(base, shift))
        if isinstance(value, HCat) and all(isinstance(a, sp.Symbol) for a in value.args):
            names = [a.name for a in value.args]
            if all(n in targets for n in names):
                return value
            if all("d" + n in targets for n in names):
                return HCat(*(sp.Symbol("d" + n) for n in names))
    raise VerifyError(f"cell {ctx.cell.name} has no quantity {limits.short(name)} (quantities: "
                      f"{', '.join(sorted(d.quantities))}; adjoints: {', '.join(sorted(targets))})")
