"""Train with the generated kernels in JAX: ``kernel_function``, a cell's kernels as a JAX
function with its own VJP (``jax.custom_vjp`` over ``jax.pure_callback``).

    import jax, jax.numpy as jnp
    from cellgrad.jax import kernel_function
    lstm = kernel_function("lstm")                 # a built-in name, a spec path or a kernel module
    params = lstm.init_params(8, 32)               # {spec name: jax array}
    outputs, state = lstm(x, params)               # x (T, N, 8); outputs["h"] (T, N, 32)
    grads = jax.grad(lambda p: lstm(x, p)[0]["h"].sum())(params)

The forward callback returns the kernel's cache as residuals; the backward callback hands it to
the kernel's ``backward``, so nothing is recomputed. The cache's shapes are learnt once per
argument shapes by running the kernel's forward on zeros while JAX traces (that run also makes
the kernel check the arguments, so a wrong shape fails there, with the kernel's message).
Works under ``jit``, ``grad``, ``vjp`` and ``vmap`` (the callbacks run once per batch element).
float64 needs ``jax.config.update("jax_enable_x64", True)``. Forward-mode (``jvp``, ``jacfwd``)
and second derivatives are not available: the kernels have a backward only.
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from cellgrad.kernels import kernel_module

__all__ = ["KernelFunction", "kernel_function"]

# the kernel's cache entries that forward()'s arguments fix: backward() gets them from JAX's residuals
_ARGUMENT_ENTRIES = ("params", "lengths", "initial")


def kernel_function(cell, backend: str = "numba") -> "KernelFunction":
    """A cell's kernels as a differentiable JAX function. ``cell``: a built-in cell name, a spec
    path, or a kernel module (``codegen.build_module``, ``generated.<cell>_<backend>``)."""
    module = kernel_module(cell, backend) if isinstance(cell, str | Path) else cell
    if getattr(module, "ARRAYS", "numpy") != "numpy":
        raise ValueError(f"cellgrad.jax runs kernels that take NumPy arrays (backend numpy or numba), "
                         f"not the {module.BACKEND} backend's")
    return KernelFunction(module)


class KernelFunction:
    """``f(x, params, state=None, lengths=None) -> (outputs, state)``, as the kernel's forward.

    x: (T, N, input size), or a dict {input name: array} for a cell with several inputs;
    params: dict {parameter name: array} (PARAM_SHAPES); state: None (each state starts at its
    STATE_INIT) or a dict {state name: (N, size)}; lengths: None or (N,) integers in [0, T].
    Returns the outputs {name: (T, N, size)} and the final states {name: (N, size)}. Gradients
    flow to params, x and state; BUFFERS get zero gradients, lengths none.
    """

    def __init__(self, kernels):
        self.kernels = kernels
        self._layouts: dict[tuple, tuple] = {}   # argument shapes -> _layout()'s answer
        self._apply = jax.custom_vjp(self._forward)
        self._apply.defvjp(self._forward_with_cache, self._backward)

    def __repr__(self) -> str:
        return f"<cellgrad.jax.KernelFunction of {self.kernels.CELL} ({self.kernels.BACKEND})>"

    def init_params(self, input_size: int, hidden_size: int, seed: int = 0, dtype=None, **sizes) -> dict:
        """The kernel's ``init_params`` as jax arrays (dtype: JAX's default float unless given)."""
        dtype = jnp.dtype(dtype or jnp.zeros(()).dtype)
        params = self.kernels.init_params(input_size, hidden_size, seed=seed, dtype=np.float64, **sizes)
        return {name: jnp.asarray(value, dtype) for name, value in params.items()}

    def __call__(self, x, params, state=None, lengths=None):
        inputs = dict(x) if isinstance(x, dict) else {self.kernels.INPUT: x}
        inputs = {name: jnp.asarray(value) for name, value in inputs.items()}
        params = {name: jnp.asarray(value) for name, value in params.items()}
        if state is not None:
            state = {name: jnp.asarray(value) for name, value in state.items()}
        if lengths is not None:
            lengths = jnp.asarray(lengths)
            if not jnp.issubdtype(lengths.dtype, jnp.integer):
                raise TypeError(f"lengths must be integers, not {lengths.dtype}")
        self._layout(inputs, params, state, lengths)   # checks the arguments while tracing
        return self._apply(inputs, params, state, lengths)

    # -- the custom VJP ----------------------------------------------------------------------

    def _forward(self, inputs, params, state, lengths):
        return self._forward_with_cache(inputs, params, state, lengths)[0]

    def _forward_with_cache(self, inputs, params, state, lengths):
        results = self._layout(inputs, params, state, lengths)[0]

        def run(inputs, params, state, lengths):
            outputs, final, cache = self.kernels.forward(
                self._x(_writable(inputs)), _writable(params), _writable(state), _writable(lengths))
            leaves = jax.tree_util.tree_leaves(_without_arguments(cache))
            return outputs, final, leaves

        outputs, final, leaves = jax.pure_callback(run, results, inputs, params, state, lengths,
                                                   vmap_method="sequential")
        return (outputs, final), (params, state, lengths, leaves)

    def _backward(self, residuals, cotangents):
        params, state, lengths, leaves = residuals
        d_outputs, d_state = cotangents
        _, treedef, arguments = self._layouts[self._key_of_residuals(params, lengths, leaves)]
        gradients = ({name: jax.ShapeDtypeStruct(value.shape, value.dtype) for name, value in
                      self._input_structs(leaves, treedef).items()},
                     {name: jax.ShapeDtypeStruct(value.shape, value.dtype) for name, value in params.items()},
                     {name: jax.ShapeDtypeStruct(value.shape, value.dtype) for name, value in d_state.items()})

        def run(params, lengths, leaves, d_outputs, d_state):
            cache = jax.tree_util.tree_unflatten(treedef, _writable(leaves))
            given = {"params": _writable(params), "lengths": _writable(lengths), "initial": state is None}
            cache.update({name: given[name] for name in arguments})
            g = self.kernels.backward(_writable(d_outputs), cache, _writable(d_state))
            zero = {name: np.zeros_like(value) for name, value in cache["params"].items()}   # BUFFERS
            return dict(g.inputs), {**zero, **g.params}, dict(g.state)

        d_inputs, d_params, d_initial = jax.pure_callback(run, gradients, params, lengths, leaves,
                                                          d_outputs, d_state, vmap_method="sequential")
        return d_inputs, d_params, None if state is None else d_initial, None

    # -- shapes --------------------------------------------------------------------------------

    def _x(self, inputs: dict):
        return inputs if len(self.kernels.INPUTS) > 1 else inputs[self.kernels.INPUT]

    def _layout(self, inputs, params, state, lengths):
        """The result structs (outputs, final states, cache leaves), the cache's treedef and which
        _ARGUMENT_ENTRIES it holds, for these argument shapes: the kernel's forward run once on
        zeros of them."""
        key = _key(inputs, params, state, lengths)
        if key not in self._layouts:
            zeros = jax.tree_util.tree_map(lambda a: np.zeros(a.shape, a.dtype), (inputs, params, state, lengths))
            with np.errstate(all="ignore"):   # zeros may divide by zero in a user's cell; only shapes matter
                outputs, final, cache = self.kernels.forward(self._x(zeros[0]), *zeros[1:])
            leaves, treedef = jax.tree_util.tree_flatten(_without_arguments(cache))
            if not all(isinstance(leaf, np.ndarray) for leaf in leaves):
                raise TypeError(f"the {self.kernels.CELL} kernel's cache holds something other than arrays "
                                "(cellgrad.jax passes arrays between the forward and backward callbacks)")
            struct = lambda a: jax.ShapeDtypeStruct(np.shape(a), np.asarray(a).dtype)   # noqa: E731
            results = jax.tree_util.tree_map(struct, (outputs, final, leaves))
            arguments = tuple(name for name in _ARGUMENT_ENTRIES if name in cache)
            self._layouts[key] = (results, treedef, arguments)
            self._layouts[self._key_of_residuals(params, lengths, results[2])] = self._layouts[key]
        return self._layouts[key]

    @staticmethod
    def _key_of_residuals(params, lengths, leaves) -> tuple:
        """What backward() knows of the shapes: its residuals' (the cache leaves fix the rest)."""
        return ("residuals", _key(params, lengths, leaves))

    def _input_structs(self, leaves, treedef) -> dict:
        """The shapes of the inputs, as the cache keeps them (the kernel's cache["inputs"])."""
        return jax.tree_util.tree_unflatten(treedef, leaves)["inputs"]


def _key(*trees) -> tuple:
    leaves, treedef = jax.tree_util.tree_flatten(trees)
    return (treedef, *((tuple(leaf.shape), str(leaf.dtype)) for leaf in leaves))


def _without_arguments(cache: dict) -> dict:
    return {name: value for name, value in cache.items() if name not in _ARGUMENT_ENTRIES}


def _writable(tree):
    """The callback's arguments as writable NumPy arrays: JAX passes read-only views, which Numba
    would compile separately for (and a kernel writing into one would fail)."""
    return jax.tree_util.tree_map(lambda a: np.array(a), tree)
