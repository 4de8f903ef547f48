"""Hypothesis strategies for random VALID cell specs over the whole documented spec language
(docs/guide.md, "Writing a cell spec" and "More declarations"), for tests/test_random_cells.py and
tests/test_triton_random_cells.py.

A drawn cell has one to three inputs and states, intermediates, one or more outputs, and draws
from every construct the guide documents:

* every function of the op table (``derive/ops.py``: sigmoid, tanh, relu, exp, log, softplus,
  identity, sqrt, abs, sign, step, max, min), nested calls, aliases (``f = "sigmoid"``, also of
  a function the spec defines) and ``[functions]`` definitions over known functions
  (softsign, hard sigmoid, swish, ...; one may use another);
* reductions ``mean``/``sum`` alone, inside expressions and as a layer norm, in one equation
  (``(a - mean(a)) / sqrt(mean((a - mean(a))**2) + eps)``) or in the guide's three;
* products ``W @ v`` of inputs, states, intermediates, parameter vectors and expressions
  (``U @ (r * h_prev)``), sums of them, the same product twice;
* numbers and ``[constants]`` anywhere (also as an exponent), unary minus, division, powers;
* ``[buffers]`` (non-trainable parameters, vectors and matrices), state tables with
  ``init = zeros | ones | param`` and ``domain = real | positive``;
* names chosen to collide with what derive and the kernel generator make or read (``tanh_c``,
  ``proj_x``, ``packed_x``, ``tmp1``, ``a_h``, ``h_in``, ``h_mean``, ``SIZES``, ``Gradients``,
  ``hidden_size``, ...), with sizes ``T`` and ``N`` and size meanings that give clashing
  ``init_params`` keywords.

Values stay in the domains where the functions are defined and finite differences keep their
digits: ``log``, ``sqrt``, non-integer and negative powers and divisors only of values bounded
away from 0 (``1 + (something positive)``, or a state declared ``domain = "positive"``, whose
update the generator draws so that it stays positive: ``n = sigmoid(...) * n_prev + exp(...)``),
``exp`` only of bounded arguments, layer norms only of rows that vary.

Each construct is one strategy in ``CONSTRUCTS``; a construct the language gains is one more
entry. ``RESTRICTIONS`` lists what the guide documents as not supported (or as limits); the
generator does not draw it.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field

from hypothesis import strategies as st

from derive import limits
from derive.limits import CALL_NESTING

#: Documented restrictions and limits (docs/guide.md) that the generator obeys.
RESTRICTIONS = {
    "inputs": 3,                        # input sequences per cell (any number is allowed)
    "call_nesting": CALL_NESTING,       # function calls nested in one equation (guide: Limits)
    # "What the kernels take": every size must be the shape of an input or of a parameter
    "sizes_read_from_arrays": True,
}

#: Names that collide with names derive or the kernel generator make (or used to make), or that
#: the generated module and its API use.
COLLIDING = ("tanh_c", "proj_x", "packed_x", "packed_h_prev", "tmp1", "tmp2", "dpre_seq", "h_seq",
             "outputs", "state", "grads", "dtype", "params", "cache", "sizes", "t", "n", "j", "F",
             "dpre_flat", "proj_h_prev", "lam", "sigmoid_h", "exp_x", "x_seq", "buf", "rows",
             "a_h", "a_c", "a_h_1", "h_in", "h_mean", "h_sum", "c_in", "SIZES", "STATES", "INPUT",
             "INPUTS", "OUTPUTS", "PARAM_SHAPES", "BIASES", "BUFFERS", "INITIAL", "Gradients",
             "hidden_size", "input_size", "seed", "lengths", "warmup", "d_state", "d_outputs")
PLAIN = tuple(f"q{k}" for k in range(12))
STATE_NAMES = ("h", "c", "n", "m", "s", "state", "h_seq", "T", "a_h", "mean_h")
INPUT_NAMES = ("x", "params", "u", "cache", "packed_x", "att", "x_in", "lengths")
PARAM_MATRIX_NAMES = ("W", "U", "V", "proj_x", "packed_x", "x", "params", "dtype", "cache",
                      "outputs", "grads", "b", "w", "T", "N", "W_h", "a_h", "SIZES", "seed")
PARAM_VECTOR_NAMES = ("b", "bias", "dtype", "cache", "grads", "w", "v", "g", "beta", "h0",
                      "input_size", "BIASES", "m0_b")
CONSTANT_NAMES = ("eps", "alpha", "scale", "tmp1", "k", "c1", "gamma", "one", "E0")
ALIAS_NAMES = ("f", "g_act", "act", "phi", "sigma_g", "tmp2")
SIZE_NAMES = (("D", "H", "P"), ("T", "N", "K"), ("N", "T", "M"))
#: size meanings: the init_params keyword comes from them (a clash gives size_<symbol>)
MEANINGS = ("input size", "hidden size", "other size", "projection size", "hidden size", "seed",
            "dtype", "size of the gate (a vector)", "input size", "state size")

#: Elementwise functions of one argument defined on all reals (the op table's others, exp, log
#: and sqrt, have strategies of their own).
FUNCTIONS = ("sigmoid", "tanh", "relu", "identity", "softplus", "abs", "sign", "step")
#: Their values are bounded (exp of them stays small).
BOUNDED = {"sigmoid", "tanh", "sign", "step"}

#: ``[functions]`` definitions over known functions: name -> (body, bounded on the reals).
DEFINITIONS = {
    "softsign": ("z / (1 + abs(z))", True),
    "hard_sigmoid": ("max(0, min(1, 0.2 * z + 0.5))", True),
    "swish": ("z * sigmoid(z)", False),
    "hard_tanh": ("min(max(z, -1), 1)", True),
    "leaky": ("relu(z) + 0.1 * min(z, 0)", False),
    "symlog": ("sign(z) * log(1 + abs(z))", False),
    "gauss": ("exp(-z**2)", True),
    "tanhshrink": ("z - tanh(z)", False),
    "ratio": ("z**2 / (1 + z**2)", True),
    "smooth_abs": ("sqrt(1 + z**2) - 1", False),
    "tmp1": ("0.5 * tanh(z) + 0.5", True),
}


@dataclass
class Draft:
    """A cell being drawn: names taken, parameters made on demand, equations in order."""

    sizes: tuple[str, ...]
    input: str                                   # the first input
    input_size: str
    states: dict[str, str]                       # state -> size
    inputs: dict[str, str] = field(default_factory=dict)   # every input -> size
    taken: set[str] = field(default_factory=set)
    params: dict[str, tuple[str, ...]] = field(default_factory=dict)
    buffers: set[str] = field(default_factory=set)         # params declared in [buffers]
    values: dict[str, str] = field(default_factory=dict)   # usable vector name -> size
    positive: set[str] = field(default_factory=set)        # values bounded away from 0
    equations: list[tuple[str, str]] = field(default_factory=list)
    aliases: dict[str, str] = field(default_factory=dict)  # alias -> function it names
    definitions: dict[str, str] = field(default_factory=dict)   # [functions] name -> body
    bounded_functions: set[str] = field(default_factory=lambda: set(BOUNDED))
    constants: dict[str, float] = field(default_factory=dict)
    state_init: dict[str, str] = field(default_factory=dict)
    state_domain: dict[str, str] = field(default_factory=dict)
    used: set[str] = field(default_factory=set)
    calls: int = 0                               # function calls around the expression drawn

    def fresh(self, draw, pool=PLAIN) -> str:
        for name in [*draw(st.permutations(pool)), *PLAIN, *(f"v{k}" for k in range(99))]:
            if self.free(name):
                self.taken.add(name)
                return name
        raise AssertionError("no name left")

    def free(self, name: str) -> bool:
        """Not taken, and not one of the names derive makes from the taken ones (dW, dh_next,
        dh_out, h_prev, the initial value h0), nor one whose derived names are taken."""
        if name in self.taken or name.endswith("_prev"):
            return False
        derived = {"d" + name, f"d{name}_next", f"d{name}_out", f"{name}_prev", f"{name}0"}
        clashes = {t for t in self.taken
                   if name in ("d" + t, f"d{t}_next", f"d{t}_out", f"{t}0")}
        return not clashes and not (derived & self.taken)

    def param(self, draw, shape: tuple[str, ...]) -> str:
        name = self.fresh(draw, PARAM_MATRIX_NAMES if len(shape) == 2 else PARAM_VECTOR_NAMES)
        self.params[name] = shape
        if draw(st.integers(0, 5)) == 0:
            self.buffers.add(name)
        return name

    def functions(self, bounded: bool = False) -> list[str]:
        """Names an equation may call: the table's, the spec's definitions and the aliases."""
        pool = [*FUNCTIONS, *self.definitions, *self.aliases]
        if bounded:
            pool = [f for f in pool if self.resolve(f) in self.bounded_functions]
        return pool

    def resolve(self, name: str) -> str:
        """The function an alias (of an alias, ...) names."""
        while name in self.aliases:
            name = self.aliases[name]
        return name

    def define(self, draw, rhs: str, size: str, positive: bool = False) -> str:
        """An intermediate of its own, ``name = rhs``, usable from now on."""
        name = self.fresh(draw, COLLIDING)
        self.equations.append((name, rhs))
        self.values[name] = size
        if positive:
            self.positive.add(name)
        self.used.add(name)
        return name


# -- expressions of one size -------------------------------------------------------------------

def leaf(draw, cell: Draft, size: str) -> str:
    names = [n for n, s in cell.values.items() if s == size]
    choice = draw(st.sampled_from([*names, "<param>"] if names else ["<param>"]))
    if choice == "<param>":
        choice = cell.param(draw, (size,))
    cell.used.add(choice)
    return choice


def number(draw, cell: Draft | None = None, positive: bool = False) -> str:
    """A number literal, or a named constant (declared on first use)."""
    if cell is not None and draw(st.integers(0, 3)) == 0:
        usable = [c for c, v in cell.constants.items() if v > 0 or not positive]
        if usable and draw(st.booleans()):
            return draw(st.sampled_from(usable))
        value = draw(st.sampled_from([1e-5, 0.5, 2, 1, 0.1, 3] + ([] if positive else [-0.5, -2])))
        name = cell.fresh(draw, CONSTANT_NAMES)
        cell.constants[name] = value
        return name
    return draw(st.sampled_from(["1", "2", "0.5", "1.0", "3", "0.25", "1e-1"]))


def call(draw, cell: Draft, size: str, depth: int) -> str:
    fn = draw(st.sampled_from(cell.functions()))
    return f"{fn}({expr(draw, cell, size, depth - 1)})"


def bounded(draw, cell: Draft, size: str, depth: int) -> str:
    """An expression with values in [-1, 1] or (0, 1)."""
    fn = draw(st.sampled_from(cell.functions(bounded=True)))
    return f"{fn}({expr(draw, cell, size, depth - 1)})"


def positive(draw, cell: Draft, size: str, depth: int) -> str:
    """A positive expression (it may come near 0: callers add 1, or take a bounded-away one)."""
    inner = expr(draw, cell, size, depth - 1)
    return draw(st.sampled_from([f"sigmoid({inner})", f"softplus({inner})", f"exp(tanh({inner}))",
                                 f"({inner})**2", f"abs({inner})", f"relu({inner})"]))


def away_from_zero(draw, cell: Draft, size: str, depth: int) -> str:
    """A value >= about 0.05: ``1 + (positive)``, or a positive state or intermediate."""
    known = [n for n in cell.positive if cell.values.get(n) == size]
    if known and draw(st.integers(0, 2)) == 0:
        name = draw(st.sampled_from(sorted(known)))
        cell.used.add(name)
        return name
    return f"(1 + {positive(draw, cell, size, depth)})"


def exp_call(draw, cell: Draft, size: str, depth: int) -> str:
    return f"exp({bounded(draw, cell, size, depth)})"


def log_call(draw, cell: Draft, size: str, depth: int) -> str:
    return f"log({away_from_zero(draw, cell, size, depth)})"


def binary(draw, cell: Draft, size: str, depth: int) -> str:
    op = draw(st.sampled_from(["+", "-", "*"]))
    left = expr(draw, cell, size, depth - 1)
    right = number(draw, cell) if draw(st.integers(0, 4)) == 0 else expr(draw, cell, size, depth - 1)
    if draw(st.booleans()):
        left, right = right, left
    if left == right and op == "-":
        op = "+"          # a - a cancels: its parameters would be unused, which a spec refuses
    return f"({left} {op} {right})"


def negation(draw, cell: Draft, size: str, depth: int) -> str:
    return f"(-{expr(draw, cell, size, depth - 1)})"


def sqrt_call(draw, cell: Draft, size: str, depth: int) -> str:
    return f"sqrt({away_from_zero(draw, cell, size, depth)})"


def max_min(draw, cell: Draft, size: str, depth: int) -> str:
    other = number(draw, cell) if draw(st.integers(0, 3)) == 0 else expr(draw, cell, size, depth - 1)
    return f"{draw(st.sampled_from(['max', 'min']))}({expr(draw, cell, size, depth - 1)}, {other})"


def division(draw, cell: Draft, size: str, depth: int) -> str:
    top = number(draw, cell) if draw(st.integers(0, 4)) == 0 else expr(draw, cell, size, depth - 1)
    if draw(st.integers(0, 3)) == 0:
        return f"({top} / {draw(st.sampled_from(['2', '4', '0.5', '3.0']))})"
    return f"({top} / {away_from_zero(draw, cell, size, depth)})"


def power(draw, cell: Draft, size: str, depth: int) -> str:
    # integer powers of bounded values only: h = (h_prev + 2)**2 grows as a power 2**T of itself,
    # so large after a few steps that finite differences lose their digits
    if draw(st.booleans()):
        exponent = draw(st.sampled_from(["2", "3"]))
        if draw(st.integers(0, 3)) == 0:
            exponent = _constant(draw, cell, int(exponent))
        return f"({bounded(draw, cell, size, depth)})**{exponent}"
    exponent = draw(st.sampled_from(["0.5", "1.5", "-1", "-0.5"]))
    return f"({away_from_zero(draw, cell, size, depth)})**{exponent}"


def _constant(draw, cell: Draft, value) -> str:
    """A named constant of this value (declared if no constant has it yet)."""
    for name, v in cell.constants.items():
        if v == value:
            return name
    name = cell.fresh(draw, CONSTANT_NAMES)
    cell.constants[name] = value
    return name


def product(draw, cell: Draft, size: str, depth: int) -> str:
    """``W @ v``: v a value of any size, or an expression (``U @ (r * h_prev)``)."""
    cols = draw(st.sampled_from(sorted(set(cell.values.values()))))
    if depth > 1 and draw(st.integers(0, 2)) == 0:
        vector = f"({expr(draw, cell, cols, depth - 1)})"
    else:
        vector = leaf(draw, cell, cols)
    return f"({cell.param(draw, (size, cols))} @ {vector})"


def affine(draw, cell: Draft, size: str, depth: int) -> str:
    """The usual gate argument: a sum of products and a bias."""
    terms = [product(draw, cell, size, depth) for _ in range(draw(st.integers(1, 3)))]
    if draw(st.integers(0, 5)) == 0:
        terms.append(terms[0])        # the same product twice
    if draw(st.booleans()):
        terms.append(cell.param(draw, (size,)))
    return f"({' + '.join(terms)})"


def reduction(draw, cell: Draft, size: str, depth: int) -> str:
    """``mean(v)`` or ``sum(v)``: the row's mean (sum), repeated over the row."""
    inner = expr(draw, cell, size, depth - 1)
    return f"{draw(st.sampled_from(['mean', 'sum']))}({inner})"


