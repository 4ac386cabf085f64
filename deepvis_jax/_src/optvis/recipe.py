"""The recipes `construct` runs: the default one's constants and optimizer, and the seed class's staged recipe.

The default recipe is Lucid's (FFT image, decorrelated colour, standard transforms, Adam) with the learning rate
`LR` and the objective ``channel(layer, contrast=CONTRAST)``; ``preset="seed"`` is the original PyTorch class's:
a small pixel image optimized, then resized (`_grow`) and box-blurred (`box_blur`), stage after stage.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax
from jax import lax

from ..compile import jit
from ..nets import denormalize, normalize
from .param import Parameterization, _periodic_blur

Array = jax.Array


# The default recipe's constants, measured on trained VGG16 (see `construct`).
LR = 0.02
CONTRAST = 0.5


@functools.lru_cache(maxsize=None)
def _adam(lr: float, weight_decay: float = 0.0) -> optax.GradientTransformation:
    """Adam, with torch.optim.Adam's `weight_decay` (an L2 term added to the gradient) when non-zero."""
    if weight_decay:
        return optax.chain(optax.add_decayed_weights(weight_decay), optax.scale_by_adam(), optax.scale(-lr))
    return optax.adam(lr)



def box_blur(img: Array, size: int) -> Array:
    """`cv2.blur(img, (size, size))` on (H, W, C): mean over a size x size window, borders reflected (REFLECT_101)."""
    if size <= 1:
        return img
    lo, hi = (size - 1) // 2, size // 2
    x = jnp.pad(img, ((lo, hi), (lo, hi), (0, 0)), mode="reflect")
    s = lax.reduce_window(x, 0.0, lax.add, (size, size, 1), (1, 1, 1), "VALID")
    return s / (size * size)


@functools.lru_cache(maxsize=None)
def _seed_pixels() -> Parameterization:
    """The seed class's image: the normalized network input itself, starting as uniform integer noise 150..179 / 255."""

    def init(key, size, dtype=jnp.float32):
        img = jnp.floor(jax.random.uniform(key, (size, size, 3), dtype, 150.0, 180.0)) / 255.0
        return normalize(img)

    return Parameterization(init, lambda p: p, _periodic_blur)


def seed_sizes(image_size: int, start: int = 56, factor: float = 1.2) -> list[int]:
    """Stage sizes of the seed recipe: `start`, then ``int(factor * size)`` until `image_size` (the last, exact)."""
    sizes = [min(start, image_size)]
    while sizes[-1] < image_size:
        sizes.append(min(int(factor * sizes[-1]), image_size))
    return sizes


@functools.partial(jit, static_argnames=("size", "blur"))
def _grow(params: Array, size: int, blur: int) -> Array:
    """Between stages: back to RGB, bicubic resize to `size`, box blur, normalized again (vmapped over filters)."""

    def one(p):
        img = jax.image.resize(denormalize(p), (size, size, 3), "cubic")
        return normalize(box_blur(img, blur))

    return jax.vmap(one)(params)
