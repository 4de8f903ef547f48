"""``cellgrad`` command line. Each subcommand is one module in ``cellgrad/commands/``.

A command module defines ``NAME``, ``HELP`` (one line), ``EXAMPLES`` (``commands.Example``s,
shown at the end of its ``--help``), ``add_arguments(parser)`` and ``run(args) -> int``;
adding a command is adding a file.

Every failure the user can cause or fix is one line on stderr, ``cellgrad: error: ...``, and
an exit code from ``EXIT_CODES``; a traceback is shown only for a bug, and only on request.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys

from . import __version__, commands
from .commands import error

EXIT_CODES = {
    0: "success (verify: the formula holds; check: every gradient agrees)",
    1: "a negative answer: the formula does not hold, a gradient disagrees, files are stale",
    2: "bad input: unknown cell or notation, a spec or notation error, an unreadable formula, "
       "bad options",
    3: "a tool or the system failed: TeX, a missing optional package, a file that cannot be "
       "written",
    4: "a bug in cellgrad (set CELLGRAD_TRACEBACK=1 to see the traceback, and please report it)",
    130: "interrupted (Ctrl-C)",
}

DESCRIPTION = ("Derive the BPTT gradients of recurrent cells with SymPy, and turn the derivation "
               "into NumPy/Numba kernels, derivation documents and verdicts on hand-written "
               "formulas. A cell is a built-in name (see `cellgrad list`) or the path of a spec "
               "file.")

TOP_EXAMPLES = (
    commands.Example("cellgrad list", "the built-in cells, one per line"),
    commands.Example("cellgrad derive lstm", "the LSTM's forward and BPTT equations"),
    commands.Example("cellgrad derive --help", "a command's options and examples"),
)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the epilog's layout and appends each option's choices and default to its help."""

    def _get_help_string(self, action):
        text = action.help or ""
        if text == argparse.SUPPRESS:
            return text
        extra = []
        if action.choices is not None and action.metavar is not None and "choices" not in text:
            extra.append("choices: " + ", ".join(map(str, action.choices)))
        if (action.option_strings and action.default is not None and action.default is not False
                and action.default != argparse.SUPPRESS and action.default != []
                and "default" not in text):
            default = action.default
            shown = " ".join(map(str, default)) if isinstance(default, (list, tuple)) else default
            extra.append(f"default: {shown}")
        return f"{text} ({'; '.join(extra)})" if extra else text


def _command_modules():
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda i: i.name):
        if not info.name.startswith("_"):
            yield importlib.import_module(f"{commands.__name__}.{info.name}")


def epilog(examples, exit_codes: bool = False) -> str:
    """The 'examples:' block (each line under its comment) and, for the top level, the exit codes."""
    lines = ["examples:"]
    for e in examples:
        lines += [f"  # {e.what}", f"  {e.line}"]
    if exit_codes:
        lines += ["", "exit codes:"] + [f"  {code:<4}{text}" for code, text in EXIT_CODES.items()]
    return "\n".join(lines)


def command_list() -> str:
    """What bare ``cellgrad`` prints: one line per command, then where to read more."""
    modules = list(_command_modules())
    width = max(len(m.NAME) for m in modules) + 2
    return "\n".join([f"cellgrad {__version__}: BPTT gradients of recurrent cells, derived by SymPy, "
                      "as kernels, documents and verdicts on formulas", "",
                      "usage: cellgrad COMMAND [options]", "", "commands:",
                      *(f"  {m.NAME.ljust(width)}{m.HELP}" for m in modules), "",
                      "`cellgrad COMMAND --help` shows a command's options and examples; "
                      "`cellgrad --help` the exit codes."])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cellgrad", description=DESCRIPTION,
                                     formatter_class=HelpFormatter,
                                     epilog=epilog(TOP_EXAMPLES, exit_codes=True))
    parser.add_argument("--version", action="version", version=f"cellgrad {__version__}",
                        help="print cellgrad's version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for module in _command_modules():
        cmd = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP,
                             formatter_class=HelpFormatter, epilog=epilog(module.EXAMPLES))
        module.add_arguments(cmd)
        cmd.set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    from derive.errors import SpecError
    from derive.notation import NotationError

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        print(command_list())
        return 0
    try:
        return args.run(args) or 0
    except (SpecError, NotationError) as err:
        return error(err)
    except BrokenPipeError:  # `cellgrad ... | head`: the reader has all it wants
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
    except ImportError as err:
        return error(f"{err} (an optional dependency is missing)", 3)
    except OSError as err:
        return error(f"{err.filename + ': ' if err.filename else ''}{err.strerror or err}", 3)
    except Exception as err:  # a bug: one line unless the user asks for the traceback
        if os.environ.get("CELLGRAD_TRACEBACK"):
            raise
        return error(f"internal error in `cellgrad {args.command}`: {type(err).__name__}: {err} "
                     "(set CELLGRAD_TRACEBACK=1 for the traceback)", 4)


if __name__ == "__main__":
    sys.exit(main())
