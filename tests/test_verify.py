"""The formula verifier: its numbers, the round trip of every derived equation, the slips it
diagnoses, and the bad input it refuses with one clear line."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import sympy as sp

from derive import builtin_cells, derive, load_cell
from derive.notation import load_notation
from derive.verify.render import cell_text
from derive.verify import VerifyError, verify
from derive.verify.nodes import SumT
from derive.verify.sequence import Evaluator, evaluate, simulate, truncated_totals

ROOT = Path(__file__).resolve().parents[1]


def cellgrad(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cellgrad", *args], capture_output=True, text=True,
                          cwd=ROOT)


# -- the random runs the verdicts rest on -----------------------------------------------------

def _loss(d, run, params):
    """Σ_t <dh_out_t, h_t>: the linear loss whose gradient the run's backward sweep computes."""
    full = run.steps["full"]
    prev = {s + "_prev": full[0][s + "_prev"] for s in d.cell.states}
    total = 0.0
    for t in range(run.T):
        env = {**params, **{x: full[t][x] for x in d.cell.inputs}, **prev}
        for eq in d.forward:
            env[eq.lhs] = evaluate(eq.rhs, env.__getitem__)
        for out, up in d.upstream.items():
            total += float(np.sum(full[t][up] * env[out]))
        prev = {s + "_prev": env[s] for s in d.cell.states}
    return total


#: a parameter vector under @ (V @ b): its gradient is an outer product with a vector that is
#: the same for every sample
PARAMETER_VECTOR_CELL = """[cell]
name = "vector_product"
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
V = ["H", "H"]
b = "H"
[step]
outputs = ["h"]
equations = "h = tanh(W @ x + U @ h_prev + V @ b)"
"""


@pytest.mark.parametrize("cell", ["lstm", "gru", "minimal_rnn", "peephole_lstm", "vector_product"])
def test_full_sweep_matches_central_differences(cell):
    """The whole-sequence gradients the verifier compares against, against finite differences."""
    from derive.spec import parse_spec
    d = derive(parse_spec(PARAMETER_VECTOR_CELL) if cell == "vector_product" else load_cell(cell))
    run = simulate(d, seed=3, T=4, N=2)
    params = {p: run.steps["full"][0][p] for p in d.cell.params}
    totals = Evaluator(run)
    rng = np.random.default_rng(0)
    for p in d.cell.params:
        index = tuple(int(rng.integers(n)) for n in params[p].shape)
        h = 1e-6
        plus = {**params, p: params[p].copy()}
        minus = {**params, p: params[p].copy()}
        plus[p][index] += h
        minus[p][index] -= h
        numeric = (_loss(d, run, plus) - _loss(d, run, minus)) / (2 * h)
        analytic = totals.at(SumT(sp.Symbol("d" + p)), None)[index]
        assert numeric == pytest.approx(analytic, rel=1e-5, abs=1e-7), p


def test_truncation_after_the_whole_sequence_is_full_bptt_and_after_one_step_is_the_k1_sweep():
    d = derive(load_cell("lstm"))
    run = simulate(d, seed=1)
    full = Evaluator(run).at(SumT(sp.Symbol("dW_f")), None)
    assert np.allclose(truncated_totals(run, run.T)["dW_f"], full)
    one = Evaluator(run).at(SumT(sp.Symbol("dW_f#k1")), None)
    assert np.allclose(truncated_totals(run, 1)["dW_f"], one)
    assert not np.allclose(one, full)


def _truncated_loss(d, run, params, k):
    """Σ_t <dh_out_t, h_t> where each loss sees only steps t-k+1..t: states older than that are
    held at their unperturbed values (the stop-gradient that defines k-step truncated BPTT)."""
    full = run.steps["full"]
    total = 0.0
    for t_loss in range(run.T):
        start = max(0, t_loss - k + 1)
        prev = {s + "_prev": full[start][s + "_prev"] for s in d.cell.states}
        for t in range(start, t_loss + 1):
            env = {**params, **{x: full[t][x] for x in d.cell.inputs}, **prev}
            for eq in d.forward:
                env[eq.lhs] = evaluate(eq.rhs, env.__getitem__)
            prev = {s + "_prev": env[s] for s in d.cell.states}
        for out, up in d.upstream.items():
            total += float(np.sum(full[t_loss][up] * env[out]))
    return total


