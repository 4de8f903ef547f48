"""When two numeric values of a formula count as equal, and where they differ if they do not.

Both sides are evaluated on the same random run. Arrays must have the same shape, with two
allowances that follow how the documents write gradients: a per-sample bias gradient (N, k)
meets the batch-summed one (k,) after summing over the batch, and when every size is 1 (a
document about scalar u, v, w) shapes of the same size are compared element by element.
"""

from __future__ import annotations

import numpy as np

RTOL = 1e-7
ATOL = 1e-9


def align(expected, got, scalar: bool = False):
    """Return (expected, got) in one shape, or raise ValueError saying why they cannot be."""
    a, b = np.asarray(expected, dtype=float), np.asarray(got, dtype=float)
    if a.shape == b.shape:
        return a, b
    if a.ndim == 0 or b.ndim == 0:
        return np.broadcast_arrays(a, b)
    if b.ndim == 2 and a.ndim == 1 and b.shape[1] == a.shape[0]:
        b = b.sum(axis=0)
    elif a.ndim == 2 and b.ndim == 1 and a.shape[1] == b.shape[0]:
        a = a.sum(axis=0)
    elif scalar and b.ndim == 2 and b.shape[0] > 1 and b[0].size == a.size:
        b = b.sum(axis=0)
    if a.shape != b.shape and scalar and a.size == b.size:
        b = b.reshape(a.shape)
    if a.shape != b.shape:
        raise ValueError(f"the sides have different shapes: {a.shape} and {b.shape}")
    return a, b


def agree(expected, got, scalar: bool = False) -> bool:
    try:
        a, b = align(expected, got, scalar)
    except ValueError:
        return False
    return bool(np.allclose(a, b, rtol=RTOL, atol=ATOL))


def worst_index(expected, got, scalar: bool = False) -> tuple[tuple[int, ...], float, float]:
    a, b = align(expected, got, scalar)
    idx = np.unravel_index(int(np.argmax(np.abs(a - b))), a.shape) if a.shape else ()
    return tuple(int(i) for i in idx), float(a[idx]), float(b[idx])
