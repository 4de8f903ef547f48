"""The ``Derivation``: everything code generation, documents and verification need, in order.

It is plain data: SymPy expressions over ``Symbol``s named as in the spec, plus the linear
nodes of ``derive.linear``. Consumers print these expressions; none of them differentiates.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sympy as sp

from .cell import Cell, Quantity


@dataclass(frozen=True)
class ForwardEq:
    """One forward statement of step t, tagged ``F<k>``."""

    tag: str
    lhs: str
    rhs: sp.Expr
    source: str            # the spec line it comes from
    line: int | None
    introduced: bool       # a pre-activation cellgrad named (``a_i``), not written by the user

    @property
    def is_affine(self) -> bool:
        """True for ``a = W x + U h + b``: only products and parameter vectors."""
        from .linear import MatVec
        return any(isinstance(t, MatVec) for t in sp.Add.make_args(self.rhs))


@dataclass(frozen=True)
class Branch:
    """One consumer's contribution to an adjoint: the chain rule through one edge of the graph.

    ``source`` is the tag of the forward equation the path goes through (``F5``), or ``"loss"``
    for the upstream gradient of an output, or ``"next"`` for the adjoint carried from step t+1.
    ``local`` is the local derivative d(consumer)/d(quantity) in saved forward values (None for
    the linear rules and for the two external sources); ``expr`` is the contribution itself.
    """

    source: str
    consumer: str
    rule: str
    local: sp.Expr | None
    expr: sp.Expr


@dataclass(frozen=True)
class BackwardEq:
    """``target = sum of branches``, tagged ``B<k>``. A fork sum when it has several branches."""

    tag: str
    target: str               # adjoint name, e.g. "dc"
    of: str                   # the quantity, e.g. "c"
    role: str                 # that quantity's role: intermediate, state, prev_state, input, param
    branches: tuple[Branch, ...]
    expr: sp.Expr

    @property
    def is_fork(self) -> bool:
        return len(self.branches) > 1

    @property
    def accumulates(self) -> bool:
        """Parameter gradients are summed over time steps (and the batch)."""
        return self.role == "param"


@dataclass(frozen=True)
class Derivation:
    """The cell's forward step, its one-step backward equations, and what connects steps."""

    cell: Cell
    quantities: dict[str, Quantity]        # the cell's plus introduced pre-activations
    forward: tuple[ForwardEq, ...]
    backward: tuple[BackwardEq, ...]
    upstream: dict[str, str]               # output -> name of its upstream gradient (dh_out)
    carried: dict[str, str]                # state -> name of the adjoint from step t+1 (dh_next)
    saved: tuple[str, ...]                 # forward values the backward equations read
    truncate: int | None = None            # k of truncated BPTT; None = full BPTT
    notes: tuple[str, ...] = field(default=())

    # -- lookups ------------------------------------------------------------------------------
    def forward_eq(self, name: str) -> ForwardEq:
        return next(eq for eq in self.forward if eq.lhs == name)

    def backward_eq(self, target: str) -> BackwardEq:
        """By adjoint name (``dc``) or by quantity name (``c``)."""
        for eq in self.backward:
            if eq.target == target or eq.of == target:
                return eq
        raise KeyError(target)

    @property
    def forks(self) -> tuple[BackwardEq, ...]:
        return tuple(eq for eq in self.backward if eq.is_fork)

    @property
    def param_grads(self) -> tuple[BackwardEq, ...]:
        return tuple(eq for eq in self.backward if eq.role == "param")

    @property
    def input_grads(self) -> tuple[BackwardEq, ...]:
        return tuple(eq for eq in self.backward if eq.role == "input")

    @property
    def prev_state_grads(self) -> tuple[BackwardEq, ...]:
        """``dh_prev`` and friends: the adjoints step t hands to step t-1 as its ``dh_next``."""
        return tuple(eq for eq in self.backward if eq.role == "prev_state")

    # -- display: a short repr, and the tagged equations in a notebook ----------------------------
    def __repr__(self) -> str:
        bptt = "full BPTT" if self.truncate is None else f"{self.truncate}-step truncated BPTT"
        return (f"<Derivation of {self.cell.name}: {len(self.forward)} forward and "
                f"{len(self.backward)} backward equations, {len(self.forks)} fork sums, {bptt}>")

    def _repr_markdown_(self) -> str:
        """The cell's equations in LaTeX, each with its tag, for Jupyter and other notebooks; the
        spec's names, elementwise products as ⊙ (``cellgrad doc`` writes the full document)."""
        latex = lambda e: sp.latex(e, mul_symbol=r" \odot ")

        def block(lhs: str, op: str, rhs, tag: str) -> str:
            return rf"$$ {latex(sp.Symbol(lhs))} {op} {latex(rhs)} \tag{{{tag}}} $$"

        lines = [f"**{self.cell.name}**" + (f": {self.cell.description}" if self.cell.description else ""),
                 "", "Forward, step t:", ""]
        lines += [block(eq.lhs, "=", eq.rhs, eq.tag) for eq in self.forward]
        bptt = "" if self.truncate is None else f", {self.truncate}-step truncated"
        lines += ["", f"Backward, step t{bptt} (fork sums: "
                  f"{', '.join(eq.target for eq in self.forks) or 'none'}):", ""]
        lines += [block(eq.target, r"\mathrel{+}=" if eq.accumulates else "=", eq.expr, eq.tag)
                  for eq in self.backward]
        return "\n".join(lines)

    def consumers(self, name: str) -> list[str]:
        """Where a value goes: forward equations reading it, 'loss' and 'next step' as they apply."""
        users = [eq.lhs for eq in self.forward if sp.Symbol(name) in eq.rhs.free_symbols]
        if name in self.upstream:
            users.append("loss")
        if name in self.carried:
            users.append("next step")
        return users