@pytest.mark.parametrize("k", [1, 2, 3])
def test_truncated_gradients_match_central_differences_of_the_truncated_loss(k):
    """The k-step truncated gradients the 'truncated' diagnosis compares with, against finite
    differences of the loss with the older states frozen."""
    d = derive(load_cell("lstm"))
    run = simulate(d, seed=5, T=5, N=2)
    params = {p: run.steps["full"][0][p] for p in d.cell.params}
    totals = truncated_totals(run, k)
    for p in ("W_f", "U_o", "b_g"):
        index = (1,) * params[p].ndim
        h = 1e-6
        plus = {**params, p: params[p].copy()}
        minus = {**params, p: params[p].copy()}
        plus[p][index] += h
        minus[p][index] -= h
        numeric = (_truncated_loss(d, run, plus, k) - _truncated_loss(d, run, minus, k)) / (2 * h)
        assert numeric == pytest.approx(totals["d" + p][index], rel=1e-5, abs=1e-7), (k, p)


# -- round trip: every derived equation, printed, verifies ------------------------------------

def _round_trip_cases():
    for cell in builtin_cells():
        d = derive(load_cell(cell))
        for eq in d.backward:
            yield pytest.param(cell, eq.target, id=f"{cell}-{eq.target}")


@pytest.mark.parametrize("cell,target", list(_round_trip_cases()))
def test_every_backward_equation_printed_in_latex_verifies(cell, target):
    d = derive(load_cell(cell))
    eq = d.backward_eq(target)
    names = load_notation("default").latex_names(d)
    written = [f"{sp.latex(sp.Symbol(target), symbol_names=names)} = "
               f"{sp.latex(eq.expr, symbol_names=names)}",
               f"{sp.latex(sp.Symbol(target))} = {sp.latex(eq.expr)}"]
    for formula in written:
        v = verify(cell, formula)
        assert v.verdict == "holds", (formula, v.detail)
        assert v.how.startswith("symbolic proof"), (formula, v.how)


def test_sympy_syntax_and_quantity_option():
    v = verify("lstm", "dc_next + dh*o*(1 - tanh(c)**2)", quantity="dc")
    assert v.verdict == "holds"
    assert verify("lstm", "U_i.T @ da_i + U_f.T @ da_f + U_g.T @ da_g + U_o.T @ da_o",
                  quantity="h_prev").verdict == "holds"


def test_whole_sequence_formula_holds_numerically():
    v = verify("lstm", r"\frac{\partial L}{\partial W_{f}} = \sum_t \delta a_{f} (x)^{\top}")
    assert v.verdict == "holds" and v.whole_sequence and v.how.startswith("numeric agreement")


# -- the slips, each caught and named ---------------------------------------------------------

def _kinds(v):
    return [d.kind for d in v.diagnosis]


#: fork branches that add exactly zero for every loss on the outputs, so a formula without them
#: holds: verify's loss is the sum of the per-step losses on the outputs. sLSTM's stabiliser m
#: rescales c and n together and h = o * c / n cancels the scale, so dm = 0 at every step
#: (tests/test_new_builtins.py checks dL/dm against torch autograd).
ZERO_BRANCHES = {("slstm", "df_pre", "F7"), ("slstm", "di_pre", "F7"), ("slstm", "dm_prev", "F7")}


def _fork_cases():
    for cell in builtin_cells():
        d = derive(load_cell(cell))
        for eq in d.backward:
            for k, branch in enumerate(eq.branches if eq.is_fork else ()):
                yield pytest.param(cell, eq.target, k, id=f"{cell}-{eq.target}-{branch.source}")


