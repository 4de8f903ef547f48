"""The new built-in cells lstmp, augru, mingru, layernorm_lstm and slstm against PyTorch autograd
of a torch reference written here by hand from each cell's paper or library, and lstmp against
nn.LSTM(proj_size=...) itself. The reference interpreter and every generated kernel must give
the torch outputs, final states and gradients (float64, relative error <= 1e-9). Central finite
differences of every built-in are in test_derive_numeric.py and test_kernels_gradients.py.
Skipped without torch, except in CI (CI=true): fail."""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest

from codegen.gradcheck import flat_grads
from derive import builtin_cells, derive, load_cell, parse_spec, spec_path
from derive.evaluate import random_inputs, random_params, run_backward, run_forward

from cell_oracles import import_kernel
from kernel_modules import BACKENDS, kernel

T, N = 5, 3
SIZES = {"D": 4, "H": 5, "P": 3}
TOLERANCE = 1e-9


def torch_or_skip():
    if importlib.util.find_spec("torch") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("torch is required in CI (pip install torch==2.13.0)")
        pytest.skip("torch not installed")
    import torch
    return torch


def rel_err(a, b):
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)) / max(np.linalg.norm(b), 1e-30))


# -- torch references, one step each: (params, inputs at t, states) -> new states --------------
def mingru_step(torch, p, x, s):
    z = torch.sigmoid(x["x"] @ p["W_z"].T + p["b_z"])
    candidate = x["x"] @ p["W_h"].T + p["b_h"]
    return {"h": (1 - z) * s["h"] + z * candidate}


def augru_step(torch, p, x, s):
    h, xt, a = s["h"], x["x"], x["att"]
    u = torch.sigmoid(xt @ p["W_u"].T + h @ p["U_u"].T + p["b_u"])
    r = torch.sigmoid(xt @ p["W_r"].T + h @ p["U_r"].T + p["b_r"])
    n = torch.tanh(xt @ p["W_o"].T + (r * h) @ p["U_o"].T + p["b_o"])
    u_att = (1 - a) * u
    return {"h": u_att * h + (1 - u_att) * n}


def lstmp_step(torch, p, x, s):
    h, c, xt = s["h"], s["c"], x["x"]

    def gate(k):
        return xt @ p[f"W_i{k}"].T + p[f"b_i{k}"] + h @ p[f"W_h{k}"].T + p[f"b_h{k}"]

    i, f, g, o = torch.sigmoid(gate("i")), torch.sigmoid(gate("f")), torch.tanh(gate("g")), \
        torch.sigmoid(gate("o"))
    c = f * c + i * g
    return {"h": (o * torch.tanh(c)) @ p["W_hr"].T, "c": c}


def layer_norm(torch, v, gain=None, shift=None, eps=1e-5):
    """haste's layer norm over the last axis: biased variance, eps inside the square root."""
    mu = v.mean(-1, keepdim=True)
    out = (v - mu) / torch.sqrt(((v - mu) ** 2).mean(-1, keepdim=True) + eps)
    return out * (1 if gain is None else gain) + (0 if shift is None else shift)


def layernorm_lstm_step(torch, p, x, s):
    gates = "ifgo"
    wx = torch.cat([x["x"] @ p[f"W_{k}"].T for k in gates], -1)      # (N, 4H), one norm
    uh = torch.cat([s["h"] @ p[f"U_{k}"].T for k in gates], -1)
    gx = torch.cat([p[f"gx_{k}"] for k in gates])
    gr = torch.cat([p[f"gr_{k}"] for k in gates])
    b = torch.cat([p[f"b_{k}"] for k in gates])
    pre = layer_norm(torch, wx, gx) + layer_norm(torch, uh, gr) + b
    ai, af, ag, ao = pre.chunk(4, -1)
    i, f, g, o = torch.sigmoid(ai), torch.sigmoid(af), torch.tanh(ag), torch.sigmoid(ao)
    c = f * s["c"] + i * g
    h = o * torch.tanh(layer_norm(torch, c, p["gain_c"], p["shift_c"]))
    return {"h": h, "c": c}


def slstm_step(torch, p, x, s):
    """xLSTM's sLSTM, stabilised (Beck et al. 2024, eqs. 8-17), with an exponential forget gate:
    log i = i~, log f = f~; m = max(log f + m_prev, log i), i' = exp(i~ - m),
    f' = exp(log f + m_prev - m)."""
    xt, h = x["x"], s["h"]

    def pre(k):
        return xt @ p[f"W_{k}"].T + h @ p[f"R_{k}"].T + p[f"b_{k}"]

    log_i, log_f = pre("i"), pre("f")
    z, o = torch.tanh(pre("z")), torch.sigmoid(pre("o"))
    m = torch.maximum(log_f + s["m"], log_i)
    i, f = torch.exp(log_i - m), torch.exp(log_f + s["m"] - m)
    c = f * s["c"] + i * z
    n = f * s["n"] + i
    return {"h": o * (c / n), "c": c, "n": n, "m": m}