def centred(draw, cell: Draft, size: str, depth: int) -> str:
    """``v - mean(v)`` of a row that varies."""
    row = affine(draw, cell, size, depth)
    return f"({row} - mean({row}))"


def layer_norm(draw, cell: Draft, size: str, depth: int) -> str:
    """Layer normalisation of a row that varies (products of random matrices), in one equation
    or in the guide's intermediates ``mu``, ``var``; ``eps`` a number or a constant."""
    eps = draw(st.sampled_from(["1e-5", "0.1", "<constant>"]))
    if eps == "<constant>":
        eps = _constant(draw, cell, draw(st.sampled_from([1e-5, 0.01, 1])))
    row = affine(draw, cell, size, depth)
    if draw(st.booleans()):
        normed = f"(({row} - mean({row})) / sqrt(mean(({row} - mean({row}))**2) + {eps}))"
    else:
        a = cell.define(draw, row, size)
        mu = cell.define(draw, f"mean({a})", size)
        var = cell.define(draw, f"mean(({a} - {mu})**2)", size)
        normed = f"(({a} - {mu}) / sqrt({var} + {eps}))"
    if draw(st.booleans()):         # gain and bias
        return f"({cell.param(draw, (size,))} * {normed} + {cell.param(draw, (size,))})"
    return normed


