"""The occlusion figure (Zeiler & Fergus Fig. 7): an `OcclusionResult`'s three maps as heat maps over the image.

Numpy and Pillow only, like `render`, whose grid and labels it uses.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
from PIL import Image, ImageDraw

from .images import imagenet_labels, to_uint8
from .render import BACKGROUND, LABEL_H, PAD, as_rgb01, label_font, label_grid


# a perceptually ordered heat map (dark blue -> red -> yellow), and a categorical palette for classes
_HEAT = np.array([[0, 0, 80], [40, 0, 160], [190, 0, 120], [240, 80, 0], [255, 220, 0], [255, 255, 200]]) / 255.0
_PALETTE = np.array(
    [[31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40], [148, 103, 189], [140, 86, 75],
     [227, 119, 194], [127, 127, 127], [188, 189, 34], [23, 190, 207]], np.uint8,
)  # fmt: skip
_OTHER = np.array([60, 60, 60], np.uint8)
def class_labels(num_classes: int = 1000) -> list[str]:
    """``"<index> <name>"`` per ImageNet class (the packaged labels); bare indices for another class count."""
    if num_classes == 1000:
        return [f"{i} {n}" for i, n in enumerate(imagenet_labels())]
    return [str(i) for i in range(num_classes)]


def heat(values: Any) -> np.ndarray:
    """Values in [0, 1] (any shape) -> RGB in [0, 1] along the heat colour map, shape (..., 3)."""
    v = np.clip(np.asarray(values, np.float64), 0.0, 1.0) * (len(_HEAT) - 1)
    lo = np.minimum(np.floor(v).astype(int), len(_HEAT) - 2)
    t = (v - lo)[..., None]
    return _HEAT[lo] * (1 - t) + _HEAT[lo + 1] * t


def _nearest_position(size: int, starts: np.ndarray, patch: int) -> np.ndarray:
    """For each pixel along one axis, the occluder position whose square's centre is nearest."""
    centres = np.asarray(starts, np.float64) + (patch - 1) / 2.0
    return np.abs(np.arange(size)[:, None] - centres[None, :]).argmin(axis=1)


def _stretch(m: np.ndarray) -> tuple[np.ndarray, float, float]:
    lo, hi = float(m.min()), float(m.max())
    return (m - lo) / (hi - lo) if hi > lo else np.zeros_like(m), lo, hi


