"""cellgrad list: the built-in cells, one per line (``--notations``: the notations too)."""

from derive import builtin_cells

from . import Example

NAME = "list"
HELP = "list the built-in cells, one per line (see also `cellgrad notations`)"
EXAMPLES = (
    Example("cellgrad list", "rnn, lstm, gru, ... one per line"),
    Example("cellgrad list --describe", "each cell with its description"),
)


def add_arguments(parser):
    parser.add_argument("--describe", action="store_true",
                        help="print each cell's one-line description after its name")


def run(args) -> int:
    if not args.describe:
        for name in builtin_cells():
            print(name)
        return 0
    from derive import load_cell
    names = builtin_cells()
    width = max(map(len, names)) + 2
    for name in names:
        print(f"{name.ljust(width)}{load_cell(name).description}".rstrip())
    return 0
