"""How `construct` parameterizes its image: ``dv.param.fft()`` (Lucid's default), ``dv.param.pixel()``, Lucid's
CPPN, ``dv.param.cppn()``, or a batch of images sharing Lucid's low-resolution tensors, ``dv.param.aligned()``
(``dv.param.lowres``)."""

from deepvis_jax._src.optvis.param import BatchParameterization as BatchParameterization
from deepvis_jax._src.optvis.param import LowRes as LowRes
from deepvis_jax._src.optvis.param import Parameterization as Parameterization
from deepvis_jax._src.optvis.param import aligned as aligned
from deepvis_jax._src.optvis.param import cppn as cppn
from deepvis_jax._src.optvis.param import fft as fft
from deepvis_jax._src.optvis.param import fft_tensor as fft_tensor
from deepvis_jax._src.optvis.param import interpolation_lowres as interpolation_lowres
from deepvis_jax._src.optvis.param import lowres as lowres
from deepvis_jax._src.optvis.param import pixel as pixel
from deepvis_jax._src.optvis.param import resize_bilinear_nd as resize_bilinear_nd

__all__ = ["BatchParameterization", "LowRes", "Parameterization", "aligned", "cppn", "fft", "fft_tensor",
           "interpolation_lowres", "lowres", "pixel", "resize_bilinear_nd"]
