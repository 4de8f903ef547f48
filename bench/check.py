"""Correctness sanity before timing: the kernels compute what PyTorch computes at this row's size.

The same weights, inputs and loss go through a generated kernel and through torch autograd in
the row's dtype; every compared array (h at every step, the loss, the gradient of x, of each
initial state and of each parameter) gets a norm-wise relative error ||k - t|| / ||t||. The
row reports the largest one and which array it was, so a fast but wrong kernel cannot pass
unnoticed.
"""

from __future__ import annotations

import numpy as np

from .cases import Case, CaseData
from .layout import LAYOUTS
from .methods import BACKENDS, TorchModel, Unavailable, kernel_module

TOLERANCE = {"float32": 1e-4, "float64": 1e-9}


def relative_error(value, reference) -> float:
    value, reference = np.asarray(value, np.float64), np.asarray(reference, np.float64)
    if value.shape != reference.shape:
        return float("inf")
    scale = max(float(np.linalg.norm(reference)), np.finfo(np.float64).tiny)
    return float(np.linalg.norm(value - reference)) / scale


def autograd_path(output) -> str:
    """'oneDNN' when torch ran its fused oneDNN RNN kernel (float32 LSTM), 'ATen' when it ran
    step by step with ATen ops (addmm, sigmoid, ...): read off the autograd graph's node names."""
    seen, stack, fused = set(), [output.grad_fn], False
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        fused |= node.name().startswith("Mkldnn")
        stack.extend(child for child, _ in node.next_functions)
    return "oneDNN" if fused else "ATen"


def torch_reference(case: Case, data: CaseData) -> dict[str, np.ndarray]:
    """{'h': (T, N, H), 'loss': (), 'grad x': ..., 'grad <state>': (N, H), 'grad <param>': ...}."""
    model = TorchModel(case, data)
    layout = LAYOUTS[case.cell]
    h, loss, grads = model.forward_backward()
    grads = [g.detach().numpy() for g in grads]
    n_states = len(layout.states)
    ref = {"h": h.detach().numpy(), "loss": loss.detach().numpy(), "grad x": grads[0],
           "path": autograd_path(h)}
    for name, g in zip(layout.states, grads[1:1 + n_states]):
        ref[f"grad {name}"] = g[0]
    params = layout.kernel_grads(dict(zip(model.param_names, grads[1 + n_states:])))
    ref.update({f"grad {name}": g for name, g in params.items()})
    return ref


def kernel_values(case: Case, data: CaseData, backend: str) -> dict[str, np.ndarray]:
    module = kernel_module(case.cell, backend)
    params = LAYOUTS[case.cell].kernel_params(data.torch_weights)
    outputs, _, cache = module.forward(data.x, params)
    grads = module.backward({"h": data.w}, cache)
    values = {"h": outputs["h"], "loss": np.sum(outputs["h"] * data.w, dtype=np.float64)}
    values.update({f"grad {name}": g for part in grads for name, g in part.items()})
    return values


def check(case: Case, data: CaseData, backends=BACKENDS) -> dict[str, dict]:
    """{backend: {'max_rel_err', 'worst', 'ok', 'dtype_ok'} or {'unavailable': reason}, and
    'torch_path': 'oneDNN' | 'ATen' when torch ran}."""
    if case.cell not in LAYOUTS:
        return {b: {"unavailable": "no PyTorch counterpart of this cell"} for b in backends}
    try:
        ref = torch_reference(case, data)
    except Unavailable as err:
        return {b: {"unavailable": str(err)} for b in backends}
    report: dict = {"torch_path": ref.pop("path")}
    for backend in backends:
        try:
            values = kernel_values(case, data, backend)
        except Unavailable as err:
            report[backend] = {"unavailable": str(err)}
            continue
        except Exception as err:  # reported in the table; the timing says "failed" too
            report[backend] = {"unavailable": f"failed: {type(err).__name__}: {err}"}
            continue
        missing = sorted(set(ref) - set(values))
        errors = {name: relative_error(values[name], ref[name]) for name in ref if name in values}
        worst = max(errors, key=errors.get)
        dtype_ok = all(np.asarray(values[k]).dtype == np.dtype(case.dtype) for k in values if k != "loss")
        ok = not missing and dtype_ok and errors[worst] <= TOLERANCE[case.dtype]
        report[backend] = {"max_rel_err": errors[worst], "worst": worst, "ok": ok,
                           "missing": missing, "dtype_ok": dtype_ok}
    return report
