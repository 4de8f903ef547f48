"""Everything ``cellgrad regenerate`` writes: repo-relative path -> file text.

Each provider module offers ``builtin_outputs() -> dict[str, str]``; adding a kind of output
(kernels, documents, ...) is adding its module name to PROVIDERS.
"""

from __future__ import annotations

import importlib

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
