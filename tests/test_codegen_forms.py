"""Valid spec forms that used to crash or be refused by derive or the kernel generator: each one
now gives kernels that match central finite differences and the reference interpreter."""

from __future__ import annotations

import numpy as np
import pytest

from cell_oracles import failed_gradients, forward_mismatch, import_kernel
from kernel_modules import BACKENDS  # the backends taking NumPy arrays
from derive import derive
from derive.spec import parse_spec


def spec(equations: str, params: str, states: str = 'h = "H"', sizes: str = "",
         outputs: str = '["h"]', inputs: str = 'x = "D"') -> str:
    sizes = sizes or 'D = "input size"\nH = "hidden size"'
    return (f'[cell]\nname = "form"\n[sizes]\n{sizes}\n[inputs]\n{inputs}\n[states]\n{states}\n'
            f"[params]\n{params}\n[step]\noutputs = {outputs}\nequations = '''\n{equations}\n'''\n")


W, U = 'W = ["H", "D"]', 'U = ["H", "H"]'

FORMS = {
    # _cse deleted the definition of a numbered temporary: NameError tmp1
    "call_nested_in_call": spec("h = h_prev * exp(tanh(W @ x))", W),
    "janet_gate": spec("s = W @ x + U @ h_prev\nh = (1 - sigmoid(s - 1.0)) * tanh(V @ x + b)",
                       f'{W}\n{U}\nV = ["H", "D"]\nb = "H"'),
    # StopIteration in derive/normalize.py
    "same_product_twice": spec("h = (1 - sigmoid(W @ x)) * h_prev + sigmoid(W @ x) * tanh(U @ h_prev)",
                               f"{W}\n{U}"),
    # IndexError in the NumPy forward: lam is the same for every row
    "parameter_only_intermediate": spec("lam = sigmoid(b)\nh = tanh(W @ x + U @ lam) + V @ lam * h_prev",
                                        f'{W}\n{U}\nV = ["H", "H"]\nb = "H"'),
    "parameter_only_gate": spec("lam = sigmoid(b)\nh = lam * tanh(W @ x) + (1 - lam) * h_prev",
                                f'{W}\nb = "H"'),
    # PrintMethodNotImplementedError for MatVecT
    "product_of_a_parameter_vector": spec("h = tanh(W @ x + U @ h_prev + V @ b)",
                                          f'{W}\n{U}\nV = ["H", "H"]\nb = "H"'),
    # "two products with vector x in one equation"
    "two_products_of_one_vector": spec("y = W1 @ x + W2 @ x\nh = tanh(y + U @ h_prev)",
                                       f'W1 = ["H", "D"]\nW2 = ["H", "D"]\n{U}'),
    # "non-contiguous product groups in the numba backend": x, h_prev and c_prev groups overlap
    # in a cycle, so no column order of the stored adjoints keeps every group side by side
    "groups_that_cannot_be_contiguous": spec(
        "p = tanh(W1 @ x + U1 @ h_prev)\nq = tanh(U2 @ h_prev + V2 @ c_prev)\n"
        "r = tanh(V3 @ c_prev + W3 @ x)\nh = p * q\nc = r + q",
        'W1 = ["H", "D"]\nU1 = ["H", "H"]\nU2 = ["H", "H"]\nV2 = ["H", "H"]\nV3 = ["H", "H"]\nW3 = ["H", "D"]',
        states='h = "H"\nc = "H"'),
    # AttributeError in the NumPy backward: db = 0 (b only under step), "db += (0).sum(axis=0)"
    "parameter_under_step": spec("h = step(b) + sign(b) * h_prev + W @ x", f'{W}\nb = "H"'),
    # NameError in the backward: the gradient of a [buffers] matrix was computed from its vector,
    # which is not saved (a buffer gets no gradient)
    "buffer_matrix": spec("h = tanh(W @ x) + N @ (V @ b) + M @ tanh(U @ h_prev)",
                          f'{W}\n{U}\nV = ["H", "H"]\nb = "H"\n[buffers]\nN = ["H", "H"]\nM = ["H", "H"]'),
    # a miscompile: the bias b was folded into both hoisted input GEMMs, so added twice
    "two_inputs_one_bias": spec("h = tanh(W @ x + V @ u + b + U @ h_prev)",
                                f'{W}\n{U}\nV = ["H", "H"]\nb = "H"', inputs='x = "D"\nu = "H"'),
    # NameError in the NumPy forward: the reduction of a parameter vector printed its bare name
    "reduction_of_a_parameter": spec("h = tanh(sum(g) + W @ x) + mean(g) * h_prev", f'{W}\ng = "H"'),
    # a miscompile: a [functions] body that is a sum was printed without parentheses where the
    # call stood as an atom: -leaky(a) became -relu(a) + 0.1*min(a, 0) written as "- ... + ..."
    "defined_function_in_a_product": spec(
        "h = 2 * tanhshrink(W @ x) - leaky(U @ h_prev)",
        f'{W}\n{U}\n[functions]\ntanhshrink = "z - tanh(z)"\nleaky = "relu(z) + 0.1 * min(z, 0)"'),
    # duplicate keyword hidden_size in init_params: the first state has the projection size
    "projection_sizes": spec(
        "i = sigmoid(W_i @ x + U_i @ h_prev)\nc = i * c_prev + tanh(W_c @ x + U_c @ h_prev)\n"
        "h = P_h @ (i * tanh(c))",
        'W_i = ["H", "D"]\nU_i = ["H", "P"]\nW_c = ["H", "D"]\nU_c = ["H", "P"]\nP_h = ["P", "H"]',
        states='h = "P"\nc = "H"', sizes='D = "input size"\nH = "hidden size"\nP = "projection size"'),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("form", FORMS)
def test_form_gives_right_kernels(form, backend, tmp_path):
    d = derive(parse_spec(FORMS[form]))
    module = import_kernel(d, backend, tmp_path)
    assert failed_gradients(module, seed=3) == []
    assert forward_mismatch(d, module, seed=4) < 1e-12


def test_init_params_keywords_come_from_the_meanings(tmp_path):
    module = import_kernel(derive(parse_spec(FORMS["projection_sizes"])), "numpy", tmp_path)
    params = module.init_params(3, 5, projection_size=2)
    assert params["U_i"].shape == (5, 2) and params["P_h"].shape == (2, 5) and params["W_i"].shape == (5, 3)
    assert module.HIDDEN_SIZE == "H"


def test_init_params_keywords_that_collide_fall_back_to_the_symbol(tmp_path):
    """A size meaning "seed" cannot take the seed argument's name."""
    text = spec("h = tanh(W @ x + U @ h_prev + V @ e)", 'W = ["H", "D"]\nU = ["H", "H"]\nV = ["H", "Q"]\ne = "Q"',
                sizes='D = "input size"\nH = "hidden size"\nQ = "seed"')
    module = import_kernel(derive(parse_spec(text)), "numpy", tmp_path)
    params = module.init_params(3, 4, seed=1, dtype=np.float32, size_Q=6)
    assert params["V"].shape == (4, 6) and params["V"].dtype == np.float32
