"""One module per ``cellgrad`` subcommand; see ``cellgrad/cli.py`` for what a module defines."""

from __future__ import annotations

import sys
from typing import NamedTuple


def error(message, code: int = 2) -> int:
    """Print ``cellgrad: error: message`` as one line on stderr; return the exit ``code``."""
    print(f"cellgrad: error: {' '.join(str(message).split())}", file=sys.stderr)
    return code


class Example(NamedTuple):
    """One command line shown at the end of a command's ``--help``.

    ``slow``: takes more than a few seconds (compiles Numba, runs TeX, times kernels or writes
    the repository); tests/test_cli.py runs every other example and parses the slow ones.
    ``my_cell.toml`` in an example is any spec file of your own (the test writes the README's);
    ``exit`` is the exit code the example ends with (1: verify's "does not hold").
    """

    line: str
    what: str
    slow: bool = False
    exit: int = 0
