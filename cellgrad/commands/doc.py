"""cellgrad doc: a cell's BPTT derivation as a LaTeX, Markdown or PDF document."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from derive.notation import NotationError

NAME = "doc"
HELP = "write the derivation document of a cell (LaTeX, Markdown or PDF), in a chosen notation"

TEX_PACKAGES = ("texlive-latex-base texlive-latex-recommended texlive-latex-extra "
                "texlive-fonts-recommended latexmk")
NO_TEX = ("cellgrad doc --format pdf needs a TeX engine: neither latexmk nor pdflatex is on PATH.\n"
          f"On Debian/Ubuntu: sudo apt-get install --no-install-recommends {TEX_PACKAGES}\n"
          "(or write the LaTeX source with --format tex and compile it elsewhere).")


class TexError(RuntimeError):
    """No TeX engine, or TeX failed; the message says which and what to do."""


def add_arguments(parser):
    parser.add_argument("cell", metavar="CELL_OR_SPEC", help="built-in cell name or path to a spec file")
    parser.add_argument("--format", choices=("tex", "md", "pdf"), default="md",
                        help="document format (default: md)")
    parser.add_argument("--notation", metavar="NAME_OR_FILE", default="default",
                        help="built-in notation (default, coursera, cs231n, shg, book) or a notation file")
    parser.add_argument("--truncate", type=int, metavar="K", default=None,
                        help="document K-step truncated BPTT instead of full BPTT")
    parser.add_argument("--out", metavar="FILE", default=None,
                        help="output file (default: standard output; required for pdf)")


def run(args) -> int:
    from codegen.documents import document_text

    fmt = "tex" if args.format == "pdf" else args.format
    try:
        text = document_text(args.cell, fmt, args.notation, truncate=args.truncate)
    except NotationError as err:
        print(f"cellgrad: error: {err}", file=sys.stderr)
        return 2
    if args.format == "pdf":
        if not args.out:
            print("cellgrad: error: --format pdf needs --out FILE", file=sys.stderr)
            return 2
        try:
            compile_pdf(text, Path(args.out))
        except TexError as err:
            print(f"cellgrad: error: {err}", file=sys.stderr)
            return 3
        return 0
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


def tex_engine() -> list[str] | None:
    """The command that turns a .tex file into a PDF here, or None when TeX is missing."""
    if shutil.which("latexmk") and shutil.which("pdflatex"):
        return ["latexmk", "-pdf", "-interaction=nonstopmode", "-halt-on-error", "-quiet"]
    if shutil.which("pdflatex"):
        return ["pdflatex", "-interaction=nonstopmode", "-halt-on-error"]
    return None


def compile_pdf(tex: str, out: Path) -> Path:
    """Compile LaTeX source to ``out`` in a scratch directory; raise TexError with the log tail."""
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
                tail = log.read_text(errors="replace")[-3000:] if log.exists() else done.stdout[-3000:]
                raise TexError(f"{engine[0]} failed (exit {done.returncode}):\n{tail}")
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(Path(work) / "derivation.pdf", out)
    return out
