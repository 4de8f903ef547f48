"""The op table (derive/ops.py): one row reaches every stage, and the functions it adds (sqrt,
abs, max, min, functions defined in a spec or registered from Python) are right.

Oracles: central finite differences of the reference interpreter's forward pass and of the
generated kernels' forward pass, and PyTorch autograd on the forward equations evaluated with
torch's own functions (an independent backward, and the convention at kinks)."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import sympy as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import derive
from codegen.gradcheck import check_gradients, format_table
from codegen.kernel_outputs import kernel_text
from derive import SpecError, load_cell, ops, parse_spec
from derive.evaluate import random_inputs, random_params, run_backward, run_forward, value
from test_derive_numeric import Problem, assert_gradients_match

ROOT = Path(__file__).resolve().parents[1]
NEW_CELLS = ROOT / "tests" / "specs" / "new_cells"


def _require(condition: bool, reason: str):
    """Skip without an optional tool, except under CI=true, where it is a failure."""
    if condition:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but {reason}")
    pytest.skip(reason)


# -- one new row in a copy of the package reaches every stage --------------------------------

SIN_ROW = '''

register(Op("sin", sp.sin, Code("np.sin({0})"), reads=("sin",), rule=r"\\sin' = \\cos"))
'''

SIN_SPEC = '''\
[cell]
name = "sin_rnn"
description = "an RNN with a sine nonlinearity"

[sizes]
D = "input size"
H = "hidden size"

[inputs]
x = "D"

[states]
h = "H"

[params]
W = ["H", "D"]
U = ["H", "H"]
b = "H"

[step]
outputs = ["h"]
equations = """
h = sin(W @ x + U @ h_prev + b)
"""
'''

SIN_SCRIPT = r'''
import importlib.util, json, sys
from pathlib import Path
import numpy as np
from derive import derive, load_cell
from derive.evaluate import loss, random_inputs, random_params, random_upstream, run_backward, run_forward
from derive.verify import verify
from codegen.documents import document_text
from codegen.gradcheck import check_gradients
from codegen.kernel_outputs import kernel_text

spec, out = Path(sys.argv[1]), Path(sys.argv[2])
result = {}
d = derive(load_cell(spec))
result["dh_expr"] = str(d.backward_eq("da_h").expr)

# the reference interpreter against central differences of its own forward pass
rng = np.random.default_rng(0)
sizes = {"D": 3, "H": 4}
params = random_params(d, sizes, rng)
xs, state0 = random_inputs(d, sizes, 4, 2, rng)
w, v = random_upstream(d, sizes, 4, 2, rng)
grads = run_backward(d, run_forward(d, params, xs, state0), w, v)
worst = 0.0
for name, arr in params.items():
    for idx in np.ndindex(arr.shape):
        old = arr[idx]
        arr[idx] = old + 1e-6; plus = loss(run_forward(d, params, xs, state0), w, v)
        arr[idx] = old - 1e-6; minus = loss(run_forward(d, params, xs, state0), w, v)
        arr[idx] = old
        worst = max(worst, abs((plus - minus) / 2e-6 - grads[name][idx]))
result["reference_fd_error"] = worst

for backend in ("numpy", "numba"):
    path = out / f"sin_rnn_{backend}.py"
    path.write_text(kernel_text(spec, backend, "test"), encoding="utf-8")
    module_spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    result[backend] = all(r.ok for r in check_gradients(module, T=3, N=2, input_size=3,
                                                        hidden_size=4, seed=1, max_entries=10))
for fmt in ("md", "tex"):
    text = document_text(spec, fmt)
    (out / f"sin_rnn.{fmt}").write_text(text, encoding="utf-8")
    result[fmt] = text
right = verify(d, r"\delta a_h = \delta h \odot \cos(a_h)")
wrong = verify(d, r"\delta a_h = \delta h \odot \sin(a_h)")
back = verify(d, "da_h = " + wrong.correct_cell) if wrong.correct_cell else None
again = verify(d, r"\delta a_h = " + wrong.correct) if wrong.correct else None
result["verify"] = [right.verdict, wrong.verdict, back and back.verdict, again and again.verdict]
print(json.dumps(result))
'''


def test_one_new_row_reaches_derive_kernels_documents_and_verify(tmp_path):
    """Add sin as ONE row in a copy of the package: nothing else is edited, and every stage
    works (sin' = cos is printed, evaluated and read back by SymPy's standard spellings)."""
    copy = tmp_path / "pkg"
    for package in ("derive", "codegen", "cellgrad"):
        shutil.copytree(ROOT / package, copy / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    with open(copy / "derive" / "ops.py", "a", encoding="utf-8") as f:
        f.write(SIN_ROW)
    spec = tmp_path / "sin_rnn.toml"
    spec.write_text(SIN_SPEC, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(copy), "NUMBA_CACHE_DIR": str(tmp_path / "numba")}
    proc = subprocess.run([sys.executable, "-c", SIN_SCRIPT, str(spec), str(tmp_path)], env=env,
                          capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["dh_expr"] == "dh*cos(a_h)"
    assert result["reference_fd_error"] < 1e-7
    assert result["numpy"] and result["numba"]
    for fmt in ("md", "tex"):
        assert r"\cos" in result[fmt] and r"\sin' = \cos" in result[fmt]
    assert result["verify"] == ["holds", "does not hold", "holds", "holds"]
    _require(shutil.which("pdflatex") is not None, "pdflatex is not installed")
    tex = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "sin_rnn.tex"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert tex.returncode == 0, tex.stdout[-2000:]


# -- sqrt, abs, max, min -----------------------------------------------------------------------

KINKS = NEW_CELLS / "kinks.toml"
SOFTSIGN = NEW_CELLS / "softsign_rnn.toml"
NESTED = ROOT / "tests" / "specs" / "kinks_nested.toml"
CELLS = [KINKS, SOFTSIGN, NESTED]


def _import(path: Path):
    module_spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("spec", CELLS, ids=lambda p: p.stem)
def test_reference_gradients_match_finite_differences(spec):
    problem = Problem(derive.derive(load_cell(spec)), seed=11)
    grads = problem.gradients()
    assert all(np.any(grads[s] != 0) for s in problem.d.cell.states)
    assert_gradients_match(grads, problem.full_loss, problem.arrays())


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("spec", CELLS, ids=lambda p: p.stem)
def test_kernels_match_finite_differences(tmp_path, spec, backend):
    path = tmp_path / f"{spec.stem}_{backend}.py"
    path.write_text(kernel_text(spec, backend, "test"), encoding="utf-8")
    results = check_gradients(_import(path), T=4, N=3, input_size=3, hidden_size=4, seed=5,
                              max_entries=12)
    assert all(r.ok for r in results), "\n" + format_table(results)


def _torch():
    _require(importlib.util.find_spec("torch") is not None, "torch is not installed")
    import torch
    return torch


@pytest.mark.parametrize("spec", CELLS, ids=lambda p: p.stem)
def test_reference_gradients_match_torch_autograd(spec):
    torch = _torch()
    d = derive.derive(load_cell(spec))
    rng = np.random.default_rng(21)
    sizes = {"D": 3, "H": 4}
    params = random_params(d, sizes, rng, scale=0.8)
    xs, state0 = random_inputs(d, sizes, 5, 3, rng)
    w = {o: rng.standard_normal((5, 3, 4)) for o in d.cell.outputs}
    grads = run_backward(d, run_forward(d, params, xs, state0), w)

    leaves = {k: torch.tensor(v, requires_grad=True) for k, v in {**params, **xs, **state0}.items()}
    state = {s: leaves[s] for s in d.cell.states}
    total = torch.zeros((), dtype=torch.float64)
    for t in range(5):
        env = {**{p: leaves[p] for p in d.cell.params}, **{i: leaves[i][t] for i in d.cell.inputs},
               **{f"{s}_prev": state[s] for s in d.cell.states}}
        for eq in d.forward:
            env[eq.lhs] = value(eq.rhs, env.__getitem__, backend="torch")   # the rows' torch spellings
        total = total + sum((env[o] * torch.tensor(w[o][t])).sum() for o in d.cell.outputs)
        state = {s: env[s] for s in d.cell.states}
    total.backward()
    for name, leaf in leaves.items():
        np.testing.assert_allclose(grads[name], leaf.grad.numpy(), rtol=1e-10, atol=1e-12,
                                   err_msg=name)


def _derivatives(expr_of, points):
    """d/da of expr_of(a, b) and d/db, by the op table, evaluated at the (a, b) points."""
    a, b = sp.symbols("a b")
    e = expr_of(a, b)
    env = {"a": points[:, 0], "b": points[:, 1]}
    return [np.broadcast_to(value(sp.diff(e, s), env.__getitem__), points[:, 0].shape)
            for s in (a, b)]


@pytest.mark.parametrize("name, torch_name", [("relu", "relu"), ("abs", "abs"), ("sqrt", "sqrt"),
                                              ("max", "maximum"), ("min", "minimum")])
def test_subgradients_at_kinks_are_pytorchs(name, torch_name):
    """At the kink itself (relu and abs at 0, max and min at a tie) the derivative is the one
    PyTorch's autograd gives: relu'(0) = 0, abs'(0) = 0, half the gradient to each side of a tie."""
    torch = _torch()
    f = ops.FUNCTIONS[name]
    arity = ops.TABLE[name].arity
    points = np.array([[0.0, 0.0], [1.5, 1.5], [-0.7, -0.7], [0.3, -0.2], [-1.0, 2.0], [2.0, 0.5]])
    if name == "sqrt":
        points = np.abs(points) + 0.25
    ours = _derivatives(lambda a, b: f(a, b) if arity == 2 else f(a), points)
    args = [torch.tensor(points[:, k], requires_grad=True) for k in range(arity)]
    getattr(torch, torch_name)(*args).sum().backward()
    for k in range(arity):
        np.testing.assert_array_equal(ours[k], args[k].grad.numpy(), err_msg=f"{name} argument {k}")


