"""How `construct` parameterizes its image: ``dv.param.fft()`` (Lucid's default), ``dv.param.pixel()``, or Lucid's
CPPN, ``dv.param.cppn()``."""

from deepvis_jax._src.optvis.param import Parameterization as Parameterization
from deepvis_jax._src.optvis.param import cppn as cppn
from deepvis_jax._src.optvis.param import fft as fft
from deepvis_jax._src.optvis.param import pixel as pixel

__all__ = ["Parameterization", "cppn", "fft", "pixel"]
