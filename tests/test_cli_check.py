"""`cellgrad check`: sizes, dtype, seed, T and N; existing modules; states drawn in their domain;
entries at a kink reported as such; a crashing kernel named by line and equation tag. And how
a Derivation, a check and a verdict show themselves in a notebook."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from cellgrad.commands.check import _sizes, load_module
from codegen.gradcheck import check_gradients, format_table, random_problem
from codegen.kernel_outputs import kernel_text

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "tests" / "specs" / "check"


def cellgrad(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-m", "cellgrad", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=300)


def generated(tmp_path: Path, spec: Path | str, backend: str = "numpy"):
    path = tmp_path / f"{Path(str(spec)).stem}_{backend}.py"
    path.write_text(kernel_text(spec, backend, "tests/test_cli_check.py"))
    return load_module(path, f"_test_check_{path.stem}_{tmp_path.name}")


def test_sizes_seed_dtype_steps_and_batch_reach_the_check():
    result = cellgrad("check", "gru", "--sizes", "D=2,H=5", "--seed", "3", "-T", "2", "-N", "4",
                      "--dtype", "float32")
    assert result.returncode == 0, result.stderr
    assert "gru (numpy), T=2, N=4, D=2, H=5, seed 3, many-to-many, float32:" in result.stdout
    assert re.search(r"^x\s+\(2, 4, 2\)", result.stdout, re.M)      # (T, N, D)
    assert re.search(r"^U_h\s+\(5, 5\)", result.stdout, re.M)
    assert "all gradients agree" in result.stdout


def test_an_existing_generated_module_is_checked_as_it_is(tmp_path):
    shutil.copy(ROOT / "generated" / "rnn_numpy.py", tmp_path / "rnn_numpy.py")
    result = cellgrad("check", "rnn_numpy.py", "-T", "2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("rnn (numpy), T=2")


def test_default_sizes_differ_so_a_swapped_size_cannot_pass(tmp_path):
    module = generated(tmp_path, "lstm")
    params, x, state0, _, _ = random_problem(module, 2, 1)
    assert x.shape[2] != params["U_f"].shape[0]


def test_a_wrong_float32_gradient_fails(tmp_path, monkeypatch):
    module = generated(tmp_path, "rnn")
    original = module.backward

    def skewed(d_outputs, cache, d_state=None):
        grads = original(d_outputs, cache, d_state)
        grads.params["U"] = grads.params["U"] * 1.01
        return grads
    monkeypatch.setattr(module, "backward", skewed)
    results = {r.name: r for r in check_gradients(module, dtype="float32")}
    assert not results["U"].ok and results["W"].ok


def test_states_are_drawn_inside_their_domain(tmp_path):
    """h reads log(n_prev): a negative initial n gives NaN, a positive one a clean check."""
    module = generated(tmp_path, SPECS / "normaliser.toml")
    with np.errstate(all="ignore"):
        assert not check_gradients(module, T=2, N=2).ok
    results = check_gradients(module, T=2, N=2, domains={"n": "positive"})
    assert results.ok, "\n" + format_table(results)


def _at_the_kink(module, T=2, N=2, seed=0):
    """``module`` with h0[0, 0] shifted so that relu's argument at t=0 is 0 for sample 0, unit 0
    (a constant shift: the gradients are unchanged), for ``check_gradients(T, N, seed)``."""
    params, x, state0, _, _ = random_problem(module, T, N, seed=seed)
    argument = params["W"][0] @ x[0, 0] + params["b"][0]
    shift = -argument / params["u"][0] - state0["h"][0, 0]

    def forward(x, params, state=None, lengths=None):
        state = {**state, "h": state["h"].copy()}
        state["h"][0, 0] += shift
        return module.forward(x, params, state, lengths)
    shifted = types.SimpleNamespace(**{k: getattr(module, k) for k in dir(module) if not k.startswith("__")})
    shifted.forward = forward
    return shifted


def test_an_entry_at_a_kink_is_reported_as_such_not_as_a_failure(tmp_path):
    at_kink = _at_the_kink(generated(tmp_path, SPECS / "relu_rnn.toml"))
    results = {r.name: r for r in check_gradients(at_kink, T=2, N=2)}
    assert all(r.ok for r in results.values()), format_table(list(results.values()))
    assert results["h"].kinks >= 1 and results["b"].kinks >= 1
    assert "near a kink" in format_table(list(results.values()))


def test_a_wrong_gradient_at_a_kink_still_fails(tmp_path):
    at_kink = _at_the_kink(generated(tmp_path, SPECS / "relu_rnn.toml"))
    original = at_kink.backward

    def tripled(d_outputs, cache, d_state=None):
        grads = original(d_outputs, cache, d_state)
        grads.state["h"] = grads.state["h"] * 3
        return grads
    at_kink.backward = tripled
    results = {r.name: r for r in check_gradients(at_kink, T=2, N=2)}
    assert not results["h"].ok and results["W"].ok


def test_a_kernel_crash_is_one_line_naming_the_generated_line_and_its_tag(tmp_path):
    text = (ROOT / "generated" / "lstm_numpy.py").read_text()
    lines = text.splitlines()
    k = next(i for i, line in enumerate(lines) if "# (B2)" in line)
    lhs, rhs = lines[k].split(" = ", 1)
    lines[k] = f"{lhs} = _no_such_name + {rhs}"
    (tmp_path / "broken_numpy.py").write_text("\n".join(lines) + "\n")
    result = cellgrad("check", "broken_numpy.py", cwd=tmp_path)
    assert result.returncode == 4
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert f"line {k + 1} of broken_numpy.py, equation (B2)" in result.stderr
    assert "NameError" in result.stderr and "_no_such_name" in result.stderr


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="DHKx_=,0123456789 -", max_size=20))
def test_sizes_option_reads_sizes_or_refuses_with_the_form(text):
    import argparse
    try:
        sizes = _sizes(text)
    except argparse.ArgumentTypeError as err:
        assert "SIZE=N" in str(err)
        return
    assert all(name.isidentifier() and isinstance(n, int) and n >= 1 for name, n in sizes.items())


# -- notebook display --------------------------------------------------------------------------

def test_derivation_repr_is_short_and_markdown_holds_every_tagged_equation():
    from derive import derive, load_cell
    d = derive(load_cell("lstm"))
    assert len(repr(d)) < 120 and "lstm" in repr(d)
    text = d._repr_markdown_()
    tags = re.findall(r"\\tag\{(\w+)\}", text)
    assert tags == [eq.tag for eq in d.forward] + [eq.tag for eq in d.backward]
    assert text.count("$$") == 2 * len(tags)


def test_derivation_markdown_math_compiles_in_latex(tmp_path):
    from derive import derive, load_cell
    if shutil.which("pdflatex") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but pdflatex is missing")
        pytest.skip("pdflatex not installed")
    blocks = []
    for cell in ("lstm", "gru_torch", "peephole_lstm"):
        md = derive(load_cell(cell))._repr_markdown_()
        blocks += re.findall(r"\$\$ (.*?) \$\$", md)
    body = "\n".join(rf"\begin{{equation}} {b} \end{{equation}}" for b in blocks)
    (tmp_path / "m.tex").write_text("\\documentclass{article}\\usepackage{amsmath,amssymb}"
                                    f"\\begin{{document}}\n{body}\n\\end{{document}}\n")
    done = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "m.tex"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:]


def test_check_results_and_verdicts_show_in_a_notebook(tmp_path):
    from derive.verify import verify
    results = check_gradients(generated(tmp_path, "rnn"), T=2, N=1)
    assert repr(results) == f"<GradChecks: {len(results)} gradients, all agree>"
    table = results._repr_markdown_().splitlines()
    assert len(table) == 2 + len(results) and all(r.name in "".join(table) for r in results)
    verdict = verify("lstm", "dh*o*(1 - tanh(c)**2)", quantity="dc")
    assert repr(verdict).startswith("<Verdict: does not hold (missing branch")
    assert len(repr(verdict)) < 160
    md = verdict._repr_markdown_()
    assert md.startswith("**does not hold**") and "$$" in md and "dc_next" in md


# -- Numba's first call ------------------------------------------------------------------------

def test_first_numba_call_announces_compilation_and_warmup_compiles_ahead(tmp_path):
    """In a process with an empty Numba cache the first forward() says it compiles (one line on
    stderr); warmup() compiles both time loops for a dtype before any call."""
    code = ("import numpy as np, generated.rnn_numba as m\n"
            "m._NOTICE_AFTER = 0.0\n"
            "m.warmup(dtypes=(np.float64,))\n"
            "print(len(m._forward_steps.signatures), len(m._backward_steps.signatures))\n"
            "p = m.init_params(3, 4); m.forward(np.zeros((2, 1, 3)), p)\n")
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1", "1"]       # compiled once, for float64; forward reused it
    notices = [l for l in done.stderr.splitlines() if "compiling the numba kernels" in l]
    assert notices == ["compiling the numba kernels of rnn (float64), about 15-60 s the first time; "
                       "cached afterwards"]


def test_rounding_noise_of_large_losses_is_not_a_failure(tmp_path):
    """Regression: dividing by a buffer drawn near 0 (a time constant) makes the loss's terms
    large; the differences' rounding error (about 4e-7) was reported as FAIL against a gradient
    entry of 1e-2, though the kernel matches autograd to 1e-13. A wrong gradient still fails."""
    module = generated(tmp_path, SPECS / "time_constant.toml")
    params = random_problem(module, 4, 3, seed=0)[0]
    assert np.min(np.abs(params["tau"])) < 0.25
    results = check_gradients(module, T=4, N=3, seed=0)
    assert results.ok, format_table(results)
    original = module.backward

    def off(d_outputs, cache, d_state=None):
        grads = original(d_outputs, cache, d_state)
        grads.inputs["x"] = grads.inputs["x"] * (1 + 1e-3)
        return grads
    module.backward = off
    assert not {r.name: r for r in check_gradients(module, T=4, N=3, seed=0)}["x"].ok
