"""Every formula of a document (Markdown, LaTeX or plain text), found, read and judged.

``extract`` finds the math: ``$$ … $$``, ``\\[ … \\]``, ``$ … $``, ``\\( … \\)``, equation-like
environments outside dollars, and LaTeX kept in HTML comments (``<!-- … -->``, as pages that
show formulas as images do). A display block of an ``aligned``/``align`` environment is split
into its rows; a row that begins with ``=`` or an operator continues the previous one (a
chain ``A = B = C``), any other row is a formula of its own.

``verify_document`` works out what each formula claims from its left side: a left side with a
derivative or an adjoint (``\\frac{\\partial E}{\\partial W}``, ``\\mathrm{d}c``, ``\\delta h``) is a
gradient claim and is judged (``derive.verify.verify``) for the first of the notation's cells in
which it reads; a formula without ``=`` or with a plain value on the left (a definition of
the forward pass, an update rule) is judged when it reads (``h = o \\tanh(c)`` is a claim
about the forward pass: it holds when it defines any of the notation's cells, as a document
that describes several cells defines each) and listed as not a gradient claim when it does not.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field

from derive import limits

from .errors import VerifyError
from .normalize_latex import normalize_latex

ROW_ENVS = ("aligned", "align", "align*", "split", "gathered", "gather", "gather*", "eqnarray",
            "eqnarray*", "equation", "equation*", "multline", "multline*")
#: where a formula may start: the openers of MATH_KINDS, found by one search (closers are looked
#: for with str.find, so a document full of unclosed openers is read in linear time)
OPENER = re.compile(r"<!--|\$|\\\[|\\\(|\\begin\{")
ENV_BEGIN = re.compile(r"\\begin\{(equation\*?|align\*?|gather\*?|multline\*?)\}")
INLINE_REST = re.compile(r"[^$\n]+\$")
#: (kind, opener, closer, shortest body), tried in this order at a position
MATH_KINDS = (("comment", "<!--", "-->", 0), ("display", "$$", "$$", 1), ("bracket", "\\[", "\\]", 1),
              ("paren", "\\(", "\\)", 1))
HTML = re.compile(r"<[^>]*>")
CLAIM_LEFT = re.compile(r"\\partial|\\diff|\\delta|\\nabla|\\frac\s*\{\s*d|(?:^|[\s{(])d\s*[A-Za-z\\{]")


@dataclass
class Formula:
    line: int                 # where the formula (its first row) starts, 1-based
    text: str                 # as written
    block_line: int = 0       # where its math block starts
    end_line: int = 0         # where it ends (a chain spans rows)


@dataclass
class Judged:
    formula: Formula
    claim: bool                              # a gradient claim (judged) or not
    verdict: str = "not a gradient claim"
    cell: str | None = None
    detail: str = ""
    diagnosis: str = ""
    result: object = field(default=None, repr=False)

    def to_json(self) -> dict:
        data = {"line": self.formula.line, "formula": self.formula.text, "claim": self.claim,
                "verdict": self.verdict, "cell": self.cell, "detail": self.detail,
                "diagnosis": self.diagnosis}
        if self.result is not None:
            data["result"] = self.result.to_json()
        return data


def extract(text: str) -> list[Formula]:
    """The formulas of a document, in order, each with the line it starts on."""
    out: list[Formula] = []
    newlines = [k for k, char in enumerate(text) if char == "\n"]

    def line_at(offset: int) -> int:         # 1-based; a bisection, not a count from the start
        return bisect.bisect_left(newlines, offset) + 1

    for kind, body, start, block_start in _joined(text):
        if kind == "comment" and "\\" not in body and "=" not in body:
            continue
        if kind == "comment":                # keep offsets: tags become spaces, lines stay
            body = HTML.sub(lambda t: re.sub(r"[^\n]", " ", t.group()), body)
        line0 = line_at(block_start)
        for offset, row in _rows(body):
            row_text = row.strip()
            if not row_text or not re.search(r"[A-Za-z\\]", row_text):
                continue
            lead = re.match(r"(?:\s|\\begin\{[^{}]*\}(?:\{[^{}]*\})?)*", row).end()
            line = line_at(start + offset + lead)
            out.append(Formula(line, row_text, line0, line + row_text.count("\n")))
    return out


#: prose between two inline formulas that joins them into one: ``$A$ = -($B$ - $C$)``
JOIN = re.compile(r"[ \t]*(?:[=+\-*/(][ \t]*)+")
CLOSING = re.compile(r"[ \t]*\)+")


def _joined(text: str):
    """The math blocks, with inline ones joined by nothing but operators and parentheses made
    one formula (seed 003's ``$\\frac{dError}{da}$ = -($\\hat{a}$ - $a$)``, the closing
    parentheses after them too): (kind, body, body's offset, block's offset)."""
    out: list[list] = []                      # [kind, pieces of the body, start, block start, end]
    for kind, body, start, block_start, end in _math_blocks(text):
        last = out[-1] if out else None
        if kind == "inline" and last and last[0] == "inline" and \
                JOIN.fullmatch(text, last[4], block_start) and \
                ("=" in text[last[4]:block_start] or any("=" in piece for piece in last[1])):
            last[1] += [text[last[4]:block_start], body]       # joined once, below
            last[4] = end
            continue
        out.append([kind, [body], start, block_start, end])
    for kind, pieces, start, block_start, end in out:
        body = "".join(pieces)
        opened = body.count("(") - body.count(")")
        close = CLOSING.match(text, end)
        if kind == "inline" and opened > 0 and close:
            body += close.group()[:len(close.group()) - max(0, close.group().count(")") - opened)]
        yield kind, body, start, block_start


def _math_blocks(text: str):
    """(kind, body, body's offset, block's offset, its end) of each math block, left to right: at each
    place an opener stands, the first kind that closes wins (a comment, ``$$``, ``\\[``, ``\\(``,
    ``$`` within its line, then an equation environment, whose body is the whole environment).
    A closer that is not found after one opener is not found after any later one, so that kind
    is not looked for again: each kind costs one pass over the text."""
    unclosed: set = set()
    pos = 0
    while True:
        m = OPENER.search(text, pos)
        if m is None:
            return
        at = m.start()
        found = None
        for kind, opener, closer, shortest in MATH_KINDS:
            if kind in unclosed or not text.startswith(opener, at):
                continue
            end = text.find(closer, at + len(opener) + shortest)
            if end < 0:
                unclosed.add(kind)
                continue
            found = (kind, text[at + len(opener):end], at + len(opener), at, end + len(closer))
            break
        if found is None and text.startswith("$", at) and (at == 0 or text[at - 1] not in "\\$"):
            rest = INLINE_REST.match(text, at + 1)
            if rest:
                found = ("inline", text[at + 1:rest.end() - 1], at + 1, at, rest.end())
        if found is None:
            env = ENV_BEGIN.match(text, at)
            if env and ("env", env.group(1)) not in unclosed:
                closer = f"\\end{{{env.group(1)}}}"
                end = text.find(closer, env.end())
                if end < 0:
                    unclosed.add(("env", env.group(1)))
                else:
                    found = ("env", text[at:end + len(closer)], at, at, end + len(closer))
        if found is None:
            pos = at + 1
            continue
        yield found
        pos = found[4]


def _rows(body: str) -> list[tuple[int, str]]:
    """A math block split into formulas: rows of row environments, continuation rows joined."""
    depth, env_stack, start, n = 0, [], 0, 0
    pieces: list[tuple[int, int]] = []
    while n < len(body):
        if body.startswith(("\\begin{", "\\end{"), n):
            close = body.find("}", n)
            if close < 0:                      # a name never closed: nothing after it is a row
                break
            if body.startswith("\\begin{", n):
                env_stack.append(body[n + 7:close])
            elif env_stack:
                env_stack.pop()
            n = close + 1
            continue
        ch = body[n]
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        elif body.startswith("\\\\", n) and depth == 0 and all(e in ROW_ENVS for e in env_stack):
            pieces.append((start, n))
            n += 2
            start = n
            continue
        n += 1
    pieces.append((start, len(body)))
    chains: list[tuple[int, list[str]]] = []    # a formula's first offset and its rows
    for a, b in pieces:
        piece = body[a:b]
        core = re.sub(r"\\(?:begin|end)\{[^{}]*\}|&|\\(?:therefore|quad|bullet)", " ", piece).strip()
        if not core:
            continue
        if chains and (re.match(r"^(?:=|\+|-|\\cdot|\*|\\times)", core) or
                       re.search(r"(?:=|\+|-|\\cdot|\*|\\times)\s*$", chains[-1][1][-1])):
            chains[-1][1].append(piece)
        else:
            chains.append((a, [piece]))
    return [(first, " ".join(parts)) for first, parts in chains]


def is_gradient_claim(text: str, hyphens: bool = False) -> bool:
    """The left side of the first '=' speaks of a derivative or an adjoint."""
    try:
        s = normalize_latex(text, hyphen_subscripts=hyphens)
    except VerifyError:
        return False
    s = s.replace("\\pluseq", "=")        # dW += da x^T
    depth = 0
    for n, ch in enumerate(s):
        depth += (ch in "{(") - (ch in "})")
        if ch == "=" and depth == 0:
            return bool(CLAIM_LEFT.search(" " + s[:n]))
    return False


def verify_document(text: str, notation: str | None = None, cells: list[str] | None = None,
                    verify=None) -> list[Judged]:
    """Every formula of ``text`` with its verdict (see the module docstring)."""
    from derive.notation import NotationError, load_notation

    from .check import verify as check
    verify = verify or check
    try:
        table = load_notation(notation or "default")
    except NotationError as err:
        raise VerifyError(f"notation: {err}") from None
    cells = list(cells or table.cells or ["lstm"])
    formulas = extract(text)
    if len(formulas) > limits.DOCUMENT_FORMULAS:
        raise VerifyError(f"the document has {len(formulas):,} formulas, more than the limit of "
                          f"{limits.DOCUMENT_FORMULAS:,} per document: split it")
    out = []
    judged: dict[str, tuple] = {}            # a formula written twice is judged once
    for formula in formulas:
        claim = is_gradient_claim(formula.text, table.pdf_hyphens)
        if not claim and not _has_equals(formula.text):
            out.append(Judged(formula, False))
            continue
        if formula.text in judged:
            cell, v = judged[formula.text]
        else:
            cell, v = judged[formula.text] = _first_reading(formula.text, claim, cells, notation, verify)
        if not claim and v.verdict == "unreadable":
            out.append(Judged(formula, False, detail=v.detail))   # prose math: x = 2, Err = ...
            continue
        out.append(Judged(formula, claim, v.verdict, cell, v.detail, v.diagnosis_text, v))
    return out


def _first_reading(text: str, claim: bool, cells: list[str], notation, verify) -> tuple:
    """(cell, verdict): a gradient claim is judged in the first cell it reads in; a forward
    definition defines one of the document's cells, so it is judged in the one it describes."""
    first = None
    for cell in cells:
        try:
            v = verify(cell, text, notation=notation)
        except VerifyError as err:
            from .check import Verdict
            v = Verdict("unreadable", detail=str(err), caret=err.caret())
        if first is None or first[1].verdict == "unreadable" and v.verdict != "unreadable":
            first = (cell, v)
        if v.verdict == "holds" or claim and v.verdict != "unreadable":
            return cell, v
    return first


def _has_equals(text: str) -> bool:
    return "=" in text.replace("\\=", "")


def document_table(rows: list[Judged], title: str) -> str:
    """One Markdown table: line, formula as written, verdict, diagnosis or why unreadable."""
    out = [f"### {title}", "", "| line | formula as written | verdict | diagnosis, or why unreadable |",
           "|---|---|---|---|"]
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.verdict] = counts.get(r.verdict, 0) + 1
        if r.verdict == "holds":
            how = "proof" if r.result.how.startswith("symbolic") else "numeric"
            verdict, why = f"holds ({how})", ""
        elif r.verdict == "does not hold":
            verdict, why = "does not hold", r.diagnosis or r.detail
        else:
            verdict, why = r.verdict, r.detail
        out.append(f"| {r.formula.line} | `{_cell(r.formula.text, 90)}` | {verdict} | "
                   f"{_cell(why, 120)} |")
    out += ["", f"{len(rows)} formulas: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))]
    return "\n".join(out)


def _cell(text: str, width: int) -> str:
    text = " ".join(text.split()).replace("|", "\\|").replace("`", "'")
    return text if len(text) <= width else text[: width - 1] + "…"
