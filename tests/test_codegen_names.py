"""Generated names cannot collide with a spec's names: every name the kernel generator invents
starts with ``_`` (spec names start with a letter), generated names are unique among themselves,
and the globals generated code reads are exactly what derive.spec.RESERVED keeps from specs."""

from __future__ import annotations

import ast
import builtins
import re
from pathlib import Path

import pytest

from cell_oracles import failed_gradients, forward_mismatch, import_kernel
from kernel_modules import BACKENDS as NUMPY_BACKENDS
from codegen.kernels import BACKENDS, render_kernel
from codegen.lower import Namespace
from derive import builtin_cells, derive, load_cell
from derive.spec import RESERVED, parse_spec

COLLIDE = Path(__file__).parent / "specs" / "names" / "collide.toml"
BUILTINS = Path(__file__).parent / "specs" / "names" / "builtins.toml"
API_ARGUMENTS = {"x", "params", "state", "lengths", "d_outputs", "cache", "d_state"}

@pytest.mark.parametrize("backend", NUMPY_BACKENDS)   # the triton backend: tests/test_triton_kernels.py
def test_spec_names_equal_to_old_generated_names_give_right_kernels(backend, tmp_path):
    """tanh_c, proj_x, packed_x, h_seq, dpre_seq, tmp1 and the API's own names (x, params,
    cache, state, dtype, outputs, grads, T, N) as spec names."""
    d = derive(load_cell(COLLIDE))
    module = import_kernel(d, backend, tmp_path)
    assert failed_gradients(module, seed=1) == []
    assert forward_mismatch(d, module, seed=2) < 1e-12


def test_spec_names_equal_to_python_builtins_give_right_kernels(tmp_path):
    """len, dict, float, print, int, str and the generated modules' module names as spec names
    (NumPy here; the scope test below covers every backend's text)."""
    d = derive(load_cell(BUILTINS))
    module = import_kernel(d, "numpy", tmp_path)
    assert failed_gradients(module, seed=1) == []
    assert forward_mismatch(d, module, seed=2) < 1e-12


def test_names_the_guide_lists_are_legal():
    spec = """
[cell]
name = "legal"
[sizes]
T = "input size"
N = "hidden size"
[inputs]
dtype = "T"
[states]
state = "N"
[params]
outputs = ["N", "T"]
[step]
outputs = ["grads"]
equations = '''
grads = tanh(outputs @ dtype + state_prev)
state = grads
'''
"""
    cell = parse_spec(spec)
    assert set(cell.quantities) >= {"dtype", "state", "outputs", "grads"} and set(cell.sizes) == {"T", "N"}


#: functions of a generated module whose locals are the derivation's names: forward, backward,
#: Numba's step loops and Triton's kernels (``_forward_2``)
SPEC_SCOPES = re.compile(r"forward|backward|_forward_steps|_backward_steps|_forward_\d+|_backward_\d+")


def _scopes(text: str):
    """(function name, locals, names it reads that are not local) per function of ``SPEC_SCOPES``:
    there a spec name is a local, which hides a global of the same name. Annotations are left
    out: they are read where the function is defined, not in it."""
    for node in ast.walk(ast.parse(text)):
        if not isinstance(node, ast.FunctionDef) or not SPEC_SCOPES.fullmatch(node.name):
            continue
        body = [n for statement in node.body for n in ast.walk(statement)]
        local = {a.arg for a in node.args.args}
        local |= {n.id for n in body if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
        read = {n.id for n in body if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
        yield node.name, local, read - local


def _derivation_names(d) -> set:
    return (set(d.quantities) | {"d" + q for q in d.quantities} | set(d.carried.values())
            | set(d.upstream.values()) | set(d.cell.sizes))


def _module_texts():
    for name in builtin_cells():
        d = derive(load_cell(name))
        for backend in BACKENDS:
            try:
                text = render_kernel(d, backend, "", f"{name}.toml", "tests")
            except NotImplementedError:   # a backend that refuses the cell by name (triton)
                assert backend not in NUMPY_BACKENDS
                continue
            yield d, backend, text
    for spec in (COLLIDE, BUILTINS):
        d = derive(load_cell(spec))
        for backend in BACKENDS:
            yield d, backend, render_kernel(d, backend, "", spec.name, "tests")


def test_generated_functions_read_only_reserved_or_underscored_globals_and_invent_only_underscored_locals():
    scopes = set()
    for d, backend, text in _module_texts():
        derivation_names = _derivation_names(d)
        for function, local, globals_read in _scopes(text):
            scopes.add((backend, function))
            where = f"{d.cell.name} ({backend}) {function}"
            stray = {g for g in globals_read if not g.startswith("_") and g not in RESERVED}
            assert not stray, f"{where} reads globals a spec name could shadow: {sorted(stray)}"
            invented = {n for n in local - derivation_names - API_ARGUMENTS if not n.startswith("_")}
            assert not invented, f"{where} invents names a spec could use: {sorted(invented)}"
            assert not (API_ARGUMENTS & globals_read), where
    # the scopes found are the ones that hold the derivation's names, on every backend
    assert {(b, f) for b in BACKENDS for f in ("forward", "backward")} <= scopes
    assert {("numba", "_forward_steps"), ("numba", "_backward_steps"), ("triton", "_forward_1"),
            ("triton", "_backward_1")} <= scopes


def test_reserved_names_are_the_ones_generated_code_needs():
    """RESERVED keeps no more than keywords, functions and the globals generated code reads
    (plus the formula reader's constants): nothing a spec could want for no reason."""
    used = set()
    for d, _, text in _module_texts():
        for _, _, globals_read in _scopes(text):
            used |= {g for g in globals_read if not g.startswith("_")}
    from derive.spec import FORMULA_NAMES, GENERATED_CODE_GLOBALS
    assert used <= GENERATED_CODE_GLOBALS
    assert {"np", "range", "forward", "backward", "init_params"} <= GENERATED_CODE_GLOBALS
    assert not (GENERATED_CODE_GLOBALS - {"forward", "backward", "init_params", "np", "nb"}
                - set(dir(builtins)))
    assert FORMULA_NAMES <= RESERVED


def test_two_patterns_giving_one_text_get_two_names():
    names = Namespace()
    a = names("_packed_{}", "h_seq")
    b = names("_{}_seq", "packed_h")
    assert a != b and {a, b} >= {"_packed_h_seq"}
    assert names("_packed_{}", "h_seq") == a                  # the same name asked twice
    assert names("_{}_seq", "dpre") != "_dpre_seq"            # a fixed buffer keeps its name
