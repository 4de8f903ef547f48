"""What a loaded cell spec is: sizes, quantities with their shapes, and the per-step equations.

Naming inside one step: a state ``c`` names its new value c<t>; ``c_prev`` names c<t-1>.
Adjoints are ``d`` + name; the adjoint a state receives from step t+1 is ``d<state>_next`` and
the upstream gradient of an output at step t is ``d<output>_out``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sympy as sp

PREV_SUFFIX = "_prev"


def prev_name(state: str) -> str:
    return state + PREV_SUFFIX


def adjoint_name(name: str) -> str:
    return "d" + name


def carried_name(state: str) -> str:
    """Adjoint of state ``s`` at step t arriving from step t+1 (it is ``ds_prev`` of step t+1)."""
    return "d" + state + "_next"


def upstream_name(output: str) -> str:
    """Upstream gradient dE<t>/d(output) at step t: an input of the backward pass."""
    return "d" + output + "_out"


@dataclass(frozen=True)
class Quantity:
    """A named vector or matrix of a cell. ``shape`` holds size names: ("H",) or ("H", "D")."""

    name: str
    role: str  # "input" | "state" | "prev_state" | "param" | "intermediate"
    shape: tuple[str, ...]
    doc: str = ""

    @property
    def is_matrix(self) -> bool:
        return len(self.shape) == 2

    @property
    def symbol(self) -> sp.Symbol:
        return sp.Symbol(self.name)


@dataclass(frozen=True)
class Equation:
    """``lhs = rhs`` for one step; ``text`` and ``line`` locate it in the spec file."""

    lhs: str
    rhs: sp.Expr
    text: str
    line: int | None = None
    introduced: bool = False  # True for a pre-activation cellgrad named, not the user

    def __str__(self) -> str:
        return f"{self.lhs} = {sp.sstr(self.rhs)}"


@dataclass(frozen=True)
class Cell:
    """A parsed, checked cell spec. Build one with ``derive.load_cell``."""

    name: str
    description: str
    path: str | None
    sizes: dict[str, str]                 # size name -> meaning
    quantities: dict[str, Quantity]       # every name usable in an equation
    inputs: tuple[str, ...]
    states: tuple[str, ...]
    params: tuple[str, ...]
    outputs: tuple[str, ...]
    equations: tuple[Equation, ...]       # topologically ordered, as the user wrote them
    source_text: str = field(default="", repr=False)
    #: [functions]: name -> SymPy builder, an alias of a table function or a row of the spec's own
    functions: dict = field(default_factory=dict, repr=False)

    def shape(self, name: str) -> tuple[str, ...]:
        return self.quantities[name].shape

    @property
    def input_size(self) -> str:
        return self.quantities[self.inputs[0]].shape[0]

    @property
    def hidden_size(self) -> str:
        return self.quantities[self.states[0]].shape[0]
