"""GPU benchmark: ``python -m bench.gpu``. Forward+backward of the generated Triton kernels against
cuDNN (torch.nn.RNN/LSTM/GRU) and against the same cell written as a Python loop of torch ops,
eager and under ``torch.compile``; one table.

Every method computes the same thing: outputs h<1..T> from a zero initial state, and for the
loss sum_t <w_t, h_t> (w random) the gradients of x and of every parameter. Before a method is
timed in a row, its outputs and gradients are compared with the float64 CPU result of the
generated NumPy kernel at the same weights; a method that disagrees is reported, not timed.

On a machine without CUDA it says so in one line and exits 0.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import statistics
import sys
import time

import numpy as np
import sympy as sp
from sympy.printing.pycode import PythonCodePrinter

from codegen.gradcheck import flat_grads
from codegen.torch_weights import TORCH_MODULE, grads_to_torch, params_from_torch
from derive import derive, load_cell

SIZES = ((100, 64, 256, 256), (512, 64, 1024, 1024), (50, 256, 512, 512))   # (T, N, D, H)
DTYPES = ("float32", "bfloat16")
METHODS = ("triton", "cudnn", "loop", "compiled")
# largest relative error (Frobenius norm, per array) a method may have against float64
TOLERANCE = {"float32": 1e-3, "float16": 2e-2, "bfloat16": 5e-2}


# -- the same cell as a Python loop of torch ops, from its derivation -------------------------

class _TorchStepPrinter(PythonCodePrinter):
    """Forward equations as torch calls: a function prints as its name, looked up in ``_OPS``."""

    def _print_Function(self, expr):
        return f"{type(expr).__name__}({', '.join(self._print(a) for a in expr.args)})"

    _print_MatVec = _print_sigmoid = _print_tanh = _print_exp = _print_log = _print_Function
    _print_relu = _print_softplus = _print_Function


def _ops(torch):
    return {"MatVec": lambda W, v: v @ W.T, "sigmoid": torch.sigmoid, "tanh": torch.tanh,
            "exp": torch.exp, "log": torch.log, "relu": torch.relu,
            "softplus": torch.nn.functional.softplus}


def torch_loop(cell: str, torch):
    """``run(x, params) -> h`` (T, N, H): the cell's forward equations, one step per iteration,
    each equation a lambdified torch expression (so autograd and torch.compile see torch ops)."""
    d = derive(load_cell(cell))
    ops = _ops(torch)
    equations = []
    for eq in d.forward:
        args = sorted(s.name for s in eq.rhs.free_symbols)
        fn = sp.lambdify([sp.Symbol(a) for a in args], eq.rhs, modules=[ops, "math"],
                         printer=_TorchStepPrinter)
        equations.append((eq.lhs, tuple(args), fn))
    states, x_name = tuple(d.cell.states), d.cell.inputs[0]

    def step(x_t, prev: tuple, params: dict) -> tuple:
        env = {**params, x_name: x_t, **{f"{s}_prev": v for s, v in zip(states, prev)}}
        for name, args, fn in equations:
            env[name] = fn(*(env[a] for a in args))
        return tuple(env[s] for s in states)

    def run(x, params, step_fn=step):
        prev = tuple(torch.zeros(x.shape[1], params[_state_rows(d, s)].shape[0], dtype=x.dtype,
                                 device=x.device) for s in states)
        hs = []
        for t in range(x.shape[0]):
            prev = step_fn(x[t], prev, params)
            hs.append(prev[states.index("h")])
        return torch.stack(hs)

    return run, step


def _state_rows(d, state: str) -> str:
    """A parameter whose first axis is the state's size (for allocating zeros)."""
    size = d.quantities[state].shape[0]
    return next(p for p in d.cell.params if d.quantities[p].shape[0] == size)


# -- one row ----------------------------------------------------------------------------------

def _rel(got, want) -> float:
    got = np.asarray(got, dtype=np.float64)
    return float(np.linalg.norm(got - want) / max(np.linalg.norm(want), 1e-30))


def reference(cell, params64, x64, w64):
    """Outputs and gradients in float64 on the CPU: the generated NumPy kernel."""
    module = importlib.import_module(f"generated.{cell}_numpy")
    outputs, _, cache = module.forward(x64, params64)
    grads = flat_grads(module.backward({"h": w64}, cache))
    return outputs["h"], grads


