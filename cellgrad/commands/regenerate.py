"""cellgrad regenerate: rebuild every generated file of the built-in cells; --check finds stale ones."""

from __future__ import annotations

import sys
from pathlib import Path

from codegen.outputs import write_atomic

from . import Example

NAME = "regenerate"
HELP = "rebuild generated/ and docs/derivations/ from the built-in cells (a source checkout's files)"
EXAMPLES = (
    Example("cellgrad regenerate --check", "name stale, missing or extra files; write nothing", slow=True),
    Example("cellgrad regenerate", "rewrite the files that changed", slow=True),
)

#: folder -> file pattern whose files all come from regenerate: a match it does not produce is extra
MANAGED = {"generated": "*.py", "docs/derivations": "*"}
KEEP = {"generated/__init__.py"}


def add_arguments(parser):
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 naming stale, missing or extra files")
    parser.add_argument("--root", metavar="DIR", default=None, help="repository root (default: "
                        "the checkout this cellgrad runs from)")


def repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


def differences(root: Path, files: dict[str, str]) -> list[tuple[str, str]]:
    """(status, path) for every file that is stale, missing or extra under ``root``."""
    found = []
    for rel, text in files.items():
        path = root / rel
        if not path.exists():
            found.append(("missing", rel))
        elif path.read_text(encoding="utf-8") != text:
            found.append(("stale", rel))
    for folder, pattern in MANAGED.items():
        for path in sorted((root / folder).glob(pattern)) if (root / folder).is_dir() else ():
            rel = path.relative_to(root).as_posix()
            if rel not in files and rel not in KEEP:
                found.append(("extra", rel))
    return found


def run(args) -> int:
    from codegen.outputs import builtin_outputs

    root = Path(args.root) if args.root else repo_root()
    files = builtin_outputs()
    if args.check:
        problems = differences(root, files)
        for status, rel in problems:
            print(f"{status}: {rel}", file=sys.stderr)
        if problems:
            print(f"cellgrad regenerate --check: {len(problems)} file(s) out of date; "
                  "run `cellgrad regenerate`", file=sys.stderr)
            return 1
        print(f"{len(files)} generated files are up to date")
        return 0
    written = 0
    for rel, text in files.items():
        path = root / rel
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            write_atomic(path, text)
            written += 1
    for status, rel in differences(root, files):
        if status == "extra":
            print(f"note: {rel} is not produced by regenerate (remove it if it is obsolete)",
                  file=sys.stderr)
    print(f"wrote {written} of {len(files)} generated files")
    return 0