def test_max_of_a_value_with_itself_keeps_derivative_one():
    z = sp.Symbol("z")
    for f in (ops.FUNCTIONS["max"], ops.FUNCTIONS["min"]):
        derivative = sp.diff(f(z, z), z)
        assert np.all(value(derivative, {"z": np.array([-1.0, 0.0, 2.0])}.__getitem__) == 1)


# -- relu' is a row of its own that verify reads back ------------------------------------------

def test_relu_derivative_prints_as_step_and_verify_reads_it_back():
    from derive.verify import verify
    d = derive.derive(load_cell(ROOT / "tests" / "specs" / "codegen_relu_gated.toml"))
    exprs = [str(eq.expr) for eq in d.backward]
    assert any("step(" in e for e in exprs) and not any("Heaviside" in e for e in exprs)
    for eq in d.backward:
        if "step(" not in str(eq.expr):
            continue
        wrong = verify(d, f"{eq.target} = 2*{eq.target}")
        assert wrong.verdict == "does not hold" and wrong.correct
        assert r"\operatorname{step}" in wrong.correct
        assert verify(d, f"{eq.target} = " + wrong.correct_cell).verdict == "holds"
        assert verify(d, wrong.correct, quantity=eq.target).verdict == "holds"


# -- functions defined in a spec, or registered from Python ------------------------------------

