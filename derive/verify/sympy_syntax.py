"""Formulas in SymPy syntax over the cell's names, read by a small parser (never ``eval``).

``dc_next + dh*o*(1 - tanh(c)**2)``, ``U_f.T @ da_f``, ``outer(da_f, x)``, ``sum_t(...)``: names,
numbers, ``+ - * / ** @ .T``, and calls of the cell's functions and of the formula nodes.
Notation tables use the same syntax for their expression-valued entries (``HCat(U_f, W_f)``).
"""

from __future__ import annotations

import re

import sympy as sp

from derive import limits, ops
from derive.limits import LimitError
from derive.ops import FUNCTIONS
from derive.linear import MatVec, MatVecT, Outer

from .context import Claim, Context, Token, product, transpose
from .errors import VerifyError, excerpt
from .nodes import HCat, MatTranspose, Row, SumN, SumT, VCat, VStack
from .sequence import split_symbol

PLAIN_TOKEN_RE = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*(?:#k1)?(?:@[+-]\d+)?)"
                            r"|(?P<num>\d+(?:\.\d+)?)|(?P<op>\*\*|[-+*/^@(),=]|\.T)|(?P<space>\s+)")
PLAIN_FUNCTIONS = {"HCat": HCat, "VCat": VCat, "VStack": VStack, "MatTranspose": MatTranspose, "Row": Row, "SumT": SumT,
                   "SumN": SumN, "MatVec": MatVec, "MatVecT": MatVecT, "Outer": Outer,
                   "outer": Outer, "sum_t": SumT, "sum_n": SumN, "cat": VCat, "hcat": HCat,
                   "vstack": VStack}


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
        terms = [self.term()]                  # one Add: pairwise sums are quadratic in SymPy
        while self.peek().text in ("+", "-"):
            sign = -1 if self.next().text == "-" else 1
            terms.append(sign * self.term())
        return sp.Add(*terms)

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
            try:
                return limits.power(base, exponent)
            except LimitError as exc:
                self.fail(exc.problem)
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
        func = self.ctx.functions.get(name) or FUNCTIONS.get(name) or ops.STANDARD_LATEX.get(name)
        if func is not None:
            arity = ops.arity_of(func)
            if len(args) != arity:
                self.fail(f"{name} takes {arity} argument{'s' if arity > 1 else ''}", tok)
            return func(*args)
        if name in PLAIN_FUNCTIONS:
            return PLAIN_FUNCTIONS[name](*args)
        self.fail(f"unknown function {name!r}", tok)
