"""A plain NumPy interpreter of a ``Derivation``: the reference that tests and verification trust.

It runs the derived equations exactly as written, one step at a time, in the batch layout of
every kernel (vectors are (N, size) arrays, sequences (T, N, size) time-major). Nothing here is
fast or clever on purpose: each forward and backward equation is evaluated node by node
(``value``), every function by its row of the op table, so a test comparing this against an
independent oracle (finite differences, an unrolled ``sympy.diff``) tests the derivation itself.
Verify evaluates hand-written formulas with the same ``value``.

    >>> d = derive(load_cell("lstm"))
    >>> params = random_params(d, {"D": 3, "H": 4}, rng)
    >>> x, state0 = random_inputs(d, {"D": 3, "H": 4}, T=5, N=2, rng=rng)
    >>> trace = run_forward(d, params, x, state0)
    >>> grads = run_backward(d, trace, {"h": np.ones_like(trace.outputs["h"])})

Gradients are keyed by name: every trainable parameter (not the ``[buffers]``), every input
(a (T, N, size) array) and every state (the gradient with respect to its initial value,
(N, size)); a state declared ``init = "param"`` that started from its parameter ``h0`` also gives
that parameter's gradient, the initial-state gradient summed over the batch. Cell names are
unique across those roles, so one flat dict holds them all.

Truncated BPTT (``derivation.truncate = k``): each loss E<t> is propagated back through steps
t, ..., t-k+1 only. The gradient arriving at the final states (``d_state``) is the adjoint
carried into the last step from step T, i.e. it counts as a loss at step T and travels back
through steps T-1, ..., T-k+1 (with k = 1 it is dropped, as every carried adjoint is).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np
import sympy as sp

from . import ops
from .derivation import Derivation
from .linear import LinearNode, ShapeMismatch

Arrays = dict[str, np.ndarray]


# -- values of expressions --------------------------------------------------------------------
def _same_shape(values):
    """Elementwise operands: equal shapes, or a bias vector (k,) beside a batch of rows (N, k)."""
    shapes = {np.shape(v) for v in values if np.ndim(v) > 0}
    rows = {s for s in shapes if len(s) == 2}
    if len(rows) > 1 or any(len(s) == 1 and rows and s[0] != next(iter(rows))[1] for s in shapes) \
            or len({s for s in shapes if len(s) == 1}) > 1:
        raise ShapeMismatch("operands of shapes " + " and ".join(str(s) for s in sorted(shapes)))


def value(expr: sp.Expr, lookup: Callable[[str], np.ndarray],
          nodes: Mapping[type, Callable] | None = None, backend: str = "numpy"):
    """The value of ``expr`` on batch arrays: ``lookup(name)`` gives a symbol's array.

    Functions are evaluated by their op-table row (``derive.ops``: the same NumPy text the
    kernels print), linear nodes by themselves (``derive.linear``); ``nodes`` maps further node
    types to ``handler(node, ev)`` (verify's stacking and sums). Operands of + and * must have
    fitting shapes (``ShapeMismatch`` otherwise), so a transposed or swapped operand is an
    error, never a broadcast by luck. ``backend="torch"``: the same walk over torch tensors with
    each row's PyTorch spelling, so that autograd differentiates what the spec says
    (tests/torch_oracle.py)."""
    nodes = nodes or {}
    power = np.power if backend == "numpy" else (lambda base, exponent: base ** exponent)

    def ev(e):
        if isinstance(e, sp.Symbol):
            return lookup(e.name)
        if e.is_Number:
            return float(e)
        if isinstance(e, sp.Add):
            vals = [ev(a) for a in e.args]
            _same_shape(vals)
            return sum(vals[1:], vals[0])
        if isinstance(e, sp.Mul):
            vals = [ev(a) for a in e.args]
            _same_shape(vals)
            out = vals[0]
            for v in vals[1:]:
                out = out * v
            return out
        if isinstance(e, sp.Pow):
            exponent = float(e.exp) if e.exp.is_Number else ev(e.exp)
            return power(ev(e.base), exponent)
        handler = nodes.get(type(e))
        if handler is not None:
            return handler(e, ev)
        if isinstance(e, LinearNode):
            return e.evaluate(ev)
        op = ops.op_of(e)
        if op is not None and op.definition is not None:
            return ev(ops.expand(e))
        reference = ops.reference_of(e) if backend == "numpy" else op and op.reference(backend)
        if reference is not None:
            args = [ev(a) for a in e.args]
            return reference(*(args if backend == "numpy" else _tensors_alike(args)))
        raise ValueError(f"cannot evaluate {type(e).__name__}: not a function of the op table "
                         "(derive.ops)")
    return ev(expr)


def _tensors_alike(args: list) -> list:
    """A number beside a tensor as a tensor like it: torch's two-argument functions
    (``torch.maximum(0.0, z)`` in ``max(0, z)``) take tensors only."""
    like = next((a for a in args if hasattr(a, "dtype") and not isinstance(a, float)), None)
    if like is None:
        return args
    import torch
    return [torch.full_like(like, a) if isinstance(a, float) else a for a in args]


# -- sizes and shapes -------------------------------------------------------------------------
def _infer_sizes(d: Derivation, params: Mapping, xs: Mapping,
                 state0: Mapping | None) -> dict[str, int]:
    """Size name -> int from the arrays given; a disagreement is a clear ValueError."""
    sizes: dict[str, int] = {}

    def note(name: str, shape_names: tuple[str, ...], actual: tuple[int, ...]):
        if len(actual) != len(shape_names):
            raise ValueError(f"{name!r} should have {len(shape_names)} dimension(s) "
                             f"{shape_names}, got shape {actual}")
        for size, n in zip(shape_names, actual):
            if sizes.setdefault(size, n) != n:
                raise ValueError(f"{name!r} has {size} = {n}, but another array has "
                                 f"{size} = {sizes[size]}")

    cell = d.cell
    for p in (*cell.params, *cell.initial.values()):
        if p in params:
            note(p, cell.shape(p), np.shape(params[p]))
    for name in cell.inputs:
        if name not in xs:
            raise ValueError(f"missing input {name!r}")
        note(name, cell.shape(name), np.shape(xs[name])[2:])
    for s in cell.states:
        if state0 is not None and s in state0:
            note(s, cell.shape(s), np.shape(state0[s])[1:])
    missing = {q for name in d.quantities for q in d.quantities[name].shape} - set(sizes)
    if missing:
        raise ValueError(f"cannot tell size(s) {sorted(missing)} from the arrays: pass state0")
    return sizes


def _as_inputs(d: Derivation, x) -> Arrays:
    if isinstance(x, Mapping):
        return {k: np.asarray(v) for k, v in x.items()}
    if len(d.cell.inputs) != 1:
        raise ValueError(f"cell has inputs {d.cell.inputs}: pass x as a dict")
    return {d.cell.inputs[0]: np.asarray(x)}


# -- forward ----------------------------------------------------------------------------------
@dataclass
class Trace:
    """What the forward pass computed: ``steps[t]`` maps every name of step t (inputs, previous
    states, each forward quantity including introduced pre-activations) to its (N, size) value."""

    derivation: Derivation
    params: Arrays
    sizes: dict[str, int]
    steps: list[Arrays]
    outputs: Arrays                       # output -> (T, N, size)
    state: Arrays                         # state -> (N, size), the final values
    state0: Arrays = field(default_factory=dict)
    from_param: tuple[str, ...] = ()      # states that started from their learnable initial value

    @property
    def T(self) -> int:
        return len(self.steps)

    @property
    def N(self) -> int:
        return next(iter(self.state.values())).shape[0]

    def stacked(self, name: str) -> np.ndarray:
        """Any per-step quantity over the whole sequence, (T, N, size)."""
        return np.stack([step[name] for step in self.steps])


def _vector(value, n: int, size: int, dtype) -> np.ndarray:
    """A per-sample value as an (N, size) array (constants and parameter vectors broadcast)."""
    return np.array(np.broadcast_to(value, (n, size)), dtype=dtype)


def forward_step(d: Derivation, params: Mapping, inputs: Mapping, prev: Mapping,
                 sizes: Mapping[str, int]) -> Arrays:
    """Every value of one step: ``inputs`` {x: (N, D)}, ``prev`` {h_prev: (N, H), ...}."""
    env: dict[str, np.ndarray] = {**params, **inputs, **prev}
    n = next(iter(inputs.values())).shape[0]
    dtype = np.result_type(*params.values(), *inputs.values())
    for eq in d.forward:
        size = sizes[d.quantities[eq.lhs].shape[0]]
        env[eq.lhs] = _vector(value(eq.rhs, env.__getitem__), n, size, dtype)
    return {k: v for k, v in env.items() if k not in params}


def run_forward(d: Derivation, params: Mapping, x, state0: Mapping | None = None) -> Trace:
    """Run the forward equations over a sequence. ``x``: (T, N, D) array, or a dict by input name
    when the cell has several inputs; ``state0``: {state: (N, size)}; a state left out starts
    from its declared initial value (zeros, ones, or its parameter ``h0`` in ``params``)."""
    cell = d.cell
    xs = _as_inputs(d, x)
    from_param = tuple(s for s in cell.initial if state0 is None or s not in state0)
    needed = (*cell.params, *(cell.initial[s] for s in from_param))
    missing = [p for p in needed if p not in params]
    if missing:
        raise ValueError(f"missing parameter(s) {missing}")
    params = {p: np.asarray(params[p]) for p in needed}
    sizes = _infer_sizes(d, params, xs, state0)
    T, n = np.shape(next(iter(xs.values())))[:2]
    for name, arr in xs.items():
        if arr.shape[:2] != (T, n):
            raise ValueError(f"input {name!r} has shape {arr.shape}, expected ({T}, {n}, ...)")
    dtype = np.result_type(*params.values(), *xs.values())
    state = {}
    for s in cell.states:
        shape = (n, sizes[cell.shape(s)[0]])
        if state0 is not None and s in state0:
            value = np.asarray(state0[s])
        elif s in from_param:
            value = np.array(np.broadcast_to(params[cell.initial[s]], shape), dtype)
        else:
            value = (np.ones if cell.quantities[s].init == "ones" else np.zeros)(shape, dtype)
        if value.shape != shape:
            raise ValueError(f"initial state {s!r} has shape {value.shape}, expected {shape}")
        state[s] = value
    first = dict(state)
    steps = []
    for t in range(T):
        values = forward_step(d, params, {k: v[t] for k, v in xs.items()},
                              {f"{s}_prev": state[s] for s in cell.states}, sizes)
        steps.append(values)
        state = {s: values[s] for s in cell.states}
    outputs = {o: np.stack([step[o] for step in steps]) if steps
               else np.zeros((0, n, sizes[cell.shape(o)[0]]), dtype) for o in cell.outputs}
    return Trace(d, params, sizes, steps, outputs, state, first, from_param)


# -- backward ---------------------------------------------------------------------------------
def backward_step(d: Derivation, values: Mapping, params: Mapping, upstream: Mapping,
                  carried: Mapping, sizes: Mapping[str, int], equations=None,
                  nodes: Mapping[type, Callable] | None = None) -> Arrays:
    """Every adjoint of one step, from the step's forward ``values``, the upstream gradients
    {dh_out: (N, H)} and the carried adjoints {dh_next: (N, H)}. Parameter adjoints are this
    step's contribution, already summed over the batch. ``equations`` [(target, expr)] replaces
    the derivation's backward equations and ``nodes`` adds node types to ``value`` (verify runs
    hand-written variants)."""
    n = next(iter(values.values())).shape[0]
    dtype = np.result_type(*values.values())
    env: dict[str, np.ndarray] = {**params, **values, **upstream, **carried}
    if equations is None:
        equations = [(eq.target, eq.expr) for eq in d.backward]
    of = {eq.target: eq.of for eq in d.backward}
    for target, expr in equations:
        result = value(expr, env.__getitem__, nodes)
        if target not in of:                  # not an adjoint of the cell: kept as computed
            env[target] = result
            continue
        q = d.quantities[of[target]]
        try:
            if q.role == "param" and q.is_matrix:
                result = np.array(np.broadcast_to(result, tuple(sizes[s] for s in q.shape)), dtype=dtype)
            elif q.role == "param" and np.ndim(result) == 2:
                result = result.sum(axis=0)           # this step's contribution, over the batch
            elif q.role == "param":
                result = np.array(np.broadcast_to(result, (sizes[q.shape[0]],)), dtype=dtype)
            else:
                result = _vector(result, n, sizes[q.shape[0]], dtype)
        except ValueError:
            raise ShapeMismatch(f"{target} has shape {np.shape(result)}, expected "
                                f"{q.shape if q.role == 'param' else ('N', *q.shape)}") from None
        env[target] = result
    return {target: env[target] for target, _ in equations}


def run_backward(d: Derivation, trace: Trace, d_outputs, d_state: Mapping | None = None) -> Arrays:
    """Gradients of the loss whose upstream gradients are ``d_outputs`` ({output: (T, N, size)},
    or one array when the cell has one output; missing outputs count as zero) and ``d_state``
    ({state: (N, size)} at the final states). Honours ``d.truncate`` (see the module docstring)."""
    cell = d.cell
    if not isinstance(d_outputs, Mapping):
        if len(cell.outputs) != 1:
            raise ValueError(f"cell has outputs {cell.outputs}: pass d_outputs as a dict")
        d_outputs = {cell.outputs[0]: d_outputs}
    unknown = set(d_outputs) - set(cell.outputs) | set(d_state or {}) - set(cell.states)
    if unknown:
        raise ValueError(f"not an output or state of {cell.name}: {sorted(unknown)}")
    T, n, sizes = trace.T, trace.N, trace.sizes
    given = [(f"d_outputs[{o!r}]", g, trace.outputs[o]) for o, g in d_outputs.items()]
    given += [(f"d_state[{s!r}]", g, trace.state[s]) for s, g in (d_state or {}).items()]
    for what, g, value in given:
        if np.shape(g) != value.shape:
            raise ValueError(f"{what} has shape {np.shape(g)}, expected {value.shape}")
    dtype = np.result_type(*trace.params.values(), *trace.state.values())

    def zeros(name):
        return np.zeros((n, sizes[cell.shape(name)[0]]), dtype)

    def upstream_at(t):
        return {d.upstream[o]: (np.asarray(d_outputs[o][t]) if o in d_outputs else zeros(o))
                for o in cell.outputs}

    no_upstream = {d.upstream[o]: zeros(o) for o in cell.outputs}
    no_carried = {d.carried[s]: zeros(s) for s in cell.states}
    final = {d.carried[s]: (np.asarray(d_state[s]) if d_state and s in d_state else zeros(s))
             for s in cell.states}

    grads: Arrays = {p: np.zeros(np.shape(trace.params[p]), dtype) for p in cell.trainable_params}
    for name in cell.inputs:
        grads[name] = np.zeros((T, n, sizes[cell.shape(name)[0]]), dtype)
    for s in cell.states:
        grads[s] = zeros(s)

    def sweep(last: int, first: int, upstream_of, carried):
        """Backward over steps last, ..., first; the carried adjoints leaving ``first`` reach the
        initial states when ``first`` is step 0."""
        for t in range(last, first - 1, -1):
            adj = backward_step(d, trace.steps[t], trace.params, upstream_of(t), carried, sizes)
            for p in cell.trainable_params:
                grads[p] += adj["d" + p]
            for name in cell.inputs:
                grads[name][t] += adj["d" + name]
            carried = {d.carried[s]: adj[f"d{s}_prev"] for s in cell.states}
        if first == 0:
            for s in cell.states:
                grads[s] += carried[d.carried[s]]

    k = d.truncate
    if T == 0:
        pass
    elif k is None or k >= T + 1:
        # Full BPTT: one sweep; every loss reaches every earlier step.
        sweep(T - 1, 0, upstream_at, final)
    else:
        # Truncated: the one-step backward is linear in (upstream, carried), so propagate each
        # loss E<t> on its own through its k steps and add up.
        for t in range(T):
            sweep(t, max(t - k + 1, 0), lambda u, t=t: upstream_at(t) if u == t else no_upstream,
                  no_carried)
        if k > 1 and any(np.any(v) for v in final.values()):
            sweep(T - 1, max(T - k + 1, 0), lambda u: no_upstream, final)
    for s in trace.from_param:
        # the initial state is the parameter broadcast over the batch: its transpose is a sum
        grads[cell.initial[s]] = grads[s].sum(axis=0)
    return grads


def loss(trace: Trace, weights: Mapping, state_weights: Mapping | None = None) -> float:
    """sum over t, outputs of <weights[q][t], q<t>> (+ <state_weights[s], s<T-1>>): the scalar loss
    whose upstream gradients are ``weights``; finite-difference tests differentiate this."""
    total = sum(float(np.sum(np.asarray(weights[o]) * trace.outputs[o])) for o in weights)
    if state_weights:
        total += sum(float(np.sum(np.asarray(state_weights[s]) * trace.state[s]))
                     for s in state_weights)
    return total


# -- random data ------------------------------------------------------------------------------
def random_params(d: Derivation, sizes: Mapping[str, int], rng: np.random.Generator,
                  dtype=np.float64, scale: float = 0.5) -> Arrays:
    """Every parameter drawn from N(0, scale^2), in the spec's order (reproducible per seed)."""
    cell = d.cell
    params = {p: (scale * rng.standard_normal(tuple(sizes[s] for s in cell.shape(p)))).astype(dtype)
              for p in cell.params}
    for s, p in cell.initial.items():
        params[p] = _in_domain(cell.quantities[s].domain,
                               scale * rng.standard_normal(sizes[cell.shape(s)[0]])).astype(dtype)
    return params