def _spec_with(functions: str, equation: str) -> str:
    return "\n".join([
        '[cell]', 'name = "defined"', '', '[sizes]', 'H = "hidden size"', '', '[inputs]',
        'x = "H"', '', '[states]', 'h = "H"', '', '[params]', 'W = ["H", "H"]', '',
        '[functions]', functions, '', '[step]', 'outputs = ["h"]', 'equations = """',
        equation, '"""', ''])


def test_a_spec_function_is_derived_by_sympy_and_stays_in_its_cell():
    cell = parse_spec(_spec_with('softsign = "z / (1 + abs(z))"\nf = "tanh"',
                                 "h = softsign(W @ x) + f(h_prev)"))
    d = derive.derive(cell)
    assert "softsign" not in ops.TABLE                   # the cell's own, not everyone's
    a, points = sp.Symbol("a"), np.array([-3.0, -0.4, 0.2, 1.0, 5.0])
    derivative = sp.diff(cell.functions["softsign"](a), a)
    np.testing.assert_allclose(value(derivative, {"a": points}.__getitem__),
                               1 / (1 + np.abs(points)) ** 2, rtol=1e-14)
    assert "softsign" in str(d.forward[-1].rhs)
    with pytest.raises(SpecError, match="unknown function 'softsign'"):
        parse_spec(_spec_with('g = "tanh"', "h = softsign(W @ x) + g(h_prev)"))


