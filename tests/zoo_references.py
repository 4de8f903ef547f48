"""Hand-written PyTorch references for the cells of tests/specs/zoo/, one step function each,
written from the papers (not from the spec files or anything cellgrad derives), so that autograd
through them is an independent oracle for the generated kernels.

A step takes the parameters ``p``, this step's inputs ``x`` and the previous states ``s`` (dicts
of float64 tensors, rows are the batch, spec names) and returns (outputs, new states). Vectors
act on the rows: ``lin(W, v)`` is W @ v for every row v. A cell whose paper builds a spec
parameter from free ones (Wᵀ, which the spec language cannot write) names those in ``free`` and
maps them to the spec's parameters in ``to_spec``: the oracle then differentiates with respect
to the free parameters, through the paper's construction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

sig = torch.sigmoid
tanh = torch.tanh
relu = torch.relu


def lin(W, v):
    """W @ v for each row v of the batch."""
    return v @ W.T


@dataclass(frozen=True)
class Reference:
    step: Callable
    #: free parameters (name -> shape in size symbols) that ``to_spec`` maps to spec parameters
    free: dict = field(default_factory=dict)
    to_spec: Callable | None = None


def indrnn(p, x, s):
    h = relu(lin(p["W"], x["x"]) + p["u"] * s["h"] + p["b"])
    return {"h": h}, {"h": h}


def ugrnn(p, x, s):
    hp, xt = s["h"], x["x"]
    cand = tanh(lin(p["W_c"], xt) + lin(p["U_c"], hp) + p["b_c"])
    gate = sig(lin(p["W_g"], xt) + lin(p["U_g"], hp) + p["b_g"])
    h = gate * hp + (1 - gate) * cand
    return {"h": h}, {"h": h}


def plus_rnn(p, x, s):
    hp, xt = s["h"], x["x"]
    y_cand = relu(lin(p["W_yh"], hp) + lin(p["W_yx"], xt) + p["b_y"])
    h_cand = tanh(lin(p["W_hh"], hp) + lin(p["W_hx"], xt) + p["b_h"])
    gy = sig(lin(p["W_gyh"], hp) + lin(p["W_gyx"], xt) + p["b_gy"])
    gh = sig(lin(p["W_ghh"], hp) + lin(p["W_ghx"], xt) + p["b_gh"])
    return {"y": gy * xt + (1 - gy) * y_cand}, {"h": gh * hp + (1 - gh) * h_cand}


def mgu(p, x, s):
    hp, xt = s["h"], x["x"]
    f = sig(lin(p["W_f"], xt) + lin(p["U_f"], hp) + p["b_f"])
    cand = tanh(lin(p["W_h"], xt) + lin(p["U_h"], f * hp) + p["b_h"])
    h = (1 - f) * hp + f * cand
    return {"h": h}, {"h": h}


def janet(p, x, s, beta=1.0):
    cp, xt = s["c"], x["x"]
    pre = lin(p["W_f"], xt) + lin(p["U_f"], cp) + p["b_f"]
    c = sig(pre) * cp + (1 - sig(pre - beta)) * tanh(lin(p["W_c"], xt) + lin(p["U_c"], cp) + p["b_c"])
    return {"c": c}, {"c": c}


def _gates(p, xt, hp, names, acts):
    return [act(lin(p[f"W_{n}"], xt) + lin(p[f"U_{n}"], hp) + p[f"b_{n}"]) for n, act in zip(names, acts)]


def cifg_lstm(p, x, s):
    i, g, o = _gates(p, x["x"], s["h"], "igo", (sig, tanh, sig))
    c = (1 - i) * s["c"] + i * g
    h = o * tanh(c)
    return {"h": h}, {"h": h, "c": c}


def _dey_salem(z, r):
    def step(p, x, s):
        hp, xt = s["h"], x["x"]
        zt, rt = z(p, hp), r(p, hp)
        cand = tanh(lin(p["W_h"], xt) + lin(p["U_h"], rt * hp) + p["b_h"])
        h = (1 - zt) * hp + zt * cand
        return {"h": h}, {"h": h}
    return step


gru1 = _dey_salem(lambda p, hp: sig(lin(p["U_z"], hp) + p["b_z"]),
                  lambda p, hp: sig(lin(p["U_r"], hp) + p["b_r"]))
gru2 = _dey_salem(lambda p, hp: sig(lin(p["U_z"], hp)), lambda p, hp: sig(lin(p["U_r"], hp)))
gru3 = _dey_salem(lambda p, hp: sig(p["b_z"]).expand_as(hp), lambda p, hp: sig(p["b_r"]).expand_as(hp))


def sru(p, x, s):
    cp, xt = s["c"], x["x"]
    f = sig(lin(p["W_f"], xt) + p["v_f"] * cp + p["b_f"])
    r = sig(lin(p["W_r"], xt) + p["v_r"] * cp + p["b_r"])
    c = f * cp + (1 - f) * lin(p["W"], xt)
    return {"h": r * tanh(c) + (1 - r) * xt}, {"c": c}


def qrnn(p, x, s):
    """fo-pooling over a width-2 window: the masked convolution of x_{t-1}, x_t."""
    window = torch.cat([x["x"], s["xp"]], dim=1)
    conv = {n: window @ torch.cat([p[f"W_{n}"], p[f"V_{n}"]], dim=1).T + p[f"b_{n}"] for n in "zfo"}
    z, f, o = tanh(conv["z"]), sig(conv["f"]), sig(conv["o"])
    c = f * s["c"] + (1 - f) * z
    return {"h": o * c}, {"c": c, "xp": x["x"]}


def nested_lstm(p, x, s):
    xt, hp = x["x"], s["h"]
    i, f, o, g = _gates(p, xt, hp, "ifog", (sig, sig, sig, tanh))
    inner_x, inner_h = i * g, f * s["c"]
    gate = {n: lin(p[f"Wi_{n}"], inner_x) + lin(p[f"Ui_{n}"], inner_h) + p[f"bi_{n}"] for n in "ifog"}
    ci = sig(gate["f"]) * s["ci"] + sig(gate["i"]) * tanh(gate["g"])
    c = sig(gate["o"]) * tanh(ci)
    h = o * tanh(c)
    return {"h": h}, {"h": h, "c": c, "ci": ci}


def delta_rnn(p, x, s):
    hp = s["h"]
    wx, vh = lin(p["W"], x["x"]), lin(p["V"], hp)
    d1 = p["alpha"] * vh * wx
    d2 = p["beta1"] * vh + p["beta2"] * wx
    z = tanh(d1 + d2 + p["b"])
    r = sig(wx + p["b_r"])
    h = tanh((1 - r) * z + r * hp)
    return {"h": h}, {"h": h}


LIPSCHITZ_BETA, LIPSCHITZ_EPS, LIPSCHITZ_GAMMA = 0.75, 0.1, 0.01


def _lipschitz_matrix(M, beta=LIPSCHITZ_BETA):
    return (1 - beta) * (M + M.T) + beta * (M - M.T)


def lipschitz_rnn(p, x, s):
    """Erichson et al. eq. (3) with A_beta,gamma = (1-b)(M + Mᵀ) + b(M - Mᵀ) - gamma I."""
    hp = s["h"]
    eye = torch.eye(hp.shape[1], dtype=hp.dtype)
    A = _lipschitz_matrix(p["M_A"]) - LIPSCHITZ_GAMMA * eye
    W = _lipschitz_matrix(p["M_W"]) - LIPSCHITZ_GAMMA * eye
    h = hp + LIPSCHITZ_EPS * (lin(A, hp) + tanh(lin(W, hp) + lin(p["U"], x["x"]) + p["b"]))
    return {"h": h}, {"h": h}


def antisymmetric_rnn(p, x, s, eps=0.1, gamma=0.01):
    hp = s["h"]
    eye = torch.eye(hp.shape[1], dtype=hp.dtype)
    h = hp + eps * tanh(lin(p["W"] - p["W"].T - gamma * eye, hp) + lin(p["V"], x["x"]) + p["b"])
    return {"h": h}, {"h": h}


def cfc(p, x, s):
    backbone = tanh(lin(p["W_bb"], x["x"]) + lin(p["U_bb"], s["h"]) + p["b_bb"])
    f = lin(p["W_f"], backbone) + p["b_f"]
    g = tanh(lin(p["W_g"], backbone) + p["b_g"])
    k = tanh(lin(p["W_k"], backbone) + p["b_k"])
    gate = sig(-f * x["ts"])
    h = gate * g + (1 - gate) * k
    return {"h": h}, {"h": h}


def rhn2(p, x, s):
    state = s["h"]
    for layer in (1, 2):
        from_x = layer == 1
        hh = tanh(lin(p[f"R_H{layer}"], state) + p[f"b_H{layer}"] + (lin(p["W_H"], x["x"]) if from_x else 0))
        t = sig(lin(p[f"R_T{layer}"], state) + p[f"b_T{layer}"] + (lin(p["W_T"], x["x"]) if from_x else 0))
        state = hh * t + state * (1 - t)
    return {"h": state}, {"h": state}


def mlstm(p, x, s):
    xt = x["x"]
    m = lin(p["W_mx"], xt) * lin(p["W_mh"], s["h"])
    hhat = lin(p["W_hx"], xt) + lin(p["W_hm"], m)
    i, o, f = (sig(lin(p[f"W_{n}x"], xt) + lin(p[f"W_{n}m"], m)) for n in "iof")
    c = f * s["c"] + i * hhat
    h = tanh(c) * o
    return {"h": h}, {"h": h, "c": c}


def minlstm(p, x, s):
    xt = x["x"]
    f = sig(lin(p["W_f"], xt) + p["b_f"])
    i = sig(lin(p["W_i"], xt) + p["b_i"])
    h = f / (f + i) * s["h"] + i / (f + i) * (lin(p["W_h"], xt) + p["b_h"])
    return {"h": h}, {"h": h}


def lnc_lstm(p, x, s):
    i, f, g, o = _gates(p, x["x"], s["h"], "ifgo", (sig, sig, tanh, sig))
    c = f * s["c"] + i * g
    normed = torch.nn.functional.layer_norm(c, c.shape[1:], weight=p["g_c"], bias=p["beta_c"], eps=1e-5)
    h = o * tanh(normed)
    return {"h": h}, {"h": h, "c": c}


def ligru(p, x, s):
    z, cand = _gates(p, x["x"], s["h"], "zh", (sig, relu))
    h = z * s["h"] + (1 - z) * cand
    return {"h": h}, {"h": h}


def gru_relu(p, x, s):
    hp, xt = s["h"], x["x"]
    z, r = _gates(p, xt, hp, "zr", (sig, sig))
    cand = relu(lin(p["W_h"], xt) + lin(p["U_h"], r * hp) + p["b_h"])
    h = z * hp + (1 - z) * cand
    return {"h": h}, {"h": h}


def softsign_rnn(p, x, s):
    h = torch.nn.functional.softsign(lin(p["W"], x["x"]) + lin(p["U"], s["h"]) + p["b"])
    return {"h": h}, {"h": h}


def context_rnn(p, x, s):
    state = sig(lin(p["U"], x["w"]) + lin(p["W"], s["s"]) + lin(p["F"], x["feat"]))
    return {"y": lin(p["V"], state) + lin(p["G"], x["feat"])}, {"s": state}


def sc_lstm(p, x, s, alpha=0.5):
    xt, hp = x["x"], s["h"]
    i, f, o, g = (act(lin(p[f"W_{n}"], xt) + lin(p[f"U_{n}"], hp)) for n, act in
                  zip("ifog", (sig, sig, sig, tanh)))
    r = sig(lin(p["W_wr"], xt) + alpha * lin(p["W_hr"], hp))
    d = r * s["d"]
    c = f * s["c"] + i * g + tanh(lin(p["W_dc"], d))
    h = o * tanh(c)
    return {"h": h}, {"h": h, "c": c, "d": d}


def lstm_h0(p, x, s):
    i, f, g, o = _gates(p, x["x"], s["h"], "ifgo", (sig, sig, tanh, sig))
    c = f * s["c"] + i * g
    h = o * tanh(c)
    return {"h": h}, {"h": h, "c": c}


def _lipschitz_to_spec(p):
    return {"A": _lipschitz_matrix(p["M_A"]), "W": _lipschitz_matrix(p["M_W"])}


REFERENCES: dict[str, Reference] = {
    "indrnn": Reference(indrnn), "ugrnn": Reference(ugrnn), "plus_rnn": Reference(plus_rnn),
    "mgu": Reference(mgu), "janet": Reference(janet), "cifg_lstm": Reference(cifg_lstm),
    "gru1": Reference(gru1), "gru2": Reference(gru2), "gru3": Reference(gru3),
    "sru": Reference(sru), "qrnn": Reference(qrnn), "nested_lstm": Reference(nested_lstm),
    "delta_rnn": Reference(delta_rnn),
    "lipschitz_rnn": Reference(lipschitz_rnn, free={"M_A": ("H", "H"), "M_W": ("H", "H")},
                               to_spec=_lipschitz_to_spec),
    "antisymmetric_rnn": Reference(antisymmetric_rnn, free={"W": ("H", "H")},
                                   to_spec=lambda p: {"K": p["W"] - p["W"].T}),
    "cfc": Reference(cfc), "rhn2": Reference(rhn2), "mlstm": Reference(mlstm),
    "minlstm": Reference(minlstm), "lnc_lstm": Reference(lnc_lstm), "ligru": Reference(ligru),
    "gru_relu": Reference(gru_relu), "softsign_rnn": Reference(softsign_rnn),
    "context_rnn": Reference(context_rnn), "sc_lstm": Reference(sc_lstm), "lstm_h0": Reference(lstm_h0),
}


def run_reference(name: str, params: dict, inputs: dict, state0: dict, d_outputs: dict,
                  d_state: dict, initial: dict | None = None):
    """Unroll the reference over the sequence (inputs (T, N, size) float64 NumPy arrays) and
    return (outputs, final states, gradients) as NumPy arrays: the gradients of
    L = sum <d_outputs, outputs> + <d_state, final states> with respect to every parameter (the
    free ones for a cell with ``free``), input and initial state given in ``state0``. A state
    missing from ``state0`` starts at ``initial[state]``: "zeros", "ones", or the name of the
    learnt parameter broadcast over the batch."""
    ref = REFERENCES[name]
    leaf = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True)
            for k, v in {**params, **inputs, **{f"state:{s}": v for s, v in state0.items()}}.items()}
    p = {k: leaf[k] for k in params}
    T, N = next(iter(inputs.values())).shape[:2]
    s = {}
    for k, how in (initial or {}).items():
        if k in state0:
            continue
        if how in ("zeros", "ones"):
            size = d_state[k].shape[1]
            s[k] = (torch.zeros if how == "zeros" else torch.ones)((N, size), dtype=torch.float64)
        else:
            s[k] = p[how].expand(N, -1)
    s.update({k: leaf[f"state:{k}"] for k in state0})
    outs = {o: [] for o in d_outputs}
    for t in range(T):
        out, s = ref.step(p, {k: leaf[k][t] for k in inputs}, s)
        for o in outs:
            outs[o].append(out[o])
    outs = {o: torch.stack(v) for o, v in outs.items()}
    loss = sum((outs[o] * torch.tensor(d_outputs[o])).sum() for o in outs)
    loss = loss + sum((s[k] * torch.tensor(d_state[k])).sum() for k in d_state)
    grads = dict(zip(leaf, torch.autograd.grad(loss, list(leaf.values()), allow_unused=True)))
    as_np = {k: (g.numpy() if g is not None else torch.zeros_like(leaf[k]).numpy()) for k, g in grads.items()}
    return ({o: v.detach().numpy() for o, v in outs.items()}, {k: v.detach().numpy() for k, v in s.items()},
            as_np)
