"""Check a generated kernel module's gradients against central finite differences.

The oracle is independent of the kernels' backward pass: the loss
L = sum_t <w_t, outputs_t> + <v, final state> (random weights) is evaluated by ``forward`` alone,
in float64, at perturbed inputs. Every entry of small arrays is perturbed; for larger arrays a
random sample of entries is, plus a dot-product test over all entries along a random direction.
A float32 check compares the float32 gradients with the differences of the float64 forward.

An entry whose one-sided differences disagree (the slope from the left is not the slope from the
right) sits within the step of a kink (relu, abs, max): its derivative does not exist there, the
central difference is meaningless, and it counts as ``near a kink`` unless the kernel's value is
not even between the two one-sided slopes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TOLERANCE = {"float64": 1e-5, "float32": 2e-3}
#: one-sided slopes differing by more than this (relative) put a kink within the step
KINK = 1e-3


@dataclass(frozen=True)
class GradCheck:
    name: str            # parameter, input or initial state
    shape: tuple
    max_abs_err: float   # over the checked entries away from kinks
    rel_err: float       # |analytic - numeric| / max(|analytic|, |numeric|, 1e-2), worst entry
    dot_rel_err: float   # directional derivative test over the whole array (0 near a kink)
    ok: bool
    kinks: int = 0       # checked entries (or the direction) within the step of a kink


class GradChecks(list):
    """The ``GradCheck`` of every array, in order; shows itself as a table in a notebook."""

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self)

    def __repr__(self) -> str:
        bad = [r.name for r in self if not r.ok]
        kinks = sum(r.kinks for r in self)
        return (f"<GradChecks: {len(self)} gradients, " + (f"FAILED: {', '.join(bad)}" if bad else "all agree")
                + (f", {kinks} entries near a kink" if kinks else "") + ">")

    def _repr_markdown_(self) -> str:
        rows = ["| gradient | shape | max abs err | max rel err | dot-test rel err | ok |",
                "|---|---|---|---|---|---|"]
        rows += [f"| `{r.name}` | {r.shape} | {r.max_abs_err:.2e} | {r.rel_err:.2e} | "
                 f"{r.dot_rel_err:.2e} | {_verdict(r)} |" for r in self]
        return "\n".join(rows)


def _verdict(r: GradCheck) -> str:
    return ("yes" if r.ok else "NO") + (f" ({r.kinks} near a kink: between the one-sided slopes)"
                                        if r.kinks else "")


def module_inputs(module) -> dict[str, str]:
    """Input name -> size symbol of a kernel module (one input: ``INPUT``/``INPUT_SIZE``)."""
    return dict(getattr(module, "INPUTS", None) or {module.INPUT: module.INPUT_SIZE})


def default_sizes(module) -> dict[str, int]:
    """A different value per size symbol (3, 4, 5, ...), so that a mixed-up size cannot pass."""
    return {s: 3 + k for k, s in enumerate(module.SIZES)}


def flat_grads(grads) -> dict:
    """name -> gradient from ``backward``'s result: a dict, or ``Gradients(params, inputs, state)``."""
    if hasattr(grads, "params"):
        return {**grads.params, **grads.inputs, **grads.state}
    return dict(grads)


def random_problem(module, T, N, input_size=None, hidden_size=None, seed=0, dtype=np.float64,
                   many_to_one=False, sizes=None, domains=None):
    """(params, x, state0, d_outputs, d_state) for a module's cell, all of ``dtype``.

    ``sizes`` maps size symbols to values (default: ``default_sizes``; ``input_size`` and
    ``hidden_size`` set the input's and the first state's); ``domains`` maps a state to "real"
    or "positive": a positive state's initial value is drawn from (0.5, 1.5).
    """
    rng = np.random.default_rng(seed)
    chosen = default_sizes(module)
    if hidden_size is not None:
        chosen[module.HIDDEN_SIZE] = hidden_size
    if input_size is not None and module.INPUT_SIZE != module.HIDDEN_SIZE:
        chosen[module.INPUT_SIZE] = input_size
    unknown = sorted(set(sizes or {}) - set(module.SIZES))
    if unknown:
        raise ValueError(f"unknown size {', '.join(unknown)}: the cell's sizes are "
                         f"{', '.join(module.SIZES)}")
    chosen.update(sizes or {})
    bound = 2.0 / np.sqrt(chosen[module.HIDDEN_SIZE])  # twice PyTorch's range: gates leave
    params = {name: rng.uniform(-bound, bound, tuple(chosen[s] for s in shape)).astype(dtype)
              for name, shape in module.PARAM_SHAPES.items()}  # their linear regime
    inputs = {name: rng.standard_normal((T, N, chosen[size])).astype(dtype)
              for name, size in module_inputs(module).items()}
    x = next(iter(inputs.values())) if len(inputs) == 1 else inputs
    domains = domains or getattr(module, "STATE_DOMAIN", {})
    state0 = {}
    for s, size in module.STATES.items():
        if domains.get(s, "real") == "positive":
            state0[s] = rng.uniform(0.5, 1.5, (N, chosen[size])).astype(dtype)
        else:
            state0[s] = (0.5 * rng.standard_normal((N, chosen[size]))).astype(dtype)
    d_outputs = {}
    for o, size in module.OUTPUTS.items():
        w = rng.standard_normal((T, N, chosen[size])).astype(dtype)
        if many_to_one:
            w[:-1] = 0
        d_outputs[o] = w
    d_state = {s: rng.standard_normal((N, chosen[size])).astype(dtype) for s, size in module.STATES.items()}
    return params, x, state0, d_outputs, d_state