@pytest.mark.parametrize("definition, message", [
    ('"y / (1 + abs(y))"', "may only use its argument z"),
    ('"__import__(\'os\').system(\'true\')"', "attribute access"),
    ('"2 + 3"', "does not use its argument z"),
    ('"z +"', "cannot parse the definition"),
    ('"nosuch"', "names unknown function 'nosuch'"),
    ("3", "must be a string"),
    ('"z / (z - z)"', "not finite"),
    ('"W @ z"', "may only use its argument z"),
    ('"max(z)"', "takes exactly 2 arguments"),
])
def test_bad_function_definitions_are_spec_errors_naming_the_line(definition, message):
    text = _spec_with(f"softsign = {definition}", "h = softsign(W @ x) + h_prev")
    with pytest.raises(SpecError, match=message) as err:
        parse_spec(text, "cell.toml")
    line = next(k for k, raw in enumerate(text.splitlines(), 1) if raw.startswith("softsign ="))
    assert err.value.line == line


def test_register_function_from_python_reaches_the_kernels(tmp_path):
    op = derive.register_function("halfsign", "z / (2 + abs(z))")
    try:
        spec = tmp_path / "halfsign.toml"
        spec.write_text(_spec_with("", "h = halfsign(W @ x + h_prev)").replace('name = "defined"',
                                                                                'name = "hs"'))
        d = derive.derive(load_cell(spec))
        assert ops.op_of(d.forward[-1].rhs) is op
        path = tmp_path / "hs_numpy.py"
        path.write_text(kernel_text(spec, "numpy", "test"), encoding="utf-8")
        results = check_gradients(_import(path), T=3, N=2, hidden_size=3, seed=2, max_entries=9)
        assert all(r.ok for r in results), "\n" + format_table(results)
        with pytest.raises(ValueError, match="already in the op table"):
            derive.register_function("halfsign", "z / (3 + abs(z))")
    finally:
        ops.unregister("halfsign")
    with pytest.raises(SpecError, match="unknown function 'halfsign'"):
        load_cell(spec)


# -- property: any definition over the known functions is refused clearly or derived right -----

UNARY = ["sigmoid", "tanh", "relu", "exp", "softplus", "abs", "sqrt", "log", "identity", "sign",
         "step"]


def _expressions():
    leaves = st.sampled_from(["z", "z", "0.5", "2", "-1.5"])
    return st.recursive(leaves, lambda inner: st.one_of(
        st.builds(lambda f, a: f"{f}({a})", st.sampled_from(UNARY), inner),
        st.builds(lambda f, a, b: f"{f}({a}, {b})", st.sampled_from(["max", "min"]), inner, inner),
        st.builds(lambda a, o, b: f"({a}) {o} ({b})", inner, st.sampled_from(["+", "-", "*", "/"]),
                  inner),
        st.builds(lambda a, k: f"({a}) ** {k}", inner, st.sampled_from(["2", "3"]))),
        max_leaves=6)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=_expressions(), z=st.floats(-2.5, 2.5))
def test_defined_functions_are_refused_or_differentiate_like_finite_differences(body, z):
    try:
        cell = parse_spec(_spec_with(f'fz = "{body}"', "h = fz(W @ x) + h_prev"))
    except SpecError as err:
        assert err.line is not None and "fz" in str(err)
        return
    f = cell.functions["fz"]
    arg = sp.Symbol("a")
    with np.errstate(all="ignore"):
        def at(p):
            return float(np.asarray(value(f(arg), {"a": np.array(p)}.__getitem__)))
        slope = float(np.asarray(value(sp.diff(f(arg), arg), {"a": np.array(z)}.__getitem__)))
        h = 1e-5
        values = [at(z - 2 * h), at(z - h), at(z), at(z + h), at(z + 2 * h)]
    if not np.all(np.isfinite(values)) or max(map(abs, values)) > 1e6:
        return                                  # outside the function's domain, or blowing up
    left, right = (values[2] - values[0]) / (2 * h), (values[4] - values[2]) / (2 * h)
    if abs(left - right) > 1e-4 * (1 + abs(left)):
        return                                  # a kink (or steep curvature) within the step
    central = (values[3] - values[1]) / (2 * h)
    assert slope == pytest.approx(central, rel=2e-4, abs=2e-4), (body, z)


