"""Kernels and documents printed from a derivation; ``build_module`` builds a kernel in memory."""


def __getattr__(name):
    if name == "build_module":   # imported on use: codegen.torch_weights needs no SymPy
        from .build import build_module
        return build_module
    raise AttributeError(f"module 'codegen' has no attribute {name!r}")
