"""Check a generated kernel module's gradients against central finite differences.

The oracle is independent of the kernels' backward pass: the loss
L = sum_t <w_t, outputs_t> + <v, final state> (random weights) is evaluated by ``forward`` alone
at perturbed inputs. Every entry of small arrays is perturbed; for larger arrays a random
sample of entries is, plus a dot-product test over all entries along a random direction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class GradCheck:
    name: str            # parameter, input or initial state
    shape: tuple
    max_abs_err: float   # over the checked entries
    rel_err: float       # |analytic - numeric| / max(|analytic|, |numeric|), worst entry
    dot_rel_err: float   # directional derivative test over the whole array
    ok: bool


def random_problem(module, T, N, input_size, hidden_size, seed=0, dtype=np.float64,
                   many_to_one=False):
    """Params, x, state0, upstream weights for a module's cell, all of ``dtype``. x is one array,
    or a dict by input name when the cell has several inputs; initial states are drawn inside
    their declared domain (positive: 0.5 + |z|)."""
    rng = np.random.default_rng(seed)
    if module.INPUT_SIZE == module.HIDDEN_SIZE:   # x has the hidden size
        input_size = hidden_size
    params = module.init_params(input_size, hidden_size, seed=seed, dtype=dtype)
    # scale up so that gates leave their linear regime and mistakes cannot hide
    params = {k: (v * 2.0).astype(dtype) for k, v in params.items()}
    # a size no parameter has is read from a second input: it gets the hidden size
    sizes = {module.INPUT_SIZE: input_size, **{s: params[n].shape[a] if n in params else hidden_size
                                               for s, (n, a) in module._SIZE_OF.items()}}
    xs = {name: rng.standard_normal((T, N, sizes[size])).astype(dtype)
          for name, size in module.INPUTS.items()}
    x = xs if len(xs) > 1 else xs[module.INPUT]
    state0 = {s: (0.5 * rng.standard_normal((N, sizes[size]))).astype(dtype)
              for s, size in module.STATES.items()}
    for s, domain in module.STATE_DOMAIN.items():
        if domain == "positive":
            state0[s] = (0.5 + np.abs(state0[s])).astype(dtype)
    d_outputs = {}
    for o, size in module.OUTPUTS.items():
        w = rng.standard_normal((T, N, sizes[size])).astype(dtype)
        if many_to_one:
            w[:-1] = 0
        d_outputs[o] = w
    d_state = {s: rng.standard_normal((N, sizes[size])).astype(dtype) for s, size in module.STATES.items()}
    return params, x, state0, d_outputs, d_state


def loss(module, x, params, state0, d_outputs, d_state):
    outputs, state, _ = module.forward(x, params, state0)
    total = sum(float(np.sum(outputs[o].astype(np.float64) * d_outputs[o])) for o in d_outputs)
    return total + sum(float(np.sum(state[s].astype(np.float64) * d_state[s])) for s in d_state)


def check_gradients(module, T=3, N=2, input_size=3, hidden_size=4, seed=0, many_to_one=False,
                    eps=1e-6, tol=1e-5, max_entries=40):
    """Compare every gradient of ``module.backward`` with central differences (float64)."""
    params, x, state0, d_outputs, d_state = random_problem(module, T, N, input_size, hidden_size,
                                                           seed, np.float64, many_to_one)
    _, _, cache = module.forward(x, params, state0)
    grads = module.backward(d_outputs, cache, d_state)
    rng = np.random.default_rng(seed + 1)
    inputs = x if isinstance(x, dict) else {module.INPUT: x}
    arrays = {**{p: params[p] for p in params if p not in module.BUFFERS}, **inputs,
              **{s: state0[s] for s in state0}}
    results = []
    for name, array in arrays.items():
        analytic = grads[name]
        f = lambda: loss(module, x, params, state0, d_outputs, d_state)
        flat = array.reshape(-1)
        picks = np.arange(flat.size) if flat.size <= max_entries else rng.choice(flat.size, max_entries,
                                                                                 replace=False)
        worst_abs, worst_rel = 0.0, 0.0
        for k in picks:
            old = flat[k]
            flat[k] = old + eps
            up = f()
            flat[k] = old - eps
            down = f()
            flat[k] = old
            numeric = (up - down) / (2 * eps)
            a = float(analytic.reshape(-1)[k])
            err = abs(a - numeric)
            worst_abs = max(worst_abs, err)
            worst_rel = max(worst_rel, err / max(abs(a), abs(numeric), 1e-2))
        direction = rng.standard_normal(array.shape)
        base = array.copy()
        array += eps * direction
        up = f()
        array[...] = base - eps * direction
        down = f()
        array[...] = base
        numeric_dir = (up - down) / (2 * eps)
        analytic_dir = float(np.sum(analytic * direction))
        dot_rel = abs(numeric_dir - analytic_dir) / max(abs(numeric_dir), abs(analytic_dir), 1e-2)
        results.append(GradCheck(name, array.shape, worst_abs, worst_rel, dot_rel,
                                 worst_rel < tol and dot_rel < tol and analytic.shape == array.shape))
    return results


def format_table(results) -> str:
    rows = [("gradient", "shape", "max abs err", "max rel err", "dot-test rel err", "ok")]
    rows += [(r.name, str(r.shape), f"{r.max_abs_err:.2e}", f"{r.rel_err:.2e}", f"{r.dot_rel_err:.2e}",
              "yes" if r.ok else "NO") for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