@pytest.mark.parametrize("cell,target,k", list(_fork_cases()))
def test_a_missing_fork_branch_is_diagnosed(cell, target, k):
    d = derive(load_cell(cell))
    eq = d.backward_eq(target)
    branch = eq.branches[k]
    v = verify(cell, sp.sstr(eq.expr - branch.expr), quantity=target)
    if (cell, target, branch.source) in ZERO_BRANCHES:
        assert v.verdict == "holds" and v.how.startswith("numeric agreement"), (v.verdict, v.how)
        return
    assert v.verdict == "does not hold"
    allowed = {"missing branch", "truncated"} if branch.source == "next" else {"missing branch"}
    assert set(_kinds(v)) & allowed, v.diagnosis
    assert v.counterexample and "expected" in v.counterexample
    assert v.correct and v.correct_cell == cell_text(eq.expr)


def _activation_cases():
    from derive.ops import sigmoid
    for cell in builtin_cells():
        d = derive(load_cell(cell))
        gates = {sp.Symbol(f.lhs) for f in d.forward if isinstance(f.rhs, sigmoid)}
        tanhs = {sp.Symbol(f.lhs) for f in d.forward if isinstance(f.rhs, sp.tanh)}
        for eq in d.backward:
            factors = sp.Mul.make_args(eq.expr)
            for q in gates:
                if q in factors and 1 - q in factors:
                    yield pytest.param(cell, eq.target, eq.expr.xreplace({1 - q: 1}), "sigma' as sigma",
                                       id=f"{cell}-{eq.target}-sigma")
                    yield pytest.param(cell, eq.target, eq.expr / q, "sigma' as 1-sigma",
                                       id=f"{cell}-{eq.target}-1-sigma")
            for q in tanhs:
                if 1 - q ** 2 in factors:
                    yield pytest.param(cell, eq.target, eq.expr.xreplace({1 - q ** 2: 1 - q}),
                                       "tanh' as 1-tanh", id=f"{cell}-{eq.target}-tanh")


@pytest.mark.parametrize("cell,target,wrong,kind", list(_activation_cases()))
def test_a_wrong_activation_derivative_is_diagnosed(cell, target, wrong, kind):
    v = verify(cell, sp.sstr(wrong), quantity=target)
    assert v.verdict == "does not hold"
    assert kind in _kinds(v), v.diagnosis


@pytest.mark.parametrize("cell", builtin_cells())
def test_a_sign_flip_is_diagnosed(cell):
    d = derive(load_cell(cell))
    eq = d.backward[1]
    v = verify(cell, sp.sstr(-eq.expr), quantity=eq.target)
    assert v.verdict == "does not hold" and "sign flip" in _kinds(v)


@pytest.mark.parametrize("formula,quantity,kind,says", [
    ("dc*di", "dg", "wrong factor", "di is used where i is needed"),
    ("dc*c", "df", "wrong time index", "c is used where c_prev is needed"),
    ("outer(da_f, h_prev)", "dW_f", "wrong factor", "h_prev is used where x is needed"),
])
def test_a_factor_that_is_another_quantity_is_diagnosed(formula, quantity, kind, says):
    v = verify("lstm", formula, quantity=quantity)
    assert v.verdict == "does not hold"
    assert kind in _kinds(v) and says in v.diagnosis_text


def test_the_one_step_truncated_gradient_is_diagnosed_per_step_and_whole_sequence():
    v = verify("lstm", "dh_out*o*(1 - tanh(c)**2)", quantity="dc")
    assert v.verdict == "does not hold" and _kinds(v) == ["truncated"]
    v = verify("minimal_rnn", "sum_t(outer((w.T @ (do_out*o*(1 - o)))*s*(1 - s), s_prev))",
               quantity="dv")
    assert v.verdict == "does not hold" and _kinds(v) == ["truncated"]
    assert "1-step" in v.diagnosis_text


