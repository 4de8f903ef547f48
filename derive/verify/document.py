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

import re
from dataclasses import dataclass, field

from .errors import VerifyError
from .normalize_latex import normalize_latex

ROW_ENVS = ("aligned", "align", "align*", "split", "gathered", "gather", "gather*", "eqnarray",
            "eqnarray*", "equation", "equation*", "multline", "multline*")
MATH = re.compile(r"<!--(?P<comment>.*?)-->|\$\$(?P<display>.+?)\$\$|\\\[(?P<bracket>.+?)\\\]"
                  r"|\\\((?P<paren>.+?)\\\)|(?<![\\$])\$(?P<inline>[^$\n]+?)\$"
                  r"|(?P<env>\\begin\{(?P<name>equation\*?|align\*?|gather\*?|multline\*?)\}"
                  r".*?\\end\{(?P=name)\})", re.S)
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


#: prose between two inline formulas that joins them into one: ``$A$ = -($B$ - $C$)``
JOIN = re.compile(r"[ \t]*(?:[=+\-*/(][ \t]*)+")


def _pieces(text: str):
    """(kind, body, start, end) of each math block; inline ones on one line joined by nothing
    but operators and parentheses are one formula (the closing parentheses after them too)."""
    out = []
    for m in MATH.finditer(text):
        kind = m.lastgroup if m.lastgroup != "name" else "env"
        body = m.group(kind) if kind != "env" else m.group("env")
        start = m.start(kind) if kind != "env" else m.start()
        last = out[-1] if out else None
        gap = text[last[3]:m.start()] if last else ""
        if kind == "inline" and last and last[0] == "inline" and JOIN.fullmatch(gap) and \
                ("=" in gap or "=" in last[1]):
            body = last[1] + gap + body
            out[-1] = (kind, body, last[2], m.end())
            continue
        out.append((kind, body, start, m.end()))
    joined = []
    for kind, body, start, end in out:
        opened = body.count("(") - body.count(")")
        close = re.match(r"[ \t]*\)+", text[end:])
        if kind == "inline" and opened > 0 and close:
            body += close.group()[:len(close.group()) - max(0, close.group().count(")") - opened)]
        joined.append((kind, body, start))
    return joined


def extract(text: str) -> list[Formula]:
    """The formulas of a document, in order, each with the line it starts on."""
    out: list[Formula] = []
    for kind, body, start in _pieces(text):
        if kind == "comment" and "\\" not in body and "=" not in body:
            continue
        if kind == "comment":                # keep offsets: tags become spaces, lines stay
            body = HTML.sub(lambda t: re.sub(r"[^\n]", " ", t.group()), body)
        line0 = text.count("\n", 0, start) + 1
        for offset, row in _rows(body):
            row_text = row.strip()
            if not row_text or not re.search(r"[A-Za-z\\]", row_text):
                continue
            lead = re.match(r"(?:\s|\\begin\{[^{}]*\}(?:\{[^{}]*\})?)*", row).end()
            line = text.count("\n", 0, start + offset + lead) + 1
            out.append(Formula(line, row_text, line0, line + row_text.count("\n")))
    return out


def _rows(body: str) -> list[tuple[int, str]]:
    """A math block split into formulas: rows of row environments, continuation rows joined."""
    rows: list[tuple[int, str]] = []
    depth, env_stack, start, n = 0, [], 0, 0
    pieces: list[tuple[int, int]] = []
    while n < len(body):
        if body.startswith("\\begin{", n):
            name = body[n + 7:body.find("}", n)]
            env_stack.append(name)
            n = body.find("}", n) + 1
            continue
        if body.startswith("\\end{", n):
            if env_stack:
                env_stack.pop()
            n = body.find("}", n) + 1
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
    for a, b in pieces:
        piece = body[a:b]
        core = re.sub(r"\\(?:begin|end)\{[^{}]*\}|&|\\(?:therefore|quad|bullet)", " ", piece).strip()
        if not core:
            continue
        if rows and (re.match(r"^(?:=|\+|-|\\cdot|\*|\\times)", core) or
                     re.search(r"(?:=|\+|-|\\cdot|\*|\\times)\s*$", rows[-1][1])):
            first, text = rows[-1]
            rows[-1] = (first, text + " " + piece)
        else:
            rows.append((a, piece))
    return rows


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
    out = []
    for formula in extract(text):
        claim = is_gradient_claim(formula.text, table.pdf_hyphens)
        if not claim and not _has_equals(formula.text):
            out.append(Judged(formula, False))
            continue
        first = None
        for cell in cells:
            try:
                v = verify(cell, formula.text, notation=notation)
            except VerifyError as err:
                from .check import Verdict
                v = Verdict("unreadable", detail=str(err), caret=err.caret())
            if first is None or first[1].verdict == "unreadable" and v.verdict != "unreadable":
                first = (cell, v)
            # a gradient claim is judged in the first cell it reads in; a forward definition
            # defines one of the document's cells, so it is judged in the one it describes
            if v.verdict == "holds" or claim and v.verdict != "unreadable":
                first = (cell, v)
                break
        cell, v = first
        if not claim and v.verdict == "unreadable":
            out.append(Judged(formula, False, detail=v.detail))   # prose math: x = 2, Err = ...
            continue
        out.append(Judged(formula, claim, v.verdict, cell, v.detail, v.diagnosis_text, v))
    return out


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
