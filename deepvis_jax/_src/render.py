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

from .images import IMAGE_EXTENSIONS, imagenet_labels

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


def batch_names(n: int, names: Sequence[Any] | None = None) -> list[str]:
    """File-name stems for a batch of `n` images: `names` (file paths or names: their stems, with folder
    separators and odd characters replaced by ``_``), else ``image000``, ``image001``, ... Repeats get ``_2``,
    ``_3``, ... appended, so every stem is unique."""
    if names is None:
        width = max(3, len(str(n - 1)))
        stems = [f"image{i:0{width}d}" for i in range(n)]
    else:
        names = list(names)
        if len(names) != n:
            raise ValueError(f"expected {n} names, one per image, got {len(names)}")
        stems = []
        for name in names:
            p = Path(str(name))
            stem = str(p.with_suffix("")) if p.suffix.lower() in IMAGE_EXTENSIONS else str(p)
            stem = "".join(c if c.isalnum() or c in "-_.+" else "_" for c in stem).strip("._") or "image"
            stems.append(stem)
    seen: dict[str, int] = {}
    out = []
    for stem in stems:
        seen[stem] = seen.get(stem, 0) + 1
        out.append(stem if seen[stem] == 1 else f"{stem}_{seen[stem]}")
    return out


def result_paths(result: Any, out_dir: str | os.PathLike, names: Sequence[Any] | None = None) -> list[Path]:
    """The files `save_result` writes for `result`: ``<layer>_activations.png`` and ``<layer>_projections.png``
    for one image (``<name>_<layer>_...`` with ``names=[name]``); for a batch, `batch_paths`."""
    layer = getattr(result, "layer", "layer")
    out = Path(out_dir)
    if np.ndim(result.channels) == 1 and names is None:
        return [out / f"{layer}_activations.png", out / f"{layer}_projections.png"]
    n = 1 if np.ndim(result.channels) == 1 else np.shape(result.channels)[0]
    return batch_paths(out, layer, batch_names(n, names))


def batch_paths(out_dir: str | os.PathLike, layer: str, names: Sequence[Any]) -> list[Path]:
    """``<name>_<layer>_activations.png`` and ``<name>_<layer>_projections.png`` for each name (`batch_names`)."""
    return [Path(out_dir) / f"{stem}_{layer}_{kind}.png" for stem in batch_names(len(names), names)
            for kind in ("activations", "projections")]  # fmt: skip


def save_result(result: Any, out_dir: str | os.PathLike, image: Any = None, overwrite: bool = False,
                names: Sequence[Any] | None = None) -> list[Path]:  # fmt: skip
    """Write a `visualize` result to `out_dir` (created if needed) as ``<layer>_activations.png`` (the grid) and
    ``<layer>_projections.png`` (the sheet, beside `image` if given). Returns the paths. Existing files raise
    FileExistsError unless ``overwrite=True``; nothing is written then.

    A batch's result (leading N axis) gives one pair per image, ``<name>_<layer>_activations.png`` and
    ``<name>_<layer>_projections.png``: `image` is then the batch (N, H, W, 3) or None, and `names` the source
    files (or any names; their stems are used), by default ``image000``, ``image001``, ... (`batch_names`). One
    image's result with ``names=[name]`` is written as ``<name>_<layer>_activations.png`` and so on."""
    paths = result_paths(result, out_dir, names)
    if not overwrite:
        for p in paths:
            if p.exists():
                raise FileExistsError(f"{p} exists; pass overwrite=True to replace it")
    if np.ndim(result.channels) == 1:
        items = [(result.activations, result.projections, result.channels, image)]
    else:
        n = np.shape(result.channels)[0]
        if image is not None and (np.ndim(image) != 4 or len(image) != n):
            raise ValueError(f"a batch's result needs its images (N, H, W, 3) with N = {n}, got shape {np.shape(image)}")
        items = [(result.activations[i], result.projections[i], result.channels[i], None if image is None else image[i])
                 for i in range(n)]  # fmt: skip
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for k, (act, proj, ch, img) in enumerate(items):
        activation_grid(np.asarray(act)).save(paths[2 * k])
        projection_sheet(np.asarray(proj), np.asarray(ch), img).save(paths[2 * k + 1])
    return paths