@settings(max_examples=80, deadline=None)
@given(text=st.text(max_size=40))
def test_any_definition_text_is_a_function_or_a_spec_error(text):
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    try:
        spec = _spec_with(f'fz = "{escaped}"', "h = fz(W @ x) + h_prev")
        parse_spec(spec)
    except SpecError:
        pass


def test_verify_reads_the_cells_own_functions_bars_and_two_argument_calls():
    from derive.verify import verify
    softsign = derive.derive(load_cell(SOFTSIGN))
    assert verify(softsign, r"h = \operatorname{softsign}(a_h)").verdict == "holds"
    assert verify(softsign, r"da_h = \frac{dh}{(1 + |a_h|)^2}").verdict == "holds"
    assert verify(softsign, r"da_h = \frac{dh}{1 + |a_h|}").verdict == "does not hold"
    kinks = derive.derive(load_cell(KINKS))
    assert verify(kinks, r"m = \max(a, 0.9 m^{<t-1>})").verdict == "holds"
    assert verify(kinks, r"m = \min(a, 0.9 m^{<t-1>})").verdict == "does not hold"
    assert verify(kinks, r"m = \max(a)").verdict == "unreadable"


@pytest.mark.parametrize("spec", [KINKS, SOFTSIGN, NESTED, ROOT / "tests" / "specs" / "codegen_relu_gated.toml"],
                         ids=lambda p: p.stem)
def test_triton_spells_the_new_rows_like_the_numpy_backend(tmp_path, spec):
    from cell_oracles import import_kernel
    from test_triton_kernels import compare, triton_or_skip
    torch = triton_or_skip()
    d = derive.derive(load_cell(spec))
    compare(import_kernel(d, "numpy", tmp_path), import_kernel(d, "triton", tmp_path), torch,
            "float64")


@pytest.mark.parametrize("name", sorted(n for n, op in ops.TABLE.items() if op.numpy is not None))
def test_every_row_has_a_torch_spelling_with_its_values_and_derivative(name):
    """The row's PyTorch spelling (what tests/torch_oracle.py runs) gives the NumPy spelling's
    values, and autograd of it gives the derivative SymPy takes of the row (away from kinks)."""
    torch = _torch()
    op = ops.TABLE[name]
    assert "torch" in op.code, f"{name} has no torch spelling in derive/ops.py"
    rng = np.random.default_rng(5)
    points = rng.uniform(0.2, 2.0, (50, op.arity)) * rng.choice([-1.0, 1.0], (50, op.arity))
    if name in ("log", "sqrt"):
        points = np.abs(points)
    args = [torch.tensor(points[:, k], requires_grad=True) for k in range(op.arity)]
    got = op.reference("torch")(*args)
    np.testing.assert_allclose(got.detach().numpy(), op.reference()(*points.T), rtol=1e-13, atol=1e-15)
    # step compares, which leaves the graph: autograd's derivative of it is 0 everywhere
    grads = torch.autograd.grad(got.sum(), args, allow_unused=True) if got.requires_grad else [None] * op.arity
    symbols = sp.symbols(f"z0:{op.arity}")
    env = {str(z): points[:, k] for k, z in enumerate(symbols)}
    for k, z in enumerate(symbols):
        want = np.broadcast_to(value(sp.diff(op.sympy(*symbols), z), env.__getitem__), (50,))
        have = np.zeros(50) if grads[k] is None else grads[k].numpy()
        np.testing.assert_allclose(have, want, rtol=1e-12, atol=1e-14, err_msg=f"{name}, argument {k}")