#: construct -> (strategy body, how often it is drawn, the function calls it may put around
#: the expressions it draws inside)
CONSTRUCTS = {
    "call": (call, 4, 1),
    "bounded": (bounded, 1, 1),
    "exp": (exp_call, 1, 2),
    "log": (log_call, 1, 3),
    "binary": (binary, 5, 0),
    "negation": (negation, 1, 0),
    "division": (division, 1, 2),
    "sqrt": (sqrt_call, 1, 3),
    "max_min": (max_min, 1, 1),
    "power": (power, 1, 2),
    "product": (product, 3, 0),
    "affine": (affine, 2, 0),
    "reduction": (reduction, 1, 1),
    "centred": (centred, 1, 1),
    "layer_norm": (layer_norm, 1, 3),
}


def expr(draw, cell: Draft, size: str, depth: int) -> str:
    if depth <= 0 or draw(st.integers(0, 5)) == 0:
        return leaf(draw, cell, size)
    names = [name for name, (_, weight, calls) in CONSTRUCTS.items() for _ in range(weight)
             if cell.calls + calls <= RESTRICTIONS["call_nesting"]]
    construct = draw(st.sampled_from(names))
    body, _, calls = CONSTRUCTS[construct]
    cell.calls += calls
    try:
        return body(draw, cell, size, depth)
    finally:
        cell.calls -= calls


