"""The random perturbations `construct` applies before each step: ``dv.transforms.standard_transforms()`` (Lucid's
list) or your own sequence of `jitter`, `pad`, `random_scale`, `random_rotate`, `resize`; `apply_transforms` runs
one."""

from deepvis_jax._src.optvis.transforms import apply_transforms as apply_transforms
from deepvis_jax._src.optvis.transforms import jitter as jitter
from deepvis_jax._src.optvis.transforms import pad as pad
from deepvis_jax._src.optvis.transforms import random_rotate as random_rotate
from deepvis_jax._src.optvis.transforms import random_scale as random_scale
from deepvis_jax._src.optvis.transforms import resize as resize
from deepvis_jax._src.optvis.transforms import standard_transforms as standard_transforms

__all__ = ["apply_transforms", "jitter", "pad", "random_rotate", "random_scale", "resize", "standard_transforms"]
