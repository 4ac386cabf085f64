"""Arrays -> pictures (numpy and Pillow only). Rendering never computes; the compute functions never render.

Every function takes plain arrays (numpy, or anything `np.asarray` accepts) and returns a ``PIL.Image``;
`save_result` writes a `visualize` result to a folder as PNGs.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

LABEL_H = 16  # height of the label strip above each cell, pixels
PAD = 2  # gap between cells, pixels
BACKGROUND = (255, 255, 255)


def _font() -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=12)
    except TypeError:  # Pillow < 10.1 has no sized default font
        return ImageFont.load_default()


def _to_uint8(img01: np.ndarray) -> np.ndarray:
    return (np.clip(img01, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def as_rgb01(image: Any) -> np.ndarray:
    """An RGB image (H, W, 3), uint8 or float in [0, 1] -> float64 in [0, 1]."""
    a = np.asarray(image)
    if a.ndim != 3 or a.shape[-1] != 3:
        raise ValueError(f"expected an RGB image shaped (H, W, 3), got shape {a.shape}")
    return a / 255.0 if a.dtype == np.uint8 else np.clip(a.astype(np.float64), 0.0, 1.0)


def display_normalize(x: Any, outlier_perc: float = 2.0) -> np.ndarray:
    """A signed image (H, W, 3) -> [0, 1] for display: 0 maps to gray, +-(the (100 - outlier_perc)th percentile
    of |x|) to 1 / 0, beyond that clipped (captum's visualization utils). An all-zero image is uniform gray."""
    x = np.asarray(x, dtype=np.float64)
    t = np.percentile(np.abs(x), 100.0 - outlier_perc)
    if t <= 0:
        t = np.max(np.abs(x))
    if t <= 0:
        return np.full(x.shape, 0.5)
    return 0.5 + 0.5 * np.clip(x / t, -1.0, 1.0)


def _cell_size(h: int, w: int, min_cell: int) -> tuple[int, int]:
    """Upscale by an integer factor (nearest) so the smaller side is at least `min_cell` pixels."""
    f = max(1, math.ceil(min_cell / min(h, w)))
    return h * f, w * f


def _grid(cells: Sequence[np.ndarray], labels: Sequence[str], ncols: int, min_cell: int) -> Image.Image:
    """Cells (h, w, 3) uint8, all the same size, in a grid with a label strip above each."""
    h, w = cells[0].shape[:2]
    ch, cw = _cell_size(h, w, min_cell)
    nrows = math.ceil(len(cells) / ncols)
    sheet = Image.new("RGB", (ncols * (cw + PAD) + PAD, nrows * (ch + LABEL_H + PAD) + PAD), BACKGROUND)
    draw, font = ImageDraw.Draw(sheet), _font()
    for i, (cell, label) in enumerate(zip(cells, labels)):
        r, c = divmod(i, ncols)
        x0, y0 = PAD + c * (cw + PAD), PAD + r * (ch + LABEL_H + PAD)
        draw.text((x0 + 2, y0 + 1), str(label), fill=(0, 0, 0), font=font)
        sheet.paste(Image.fromarray(cell).resize((cw, ch), Image.NEAREST), (x0, y0 + LABEL_H))
    return sheet


def activation_grid(activations: Any, min_cell: int = 48, scale: str = "channel") -> Image.Image:
    """Every channel's map of `activations` (h, w, C) in a ceil(sqrt(C))-column grid, labelled with its number.

    ``scale="channel"`` stretches each map to its own maximum (weak channels stay visible); ``"global"`` uses
    the layer's maximum for all. Maps are gray levels, upscaled (nearest) to at least `min_cell` pixels.
    """
    a = np.asarray(activations, dtype=np.float64)
    if a.ndim != 3:
        raise ValueError(f"expected activations shaped (h, w, C), got shape {a.shape}")
    if scale not in ("channel", "global"):
        raise ValueError(f"unknown scale {scale!r}; use one of: channel, global")
    top = a.max(axis=(0, 1), keepdims=True) if scale == "channel" else np.full((1, 1, 1), a.max())
    a = np.where(top > 0, np.maximum(a, 0) / np.where(top > 0, top, 1.0), 0.0)
    cells = [np.repeat(_to_uint8(a[:, :, c])[:, :, None], 3, axis=2) for c in range(a.shape[2])]
    return _grid(cells, [str(c) for c in range(a.shape[2])], math.ceil(math.sqrt(a.shape[2])), min_cell)


def projection_sheet(
    projections: Any, channels: Sequence[int], image: Any = None, min_cell: int = 96, outlier_perc: float = 2.0
) -> Image.Image:
    """DeconvNet `projections` (K, H, W, 3) side by side, each normalized for display (`display_normalize`) and
    labelled ``ch <channel>``; with `image` (an RGB image, uint8 or float in [0, 1]) shown first as "input"."""
    p = np.asarray(projections)
    ch = [int(c) for c in np.asarray(channels).reshape(-1)]
    if p.ndim != 4 or p.shape[-1] != 3 or len(ch) != p.shape[0]:
        raise ValueError(f"expected projections (K, H, W, 3) and K channels, got {p.shape} and {len(ch)} channels")
    cells = [_to_uint8(display_normalize(q, outlier_perc)) for q in p]
    labels = [f"ch {c}" for c in ch]
    if image is not None:
        img = as_rgb01(image)
        if img.shape[:2] != p.shape[1:3]:
            img = np.asarray(Image.fromarray(_to_uint8(img)).resize(p.shape[2:0:-1], Image.BILINEAR)) / 255.0
        cells, labels = [_to_uint8(img), *cells], ["input", *labels]
    return _grid(cells, labels, len(cells), min_cell)


def contact_sheet(images: Any, labels: Sequence[Any], ncols: int | None = None, min_cell: int = 96) -> Image.Image:
    """Images (K, S, S, 3) in [0, 1] in a labelled grid (`ncols` columns, by default ceil(sqrt(K)))."""
    a = np.asarray(images, dtype=np.float64)
    if a.ndim != 4 or a.shape[-1] != 3 or len(labels) != a.shape[0]:
        raise ValueError(f"expected images (K, S, S, 3) and K labels, got {a.shape} and {len(labels)} labels")
    ncols = ncols or math.ceil(math.sqrt(a.shape[0]))
    return _grid([_to_uint8(x) for x in a], [str(s) for s in labels], ncols, min_cell)


def save_result(result: Any, out_dir: str | os.PathLike, image: Any = None, overwrite: bool = False) -> list[Path]:
    """Write a `visualize` result to `out_dir` (created if needed) as ``<layer>_activations.png`` (the grid) and
    ``<layer>_projections.png`` (the sheet, beside `image` if given). Returns the paths. Existing files raise
    FileExistsError unless ``overwrite=True``; nothing is written then."""
    layer = getattr(result, "layer", "layer")
    out = Path(out_dir)
    paths = [out / f"{layer}_activations.png", out / f"{layer}_projections.png"]
    if not overwrite:
        for p in paths:
            if p.exists():
                raise FileExistsError(f"{p} exists; pass overwrite=True to replace it")
    pictures = [
        activation_grid(np.asarray(result.activations)),
        projection_sheet(np.asarray(result.projections), np.asarray(result.channels), image),
    ]
    out.mkdir(parents=True, exist_ok=True)
    for pic, p in zip(pictures, paths):
        pic.save(p)
    return paths
