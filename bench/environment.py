"""What a timing process ran with: thread counts, BLAS libraries and their kernels, env vars.

``threadpoolctl`` names every loaded BLAS/OpenMP library with its thread count and, for
OpenBLAS, the kernel it picked ("Haswell", "SkylakeX", "Zen"): the numbers that explain a
timing. Without it we fall back to numpy.show_config and torch.__config__.
"""

from __future__ import annotations

import os
import platform
import sys

ENV_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
            "MKL_NUM_THREADS", "NUMBA_NUM_THREADS", "OMP_WAIT_POLICY")


def _short_path(path: str) -> str:
    parts = path.split(os.sep)
    return os.sep.join(parts[-2:])


def thread_pools() -> list[dict]:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    return [{"library": _short_path(p.get("filepath", "")), "api": p.get("internal_api"),
             "version": p.get("version"), "threads": p.get("num_threads"),
             "kernel": p.get("architecture")} for p in threadpool_info()]


def _torch_blas(config: str) -> str:
    """'BLAS_INFO=mkl' out of torch's long build-settings line."""
    for token in config.replace(",", " ").split():
        if token.startswith("BLAS_INFO="):
            return token
    return "BLAS_INFO unknown"


def describe() -> dict:
    import numpy

    info: dict = {"python": platform.python_version(), "machine": platform.machine(),
                  "cpus": os.cpu_count(), "numpy": numpy.__version__,
                  "env": {k: os.environ[k] for k in ENV_VARS if k in os.environ},
                  "thread_pools": thread_pools()}
    if not info["thread_pools"]:
        blas = numpy.show_config(mode="dicts").get("Build Dependencies", {}).get("blas", {})
        info["numpy_blas"] = (f"NumPy's BLAS {blas.get('name')} {blas.get('version')} (install "
                              "threadpoolctl for its thread count and kernel)")
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        info["torch"] = {"version": torch.__version__, "threads": torch.get_num_threads(),
                         "interop_threads": torch.get_num_interop_threads(),
                         "mkldnn": torch.backends.mkldnn.is_available(),
                         "blas": _torch_blas(torch.__config__.show())}
    if "numba" in sys.modules:
        numba = sys.modules["numba"]
        info["numba"] = {"version": numba.__version__, "threads": numba.get_num_threads()}
    return info
