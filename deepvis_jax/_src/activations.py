"""The rectifier-like activations other than ReLU, their derivatives as torch takes them, and their projection rules.

Graph networks keep each activation as one op, ``ops.activation(x, kind, **params)`` (`rules.py`), by torch's
names and parameters (`ACTIVATIONS`). Its derivative `derivative` follows torch's backward kernels, including the
value at a kink (hardtanh passes nothing at its bounds, leaky_relu and elu take their negative side at 0, hardswish
is 0 at -3 and 1 at 3). `activation_rule` is the activation whose backward is a projection method's rule; the
rules and their reasons are the table in `rules.py`'s docstring.
"""

from __future__ import annotations

import functools
import inspect
import math

import jax
import jax.numpy as jnp

Array = jax.Array


def _hardtanh(x: Array, min_val: float = -1.0, max_val: float = 1.0) -> Array:
    return jnp.clip(x, jnp.asarray(min_val, x.dtype), jnp.asarray(max_val, x.dtype))


def _leaky_relu(x: Array, negative_slope: float = 0.01) -> Array:
    return jnp.where(x > 0, x, x * jnp.asarray(negative_slope, x.dtype))


def _elu(x: Array, alpha: float = 1.0) -> Array:
    return jnp.where(x > 0, x, jnp.asarray(alpha, x.dtype) * jnp.expm1(jnp.minimum(x, 0)))


def _gelu(x: Array, approximate: str = "none") -> Array:
    return jax.nn.gelu(x, approximate=approximate == "tanh")


def _silu(x: Array) -> Array:
    return x * jax.nn.sigmoid(x)


def _hardswish(x: Array) -> Array:
    return x * jnp.clip(x + 3, 0, 6) / 6


ACTIVATIONS = {
    "hardtanh": _hardtanh,  # ReLU6 is hardtanh(0, 6)
    "leaky_relu": _leaky_relu,
    "elu": _elu,
    "gelu": _gelu,
    "silu": _silu,
    "hardswish": _hardswish,
}
"""The rectifier-like activations other than ReLU that ``ops.activation(x, kind, **params)`` computes (graph
networks keep each as one op), by their torch names; ``params`` are torch's arguments (``min_val``/``max_val``,
``negative_slope``, ``alpha``, ``approximate``)."""


def _d_hardtanh(x: Array, min_val: float = -1.0, max_val: float = 1.0) -> Array:
    return ((x > min_val) & (x < max_val)).astype(x.dtype)


def _d_leaky_relu(x: Array, negative_slope: float = 0.01) -> Array:
    return jnp.where(x > 0, jnp.ones((), x.dtype), jnp.asarray(negative_slope, x.dtype))


def _d_elu(x: Array, alpha: float = 1.0) -> Array:
    return jnp.where(x > 0, jnp.ones((), x.dtype), jnp.asarray(alpha, x.dtype) * jnp.exp(jnp.minimum(x, 0)))


def _d_gelu(x: Array, approximate: str = "none") -> Array:
    if approximate == "tanh":
        beta, kappa = math.sqrt(2 / math.pi), 0.044715
        t = jnp.tanh(beta * (x + kappa * x * x * x))
        return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * beta * (1 + 3 * kappa * x * x)
    cdf = 0.5 * (1 + jax.scipy.special.erf(x / math.sqrt(2)))
    return cdf + x * jnp.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)


def _d_silu(x: Array) -> Array:
    s = jax.nn.sigmoid(x)
    return s * (1 + x * (1 - s))


def _d_hardswish(x: Array) -> Array:
    zero, one = jnp.zeros((), x.dtype), jnp.ones((), x.dtype)
    return jnp.where(x <= -3, zero, jnp.where(x < 3, x / 3 + 0.5, one))


DERIVATIVES = {
    "hardtanh": _d_hardtanh,
    "leaky_relu": _d_leaky_relu,
    "elu": _d_elu,
    "gelu": _d_gelu,
    "silu": _d_silu,
    "hardswish": _d_hardswish,
}


def check_activation(kind: str, params: dict) -> None:
    """ValueError (one line) for an activation or a parameter `ACTIVATIONS` does not know."""
    if kind not in ACTIVATIONS:
        raise ValueError(f"unknown activation {kind!r}; use one of: {', '.join(ACTIVATIONS)} (relu has its own op, "
                         "ops.relu; any other nonlinearity goes through ops.linearized)")  # fmt: skip
    known = list(inspect.signature(ACTIVATIONS[kind]).parameters)[1:]
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise ValueError(f"activation {kind!r} takes {', '.join(known) or 'no parameters'}; got {', '.join(unknown)}")
    if kind == "gelu" and params.get("approximate", "none") not in ("none", "tanh"):
        raise ValueError(f"gelu's approximate is 'none' or 'tanh', got {params['approximate']!r}")


def derivative(x: Array, kind: str, **params) -> Array:
    """f'(x) of activation `kind` elementwise, as torch's backward takes it (at kinks too)."""
    return DERIVATIVES[kind](x, **params)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def activation_rule(x: Array, recorded: Array, kind: str, params: tuple, method: str) -> Array:
    """Activation `kind` (``params``: its torch arguments as sorted ``(name, value)`` pairs) of `x`, whose backward
    is `method`'s rule at the `recorded` forward input (never at `x`): ``relu(g)`` (``"deconv"``),
    ``relu(g) * f'(recorded)`` (``"guided"``), ``g * f'(recorded)`` (``"gradient"``)."""
    return ACTIVATIONS[kind](x, **dict(params))


def _rule_fwd(x, recorded, kind, params, method):
    return ACTIVATIONS[kind](x, **dict(params)), (None if method == "deconv" else recorded)


def _rule_bwd(kind, params, method, recorded, g):
    if method == "deconv":
        return jax.nn.relu(g), None
    local = DERIVATIVES[kind](recorded, **dict(params)).astype(g.dtype)
    return (jax.nn.relu(g) if method == "guided" else g) * local, None


activation_rule.defvjp(_rule_fwd, _rule_bwd)