def _in_domain(domain: str, values: np.ndarray) -> np.ndarray:
    """Map standard-normal draws into a state's declared domain ("positive": 0.5 + |v|)."""
    return 0.5 + np.abs(values) if domain == "positive" else values


def random_inputs(d: Derivation, sizes: Mapping[str, int], T: int, N: int,
                  rng: np.random.Generator, dtype=np.float64) -> tuple[Arrays, Arrays]:
    """(inputs {name: (T, N, size)}, initial states {state: (N, size)}), standard normal
    (initial states scaled by 0.5 and drawn inside their declared domain)."""
    xs = {name: rng.standard_normal((T, N, sizes[d.cell.shape(name)[0]])).astype(dtype)
          for name in d.cell.inputs}
    state0 = {s: _in_domain(d.cell.quantities[s].domain,
                            0.5 * rng.standard_normal((N, sizes[d.cell.shape(s)[0]]))).astype(dtype)
              for s in d.cell.states}
    return xs, state0


def random_upstream(d: Derivation, sizes: Mapping[str, int], T: int, N: int,
                    rng: np.random.Generator, dtype=np.float64) -> tuple[Arrays, Arrays]:
    """(d_outputs {output: (T, N, size)}, d_state {state: (N, size)}), standard normal."""
    d_outputs = {o: rng.standard_normal((T, N, sizes[d.cell.shape(o)[0]])).astype(dtype)
                 for o in d.cell.outputs}
    d_state = {s: rng.standard_normal((N, sizes[d.cell.shape(s)[0]])).astype(dtype)
               for s in d.cell.states}
    return d_outputs, d_state
