"""cellgrad list: the built-in cells, one per line."""

from derive import builtin_cells

NAME = "list"
HELP = "list the built-in cells, one per line"


def add_arguments(parser):
    pass


def run(args) -> int:
    for name in builtin_cells():
        print(name)
    return 0