def loss(module, x, params, state0, d_outputs, d_state, lengths=None):
    outputs, state, _ = module.forward(x, params, state0, lengths)
    total = sum(float(np.sum(outputs[o].astype(np.float64) * d_outputs[o])) for o in d_outputs)
    return total + sum(float(np.sum(state[s].astype(np.float64) * d_state[s])) for s in d_state)


def _cast(tree, dtype):
    if isinstance(tree, dict):
        return {k: _cast(v, dtype) for k, v in tree.items()}
    return tree.astype(dtype)


def _slopes(f, base, array, step, eps):
    """Central, right and left difference quotients of f along ``step`` at ``array``'s value."""
    original = array.copy()
    array += eps * step
    up = f()
    array[...] = original - eps * step
    down = f()
    array[...] = original
    return (up - down) / (2 * eps), (up - base) / eps, (base - down) / eps


def _worse(a: float, b: float) -> float:
    """max that keeps a NaN (``max(0.0, nan)`` is 0.0)."""
    return float("nan") if a != a or b != b else max(a, b)


def _judge(a, central, right, left, tol, noise=0.0):
    """(error to count, is near a kink, is wrong) for one analytic value; ``noise``: the rounding
    error of a difference quotient, below which no disagreement counts."""
    scale = max(abs(a), abs(central), 1e-2, noise / tol)
    err = abs(a - central)
    if err / scale < tol:
        return err, False, False
    if abs(right - left) / max(abs(right), abs(left), 1e-2) > KINK:   # not differentiable here
        low, high = min(left, right), max(left, right)
        return 0.0, True, not (low - tol * scale <= a <= high + tol * scale)
    return err, False, True


def _rounding_noise(module, x, params, state0, d_outputs, d_state, lengths, eps) -> float:
    """The rounding error of a central difference quotient of the loss: machine epsilon times
    the sum of the loss's terms' magnitudes, over the step. Where the loss's terms are large (a
    division by a small time constant), it exceeds the tolerance of a gradient of size 1e-2."""
    outputs, state, _ = module.forward(x, params, state0, lengths)
    magnitude = sum(float(np.sum(np.abs(outputs[o] * d_outputs[o]))) for o in d_outputs)
    magnitude += sum(float(np.sum(np.abs(state[s] * d_state[s]))) for s in d_state)
    return np.finfo(np.float64).eps * magnitude / eps


def check_gradients(module, T=3, N=2, input_size=None, hidden_size=None, seed=0, many_to_one=False,
                    eps=1e-6, tol=None, max_entries=40, sizes=None, dtype="float64", domains=None,
                    lengths=None):
    """Compare every gradient of ``module.backward`` (run in ``dtype``) with central differences
    of the float64 forward; one ``GradCheck`` per parameter, input and initial state.
    ``lengths`` (N,): sequences of those lengths in a (T, N) batch."""
    dtype = np.dtype(dtype).name
    tol = TOLERANCE[dtype] if tol is None else tol
    params, x, state0, d_outputs, d_state = random_problem(
        module, T, N, input_size, hidden_size, seed, np.float64, many_to_one, sizes, domains)
    narrow = [_cast(v, dtype) for v in (x, params, state0, d_outputs, d_state)]
    _, _, cache = module.forward(narrow[0], narrow[1], narrow[2], lengths)
    grads = flat_grads(module.backward(narrow[3], cache, narrow[4]))
    rng = np.random.default_rng(seed + 1)
    inputs = x if isinstance(x, dict) else {module.INPUT: x}
    buffers = getattr(module, "BUFFERS", ())   # passed, not trained: no gradient
    arrays = {**{p: v for p, v in params.items() if p not in buffers}, **inputs, **state0}
    f = lambda: loss(module, x, params, state0, d_outputs, d_state, lengths)
    base = f()
    noise = _rounding_noise(module, x, params, state0, d_outputs, d_state, lengths, eps)
    results = GradChecks()
    for name, array in arrays.items():
        analytic = np.asarray(grads[name], dtype=np.float64)
        if analytic.shape != array.shape:
            results.append(GradCheck(name, array.shape, np.inf, np.inf, np.inf, False))
            continue
        flat = array.reshape(-1)
        picks = np.arange(flat.size) if flat.size <= max_entries else rng.choice(flat.size, max_entries,
                                                                                 replace=False)
        worst_abs, worst_rel, kinks, wrong = 0.0, 0.0, 0, False
        for k in picks:
            step = np.zeros_like(flat)
            step[k] = 1.0
            a = float(analytic.reshape(-1)[k])
            err, kink, bad = _judge(a, *_slopes(f, base, flat, step, eps), tol, noise)
            kinks += kink
            wrong |= bad
            worst_abs = _worse(worst_abs, err)
            worst_rel = _worse(worst_rel, err / max(abs(a), 1e-2, noise / tol) if not kink else 0.0)
        direction = rng.standard_normal(array.shape)
        central, right, left = _slopes(f, base, array, direction, eps)
        err, kink, bad = _judge(float(np.sum(analytic * direction)), central, right, left, tol, noise)
        kinks += kink
        wrong |= bad
        dot_rel = err / max(abs(central), 1e-2, noise / tol)
        results.append(GradCheck(name, array.shape, worst_abs, worst_rel, dot_rel, not wrong, kinks))
    return results


def format_table(results) -> str:
    rows = [("gradient", "shape", "max abs err", "max rel err", "dot-test rel err", "ok")]
    for r in results:
        rows.append((r.name, str(r.shape), f"{r.max_abs_err:.2e}", f"{r.rel_err:.2e}",
                     f"{r.dot_rel_err:.2e}", _verdict(r)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