def positive_update(draw, cell: Draft, state: str, size: str, depth: int) -> str:
    """The update of a state declared ``domain = "positive"``: it stays >= about 0.05 given a
    positive previous value (the sLSTM normaliser ``n = f * n_prev + i`` is the first form)."""
    prev = f"{state}_prev"
    cell.used.add(prev)
    cell.calls += 3
    try:
        forms = ["normaliser", "lift", "scaled", "max", "one_plus", "sqrt"]
        if cell.state_init[state] == "zeros":
            forms.remove("scaled")          # 0 * lift stays 0
        form = draw(st.sampled_from(forms))
        if form in ("normaliser", "sqrt"):
            gate = f"sigmoid({expr(draw, cell, size, depth - 1)})"
        if form in ("normaliser", "lift", "scaled", "max"):
            lift = f"exp({bounded(draw, cell, size, depth)})"
        return {"normaliser": lambda: f"{gate} * {prev} + {lift}", "lift": lambda: lift,
                "scaled": lambda: f"{prev} * {lift}", "max": lambda: f"max({prev}, {lift})",
                "one_plus": lambda: f"(1 + {positive(draw, cell, size, depth)})",
                "sqrt": lambda: f"sqrt({prev} + {gate})"}[form]()
    finally:
        cell.calls -= 3


