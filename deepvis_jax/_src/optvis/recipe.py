"""The recipes `construct` runs: the default one's constants and optimizer, and the seed class's staged recipe.

The default recipe is Lucid's (FFT image, decorrelated colour, standard transforms, Adam) with the learning rate
`LR` and the objective ``channel(layer, contrast=CONTRAST)``; ``preset="seed"`` is the original PyTorch class's:
a small pixel image optimized, then resized (`grow_stage`) and box-blurred (`box_blur`), stage after stage.
`resolve_recipe` fills in what a `construct` call leaves out; `describe_recipe` writes what it resolved as plain
data, derived from the objects themselves (what a cache of constructed pictures must be keyed on).
"""

from __future__ import annotations

import functools
import hashlib
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from ..checks import check_int, check_number
from ..compile import jit
from ..nets import denormalize, normalize
from .objectives import Objective, channel
from .param import BatchParameterization, Parameterization, periodic_blur, fft, pixel
from .transforms import standard_transforms

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

    return Parameterization(init, lambda p: p, periodic_blur)


def seed_sizes(image_size: int, start: int = 56, factor: float = 1.2) -> list[int]:
    """Stage sizes of the seed recipe: `start`, then ``int(factor * size)`` until `image_size` (the last, exact)."""
    sizes = [min(start, image_size)]
    while sizes[-1] < image_size:
        sizes.append(min(int(factor * sizes[-1]), image_size))
    return sizes


@functools.partial(jit, static_argnames=("size", "blur"))
def grow_stage(params: Array, size: int, blur: int) -> Array:
    """Between stages: back to RGB, bicubic resize to `size`, box blur, normalized again (vmapped over filters)."""

    def one(p):
        img = jax.image.resize(denormalize(p), (size, size, 3), "cubic")
        return normalize(box_blur(img, blur))

    return jax.vmap(one)(params)


class Recipe(NamedTuple):
    """What `construct` runs, its defaults filled in (`resolve_recipe`)."""

    objective: Objective
    param: Parameterization
    transforms: tuple
    optimizer: optax.GradientTransformation
    steps: int
    lr: float
    normalized: bool  # the seed recipe: the parameterization gives the normalized input itself
    seed_stages: bool  # the seed recipe: grown in stages


def resolve_recipe(name: str, *, preset: str | None = None, steps: int | None = None, lr: float | None = None,
                   param: Any = None, decorrelate: bool | None = None, transforms: Any = None,
                   objective: Objective | None = None, optimizer: Any = None) -> Recipe:  # fmt: skip
    """The recipe `construct` runs for layer `name` given these arguments (None: the default); ValueError for a
    bad one."""
    if preset not in (None, "seed"):
        raise ValueError(f"unknown preset {preset!r}; use None or 'seed'")
    seed = preset == "seed"
    if seed:
        given = {"param": param, "decorrelate": decorrelate, "transforms": transforms}
        clash = [k for k, v in given.items() if v is not None]
        if clash:
            raise ValueError(f"preset='seed' fixes {clash[0]}; leave it unset")
    steps = check_int("steps", (20 if seed else 256) if steps is None else steps)
    lr = check_number("lr", (0.1 if seed else LR) if lr is None else lr, strict=True)
    if objective is None:
        objective = channel(name) if seed else channel(name, contrast=CONTRAST)
    elif not isinstance(objective, Objective):
        raise ValueError(f"objective must be an Objective (channel, neuron, class_logit, ...), got {objective!r}")
    if optimizer is None:
        optimizer = _adam(lr, 1e-6 if seed else 0.0)
    if seed:
        return Recipe(objective, _seed_pixels(), (), optimizer, steps, lr, True, True)
    decorrelate = True if decorrelate is None else bool(decorrelate)
    if param is None or param == "fft":
        param = fft(decorrelate=decorrelate)
    elif param == "pixel":
        param = pixel(decorrelate=decorrelate)
    elif not isinstance(param, (Parameterization, BatchParameterization)):
        raise ValueError(f"unknown param {param!r}; use 'fft', 'pixel', a Parameterization or a BatchParameterization")
    if transforms is None or (isinstance(transforms, str) and transforms == "standard"):
        transforms = standard_transforms()
    elif isinstance(transforms, str) and transforms == "none":
        transforms = ()
    elif isinstance(transforms, str) or not all(callable(t) for t in transforms):
        raise ValueError(f"transforms must be 'standard', 'none' or a sequence of transforms, got {transforms!r}")
    return Recipe(objective, param, tuple(transforms), optimizer, steps, lr, False, False)


def describe_recipe(recipe: Recipe) -> dict:
    """The recipe as plain (JSON) data, derived from its objects: an objective by its identity key, functions by
    their qualified name and the values they close over (arrays by shape, dtype and a digest of their bytes), so
    a change of any default -- a constant, a transform's parameters, the optimizer -- changes the description."""
    return {"objective": _describe(recipe.objective), "param": _describe(recipe.param),
            "transforms": [_describe(t) for t in recipe.transforms], "optimizer": _describe(recipe.optimizer),
            "steps": recipe.steps, "lr": recipe.lr, "preset": "seed" if recipe.seed_stages else None}  # fmt: skip


def _describe(x: Any, depth: int = 0) -> Any:
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    if isinstance(x, Objective):
        return repr(x.key) if x.key is not None else f"custom objective {_describe(x.fn, depth + 1)}"
    if isinstance(x, (np.ndarray, jax.Array, np.generic)):
        a = np.ascontiguousarray(np.asarray(x))
        return f"array{a.shape}{a.dtype}:{hashlib.blake2b(a.tobytes(), digest_size=6).hexdigest()}"
    if depth > 6:
        return type(x).__name__
    if isinstance(x, tuple) and hasattr(x, "_fields"):  # a NamedTuple: Parameterization, GradientTransformation
        return {type(x).__name__: [_describe(v, depth + 1) for v in x]}
    if isinstance(x, (tuple, list)):
        return [_describe(v, depth + 1) for v in x]
    if isinstance(x, functools.partial):
        return {"partial": [_describe(x.func, depth + 1), _describe(x.args, depth + 1),
                            _describe(sorted(x.keywords.items()), depth + 1)]}  # fmt: skip
    if callable(x) and hasattr(x, "__qualname__"):
        cells = [c.cell_contents for c in (getattr(x, "__closure__", None) or ()) if _filled(c)]
        name = f"{getattr(x, '__module__', '')}.{x.__qualname__}"
        return {name: [_describe(v, depth + 1) for v in cells]} if cells else name
    return type(x).__name__


def _filled(cell) -> bool:
    try:
        cell.cell_contents
    except ValueError:  # an empty cell
        return False
    return True
