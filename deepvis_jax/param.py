"""How `construct` parameterizes its image: ``dv.param.fft()`` (Lucid's default) or ``dv.param.pixel()``."""

from deepvis_jax._src.optvis.param import Parameterization as Parameterization
from deepvis_jax._src.optvis.param import fft as fft
from deepvis_jax._src.optvis.param import pixel as pixel

__all__ = ["Parameterization", "fft", "pixel"]