# -- whole cells ---------------------------------------------------------------------------------

def _add_product(draw, d: Draft, k: int, cols: str, vector: str) -> None:
    """Add ``W @ vector`` to equation k (as a positive factor when its value must stay positive)."""
    lhs, rhs = d.equations[k]
    prod = f"({d.param(draw, (d.values[lhs], cols))} @ {vector})"
    d.equations[k] = (lhs, f"({rhs}) * exp(tanh({prod}))" if lhs in d.positive else f"{rhs} + {prod}")
    d.used.add(vector)


@st.composite
def cell_specs(draw, max_depth: int = 3) -> str:
    """The text of a random valid spec file."""
    sizes = draw(st.sampled_from(SIZE_NAMES))
    n_sizes = draw(st.integers(2, 3))
    sizes = sizes[:n_sizes]
    d = Draft(sizes=sizes, input="", input_size=sizes[0], states={})
    d.taken |= set(sizes)
    d.input = d.fresh(draw, INPUT_NAMES)
    d.inputs[d.input] = d.input_size
    for _ in range(draw(st.integers(1, RESTRICTIONS["inputs"])) - 1):
        d.inputs[d.fresh(draw, INPUT_NAMES)] = draw(st.sampled_from(sizes))
    states = [d.fresh(draw, STATE_NAMES) for _ in range(draw(st.integers(1, 3)))]
    for k, s in enumerate(states):
        d.states[s] = sizes[1] if k == 0 or n_sizes == 2 else draw(st.sampled_from(sizes[1:]))
        d.state_init[s] = draw(st.sampled_from(["zeros", "zeros", "ones", "param"]))
        d.state_domain[s] = draw(st.sampled_from(["real", "real", "positive"]))
        d.taken.add(f"{s}0")      # the learnable initial value's name (init = "param")
        if d.state_domain[s] == "positive":
            # its update keeps it positive; s_prev is bounded away from 0 unless it starts at 0
            d.positive |= {s} if d.state_init[s] == "zeros" else {f"{s}_prev", s}
    for fn in draw(st.lists(st.sampled_from(sorted(DEFINITIONS)), max_size=2, unique=True)):
        if not d.free(fn):
            continue
        d.taken.add(fn)
        body, is_bounded = DEFINITIONS[fn]
        if d.definitions and draw(st.booleans()):      # a definition over an earlier one
            earlier = next(iter(d.definitions))
            body = f"{body} + 0.5 * {earlier}(z)"
            is_bounded = is_bounded and earlier in d.bounded_functions
        d.definitions[fn] = body
        if is_bounded:
            d.bounded_functions.add(fn)
    for _ in range(draw(st.integers(0, 2))):         # an alias may name an earlier alias
        d.aliases[d.fresh(draw, ALIAS_NAMES)] = draw(st.sampled_from([*FUNCTIONS, *d.definitions,
                                                                      *d.aliases]))
    d.values = {**d.inputs, **{f"{s}_prev": size for s, size in d.states.items()}}

    # equations in dependency order: intermediates, then states (each may read earlier ones)
    n_mid = draw(st.integers(0, 3))
    lhs_order = [(d.fresh(draw, COLLIDING), draw(st.sampled_from(sizes))) for _ in range(n_mid)]
    lhs_order += list(d.states.items())
    lhs_order = draw(st.permutations(lhs_order))
    for lhs, size in lhs_order:
        for depth in range(max_depth, -1, -1):       # shallower while over the equation limits
            before = copy.deepcopy(d)
            if d.state_domain.get(lhs) == "positive":
                rhs = positive_update(draw, d, lhs, size, max(depth, 1))
            else:
                rhs = expr(draw, d, size, depth)
            if _within_limits(f"{lhs} = {rhs}"):
                break
            d = before
        d.equations.append((lhs, rhs))
        d.values[lhs] = size
    # every size must be the shape of an input or a parameter; every input must be used
    for size in sizes[1:]:
        if not any(size in shape for shape in d.params.values()):
            k = next((i for i, (lhs, _) in enumerate(d.equations) if d.values[lhs] == size), None)
            if k is None:
                d.define(draw, product(draw, d, size, 1), size)
            else:
                _add_product(draw, d, k, d.input_size, d.input)
    for name, size in d.inputs.items():
        if name not in d.used:
            _add_product(draw, d, 0, size, name)
    if d.input_size not in {s for shape in d.params.values() for s in shape}:
        _add_product(draw, d, 0, d.input_size, d.input)

    mids = [lhs for lhs, _ in d.equations if lhs not in d.states]
    unused = [m for m in mids if not any(_mentions(rhs, m) for _, rhs in d.equations)]
    candidates = [lhs for lhs, _ in d.equations]
    outputs = list(dict.fromkeys(unused + draw(st.lists(st.sampled_from(candidates), min_size=1,
                                                        max_size=2, unique=True))))
    meanings = [draw(st.sampled_from(MEANINGS)) for _ in d.sizes]
    return _text(d, outputs, draw(st.permutations(d.equations)), meanings)


