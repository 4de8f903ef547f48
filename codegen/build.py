"""Build a kernel module in memory from a spec: a notebook or a training script needs no files.

    from codegen import build_module
    module = build_module("my_cell.toml", "numpy")    # or a built-in name, or backend "numba"
    outputs, state, cache = module.forward(x, params)

The module is the text ``cellgrad generate`` would write, executed as a fresh module (registered
in ``sys.modules`` under a name carrying its spec hash). Numba compiles its kernels at the first
call; without a file beside them they are not cached across processes (pass ``cache_dir`` to
keep the module there and let Numba cache them).
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

from derive import derive, load_cell, spec_hash, spec_path

from .kernels import BACKENDS, render_kernel


def build_module(cell: str | Path, backend: str = "numpy", cache_dir: str | Path | None = None
                 ) -> types.ModuleType:
    """The kernel module (forward, backward, init_params, ...) of a built-in cell or spec file."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}: expected one of {', '.join(BACKENDS)}")
    path = spec_path(cell)
    text = path.read_text(encoding="utf-8")
    loaded = load_cell(path)
    name = f"cellgrad_kernel_{loaded.name}_{backend}_{spec_hash(text)}"
    if name in sys.modules:
        return sys.modules[name]
    command = f"codegen.build_module({str(cell)!r}, {backend!r})"
    source = render_kernel(derive(loaded), backend, text, path.name, command,
                           numba_cache=cache_dir is not None)
    if cache_dir is None:
        module = types.ModuleType(name, f"{loaded.name} kernels ({backend}), built in memory")
        exec(compile(source, f"<{name}>", "exec"), module.__dict__)  # our own generated code
    else:
        file = Path(cache_dir) / f"{name}.py"
        file.parent.mkdir(parents=True, exist_ok=True)
        if not file.is_file() or file.read_text(encoding="utf-8") != source:
            partial = file.with_suffix(".py.partial")
            partial.write_text(source, encoding="utf-8")
            partial.replace(file)
        spec = importlib.util.spec_from_file_location(name, file)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    sys.modules[name] = module
    return module
