"""cellgrad notations: the built-in notations, and the notation files of the example documents.

Every notation is a TOML file: the built-in ones are ``derive/notations/*.toml`` (named by their
name), the example documents' are ``docs/notations/*.toml`` in a source checkout (named by
path); ``doc`` writes in any of them and ``verify`` reads formulas written in any of them.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from . import Example

NAME = "notations"
HELP = "list the built-in notations and the example documents' notation files, with their cells"
EXAMPLES = (
    Example("cellgrad notations", "name, cells and description of each"),
    Example("cellgrad notations --cell rnn", "only those written for a cell (and the general ones)"),
)

EXAMPLE_NOTATIONS = Path(__file__).resolve().parents[2] / "docs" / "notations"


def add_arguments(parser):
    parser.add_argument("--cell", metavar="NAME",
                        help="only the notations written for this cell, and those for any cell")


def _row(path: Path, name: str) -> tuple[str, str, str]:
    info = tomllib.loads(path.read_text(encoding="utf-8")).get("notation", {})
    return name, ", ".join(info.get("cells", [])) or "any", info.get("description", "")


def notation_table() -> list[tuple[str, str, str]]:
    """(name or path, cells, description): the built-in notations, then the example documents'."""
    from derive.notation import NOTATIONS_DIR, builtin_notations
    rows = [_row(NOTATIONS_DIR / f"{name}.toml", name) for name in builtin_notations()]
    if EXAMPLE_NOTATIONS.is_dir():
        root = EXAMPLE_NOTATIONS.parents[1]
        rows += [_row(p, p.relative_to(root).as_posix()) for p in sorted(EXAMPLE_NOTATIONS.glob("*.toml"))]
    return rows


def run(args) -> int:
    rows = [row for row in notation_table()
            if args.cell is None or row[1] == "any" or args.cell in row[1].split(", ")]
    rows = [("notation", "cells", "description"), *rows]
    widths = [max(len(row[i]) for row in rows) for i in range(2)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[2])
    print("\nUse one with `cellgrad doc CELL --notation NAME_OR_FILE` or `cellgrad verify ... "
          "--notation NAME_OR_FILE`; a notation file of your own works the same way.")
    return 0
