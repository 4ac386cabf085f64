"""What an attribution explains (``dv.attribution.*(model, x, target)``): one score per image.

An int (or one int per image) is a class's logit; ``softmax(i)`` its probability; ``channel(layer, c)`` a
channel's mean activation; ``unit(layer, y, x, c)`` one unit; ``mask(layer, mask, c)`` a region's summed score (a
segmentation map when `layer` is None); ``function(fn, layer=None)`` any ``fn(values) -> (N,)``. Each index is
one for the batch or one per image; a list of the wrong length is a one-line ValueError.
"""

from deepvis_jax._src.attribution.targets import Target as Target
from deepvis_jax._src.attribution.targets import channel as channel
from deepvis_jax._src.attribution.targets import function as function
from deepvis_jax._src.attribution.targets import logit as logit
from deepvis_jax._src.attribution.targets import mask as mask
from deepvis_jax._src.attribution.targets import softmax as softmax
from deepvis_jax._src.attribution.targets import unit as unit

__all__ = ["Target", "channel", "function", "logit", "mask", "softmax", "unit"]