def test_a_missing_time_sum_is_diagnosed():
    v = verify("lstm", r"\frac{\partial L}{\partial W_{f}} = \delta a_{f} (x)^{\top}")
    assert v.verdict == "does not hold"
    assert _kinds(v)[0] == "missing sum"
    assert "with Σ_t the right side holds" in v.diagnosis_text


def test_swapped_blocks_of_a_concatenated_gradient_are_diagnosed():
    swapped = (r"\mathrm{d}w_f = \mathrm{d}\Gamma_f^{<t>} \Gamma_f^{<t>} (1 - \Gamma_f^{<t>}) "
               r"[x^{<t>}, a^{<t-1>}]^T")
    v = verify("lstm", swapped, notation="coursera")
    assert v.verdict == "does not hold" and "block order" in _kinds(v)
    right = swapped.replace("[x^{<t>}, a^{<t-1>}]", "[a^{<t-1>}, x^{<t>}]")
    assert verify("lstm", right, notation="coursera").verdict == "holds"


def test_counterexample_and_json_verdict():
    result = cellgrad("verify", "lstm", "--quantity", "dc", "--formula",
                      "dc_next + dh*o*(1 - tanh(c))", "--json")
    assert result.returncode == 1, result.stderr
    data = json.loads(result.stdout)
    assert data["verdict"] == "does not hold"
    assert [d["kind"] for d in data["diagnosis"]] == ["tanh' as 1-tanh"]
    c = data["counterexample"]
    assert c["expected"] != pytest.approx(c["got"])
    assert data["correct_cell"] == "dc_next + dh*o*(1 - tanh(c)**2)"
    assert r"\tanh^{2}" in data["correct"]


def test_correct_formula_is_printed_in_the_users_notation():
    v = verify("lstm", r"\mathrm{d}\Gamma_{f}^{<t>} = \mathrm{d}c^{<t>} * c^{<t>}", notation="coursera")
    assert v.verdict == "does not hold"
    assert r"c^{\langle t-1 \rangle}" in v.correct and r"\mathrm{d}c" in v.correct


def test_holding_text_output_and_exit_status():
    result = cellgrad("verify", "lstm", "--quantity", "dc", "--formula",
                      "dc_next + dh*o*(1 - tanh(c)**2)")
    assert result.returncode == 0 and result.stdout.startswith("verdict: holds, by symbolic proof")