REFERENCES = {
    "mingru": mingru_step,
    "slstm": slstm_step,
    "augru": augru_step,
    "lstmp": lstmp_step,
    "layernorm_lstm": layernorm_lstm_step,
}


class Problem:
    def __init__(self, name, seed=0):
        self.d = derive(load_cell(name))
        cell = self.d.cell
        rng = np.random.default_rng(seed)
        sizes = {s: SIZES[s] for s in cell.sizes}
        self.params = random_params(self.d, sizes, rng)
        self.xs, self.state0 = random_inputs(self.d, sizes, T, N, rng)
        self.d_out = {o: rng.standard_normal((T, N, sizes[cell.shape(o)[0]])) for o in cell.outputs}
        self.d_state = {s: rng.standard_normal((N, sizes[cell.shape(s)[0]])) for s in cell.states}

    def torch_run(self, name):
        """Outputs, final states and the gradients of <d_out, outputs> + <d_state, final>."""
        torch = torch_or_skip()
        cell = self.d.cell
        leaves = {k: torch.tensor(v, requires_grad=True)
                  for k, v in {**self.params, **self.xs, **self.state0}.items()}
        p = {k: leaves[k] for k in cell.params}
        state = {s: leaves[s] for s in cell.states}
        outputs = {o: [] for o in cell.outputs}
        for t in range(T):
            state = REFERENCES[name](torch, p, {i: leaves[i][t] for i in cell.inputs}, state)
            for o in cell.outputs:
                outputs[o].append(state[o])
        outputs = {o: torch.stack(v) for o, v in outputs.items()}
        loss = sum((outputs[o] * torch.tensor(self.d_out[o])).sum() for o in outputs)
        loss = loss + sum((state[s] * torch.tensor(self.d_state[s])).sum() for s in state)
        loss.backward()
        return ({o: v.detach().numpy() for o, v in outputs.items()},
                {s: v.detach().numpy() for s, v in state.items()},
                {k: v.grad.numpy() for k, v in leaves.items()})

    def compare(self, outputs, state, grads, expected):
        want_out, want_state, want_grads = expected
        for o in want_out:
            assert rel_err(outputs[o], want_out[o]) <= TOLERANCE, o
        for s in want_state:
            assert rel_err(state[s], want_state[s]) <= TOLERANCE, s
        assert set(grads) == set(want_grads)
        for k in want_grads:
            assert np.any(want_grads[k] != 0), f"{k}: the torch reference does not use it"
            assert rel_err(grads[k], want_grads[k]) <= TOLERANCE, f"d{k}"


def test_every_reference_is_a_builtin_cell():
    assert set(REFERENCES) <= set(builtin_cells())


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_reference_interpreter_matches_torch(name):
    problem = Problem(name)
    expected = problem.torch_run(name)
    trace = run_forward(problem.d, problem.params, problem.xs, problem.state0)
    grads = run_backward(problem.d, trace, problem.d_out, problem.d_state)
    problem.compare(trace.outputs, trace.state, grads, expected)