def occlusion_figure(image: Any, result: Any, labels: Sequence[str] | None = None, min_cell: int = 224,
                     alpha: float = 0.6) -> Image.Image:  # fmt: skip
    """The paper's three occlusion maps (an `OcclusionResult`) as heat maps over `image` (RGB, uint8 or [0, 1]).

    Panels: the input with the occluder's size drawn; (a) the total activation of the feature map; (b) the
    probability of the target class; (c) the most probable class, one colour per class, with a legend of the
    classes that occur (most frequent first; `labels`: a name per class, default `class_labels`). Each pixel shows
    the position whose occluder is centred nearest to it; `alpha` is the weight of the map over the image.
    When ``result.classifier`` is "untrained", only the input and (a) are drawn, with a line saying why.
    """
    img = as_rgb01(image)
    h, w = img.shape[:2]
    feature = np.asarray(result.feature, np.float64)
    prob = np.asarray(result.probability, np.float64)
    top = np.asarray(result.top_class)
    if feature.shape != (len(result.rows), len(result.cols)) or prob.shape != feature.shape or top.shape != feature.shape:
        raise ValueError("result maps must all be shaped (len(rows), len(cols))")
    if int(np.max(result.rows)) + result.patch > h or int(np.max(result.cols)) + result.patch > w:
        raise ValueError(f"the result's occluder positions do not fit this {h}x{w} image; pass the occluded image")
    iy = _nearest_position(h, result.rows, result.patch)
    ix = _nearest_position(w, result.cols, result.patch)

    def over(rgb01_map):  # (P, Q, 3) -> (H, W, 3) uint8 blended over the image
        return to_uint8(alpha * rgb01_map[iy][:, ix] + (1 - alpha) * img)

    fa, a_lo, a_hi = _stretch(feature)
    fb, b_lo, b_hi = _stretch(prob)
    labels = list(labels) if labels is not None else class_labels(max(int(top.max()) + 1, int(result.target) + 1, 1000))
    classes, counts = np.unique(top, return_counts=True)
    order = classes[np.argsort(-counts, kind="stable")]
    shown = list(order[: len(_PALETTE)])
    colours = np.empty(top.shape + (3,), np.uint8)
    colours[...] = _OTHER
    for k, c in enumerate(shown):
        colours[top == c] = _PALETTE[k]
    square = to_uint8(img)
    side = min(result.patch, h, w)
    square[:side, :side] = to_uint8(0.5 * square[:side, :side] / 255.0 + 0.5 * 128 / 255.0)  # the occluder, top-left
    if getattr(result, "classifier", "trained") != "trained":
        return _feature_only(square, over(heat(fa)), f"input, occluder {result.patch}px",
                             f"(a) {result.layer} ch {result.channel}: {a_lo:.3g}..{a_hi:.3g}", min_cell)
    cells = [square, over(heat(fa)), over(heat(fb)), over(colours / 255.0)]
    titles = [
        f"input, occluder {result.patch}px",
        f"(a) {result.layer} ch {result.channel}: {a_lo:.3g}..{a_hi:.3g}",
        f"(b) p({_short(labels, result.target)}): {b_lo:.3g}..{b_hi:.3g}",
        "(c) most probable class",
    ]
    grid = label_grid(cells, titles, 4, min_cell)
    # legend of (c): a swatch and a label per class, in rows below the panels
    font = label_font()
    items = [(tuple(int(v) for v in _PALETTE[k]), _short(labels, c)) for k, c in enumerate(shown)]
    if len(order) > len(shown):
        items.append((tuple(int(v) for v in _OTHER), f"{len(order) - len(shown)} other classes"))
    row_h = LABEL_H + 2
    cols = 4
    legend_h = PAD + row_h * math.ceil(len(items) / cols) + PAD
    fig = Image.new("RGB", (grid.width, grid.height + legend_h), BACKGROUND)
    fig.paste(grid, (0, 0))
    draw = ImageDraw.Draw(fig)
    col_w = (grid.width - 2 * PAD) // cols
    for k, (rgb, text) in enumerate(items):
        r, c = divmod(k, cols)
        x0, y0 = PAD + c * col_w, grid.height + PAD + r * row_h
        draw.rectangle([x0, y0 + 2, x0 + 12, y0 + 14], fill=rgb, outline=(0, 0, 0))
        draw.text((x0 + 18, y0 + 1), text, fill=(0, 0, 0), font=font)
    return fig


def _feature_only(square: np.ndarray, feature: np.ndarray, t0: str, t1: str, min_cell: int) -> Image.Image:
    """The input and map (a), and one line in place of (b), (c) and the legend (an untrained classifier)."""
    grid = label_grid([square, feature], [t0, t1], 2, min_cell)
    lines = ["(b), (c) not shown: this model's classifier is", "untrained, so its class predictions mean nothing"]
    fig = Image.new("RGB", (grid.width, grid.height + 2 * PAD + len(lines) * (LABEL_H + 2)), BACKGROUND)
    fig.paste(grid, (0, 0))
    draw = ImageDraw.Draw(fig)
    for k, line in enumerate(lines):
        draw.text((PAD, grid.height + PAD + k * (LABEL_H + 2)), line, fill=(0, 0, 0), font=label_font())
    return fig


def _short(labels: Sequence[str], c: int, width: int = 28) -> str:
    s = labels[int(c)] if 0 <= int(c) < len(labels) else str(int(c))
    return s if len(s) <= width else s[: width - 3] + "..."