def prepare(cell, T, N, D, H, dtype_name, device, torch, methods):
    """For each method a no-argument call doing forward+backward, returning (h, {name: grad})
    keyed by the kernel's parameter names and "x" (cuDNN's mapped from torch's names)."""
    dtype = getattr(torch, dtype_name)
    torch.manual_seed(0)
    net64 = getattr(torch.nn, TORCH_MODULE[cell])(D, H, dtype=torch.float64)
    params64 = params_from_torch(cell, net64)
    rng = np.random.default_rng(0)
    x64 = rng.standard_normal((T, N, D))
    w64 = rng.standard_normal((T, N, H))
    x = torch.from_numpy(x64).to(device=device, dtype=dtype)
    w = torch.from_numpy(w64).to(device=device, dtype=dtype)
    params = {k: torch.from_numpy(v).to(device=device, dtype=dtype) for k, v in params64.items()}
    calls = {}
    if "triton" in methods:
        module = importlib.import_module(f"generated.{cell}_triton")

        def triton_call():
            outputs, _, cache = module.forward(x, params)
            grads = flat_grads(module.backward({"h": w}, cache))
            return outputs["h"], {k: grads[k] for k in (*params, "x")}
        calls["triton"] = triton_call
    if "cudnn" in methods:
        net = getattr(torch.nn, TORCH_MODULE[cell])(D, H).to(device=device, dtype=dtype)
        with torch.no_grad():
            for (_, p), (_, p64) in zip(net.named_parameters(), net64.named_parameters()):
                p.copy_(p64)

        def cudnn_call():
            xr = x.detach().requires_grad_(True)
            net.zero_grad(set_to_none=True)
            h, _ = net(xr)
            (h * w).sum().backward()
            grads = {name: p.grad for name, p in net.named_parameters()}
            return h, {"x": xr.grad, **grads}
        calls["cudnn"] = cudnn_call
    run, step = torch_loop(cell, torch)
    steps = {"loop": step}
    if "compiled" in methods:
        steps["compiled"] = torch.compile(step)
    for name in ("loop", "compiled"):
        if name not in methods:
            continue

        def loop_call(step_fn=steps[name]):
            leaves = {k: v.detach().requires_grad_(True) for k, v in params.items()}
            xr = x.detach().requires_grad_(True)
            h = run(xr, leaves, step_fn)
            (h * w).sum().backward()
            return h, {"x": xr.grad, **{k: v.grad for k, v in leaves.items()}}
        calls[name] = loop_call
    return calls, (params64, x64, w64)


def check(cell, method, result, want_h, want_grads) -> float:
    """Largest relative error of a method's h and gradients against the float64 reference."""
    h, grads = result
    if method == "cudnn":   # torch's parameter names
        want = {"x": want_grads["x"], **grads_to_torch(cell, want_grads)}
    else:                   # every kernel parameter and x
        want = {k: want_grads[k] for k in grads}
    errors = [_rel(h.detach().float().cpu().numpy(), want_h)]
    for name, value in want.items():   # (nn.LSTM's two biases each receive the summed bias gradient)
        errors.append(_rel(grads[name].detach().float().cpu().numpy(), value))
    return max(errors)


def time_call(call, torch, device, repeats: int, warmup: int) -> float:
    """Median milliseconds of forward+backward (device synchronised around each run)."""
    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeats):
        if device != "cpu":
            torch.cuda.synchronize()
        start = time.perf_counter()
        call()
        if device != "cpu":
            torch.cuda.synchronize()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def run_rows(cells, sizes, dtypes, methods, device, repeats=5, warmup=2, out=sys.stdout):
    import torch
    torch.backends.cuda.matmul.allow_tf32 = False   # float32 means float32 for every method
    torch.backends.cudnn.allow_tf32 = False
    rows = []
    for cell in cells:
        for T, N, D, H in sizes:
            for dtype in dtypes:
                calls, (params64, x64, w64) = prepare(cell, T, N, D, H, dtype, device, torch, methods)
                want_h, want_grads = reference(cell, params64, x64, w64)
                row = {"cell": cell, "size": (T, N, D, H), "dtype": dtype, "ms": {}, "err": {}}
                for method, call in calls.items():
                    try:
                        row["err"][method] = check(cell, method, call(), want_h, want_grads)
                    except Exception as err:  # a method that cannot run here: reported in its cell
                        row["err"][method] = f"{type(err).__name__}: {str(err).splitlines()[0][:60]}"
                        continue
                    if row["err"][method] <= TOLERANCE[dtype]:
                        row["ms"][method] = time_call(call, torch, device, repeats, warmup)
                rows.append(row)
                print(format_row(row, methods), file=out, flush=True)
    return rows


