"""Hypothesis strategies for random VALID cell specs over the documented spec language
(docs/guide.md, "Writing a cell spec"), for tests/test_random_cells.py.

A drawn cell has one to three states, intermediates, one or more outputs, sizes with colliding
names (``T``, ``N``), names chosen to collide with what the kernel generator used to invent
(``tanh_c``, ``proj_x``, ``packed_x``, ``tmp1``, ``dpre_seq``, ``h_seq``, ``outputs``, ...),
nested calls, function aliases, products of expressions, expressions under ``@``
(``U @ (r * h_prev)``), numbers, ``**`` with number exponents and division. Values stay in safe
domains: ``log`` and non-integer powers only of ``1 + (something positive)``, division only by
``1 + (something positive)``, ``exp`` only of a bounded argument.

Each construct is one strategy in ``CONSTRUCTS``; a construct the language gains is one more
entry (reductions, constants and initial values will be added there). ``RESTRICTIONS`` lists
what the kernels document as not supported (docs/guide.md); the generator does not draw it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import strategies as st

from derive.limits import CALL_NESTING

#: Documented restrictions of the kernels (docs/guide.md, "What the kernels take"), which the
#: generator obeys; raise a number when the kernels lift the restriction.
RESTRICTIONS = {
    "inputs": 1,                        # input sequences per cell
    "call_nesting": CALL_NESTING,       # function calls nested in one equation (guide: Limits)
}

#: Names that collide with names the generator invents, or that the generated API uses.
COLLIDING = ("tanh_c", "proj_x", "packed_x", "packed_h_prev", "tmp1", "tmp2", "dpre_seq", "h_seq",
             "outputs", "state", "grads", "dtype", "params", "cache", "sizes", "t", "n", "j", "F",
             "dpre_flat", "proj_h_prev", "lam", "sigmoid_h", "exp_x", "x_seq", "buf", "rows")
PLAIN = tuple(f"q{k}" for k in range(12))
STATE_NAMES = ("h", "c", "n", "m", "s", "state", "h_seq", "T")
INPUT_NAMES = ("x", "params", "u", "cache", "packed_x")
SIZE_NAMES = (("D", "H", "P"), ("T", "N", "K"), ("N", "T", "M"))
FUNCTIONS = ("sigmoid", "tanh", "relu", "identity", "softplus", "abs")


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
    values: dict[str, str] = field(default_factory=dict)   # usable vector name -> size
    equations: list[tuple[str, str]] = field(default_factory=list)
    aliases: dict[str, str] = field(default_factory=dict)
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
        h_prev, a_h pre-activations), nor one whose derived names are taken."""
        if name in self.taken or name.endswith("_prev"):
            return False
        derived = {"d" + name, f"d{name}_next", f"d{name}_out", f"{name}_prev"}
        clashes = {t for t in self.taken if t == "d" + name or name in ("d" + t, f"d{t}_next", f"d{t}_out")}
        return not clashes and not (derived & self.taken) and not name.startswith("a_")

    def param(self, draw, shape: tuple[str, ...]) -> str:
        name = self.fresh(draw, ("W", "U", "V", "proj_x", "packed_x", "x", "params", "dtype",
                                 "cache", "outputs", "grads", "b", "w", "T", "N")
                          if len(shape) == 2 else ("b", "bias", "dtype", "cache", "grads", "w", "v"))
        self.params[name] = shape
        return name


# -- expressions of one size -------------------------------------------------------------------

def leaf(draw, cell: Draft, size: str) -> str:
    names = [n for n, s in cell.values.items() if s == size]
    choice = draw(st.sampled_from([*names, "<param>"] if names else ["<param>"]))
    if choice == "<param>":
        choice = cell.param(draw, (size,))
    cell.used.add(choice)
    return choice


def number(draw) -> str:
    return draw(st.sampled_from(["1", "2", "0.5", "1.0", "3", "0.25", "1e-1"]))


