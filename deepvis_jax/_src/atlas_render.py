"""An `Atlas` on disk: one PNG sheet per channel (its k projections beside its k patches) and a static index.html.

Numpy and Pillow only: rendering never computes. The page is written by `pages.write_page` (the explorer's site
uses the same writer): relative links, no server needed.
"""

from __future__ import annotations

import html
import math
import os
from pathlib import Path

import numpy as np

from .atlas import Atlas
from .images import to_uint8
from .pages import write_page
from .render import LABEL_H, display_normalize, fit_label

GAP = 4  # pixels between tiles
MIN_TILE = 64  # small receptive fields (conv1: 11 px) are enlarged by an integer factor to at least this
BACKGROUND = 255


def sheet_name(channel: int) -> str:
    return f"channel_{int(channel):04d}.png"


def projection_to_uint8(p: np.ndarray) -> np.ndarray:
    """A projection (R, R, 3) as an image, scaled like every other projection (`render.display_normalize`: 0 is
    gray, the 98th percentile of |value| of the tile is white or black)."""
    return to_uint8(display_normalize(p))


def _grid(tiles: list[np.ndarray], cols: int, tile: int) -> np.ndarray:
    rows = math.ceil(len(tiles) / cols)
    out = np.full((rows * tile + (rows - 1) * GAP, cols * tile + (cols - 1) * GAP, 3), BACKGROUND, np.uint8)
    for i, t in enumerate(tiles):
        r, c = divmod(i, cols)
        out[r * (tile + GAP) : r * (tile + GAP) + tile, c * (tile + GAP) : c * (tile + GAP) + tile] = t
    return out


def _labelled(grid: np.ndarray, label: str) -> np.ndarray:
    """`grid` under a strip naming what it shows (fitted to its width by `render.fit_label`)."""
    from PIL import Image, ImageDraw

    strip = Image.new("RGB", (grid.shape[1], LABEL_H), (BACKGROUND,) * 3)
    draw = ImageDraw.Draw(strip)
    lines, font = fit_label(draw, label, grid.shape[1])
    draw.multiline_text((0, 0), "\n".join(lines), fill=(0, 0, 0), font=font, spacing=0)
    return np.concatenate([np.asarray(strip), grid], axis=0)


def channel_sheet(result: Atlas, i: int, method: str = "DeconvNet") -> np.ndarray:
    """The sheet of ``result.channels[i]``: a grid of its k projections, a gap, and the grid of its k patches,
    strongest first, each grid under a label ("<method> projections", "image patches")."""
    if result.projections is None or result.patches is None:
        raise ValueError("this atlas has no projections; run dv.atlas with project=True or dv.atlas_project")
    c = int(result.channels[i])
    k, r = result.values.shape[1], result.receptive_field.size
    scale = max(1, -(-MIN_TILE // r))
    tile = r * scale
    cols = math.ceil(math.sqrt(k))
    blank = np.full((tile, tile, 3), 128, np.uint8)

    def up(a):
        return np.repeat(np.repeat(a, scale, axis=0), scale, axis=1)

    found = result.image_index[c] >= 0
    proj = [up(projection_to_uint8(result.projections[i, j])) if found[j] else blank for j in range(k)]
    patch = [up(result.patches[i, j]) if found[j] else blank for j in range(k)]
    left = _labelled(_grid(proj, cols, tile), f"{method} projections")
    right = _labelled(_grid(patch, cols, tile), "image patches")
    spacer = np.full((left.shape[0], 4 * GAP, 3), BACKGROUND, np.uint8)
    return np.concatenate([left, spacer, right], axis=1)


def write_sheets(result: Atlas, out_dir: str | os.PathLike, method: str = "DeconvNet") -> list[Path]:
    """Write the sheet of every channel in ``result.channels`` as ``channel_NNNN.png`` (`channel_sheet`; `method`
    names the projections' method in its label); returns the paths."""
    from PIL import Image

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, c in enumerate(result.channels):
        p = out / sheet_name(c)
        Image.fromarray(channel_sheet(result, i, method)).save(p)
        paths.append(p)
    return paths


_STYLE = """body{font-family:sans-serif;margin:1em;background:#fafafa}
figure{display:inline-block;margin:.5em;vertical-align:top;background:#fff;padding:.3em;border:1px solid #ddd}
figure img{width:320px;height:auto;image-rendering:pixelated}figcaption{font-size:12px;max-width:320px}"""

def write_index(result: Atlas, out_dir: str | os.PathLike, title: str | None = None) -> Path:
    """Write ``index.html`` listing every channel of the layer, with its sheet where one exists in `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    n_ch, k = result.values.shape
    title = title or f"Top-{k} atlas of {result.layer}"
    what = (f"the {k} images that excite the channel most, each at its strongest unit," if result.per_image
            else f"the {k} strongest activations of the channel (an image may give several)")  # fmt: skip
    items = []
    for c in range(n_ch):
        found = result.image_index[c] >= 0
        top = f"{result.values[c, 0]:.4g}" if found[0] else "-"
        who = ", ".join(str(int(i)) for i in result.image_index[c][found])
        name = sheet_name(c)
        img = (f'<a href="{name}"><img src="{name}" alt="channel {c}"></a>' if (out / name).exists()
               else "<p>(not rendered)</p>")  # fmt: skip
        items.append(f'<figure id="channel-{c}" class="channel" data-channel="{c}">{img}'
                     f"<figcaption>channel {c} &middot; max {top} &middot; images {html.escape(who)}</figcaption>"
                     "</figure>")  # fmt: skip
    body = f"""<h1>{html.escape(title)}</h1>
<p>{result.num_images} images; {n_ch} channels. Each sheet: {what} projected to pixel space (DeconvNet, left)
beside the image patches in their receptive fields
({result.receptive_field.size}&times;{result.receptive_field.size} pixels, right), strongest first.</p>
<main>
{chr(10).join(items)}
</main>"""
    return write_page(out / "index.html", title, body, _STYLE)


def render_atlas(result: Atlas, out_dir: str | os.PathLike, title: str | None = None) -> Path:
    """Write every channel's sheet and ``index.html`` into `out_dir`; returns the page's path."""
    write_sheets(result, out_dir)
    return write_index(result, out_dir, title)
