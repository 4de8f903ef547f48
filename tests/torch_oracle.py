"""PyTorch's autograd as an oracle for any cell: the spec's forward equations run on tensors by
the reference interpreter's walk (``derive.evaluate.value(..., backend="torch")``, each function
by its op-table row's PyTorch spelling), and ``torch.autograd.grad`` differentiates them. Nothing
of cellgrad's own differentiation (SymPy's adjoints, the kernel plan, the generated backward)
takes part, so the gradients it gives check all of that.

    grads = autograd_gradients(d, params, x, state0, d_outputs, d_state)

takes and gives float64 NumPy arrays keyed like a kernel module's ``Gradients`` flattened
(``codegen.gradcheck.flat_grads``): every trainable parameter, every input, every initial state
(given, or where the spec starts it), and every learnt start (0 where another start was given).
"""

from __future__ import annotations

import numpy as np

from derive.evaluate import value


def _torch():
    import torch
    return torch


def forward(d, params: dict, xs: dict, state0: dict | None):
    """(outputs {name: (T, N, size)}, final states {name: (N, size)}, initial states) as
    tensors, from tensors; a state not given starts where its spec says, and that start is in
    the graph, so its gradient is the gradient with respect to the initial state."""
    torch = _torch()
    cell = d.cell
    T, n = next(iter(xs.values())).shape[:2]
    state = {}
    for s in cell.states:
        if state0 is not None and s in state0:
            state[s] = state0[s]
        elif s in cell.initial:
            state[s] = params[cell.initial[s]].expand(n, -1)
        else:
            size = _size_of(d, s, params, xs)
            fill = torch.ones if cell.quantities[s].init == "ones" else torch.zeros
            state[s] = fill(n, size, dtype=torch.float64, requires_grad=True)
    starts = dict(state)
    outputs = {o: [] for o in cell.outputs}
    for t in range(T):
        env = {**params, **{k: v[t] for k, v in xs.items()}, **{f"{s}_prev": state[s] for s in cell.states}}
        for eq in d.forward:
            got = value(eq.rhs, env.__getitem__, backend="torch")
            size = _size_of(d, eq.lhs, params, xs)
            env[eq.lhs] = torch.as_tensor(got, dtype=torch.float64).expand(n, size)
        for o in cell.outputs:
            outputs[o].append(env[o])
        state = {s: env[s] for s in cell.states}
    return {o: torch.stack(v) for o, v in outputs.items()}, state, starts


def _size_of(d, name: str, params: dict, xs: dict) -> int:
    """A quantity's size, read off the shapes of the parameters and inputs that carry it."""
    symbol = d.quantities[name].shape[0]
    for p, tensor in [*params.items(), *((k, v[0]) for k, v in xs.items())]:
        for axis, size in zip(d.quantities[p].shape, tensor.shape):
            if axis == symbol:
                return int(size)
    raise ValueError(f"no parameter or input has the size {symbol} of {name}")


def autograd_gradients(d, params, x, state0, d_outputs, d_state=None) -> dict[str, np.ndarray]:
    """The gradient of sum(d_outputs * outputs) + sum(d_state * final states) by autograd."""
    torch = _torch()
    xs = x if isinstance(x, dict) else {d.cell.inputs[0]: x}
    tensor = lambda a: torch.tensor(np.asarray(a, dtype=np.float64), requires_grad=True)  # noqa: E731
    leaves_p = {k: tensor(v) for k, v in params.items()}
    leaves_x = {k: tensor(v) for k, v in xs.items()}
    leaves_s = None if state0 is None else {k: tensor(v) for k, v in state0.items()}
    outputs, final, starts = forward(d, leaves_p, leaves_x, leaves_s)
    loss = sum((outputs[o] * torch.as_tensor(d_outputs[o], dtype=torch.float64)).sum() for o in outputs)
    for s, w in (d_state or {}).items():
        loss = loss + (final[s] * torch.as_tensor(w, dtype=torch.float64)).sum()
    # the trainable parameters and the learnt starts (0 for a state given another start)
    learnt = set(d.cell.initial.values())
    trainable = {k: v for k, v in leaves_p.items() if k in d.cell.trainable_params or k in learnt}
    leaves = {**trainable, **leaves_x, **starts}
    grads = torch.autograd.grad(loss, list(leaves.values()), allow_unused=True)
    return {k: (np.zeros(v.shape) if g is None else g.numpy()) for (k, v), g in zip(leaves.items(), grads)}
