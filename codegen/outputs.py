"""Everything ``cellgrad regenerate`` writes: repo-relative path -> file text.

Each provider module offers ``builtin_outputs() -> dict[str, str]``; adding a kind of output
(kernels, documents, ...) is adding its module name to PROVIDERS.
"""

from __future__ import annotations

import importlib
import os
import tempfile
from pathlib import Path

PROVIDERS = (
    "codegen.kernel_outputs",
    "codegen.documents",
)


def builtin_outputs() -> dict[str, str]:
    files: dict[str, str] = {}
    for name in PROVIDERS:
        for path, text in importlib.import_module(name).builtin_outputs().items():
            if path in files:
                raise ValueError(f"{path} is produced by two providers")
            files[path] = text
    return dict(sorted(files.items()))


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomic(path: Path, content: str | bytes) -> None:
    """Write via a temporary file in the same folder and os.replace: never a half-written file.

    The file gets the mode an ordinary ``open(path, "w")`` would give it (0644 under the usual
    umask 022), or keeps the mode of the file it replaces; ``mkstemp`` alone would leave 0600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = path.stat().st_mode & 0o7777
    except FileNotFoundError:
        mode = 0o666 & ~_umask()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content.encode("utf-8") if isinstance(content, str) else content)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