def lstmp_params_from_torch(net):
    """nn.LSTM(proj_size=P) weights as the lstmp spec names them (gate order i, f, g, o)."""
    split = {name: getattr(net, name).detach().numpy()
             for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")}
    params = {"W_hr": net.weight_hr_l0.detach().numpy().copy()}
    for k, gate in enumerate("ifgo"):
        for torch_name, ours in (("weight_ih_l0", f"W_i{gate}"), ("weight_hh_l0", f"W_h{gate}"),
                                 ("bias_ih_l0", f"b_i{gate}"), ("bias_hh_l0", f"b_h{gate}")):
            rows = split[torch_name].shape[0] // 4
            params[ours] = split[torch_name][k * rows:(k + 1) * rows].copy()
    return params


def test_lstmp_matches_nn_lstm_with_proj_size():
    torch = torch_or_skip()
    D, H, P = SIZES["D"], SIZES["H"], SIZES["P"]
    torch.manual_seed(0)
    net = torch.nn.LSTM(D, H, proj_size=P, dtype=torch.float64)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((T, N, D))
    state0 = {"h": rng.standard_normal((N, P)), "c": rng.standard_normal((N, H))}
    d_out = rng.standard_normal((T, N, P))
    d_state = {"h": rng.standard_normal((N, P)), "c": rng.standard_normal((N, H))}

    xt = torch.tensor(x, requires_grad=True)
    h0 = torch.tensor(state0["h"][None], requires_grad=True)
    c0 = torch.tensor(state0["c"][None], requires_grad=True)
    out, (hT, cT) = net(xt, (h0, c0))
    loss = ((out * torch.tensor(d_out)).sum() + (hT[0] * torch.tensor(d_state["h"])).sum()
            + (cT[0] * torch.tensor(d_state["c"])).sum())
    loss.backward()

    d = derive(load_cell("lstmp"))
    params = lstmp_params_from_torch(net)
    trace = run_forward(d, params, x, state0)
    grads = run_backward(d, trace, {"h": d_out}, d_state)
    assert rel_err(trace.outputs["h"], out.detach().numpy()) <= TOLERANCE
    assert rel_err(trace.state["h"], hT[0].detach().numpy()) <= TOLERANCE
    assert rel_err(trace.state["c"], cT[0].detach().numpy()) <= TOLERANCE
    assert rel_err(grads["x"], xt.grad.numpy()) <= TOLERANCE
    assert rel_err(grads["h"], h0.grad.numpy()[0]) <= TOLERANCE
    assert rel_err(grads["c"], c0.grad.numpy()[0]) <= TOLERANCE
    stacked = {
        "weight_ih_l0": np.concatenate([grads[f"W_i{g}"] for g in "ifgo"]),
        "weight_hh_l0": np.concatenate([grads[f"W_h{g}"] for g in "ifgo"]),
        "bias_ih_l0": np.concatenate([grads[f"b_i{g}"] for g in "ifgo"]),
        "bias_hh_l0": np.concatenate([grads[f"b_h{g}"] for g in "ifgo"]),
        "weight_hr_l0": grads["W_hr"],
    }
    for name, value in stacked.items():
        assert rel_err(value, getattr(net, name).grad.numpy()) <= TOLERANCE, name


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_generated_kernels_match_torch(name, backend):
    problem = Problem(name, seed=1)
    expected = problem.torch_run(name)
    module = kernel(name, backend)
    x = problem.xs if len(problem.xs) > 1 else next(iter(problem.xs.values()))
    outputs, state, cache = module.forward(x, problem.params, problem.state0)
    grads = flat_grads(module.backward(problem.d_out, cache, problem.d_state))
    problem.compare(outputs, state, grads, expected)


# -- learnable initial states (init = "param") in the kernels -------------------------------------

def lstm_with_learned_initial_states():
    """The built-in lstm with ``init = "param"`` for h and c: learnable h0 and c0, broadcast over
    the batch when no initial state is passed."""
    text = spec_path("lstm").read_text(encoding="utf-8")
    states = '[states]\nh = "H"\nc = "H"\n'
    assert states in text
    text = text.replace(states, '[states]\nh = { size = "H", init = "param" }\n'
                                'c = { size = "H", init = "param" }\n')
    text = text.replace('name = "lstm"', 'name = "lstm_learned_init"')
    return derive(parse_spec(text)), text


@pytest.mark.parametrize("backend", BACKENDS)
def test_learned_initial_states_match_nn_lstm_and_central_differences(backend, tmp_path):
    """With no initial state passed, forward starts at h0, c0 and backward returns their
    gradients: against torch.nn.LSTM run from h0, c0 expanded over the batch (autograd sums over
    it), and against central differences of the kernel's own forward. A state passed explicitly
    wins: h0 and c0 then have no effect and a zero gradient."""
    torch = torch_or_skip()
    d, text = lstm_with_learned_initial_states()
    assert d.cell.initial == {"h": "h0", "c": "c0"}
    module = import_kernel(d, backend, tmp_path, text)
    D, H = SIZES["D"], SIZES["H"]
    rng = np.random.default_rng(4)
    params = random_params(d, {"D": D, "H": H}, rng)
    x = rng.standard_normal((T, N, D))
    d_out = {"h": rng.standard_normal((T, N, H))}
    d_state = {s: rng.standard_normal((N, H)) for s in ("h", "c")}

    outputs, state, cache = module.forward(x, params)
    grads = module.backward(d_out, cache, d_state)

    net = torch.nn.LSTM(D, H, dtype=torch.float64)
    with torch.no_grad():
        net.weight_ih_l0.copy_(torch.tensor(np.concatenate([params[f"W_{g}"] for g in "ifgo"])))
        net.weight_hh_l0.copy_(torch.tensor(np.concatenate([params[f"U_{g}"] for g in "ifgo"])))
        net.bias_ih_l0.copy_(torch.tensor(np.concatenate([params[f"b_{g}"] for g in "ifgo"])))
        net.bias_hh_l0.zero_()
    h0 = torch.tensor(params["h0"], requires_grad=True)
    c0 = torch.tensor(params["c0"], requires_grad=True)
    xt = torch.tensor(x, requires_grad=True)
    out, (hT, cT) = net(xt, (h0.expand(1, N, H), c0.expand(1, N, H)))
    ((out * torch.tensor(d_out["h"])).sum() + (hT[0] * torch.tensor(d_state["h"])).sum()
     + (cT[0] * torch.tensor(d_state["c"])).sum()).backward()
    assert rel_err(outputs["h"], out.detach().numpy()) <= TOLERANCE
    assert rel_err(state["c"], cT[0].detach().numpy()) <= TOLERANCE
    assert rel_err(grads.params["h0"], h0.grad.numpy()) <= TOLERANCE
    assert rel_err(grads.params["c0"], c0.grad.numpy()) <= TOLERANCE
    assert rel_err(grads.inputs["x"], xt.grad.numpy()) <= TOLERANCE
    assert rel_err(grads.params["U_f"], net.weight_hh_l0.grad.numpy()[H:2 * H]) <= TOLERANCE

    def f():
        outputs, state, _ = module.forward(x, params)
        return float(np.sum(outputs["h"] * d_out["h"])
                     + sum(np.sum(state[s] * d_state[s]) for s in d_state))

    step = 1e-6
    for name in ("h0", "c0"):
        numeric = np.zeros(H)
        for k in range(H):
            params[name][k] += step
            up = f()
            params[name][k] -= 2 * step
            down = f()
            params[name][k] += step
            numeric[k] = (up - down) / (2 * step)
        np.testing.assert_allclose(grads.params[name], numeric, rtol=1e-6, atol=1e-8, err_msg=name)

    given = {s: rng.standard_normal((N, H)) for s in ("h", "c")}
    outputs_given, _, cache = module.forward(x, params, given)
    grads_given = module.backward(d_out, cache, d_state)
    out_given, _ = net(torch.tensor(x), tuple(torch.tensor(given[s][None]) for s in ("h", "c")))
    assert rel_err(outputs_given["h"], out_given.detach().numpy()) <= TOLERANCE
    assert not np.any(grads_given.params["h0"]) and not np.any(grads_given.params["c0"])


# -- slstm: the max of its stabiliser at a tie, and what the stabiliser does not change ----------

@pytest.mark.parametrize("backend", ["reference", *BACKENDS])
def test_slstm_at_a_tie_of_the_stabiliser_splits_the_gradient_as_torch_maximum(backend):
    """With x<0> = 0, h<0> = 0, m<0> = 0 and b_f = b_i, the first step's max(f_pre + m_prev, i_pre)
    is an exact tie in every entry; torch.maximum then gives each argument half the gradient,
    and so must the derivation and the kernels: db_i, db_f and dm<0> carry those halves."""
    problem = Problem("slstm", seed=5)
    problem.params["b_f"] = problem.params["b_i"].copy()
    problem.xs["x"][0] = 0.0
    problem.state0["h"][...] = 0.0
    problem.state0["m"][...] = 0.0
    expected = problem.torch_run("slstm")
    if backend == "reference":
        trace = run_forward(problem.d, problem.params, problem.xs, problem.state0)
        grads = run_backward(problem.d, trace, problem.d_out, problem.d_state)
        outputs, state = trace.outputs, trace.state
    else:
        module = kernel("slstm", backend)
        outputs, state, cache = module.forward(problem.xs["x"], problem.params, problem.state0)
        grads = flat_grads(module.backward(problem.d_out, cache, problem.d_state))
    for name in ("b_i", "b_f", "m"):
        assert rel_err(grads[name], expected[2][name]) <= TOLERANCE, name
    problem.compare(outputs, state, grads, expected)


def test_slstm_outputs_do_not_see_the_stabiliser():
    """m only rescales the step's c and n together (c and n are of degree 1 in i and f), and
    h = o * c / n cancels the scale: for a loss on the outputs alone dL/dm<t> = 0 at every step
    t >= 1 (torch autograd), while a loss on the final c does see m<T>. So formulas for df_pre,
    di_pre, dm_prev that leave out the branch through m still hold for verify, whose loss is the
    outputs' (tests/test_verify.py, ZERO_BRANCHES). m<0> does matter: it is the log scale of the
    initial c<0>, n<0>."""
    torch = torch_or_skip()
    problem = Problem("slstm", seed=6)
    p = {k: torch.tensor(v, requires_grad=True) for k, v in problem.params.items()}
    for loss_on_c, sees_m in ((False, False), (True, True)):
        state = {s: torch.tensor(v) for s, v in problem.state0.items()}
        ms, loss = [], 0
        for t in range(T):
            state = slstm_step(torch, p, {"x": torch.tensor(problem.xs["x"][t])}, state)
            state["m"].retain_grad()
            ms.append(state["m"])
            loss = loss + (state["h"] * torch.tensor(problem.d_out["h"][t])).sum()
        if loss_on_c:
            loss = loss + (state["c"] * torch.tensor(problem.d_state["c"])).sum()
        loss.backward()
        worst = max(float(m.grad.abs().max()) for m in ms)
        assert (worst > 1e-3) if sees_m else (worst < 1e-12), (loss_on_c, worst)