def test_formula_from_a_file(tmp_path):
    path = tmp_path / "f.tex"
    path.write_text(r"\mathrm{d}c^{<t-1>} = \mathrm{d}c^{<t>} * \Gamma_f^{<t>}", encoding="utf-8")
    result = cellgrad("verify", "lstm", "--notation", "coursera", "--formula", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_notation_file_is_read(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text("[notation]\nname = 'mine'\ntime = 'sub'\n[symbols]\nh = 'y'\nc = 's'\n"
                    "x = 'x'\nf = 'f'\ni = 'i'\ng = 'g'\no = 'o'\n", encoding="utf-8")
    v = verify("lstm", r"\delta s_t = \bar{\delta} s_t + \delta y_t o_t (1 - \tanh^2 s_t)",
               notation=str(path))
    assert v.verdict == "holds", v.detail


# -- bad input: one line, exit 2, no traceback ------------------------------------------------

CLASH = "[notation]\nname = 'clash'\n[symbols]\nh = 'c'\nc = 'c'\n"
CYCLE = "[notation]\nname = 'cycle'\n[symbols]\nh = 'c'\nc = 'h'\n"


@pytest.mark.parametrize("args,says", [
    (["lstm", "--quantity", "dc", "--formula", r"\frac{\partial c}{"], "unreadable formula"),
    (["lstm", "--formula", "dc = dq"], "unknown name 'dq'"),
    (["lstm", "--formula", r"\mathrm{d}c = \foo{c}"], r"unknown command \foo"),
    (["lstm", "--formula", r"\mathrm{d}c = \mathrm{d}z^{<t>}"], "unknown symbol z"),
    (["lstm", "--quantity", "dz", "--formula", "dc"], "has no quantity 'dz'"),
    (["lstm", "--formula", "dc_next"], "no left side"),
    (["lstm", "--formula", "  "], "empty formula"),
    (["nocell", "--formula", "dc = dc"], "unknown cell"),
    (["lstm", "--notation", "nonotation", "--formula", "dc = dc"], "unknown notation"),
    (["lstm", "--notation", "{CLASH}", "--formula", "dc = dc"], "clash"),
    (["lstm", "--notation", "{CYCLE}", "--formula", "dc = dc"], "cycle"),
    (["lstm", "--notation", "{BROKEN}", "--formula", "dc = dc"], "not valid TOML"),
    ([], "needs CELL_OR_SPEC"),
])
def test_bad_input_is_one_clear_line(tmp_path, args, says):
    files = {"{CLASH}": CLASH, "{CYCLE}": CYCLE, "{BROKEN}": "[notation\n"}
    real = []
    for a in args:
        if a in files:
            path = tmp_path / "n.toml"
            path.write_text(files[a], encoding="utf-8")
            a = str(path)
        real.append(a)
    result = cellgrad("verify", *real)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.rstrip().splitlines()
    assert lines[0].startswith("cellgrad: error:") and says in lines[0], result.stderr
    if len(lines) > 1:                 # a place in the formula: the typed line, ^ under it
        assert len(lines) == 3 and re.fullmatch(r" *\^+", lines[2]), result.stderr
        column = int(re.search(r"column (\d+)", lines[0]).group(1))
        assert lines[2].index("^") - 4 == column - 1 and lines[1].strip() in real[-1], result.stderr
    assert says in lines[0], lines[0]


def test_api_raises_verify_error_for_a_bad_request():
    with pytest.raises(VerifyError, match="has no quantity"):
        verify("lstm", "dc", quantity="nothing")


@pytest.mark.parametrize("quantity,notation", [
    ("df", None), ("f", None), (r"\Gamma_f", "coursera"), (r"\mathrm{d}\Gamma_f^{<t>}", "coursera"),
])
def test_quantity_in_cell_names_or_the_notation(quantity, notation):
    v = verify("lstm", "c_prev*dc" if notation is None else r"\mathrm{d}c^{<t>} c^{<t-1>}",
               quantity=quantity, notation=notation)
    assert v.verdict == "holds" and v.claim[0] == "df"


def test_the_diagnosed_repair_of_seed_003_holds():
    """Seed 003 (line 388, indices restored) adds Γ_f<t+1> where dc<t+1> Γ_f<t+1> belongs; with
    that factor supplied, as the diagnosis says, the block's dW_f term is right."""
    import tomllib
    fixtures = tomllib.loads((ROOT / "tests" / "fixtures" / "seed_formulas.toml").read_text("utf-8"))
    entry = next(e for e in fixtures["formula"] if e["id"] == "003-L388-repaired")
    fixed = entry["latex"].replace(r"+ \Gamma_{f}^{<t+1>}", r"+ \mathrm{d}c^{<t+1>} \Gamma_{f}^{<t+1>}")
    assert fixed != entry["latex"]
    v = verify("lstm", fixed, quantity=entry["quantity"], notation=str(ROOT / entry["notation"]))
    assert v.verdict == "holds", v.detail


@pytest.mark.parametrize("cell,quantity,wrong", [
    ("lstm", "dc", "dh*o*(1 - tanh(c)**2)"),
    ("lstm", "da_f", "df*f"),
    ("gru", "dh_prev", "dh*z"),
    ("minimal_rnn", "dv", "sum_t(outer(da_s, s))"),
])
def test_the_printed_correct_formula_verifies(cell, quantity, wrong):
    v = verify(cell, wrong, quantity=quantity)
    assert v.verdict == "does not hold"
    again = verify(cell, v.correct, quantity=quantity)
    assert again.verdict == "holds", (v.correct, again.detail)