def _within_limits(equation: str) -> bool:
    """Within the documented limits of one equation (length, nesting, operators, calls)."""
    try:
        limits.scan_equation(equation)
    except limits.LimitError:
        return False
    return True


def _mentions(text: str, name: str) -> bool:
    return re.search(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])", text) is not None


def _text(d: Draft, outputs: list[str], equations, meanings) -> str:
    def shape(s):
        return f'"{s[0]}"' if len(s) == 1 else f'["{s[0]}", "{s[1]}"]'

    def state(s):
        keys = [f'size = "{d.states[s]}"']
        keys += [f'init = "{d.state_init[s]}"'] if d.state_init[s] != "zeros" else []
        keys += [f'domain = "{d.state_domain[s]}"'] if d.state_domain[s] != "real" else []
        return f'"{d.states[s]}"' if len(keys) == 1 else "{ " + ", ".join(keys) + " }"

    lines = ["[cell]", 'name = "random_cell"', 'description = "A randomly drawn cell"', "", "[sizes]"]
    lines += [f'{s} = "{meaning}"' for s, meaning in zip(d.sizes, meanings)]
    if d.constants:
        lines += ["", "[constants]"] + [f"{c} = {v!r}" for c, v in d.constants.items()]
    lines += ["", "[inputs]"] + [f'{name} = "{size}"' for name, size in d.inputs.items()]
    lines += ["", "[states]"] + [f"{s} = {state(s)}" for s in d.states]
    lines += ["", "[params]"] + [f"{p} = {shape(s)}" for p, s in d.params.items() if p not in d.buffers]
    if d.buffers:
        lines += ["", "[buffers]"] + [f"{p} = {shape(s)}" for p, s in d.params.items() if p in d.buffers]
    if d.definitions or d.aliases:
        lines += ["", "[functions]"] + [f'{f} = "{body}"' for f, body in d.definitions.items()]
        lines += [f'{a} = "{f}"' for a, f in d.aliases.items()]
    lines += ["", "[step]", f"outputs = {list(outputs)!r}".replace("'", '"'), "equations = '''"]
    lines += [f"{lhs} = {rhs}" for lhs, rhs in equations]
    lines += ["'''", ""]
    return "\n".join(lines)
