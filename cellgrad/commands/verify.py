"""cellgrad verify: does a hand-written gradient formula hold for a cell? Proof or counterexample.

    cellgrad verify lstm --quantity dc --formula 'dc_next + dh*o*(1 - tanh(c)**2)'
    cellgrad verify lstm --notation coursera --formula '\\mathrm{d}\\Gamma_f = \\mathrm{d}c * c^{<t-1>}'
    cellgrad verify --examples         # every formula of the example documents, a table per document
    cellgrad verify --document notes.md --notation mine.toml   # every formula of a document

The example documents are the five BPTT write-ups the project started from (the code calls them
seeds); their formulas are transcribed in tests/fixtures/seed_formulas.toml.

Exit status: 0 holds, 1 does not hold, 2 unreadable formula or bad request (one line on stderr;
for a formula, the line as typed follows with a caret line under the place).
"""

from __future__ import annotations

import json
import re
import sys
import tomllib
from pathlib import Path

from . import Example

NAME = "verify"
HELP = "check a hand-written gradient formula against the derived one (proof or counterexample)"

SEED_FIXTURES = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "seed_formulas.toml"
EXAMPLES = (
    Example("cellgrad verify lstm --quantity dc --formula 'dh*o*(1 - tanh(c)**2)'",
            "does not hold (exit 1): a branch is missing", exit=1),
    Example("cellgrad verify lstm --notation coursera --formula "
            "'\\mathrm{d}\\Gamma_f^{<t>} = \\mathrm{d}c^{<t>} * c^{<t-1>}'", "holds, by proof"),
    Example("cellgrad verify --document ../shared/seeds/002_231094383e360fa9.txt "
            "--notation docs/notations/seed_002.toml",
            "every formula of one document, judged, in a table", slow=True),
)
EXIT = {"holds": 0, "does not hold": 1, "unreadable": 2}


def add_arguments(parser):
    parser.add_argument("cell", metavar="CELL_OR_SPEC", nargs="?",
                        help="built-in cell name or path to a spec file")
    parser.add_argument("--quantity", metavar="NAME",
                        help="the quantity the formula gives (dc, dW_f, or a symbol of the notation); "
                             "not needed when the formula is written 'LHS = RHS'")
    parser.add_argument("--formula", metavar="TEXT_OR_FILE",
                        help="LaTeX or SymPy syntax, or a file holding it")
    parser.add_argument("--notation", metavar="NAME_OR_FILE", default=None,
                        help="how the formula names things: a built-in notation or a notation file "
                             "(`cellgrad notations` lists them; default: the cell's own names)")
    parser.add_argument("--scalar", action="store_true", default=None,
                        help="every size is 1 (documents that treat u, v, w as numbers; default: "
                             "as the notation says)")
    parser.add_argument("--json", action="store_true", help="print the verdict as JSON")
    parser.add_argument("--document", metavar="FILE",
                        help="find every formula of a Markdown, LaTeX or plain-text document, judge "
                             "each gradient claim and print a table (CELL_OR_SPEC optional: the "
                             "notation's cells are tried in order)")
    parser.add_argument("--examples", "--seeds", dest="seeds", nargs="?", const=str(SEED_FIXTURES),
                        metavar="FIXTURES",
                        help="verify every formula of the example documents and print a table per "
                             "document (FIXTURES default: tests/fixtures/seed_formulas.toml; "
                             "--seeds is the old name)")


def _fail(message: str, caret: list[str] = ()) -> int:
    """One line on stderr; for a formula, the typed line and a caret line under the place."""
    print(f"cellgrad: error: {message}", file=sys.stderr)
    for line in caret:
        print(f"    {line}", file=sys.stderr)
    return 2


def run(args) -> int:
    import numpy as np

    # a formula evaluated at random draws may take log or sqrt of a negative number: the
    # verdict reports the NaN with its draw, NumPy's warning would only repeat it without context
    with np.errstate(all="ignore"):
        return _run(args)


def _run(args) -> int:
    from derive.verify import VerifyError
    try:
        if args.seeds is not None:
            return _seeds(Path(args.seeds), args.json)
        if args.document is not None:
            return _document(args)
        if not args.cell or not args.formula:
            return _fail("verify needs CELL_OR_SPEC and --formula (or --examples)")
        return _one(args)
    except VerifyError as err:
        return _fail(str(err), err.caret())


def _read_formula(text: str) -> str:
    path = Path(text)
    try:
        if "\n" not in text and len(text) < 255 and path.is_file():
            return path.read_text(encoding="utf-8")
    except OSError:
        pass
    return text


def _one(args) -> int:
    from derive.verify import verify
    verdict = verify(args.cell, _read_formula(args.formula), quantity=args.quantity,
                     notation=args.notation, scalar=args.scalar)
    if args.json:
        print(json.dumps(verdict.to_json(), indent=2, ensure_ascii=False))
        return EXIT[verdict.verdict]
    if verdict.verdict == "unreadable":
        return _fail(f"unreadable formula: {verdict.detail}", verdict.caret)
    print(render(verdict))
    return EXIT[verdict.verdict]


