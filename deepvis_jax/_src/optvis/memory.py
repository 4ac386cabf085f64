"""How many filters `construct` optimizes at once by default: a memory budget over one image's forward pass."""

from __future__ import annotations

from typing import Sequence

import jax
import numpy as np

from ..nets import Model, layer_name
from .transforms import Transform, standard_transforms, transformed_hw


# Working memory one batch of filters may take (XLA's temporary buffers of the compiled chunk), for the automatic
# `batch_size`. Measured at VGG16 conv5_3, 224 px, chunk 8 (`memory_analysis` of the compiled program): about 150 MB
# per filter plus 60 MB; the rule below estimates 178 MB, so 5 filters a batch (~0.8 GB of temporaries).
MEMORY_BUDGET = 1 << 30


_FORWARD_BYTES: dict = {}


def _forward_bytes(model: Model, name: str, hw: tuple, dtype) -> int:
    """Bytes of every intermediate array of one image's forward pass up to layer `name` (the outputs of its jaxpr's
    equations), cached per architecture, layer, size and dtype."""
    key = (model.arch, name, hw, np.dtype(dtype).name)
    if key not in _FORWARD_BYTES:
        shapes = jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), model)
        x = jax.ShapeDtypeStruct((1, *hw, 3), dtype)
        jaxpr = jax.make_jaxpr(lambda m, x: m.apply(x, upto=name))(shapes, x)
        _FORWARD_BYTES[key] = sum(int(np.prod(v.aval.shape)) * np.dtype(v.aval.dtype).itemsize
                                  for e in jaxpr.eqns for v in e.outvars if hasattr(v.aval, "shape"))  # fmt: skip
    return _FORWARD_BYTES[key]


def default_batch_size(model: Model, layer, image_size: int = 224, transforms: Sequence[Transform] | None = None,
                       budget: int = MEMORY_BUDGET) -> int:  # fmt: skip
    """How many filters `construct` optimizes at once by default: ``max(1, budget // per_filter)``.

    ``per_filter`` is the size of every intermediate array of one image's forward pass up to `layer` at the
    transformed image size (default: `standard_transforms`), in the model's dtype: about what one filter's
    compiled chunk keeps alive (measured: 150 MB against an estimate of 178 MB at VGG16 conv5_3, 224 px, chunk 8).
    The default `budget` is `MEMORY_BUDGET` (1 GiB): VGG16 conv5_3 at 224 px gets 5, AlexNet conv3 at 224 px 195.
    """
    name = layer_name(model, layer)
    dtype = np.dtype(model.dtype)
    transforms = standard_transforms() if transforms is None else tuple(transforms)
    hw = tuple(image_size) if isinstance(image_size, (tuple, list)) else (image_size, image_size)  # an int or (H, W)
    per_filter = _forward_bytes(model, name, transformed_hw(transforms, hw), dtype)
    return max(1, int(budget // max(per_filter, 1)))
