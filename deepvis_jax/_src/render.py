"""Arrays -> pictures (numpy and Pillow only). Rendering never computes; the compute functions never render.

Every function takes plain arrays (numpy, or anything `np.asarray` accepts) and returns a ``PIL.Image``;
`save_result` writes a `visualize` result to a folder as PNGs.
"""

from __future__ import annotations

import functools
import math
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .images import IMAGE_EXTENSIONS, to_uint8

LABEL_H = 16  # height of the label strip above each cell, pixels
PAD = 2  # gap between cells, pixels
BACKGROUND = (255, 255, 255)


@functools.lru_cache(maxsize=None)
def label_font(size: int = 12) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has no sized default font
        return ImageFont.load_default()


LABEL_SIZES = (12, 11, 10, 9, 8, 7)  # type sizes tried, largest first, until a label fits its cell


def fit_label(draw: ImageDraw.ImageDraw, label: str, width: int) -> tuple[list[str], ImageFont.ImageFont]:
    """(lines, font) that draw `label` within `width` pixels and the label strip: one line in the largest size that
    fits, else two lines (split at a space, or mid-word) in a size whose two lines fit the strip, else the start of
    the label cut with "…" above its last words that fit (a filter's number is kept); never silently cut at the
    cell's edge."""
    for size in LABEL_SIZES:
        font = label_font(size)
        if draw.textlength(label, font=font) <= width:
            return [label], font
    small = label_font(LABEL_SIZES[-1])  # two lines of it fit the strip (LABEL_H)
    splits = [i for i, ch in enumerate(label) if ch == " "] or list(range(1, len(label)))
    for i in sorted(splits, key=lambda i: abs(i - len(label) / 2)):
        lines = [label[:i].rstrip(), label[i:].lstrip()]
        if all(draw.textlength(t, font=small) <= width for t in lines):
            return lines, small
    tails = [label[i + 1 :] for i, ch in enumerate(label) if ch == " "]  # longest first
    tail = next((t for t in tails if draw.textlength(t, font=small) <= width), "")
    cut = label[: len(label) - len(tail)].rstrip() if tail else label
    while cut and draw.textlength(cut + "…", font=small) > width:
        cut = cut[:-1]
    return [cut + "…", tail] if tail else [cut + "…"], small


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


def grid_cells(n: int, hw: tuple[int, int], ncols: int, min_cell: int) -> tuple[tuple[int, int], list[tuple]]:
    """Where `label_grid` puts `n` cells of size `hw` in `ncols` columns: the picture's (height, width) and each cell's
    map as (left, top, width, height) in pixels (below its label strip)."""
    ch, cw = _cell_size(hw[0], hw[1], min_cell)
    nrows = math.ceil(n / ncols)
    size = (nrows * (ch + LABEL_H + PAD) + PAD, ncols * (cw + PAD) + PAD)
    boxes = []
    for i in range(n):
        r, c = divmod(i, ncols)
        boxes.append((PAD + c * (cw + PAD), PAD + r * (ch + LABEL_H + PAD) + LABEL_H, cw, ch))
    return size, boxes


def label_grid(cells: Sequence[np.ndarray], labels: Sequence[str], ncols: int, min_cell: int,
          boxes: list | None = None) -> Image.Image:  # fmt: skip
    """Cells (h, w, 3) uint8, all the same size, in a grid with a label strip above each (`grid_cells`); `boxes`,
    when given, receives each cell's (left, top, width, height)."""
    (height, width), where = grid_cells(len(cells), cells[0].shape[:2], ncols, min_cell)
    sheet = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    for cell, label, (x0, y0, cw, ch) in zip(cells, labels, where):
        lines, font = fit_label(draw, str(label), cw - 3)
        step = (LABEL_H - 1) // len(lines)
        for k, line in enumerate(lines):
            draw.text((x0 + 2, y0 - LABEL_H + 1 + k * step), line, fill=(0, 0, 0), font=font)
        sheet.paste(Image.fromarray(cell).resize((cw, ch), Image.NEAREST), (x0, y0))
    if boxes is not None:
        boxes.extend(where[: len(cells)])
    return sheet