def call(draw, cell: Draft, size: str, depth: int) -> str:
    fn = draw(st.sampled_from(FUNCTIONS))
    if fn in cell.aliases.values() and draw(st.booleans()):
        fn = next(a for a, f in cell.aliases.items() if f == fn)
    return f"{fn}({expr(draw, cell, size, depth - 1)})"


def bounded(draw, cell: Draft, size: str, depth: int) -> str:
    """An expression with values in [-1, 1] or (0, 1)."""
    return f"{draw(st.sampled_from(['tanh', 'sigmoid']))}({expr(draw, cell, size, depth - 1)})"


def positive(draw, cell: Draft, size: str, depth: int) -> str:
    inner = expr(draw, cell, size, depth - 1)
    return draw(st.sampled_from([f"sigmoid({inner})", f"softplus({inner})", f"exp(tanh({inner}))",
                                 f"({inner})**2"]))


def exp_call(draw, cell: Draft, size: str, depth: int) -> str:
    return f"exp({bounded(draw, cell, size, depth)})"


def log_call(draw, cell: Draft, size: str, depth: int) -> str:
    return f"log(1 + {positive(draw, cell, size, depth)})"


def binary(draw, cell: Draft, size: str, depth: int) -> str:
    op = draw(st.sampled_from(["+", "-", "*"]))
    left = expr(draw, cell, size, depth - 1)
    right = number(draw) if draw(st.integers(0, 4)) == 0 else expr(draw, cell, size, depth - 1)
    if draw(st.booleans()):
        left, right = right, left
    if left == right and op == "-":
        op = "+"          # a - a cancels: its parameters would be unused, which a spec refuses
    return f"({left} {op} {right})"


def sqrt_call(draw, cell: Draft, size: str, depth: int) -> str:
    return f"sqrt(1 + {positive(draw, cell, size, depth)})"


def max_min(draw, cell: Draft, size: str, depth: int) -> str:
    return (f"{draw(st.sampled_from(['max', 'min']))}({expr(draw, cell, size, depth - 1)}, "
            f"{expr(draw, cell, size, depth - 1)})")


def division(draw, cell: Draft, size: str, depth: int) -> str:
    return f"{expr(draw, cell, size, depth - 1)} / (1 + {positive(draw, cell, size, depth)})"


def power(draw, cell: Draft, size: str, depth: int) -> str:
    # integer powers of bounded values only: h = (h_prev + 2)**2 grows as a power 2**T of itself,
    # so large after a few steps that finite differences lose their digits
    if draw(st.booleans()):
        return f"({bounded(draw, cell, size, depth)})**{draw(st.sampled_from(['2', '3']))}"
    return f"(1 + {positive(draw, cell, size, depth)})**{draw(st.sampled_from(['0.5', '1.5', '-1']))}"


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
    if draw(st.booleans()):
        terms.append(cell.param(draw, (size,)))
    return f"({' + '.join(terms)})"