def header(methods) -> str:
    cols = ["cell", "T, N, D, H", "dtype", *[f"{m} ms" for m in methods], "triton / cudnn",
            "max rel err vs float64 (" + ", ".join(methods) + ")"]
    return "| " + " | ".join(cols) + " |\n|" + "---|" * len(cols)


def format_row(row, methods) -> str:
    def ms(m):
        if m in row["ms"]:
            return f"{row['ms'][m]:.2f}"
        return "wrong" if isinstance(row["err"].get(m), float) else "n/a"
    ratio = (f"{row['ms']['triton'] / row['ms']['cudnn']:.2f}"
             if "triton" in row["ms"] and "cudnn" in row["ms"] else "")
    errs = ", ".join(f"{row['err'][m]:.1e}" if isinstance(row["err"].get(m), float) else str(row["err"].get(m, "-"))
                     for m in methods)
    return (f"| {row['cell']} | {', '.join(map(str, row['size']))} | {row['dtype']} | "
            + " | ".join(ms(m) for m in methods) + f" | {ratio} | {errs} |")


def _sizes(text: str):
    try:
        sizes = [tuple(int(v) for v in part.split(",")) for part in text.split(";")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"sizes are 'T,N,D,H;T,N,D,H', not {text!r}") from None
    if any(len(s) != 4 or min(s) < 1 for s in sizes):
        raise argparse.ArgumentTypeError(f"each size is four positive integers T,N,D,H: {text!r}")
    return sizes


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu", description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", default=",".join(TORCH_MODULE), help="comma-separated (default: %(default)s)")
    parser.add_argument("--sizes", type=_sizes, default=list(SIZES), help="'T,N,D,H;...' (default: the three sizes)")
    parser.add_argument("--dtypes", default=",".join(DTYPES), help="comma-separated (default: %(default)s)")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cuda", help=argparse.SUPPRESS)  # cpu: the tests, under TRITON_INTERPRET=1
    args = parser.parse_args(argv)
    cells = [c for c in args.cells.split(",") if c]
    methods = [m for m in args.methods.split(",") if m]
    dtypes = [d for d in args.dtypes.split(",") if d]
    for label, given, known in (("cell", cells, TORCH_MODULE), ("method", methods, METHODS),
                                ("dtype", dtypes, TOLERANCE)):
        unknown = [g for g in given if g not in known]
        if unknown or not given:
            parser.error(f"unknown {label} {unknown or given}: choose from {', '.join(known)}")
    try:
        import torch
    except ImportError:
        print("bench.gpu: torch is not installed (pip install -e '.[triton]'); nothing measured")
        return 0
    if args.device == "cuda" and not torch.cuda.is_available():
        print("bench.gpu: no CUDA device here (torch.cuda.is_available() is False); nothing measured")
        return 0
    if "triton" in methods and importlib.util.find_spec("triton") is None:
        print("bench.gpu: triton is not installed (pip install -e '.[triton]'); nothing measured")
        return 0
    name = torch.cuda.get_device_name() if args.device == "cuda" else "cpu (Triton interpreter)"
    print(f"# forward+backward, median of {args.repeats} runs, on {name}; torch {torch.__version__}")
    print(header(methods))
    rows = run_rows(cells, args.sizes, dtypes, methods, args.device, args.repeats)
    # a method over its tolerance, or one that raised, fails the run
    bad = [r for r in rows if any(not isinstance(e, float) or e > TOLERANCE[r["dtype"]] for e in r["err"].values())]
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
