"""Attribution maps drawn over their image: `overlay` (numpy in, numpy out; computing never draws)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..images import to_uint8


def colormap(name: str = "inferno"):
    """Matplotlib's perceptually uniform colour map `name` (``"inferno"``, ``"viridis"``, ...): values in [0, 1]
    -> RGBA. Needs matplotlib (``pip install matplotlib``); a one-line ValueError says so when it is missing."""
    try:
        import matplotlib
    except ImportError:
        raise ValueError("attribution overlays use matplotlib's colour maps: pip install matplotlib (or the "
                         "deepvis-jax[attribution] extra)") from None  # fmt: skip
    if name not in matplotlib.colormaps:
        raise ValueError(f"unknown colour map {name!r}; use one of matplotlib's, e.g. inferno, viridis, magma")
    return matplotlib.colormaps[name]


def overlay(image: Any, heatmap: Any, alpha: float = 0.5, cmap: str = "inferno",
            percentile: float = 99.0) -> np.ndarray:  # fmt: skip
    """`heatmap` (H, W), at the image's size (`upsample` a CAM first), drawn over `image` (H, W, 3; uint8 or float
    in [0, 1]) in the colour map `cmap`: the map's negative values count as 0 and it is scaled so that its
    `percentile` (of the positive values; 100: the maximum) is the top colour, larger values clipped; the colour
    is blended with weight `alpha`. Returns uint8 (H, W, 3)."""
    img = to_uint8(image).astype(np.float64) / 255.0
    m = np.maximum(np.asarray(heatmap, np.float64), 0.0)
    if m.shape != img.shape[:2]:
        raise ValueError(f"the heatmap is {m.shape}, the image {img.shape[:2]}: upsample the map to the image first")
    if not 0.0 <= alpha <= 1.0 or not 0.0 < percentile <= 100.0:
        raise ValueError(f"alpha must be in [0, 1] and percentile in (0, 100], got {alpha} and {percentile}")
    positive = m[m > 0]
    top = float(np.percentile(positive, percentile)) if positive.size else 1.0
    colour = colormap(cmap)(np.clip(m / (top or 1.0), 0.0, 1.0))[..., :3]
    return np.round(255.0 * ((1.0 - alpha) * img + alpha * colour)).astype(np.uint8)