#: construct -> (strategy body, how often it is drawn, the function calls it may put around
#: the expressions it draws inside)
CONSTRUCTS = {
    "call": (call, 4, 1),
    "bounded": (bounded, 1, 1),
    "exp": (exp_call, 1, 2),
    "log": (log_call, 1, 3),
    "binary": (binary, 5, 0),
    "division": (division, 1, 2),
    "sqrt": (sqrt_call, 1, 3),
    "max_min": (max_min, 1, 1),
    "power": (power, 1, 2),
    "product": (product, 3, 0),
    "affine": (affine, 2, 0),
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


# -- whole cells ---------------------------------------------------------------------------------

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
    for alias_target in draw(st.lists(st.sampled_from(FUNCTIONS), max_size=2, unique=True)):
        d.aliases[d.fresh(draw, ("f", "g_act", "act", "phi"))] = alias_target
    d.values = {**d.inputs, **{f"{s}_prev": size for s, size in d.states.items()}}

    # equations in dependency order: intermediates, then states (each may read earlier ones)
    n_mid = draw(st.integers(0, 3))
    lhs_order = [(d.fresh(draw, COLLIDING), draw(st.sampled_from(sizes))) for _ in range(n_mid)]
    lhs_order += list(d.states.items())
    lhs_order = draw(st.permutations(lhs_order))
    for lhs, size in lhs_order:
        rhs = expr(draw, d, size, max_depth)
        d.equations.append((lhs, rhs))
        d.values[lhs] = size
    # every size must be the shape of an input or a parameter; the input must be used
    for size in sizes[1:]:
        if not any(size in shape for shape in d.params.values()):
            k = next(i for i, (lhs, _) in enumerate(d.equations) if d.values[lhs] == size) \
                if any(d.values[lhs] == size for lhs, _ in d.equations) else None
            if k is None:
                lhs = d.fresh(draw, COLLIDING)
                d.equations.append((lhs, product(draw, d, size, 1)))
                d.values[lhs] = size
            else:
                lhs, rhs = d.equations[k]
                d.equations[k] = (lhs, f"{rhs} + ({d.param(draw, (size, d.input_size))} @ {d.input})")
                d.used.add(d.input)
    if d.input not in d.used:
        lhs, rhs = d.equations[0]
        size = d.values[lhs]
        d.equations[0] = (lhs, f"{rhs} + ({d.param(draw, (size, d.input_size))} @ {d.input})")
        d.used.add(d.input)
        if not any(d.input_size in shape for shape in d.params.values()):
            raise AssertionError("unreachable: the input's product has its size")
    for name, size in d.inputs.items():
        if name not in d.used and name != d.input:
            lhs, rhs = d.equations[0]
            d.equations[0] = (lhs, f"{rhs} + ({d.param(draw, (d.values[lhs], size))} @ {name})")
            d.used.add(name)
    if d.input_size not in {s for shape in d.params.values() for s in shape}:
        lhs, rhs = d.equations[0]
        d.equations[0] = (lhs, f"{rhs} + ({d.param(draw, (d.values[lhs], d.input_size))} @ {d.input})")

    mids = [lhs for lhs, _ in d.equations if lhs not in d.states]
    read = " ".join(rhs for _, rhs in d.equations)
    unused = [m for m in mids if not _mentions(read, m)]
    candidates = [lhs for lhs, _ in d.equations]
    outputs = list(dict.fromkeys(unused + draw(st.lists(st.sampled_from(candidates), min_size=1,
                                                        max_size=2, unique=True))))
    return _text(d, outputs, draw(st.permutations(d.equations)))


def _mentions(text: str, name: str) -> bool:
    import re
    return re.search(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])", text) is not None


def _text(d: Draft, outputs: list[str], equations) -> str:
    def shape(s):
        return f'"{s[0]}"' if len(s) == 1 else f'["{s[0]}", "{s[1]}"]'
    meanings = ["input size", "hidden size", "other size"]
    lines = ["[cell]", 'name = "random_cell"', 'description = "A randomly drawn cell"', "", "[sizes]"]
    lines += [f'{s} = "{meanings[k]}"' for k, s in enumerate(d.sizes)]
    lines += ["", "[inputs]"] + [f'{name} = "{size}"' for name, size in d.inputs.items()]
    lines += ["", "[states]"]
    lines += [f'{s} = "{size}"' for s, size in d.states.items()]
    lines += ["", "[params]"] + [f"{p} = {shape(s)}" for p, s in d.params.items()]
    if d.aliases:
        lines += ["", "[functions]"] + [f'{a} = "{f}"' for a, f in d.aliases.items()]
    lines += ["", "[step]", f"outputs = {list(outputs)!r}".replace("'", '"'), "equations = '''"]
    lines += [f"{lhs} = {rhs}" for lhs, rhs in equations]
    lines += ["'''", ""]
    return "\n".join(lines)
