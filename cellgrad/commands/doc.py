"""cellgrad doc: a cell's BPTT derivation as a LaTeX, Markdown or PDF document."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from codegen.outputs import write_atomic
from derive.notation import NotationError, builtin_notations

from . import Example, error
from .check import _positive  # K >= 1 steps, as check's -T

NAME = "doc"
HELP = "write the derivation document of a cell (LaTeX, Markdown or PDF), in a chosen notation"

TEX_PACKAGES = ("texlive-latex-base texlive-latex-recommended texlive-latex-extra "
                "texlive-fonts-recommended latexmk")
NO_TEX = ("--format pdf needs a TeX engine, and neither latexmk nor pdflatex is on PATH; on "
          f"Debian/Ubuntu: sudo apt-get install --no-install-recommends {TEX_PACKAGES} (or write "
          "the LaTeX source with --format tex and compile it elsewhere)")
EXAMPLES = (
    Example("cellgrad doc lstm --notation coursera --out lstm.md", "Markdown in the Coursera notation"),
    Example("cellgrad doc my_cell.toml --format tex --out my_cell.tex", "LaTeX source of your cell"),
    Example("cellgrad doc gru --format pdf --out gru.pdf", "a PDF (needs TeX)", slow=True),
)


class TexError(RuntimeError):
    """No TeX engine, or TeX failed; the message says which and what to do."""


def add_arguments(parser):
    parser.add_argument("cell", metavar="CELL_OR_SPEC", help="built-in cell name or path to a spec file")
    parser.add_argument("--format", choices=("tex", "md", "pdf"), default="md",
                        help="document format")
    parser.add_argument("--notation", metavar="NAME_OR_FILE", default="default",
                        help=f"a built-in notation ({', '.join(builtin_notations())}; see "
                             "`cellgrad notations`) or a notation file")
    parser.add_argument("--truncate", type=_positive, metavar="K", default=None,
                        help="document K-step truncated BPTT instead of full BPTT")
    parser.add_argument("--out", metavar="FILE", default=None,
                        help="output file (default: standard output; required for pdf)")


def run(args) -> int:
    from codegen.documents import document_text

    fmt = "tex" if args.format == "pdf" else args.format
    try:
        text = document_text(args.cell, fmt, args.notation, truncate=args.truncate)
    except NotationError as err:
        return error(err)
    if args.format == "pdf":
        if not args.out:
            return error("--format pdf needs --out FILE")
        try:
            compile_pdf(text, Path(args.out))
        except TexError as err:
            return error(err, 3)
        print(args.out)
        return 0
    if args.out:
        write_atomic(Path(args.out), text)
        print(args.out)
    else:
        sys.stdout.write(text)
    return 0


def tex_problem(log: str) -> str:
    """TeX's first error message (its '!' line) and the source line number it stopped at."""
    lines = log.splitlines()
    for k, line in enumerate(lines):
        if line.startswith("!"):
            where = next((m.group(1) for m in map(re.compile(r"^l\.(\d+)").match, lines[k:k + 20]) if m),
                         None)
            return line.lstrip("! ").strip() + (f" at derivation.tex line {where}" if where else "")
    return lines[-1].strip() if lines else "no log"


def tex_engine() -> list[str] | None:
    """The command that turns a .tex file into a PDF here, or None when TeX is missing."""
    if shutil.which("latexmk") and shutil.which("pdflatex"):
        return ["latexmk", "-pdf", "-interaction=nonstopmode", "-halt-on-error", "-quiet"]
    if shutil.which("pdflatex"):
        return ["pdflatex", "-interaction=nonstopmode", "-halt-on-error"]
    return None


def compile_pdf(tex: str, out: Path) -> Path:
    """Compile LaTeX source to ``out`` in a scratch directory; raise TexError naming TeX's first
    error and the source line it stopped at."""
    engine = tex_engine()
    if engine is None:
        raise TexError(NO_TEX)
    with tempfile.TemporaryDirectory(prefix="cellgrad-doc-") as work:
        source = Path(work) / "derivation.tex"
        source.write_text(tex, encoding="utf-8")
        runs = 1 if engine[0] == "latexmk" else 2      # pdflatex: second run settles longtable
        for _ in range(runs):
            done = subprocess.run(engine + [source.name], cwd=work, capture_output=True, text=True)
            if done.returncode != 0:
                log = Path(work) / "derivation.log"
                text = log.read_text(errors="replace") if log.exists() else done.stdout
                raise TexError(f"{engine[0]} failed (exit {done.returncode}): {tex_problem(text)} "
                               "(write the source with --format tex to see the whole log)")
        write_atomic(out, (Path(work) / "derivation.pdf").read_bytes())
    return out