def render(v) -> str:
    lines = [f"verdict: {v.verdict}" + (f", by {v.how}" if v.how else "")
             + (f": {v.detail}" if v.detail else "")]
    if v.claim:
        lines.append("claim, in the cell's names: " + " = ".join(v.claim))
    for d in v.diagnosis:
        lines.append(f"diagnosis: {d.kind}: {d.text}")
    if v.counterexample:
        c = v.counterexample
        if "expected" in c:
            where = "whole sequence" if c["step"] is None else f"step {c['step']}"
            sizes = " ".join(f"{k}={n}" for k, n in c.get("sizes", {}).items())
            values = ", ".join(f"{k}={x:.6g}" for k, x in c.get("values", {}).items())
            lines.append(f"counterexample: random draw {c['seed']}, {where}, sizes {sizes}, element "
                         f"{c['index']}: the derived gradient is {c['expected']:.6g}, the formula "
                         f"gives {c['got']:.6g}" + (f" (at {values})" if values else ""))
        else:
            lines.append(f"counterexample: random draw {c['seed']}: shapes {c['expected_shape']} "
                         f"(derived) and {c['got_shape']} (formula)")
    if v.verdict == "does not hold" and v.correct:
        lines.append(f"correct formula: {v.correct}")
        lines.append(f"  in the cell's names: {v.correct_cell}")
    return "\n".join(lines)


def _document(args) -> int:
    """The verdict on every formula of a document, one Markdown table (or JSON)."""
    from derive import limits
    from derive.verify.document import document_table, verify_document
    path = Path(args.document)
    try:
        text = limits.read_text(path, limits.DOCUMENT_BYTES, "document")
    except limits.LimitError as exc:
        return _fail(f"{path}: {exc.problem}")
    except OSError as exc:
        return _fail(f"{path}: cannot read the document: {exc.strerror}")
    except UnicodeDecodeError:
        return _fail(f"{path}: the document is not UTF-8 text")
    rows = verify_document(text, notation=args.notation, cells=[args.cell] if args.cell else None)
    if args.json:
        print(json.dumps([r.to_json() for r in rows], indent=2, ensure_ascii=False))
    else:
        print(document_table(rows, f"{path.name} (notation {args.notation or 'default'})"))
    return 0


def _seeds(path: Path, as_json: bool) -> int:
    """The verdicts on every formula of the example documents, one Markdown table per document. The fixtures'
    expectations are not read: this is what the verifier finds on its own."""
    from derive.verify import verify
    if not path.is_file():
        return _fail(f"no example-document fixtures at {path}")
    try:
        entries = tomllib.loads(path.read_text(encoding="utf-8"))["formula"]
    except (tomllib.TOMLDecodeError, KeyError) as err:
        return _fail(f"{path}: not an example-document fixture file ({err})")
    root = path.resolve().parents[2]          # notation files are named from the repository root
    results = []
    for e in entries:
        notation = str(root / e["notation"]) if e["notation"].endswith(".toml") else e["notation"]
        v = verify(e["cell"], e["latex"], quantity=e.get("quantity") or None, notation=notation)
        results.append((e, v))
    if as_json:
        print(json.dumps([{"id": e["id"], "source": e["source"], "line": e["line"], **v.to_json()}
                          for e, v in results], indent=2, ensure_ascii=False))
        return 0
    print(seed_table(results))
    return 0


def seed_table(results) -> str:
    out = []
    by_doc: dict[str, list] = {}
    for e, v in results:
        by_doc.setdefault(e["source"], []).append((e, v))
    counts: dict[str, int] = {}
    for source, rows in by_doc.items():
        notations = sorted({e["notation"] for e, _ in rows})
        out += [f"### {source} (notation {', '.join(notations)})", "",
                "| id | cell | formula (compacted) | read as | verdict | diagnosis, or why unreadable |",
                "|---|---|---|---|---|---|"]
        for e, v in rows:
            counts[v.verdict] = counts.get(v.verdict, 0) + 1
            formula = _cell(compact(e["latex"]), 80)
            read = _cell(" = ".join(v.claim), 80) if v.claim else ""
            if v.verdict == "holds":
                verdict = "holds (" + ("proof" if v.how.startswith("symbolic") else "numeric") + ")"
                why = ""
            elif v.verdict == "unreadable":
                verdict, why = "unreadable", _cell(v.detail, 110)
            else:
                verdict = "does not hold"
                why = _cell(v.diagnosis_text or v.detail, 140)
            out.append(f"| {e['id']} | {e['cell']} | `{formula}` | {f'`{read}`' if read else ''} | "
                       f"{verdict} | {why} |")
        out.append("")
    total = sum(counts.values())
    out.append(f"{total} formulas: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
    return "\n".join(out)


def compact(latex: str) -> str:
    """The transcription without sizing and font noise: ``\\mathrm{d}c^{\\left\\langle t-1\\right\\rangle}``
    reads ``dc⟨t-1⟩``."""
    from derive.verify.normalize_latex import normalize_latex
    text = normalize_latex(latex)
    text = re.sub(r"@\{([^{}]*)\}", r"⟨\1⟩", text).replace("\\diff ", "d")
    return text


def _cell(text: str, width: int) -> str:
    text = " ".join(text.split()).replace("|", "\\|").replace("`", "'")
    return text if len(text) <= width else text[: width - 1] + "…"