def summary_row(image: Any, projections: Any, channels: Sequence[int], cell: int = 64) -> list[np.ndarray]:
    """One image's row of `batch_sheet`: the input and its K projections (display-normalized), each shrunk
    (area filter) to ``cell x cell`` pixels, as uint8 arrays."""
    p = np.asarray(projections)
    if p.ndim != 4 or p.shape[-1] != 3 or len(np.asarray(channels).reshape(-1)) != p.shape[0]:
        raise ValueError(f"expected projections (K, H, W, 3) and K channels, got {p.shape}")
    cells = [_to_uint8(as_rgb01(image))] + [_to_uint8(display_normalize(q)) for q in p]
    return [np.asarray(Image.fromarray(c).resize((cell, cell), Image.BOX)) for c in cells]


def batch_sheet(images: Any, projections: Any, channels: Any, names: Sequence[Any] | None = None,
                cell: int = 64, rows: Sequence[Sequence[np.ndarray]] | None = None) -> Image.Image:  # fmt: skip
    """A summary of a batch: one row per image, its input (labelled with its name) and the projections of its
    top channels (labelled ``ch <channel>``), each ``cell`` pixels. `images` (N, H, W, 3), `projections`
    (N, K, H, W, 3), `channels` (N, K); or `rows` from `summary_row` (then `images` and `projections` are
    ignored) to build the sheet from rows made one at a time."""
    ch = np.asarray(channels)
    if rows is None:
        rows = [summary_row(img, p, c, cell) for img, p, c in zip(images, projections, ch)]
    if ch.ndim != 2 or len(rows) != ch.shape[0]:
        raise ValueError(f"expected channels (N, K) for {len(rows)} rows, got shape {ch.shape}")
    stems = batch_names(len(rows), names)
    cells, labels = [], []
    for stem, row, c in zip(stems, rows, ch):
        cells.extend(row)
        labels.extend([stem[:12], *(f"ch {int(k)}" for k in c)])
    return _grid(cells, labels, ch.shape[1] + 1, cell)


# --------------------------------------------------------------------------------------------------------------
# Occlusion sensitivity (Zeiler & Fergus Fig. 7)
# --------------------------------------------------------------------------------------------------------------

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
        return _to_uint8(alpha * rgb01_map[iy][:, ix] + (1 - alpha) * img)

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
    square = _to_uint8(img)
    side = min(result.patch, h, w)
    square[:side, :side] = (0.5 * square[:side, :side] + 0.5 * 128).astype(np.uint8)  # the occluder, top-left
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
    grid = _grid(cells, titles, 4, min_cell)
    # legend of (c): a swatch and a label per class, in rows below the panels
    font = _font()
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
    grid = _grid([square, feature], [t0, t1], 2, min_cell)
    lines = ["(b), (c) not shown: this model's classifier is", "untrained, so its class predictions mean nothing"]
    fig = Image.new("RGB", (grid.width, grid.height + 2 * PAD + len(lines) * (LABEL_H + 2)), BACKGROUND)
    fig.paste(grid, (0, 0))
    draw = ImageDraw.Draw(fig)
    for k, line in enumerate(lines):
        draw.text((PAD, grid.height + PAD + k * (LABEL_H + 2)), line, fill=(0, 0, 0), font=_font())
    return fig


def _short(labels: Sequence[str], c: int, width: int = 28) -> str:
    s = labels[int(c)] if 0 <= int(c) < len(labels) else str(int(c))
    return s if len(s) <= width else s[: width - 3] + "..."