def activation_grid(activations: Any, min_cell: int = 48, scale: str = "channel", return_cells: bool = False):
    """Every channel's map of `activations` (h, w, C) in a ceil(sqrt(C))-column grid, labelled with its number.

    ``scale="channel"`` stretches each map to its own maximum (weak channels stay visible); ``"global"`` uses
    the layer's maximum for all. Maps are gray levels, upscaled (nearest) to at least `min_cell` pixels. Returns
    the picture (PIL); with ``return_cells=True``, ``(picture, cells)`` where ``cells[c]`` is channel c's map as
    (left, top, width, height) in the picture's pixels (to make the channels clickable).
    """
    a = np.asarray(activations, dtype=np.float64)
    if a.ndim != 3:
        raise ValueError(f"expected activations shaped (h, w, C), got shape {a.shape}")
    if scale not in ("channel", "global"):
        raise ValueError(f"unknown scale {scale!r}; use one of: channel, global")
    top = a.max(axis=(0, 1), keepdims=True) if scale == "channel" else np.full((1, 1, 1), a.max())
    a = np.where(top > 0, np.maximum(a, 0) / np.where(top > 0, top, 1.0), 0.0)
    cells = [np.repeat(to_uint8(a[:, :, c])[:, :, None], 3, axis=2) for c in range(a.shape[2])]
    boxes: list = []
    picture = label_grid(cells, [str(c) for c in range(a.shape[2])], math.ceil(math.sqrt(a.shape[2])), min_cell, boxes)
    return (picture, boxes) if return_cells else picture


def projection_sheet(
    projections: Any, channels: Sequence[int], image: Any = None, min_cell: int = 96, outlier_perc: float = 2.0
) -> Image.Image:
    """DeconvNet `projections` (K, H, W, 3) side by side, each normalized for display (`display_normalize`) and
    labelled ``ch <channel>``; with `image` (an RGB image, uint8 or float in [0, 1]) shown first as "input"."""
    p = np.asarray(projections)
    ch = [int(c) for c in np.asarray(channels).reshape(-1)]
    if p.ndim != 4 or p.shape[-1] != 3 or len(ch) != p.shape[0]:
        raise ValueError(f"expected projections (K, H, W, 3) and K channels, got {p.shape} and {len(ch)} channels")
    cells = [to_uint8(display_normalize(q, outlier_perc)) for q in p]
    labels = [f"ch {c}" for c in ch]
    if image is not None:
        img = as_rgb01(image)
        if img.shape[:2] != p.shape[1:3]:
            img = np.asarray(Image.fromarray(to_uint8(img)).resize(p.shape[2:0:-1], Image.BILINEAR)) / 255.0
        cells, labels = [to_uint8(img), *cells], ["input", *labels]
    return label_grid(cells, labels, len(cells), min_cell)


def contact_sheet(images: Any, labels: Sequence[Any], ncols: int | None = None, min_cell: int = 96) -> Image.Image:
    """Images (K, S, S, 3) in [0, 1] in a labelled grid (`ncols` columns, by default ceil(sqrt(K)))."""
    a = np.asarray(images, dtype=np.float64)
    if a.ndim != 4 or a.shape[-1] != 3 or len(labels) != a.shape[0]:
        raise ValueError(f"expected images (K, S, S, 3) and K labels, got {a.shape} and {len(labels)} labels")
    ncols = ncols or math.ceil(math.sqrt(a.shape[0]))
    return label_grid([to_uint8(x) for x in a], [str(s) for s in labels], ncols, min_cell)


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
    cells = [to_uint8(as_rgb01(image))] + [to_uint8(display_normalize(q)) for q in p]
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
    return label_grid(cells, labels, ch.shape[1] + 1, cell)
