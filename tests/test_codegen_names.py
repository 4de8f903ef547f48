"""Generated names cannot collide with a spec's names: every name the kernel generator invents
starts with ``_`` (spec names start with a letter), generated names are unique among themselves,
and the globals generated code reads are exactly what derive.spec.RESERVED keeps from specs."""

from __future__ import annotations

import ast
import builtins
from pathlib import Path

import pytest

from cell_oracles import failed_gradients, forward_mismatch, import_kernel
from kernel_modules import BACKENDS as NUMPY_BACKENDS
from codegen.kernels import BACKENDS, render_kernel
from codegen.lower import Namespace
from derive import builtin_cells, derive, load_cell
from derive.spec import RESERVED, parse_spec

COLLIDE = Path(__file__).parent / "specs" / "names" / "collide.toml"

#: functions of a generated module whose locals are the derivation's names
SPEC_SCOPES = ("forward", "backward", "_forward_steps", "_backward_steps")


@pytest.mark.parametrize("backend", NUMPY_BACKENDS)   # the triton backend: tests/test_triton_kernels.py
def test_spec_names_equal_to_old_generated_names_give_right_kernels(backend, tmp_path):
    """tanh_c, proj_x, packed_x, h_seq, dpre_seq, tmp1 and the API's own names (x, params,
    cache, state, dtype, outputs, grads, T, N) as spec names."""
    d = derive(load_cell(COLLIDE))
    module = import_kernel(d, backend, tmp_path)
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


def _scopes(text: str):
    """(function name, locals, names it reads that are not local) per function of ``SPEC_SCOPES``."""
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.FunctionDef) and node.name in SPEC_SCOPES:
            local = {a.arg for a in node.args.args}
            local |= {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
            read = {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
            yield node.name, local, read - local


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
    d = derive(load_cell(COLLIDE))
    for backend in BACKENDS:
        yield d, backend, render_kernel(d, backend, "", "collide.toml", "tests")


API_ARGUMENTS = {"x", "params", "state", "lengths", "d_outputs", "cache", "d_state"}


def test_generated_functions_read_only_reserved_or_underscored_globals_and_invent_only_underscored_locals():
    for d, backend, text in _module_texts():
        derivation_names = (set(d.quantities) | {"d" + q for q in d.quantities} | set(d.carried.values())
                            | set(d.upstream.values()) | set(d.cell.sizes))
        for function, local, globals_read in _scopes(text):
            where = f"{d.cell.name} ({backend}) {function}"
            stray = {g for g in globals_read if not g.startswith("_") and g not in RESERVED}
            assert not stray, f"{where} reads globals a spec name could shadow: {sorted(stray)}"
            invented = {n for n in local - derivation_names - API_ARGUMENTS if not n.startswith("_")}
            assert not invented, f"{where} invents names a spec could use: {sorted(invented)}"
            assert not (API_ARGUMENTS & globals_read), where


def test_reserved_names_are_the_ones_generated_code_needs():
    """RESERVED keeps no more than keywords, functions and the globals generated code reads
    (plus the formula reader's constants): nothing a spec could want for no reason."""
    used = set()
    for _, _, text in _module_texts():
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
