"""JAX networks: any function ``apply(params, images)`` (Flax linen or NNX, Equinox, Haiku, Keras on JAX, plain
JAX) traced once to a jaxpr, flattened to plain data (`program.py`) and run by one interpreter that applies the
projection rules of `rules.py` equation by equation (`architecture.py`); `imports.py` has `from_jax`,
`from_flax` and `tag`; `files.py` stores the program as JSON (no pickles, no code)."""

from .architecture import JaxArchitecture, JaxModule
from .imports import from_equinox, from_flax, from_jax, tag

__all__ = ["JaxArchitecture", "JaxModule", "from_equinox", "from_flax", "from_jax", "tag"]
