"""cellgrad notations: the built-in notations, what reads or writes each, and their cells.

Two kinds exist: notations a document can be written in (``derive/notations/*.toml``, used by
``doc`` and read by ``verify``) and readings ``verify`` knows for formulas of an example
document that has no document notation of its own (``kang``).
"""

from __future__ import annotations

import tomllib

from . import Example

NAME = "notations"
HELP = "list the built-in notations: which commands use each, and for which cells"
EXAMPLES = (
    Example("cellgrad notations", "name, commands, cells and description of each"),
    Example("cellgrad notations --cell rnn", "only those written for a cell (and the general ones)"),
)


def add_arguments(parser):
    parser.add_argument("--cell", metavar="NAME",
                        help="only the notations written for this built-in cell, and those for any cell")


def notation_table() -> list[tuple[str, str, str, str]]:
    """(name, commands, cells, description) for every built-in notation and verify reading."""
    from derive.notation import NOTATIONS_DIR, builtin_notations
    from derive.verify.vocabulary import BUILTIN_READINGS

    rows = {}
    for name in builtin_notations():
        data = tomllib.loads((NOTATIONS_DIR / f"{name}.toml").read_text(encoding="utf-8"))
        info = data.get("notation", {})
        rows[name] = ["doc, verify",
                      ", ".join(info.get("cells", [])) or "any",
                      info.get("description", "")]
    for name, reading in BUILTIN_READINGS.items():
        if name not in rows:
            rows[name] = ["verify", ", ".join(reading.cells) or "any",
                          "read by verify only: formulas of an example document"]
    return [(name, *rows[name]) for name in sorted(rows)]


def run(args) -> int:
    rows = [row for row in notation_table()
            if args.cell is None or row[2] == "any" or args.cell in row[2].split(", ")]
    rows = [("notation", "used by", "cells", "description"), *rows]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[3])
    print("\nUse one with `cellgrad doc CELL --notation NAME` or `cellgrad verify ... --notation NAME`; "
          "a notation file of your own works wherever a name does.")
    return 0
