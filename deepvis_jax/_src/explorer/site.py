"""The static explorer site: an index of layers, a grid of every channel per layer, and a page per channel.

Rendering only (numpy and Pillow; it never computes): it takes `Atlas` results whose projections were computed
by DeconvNet and by guided backprop, and the feature-visualization PNGs that `features.construct_features` wrote.
Every link is relative and the pages need no server: the site opens from the file system. Layout:

    OUT/index.html                       the layers, each with a strip of its first channels
    OUT/<layer>/index.html               every channel: its feature visualization (or its top patch) as a thumbnail
    OUT/<layer>/channel_NNNN.html        one channel: feature visualization, top-k patches beside their DeconvNet
                                         and guided projections, activation values, source files, neighbours
    OUT/<layer>/tiles/NNNN_J.png         rank J of channel NNNN: patch | DeconvNet | guided
    OUT/<layer>/thumbs/NNNN.png          the channel's thumbnail
    OUT/<layer>/features/channel_NNNN.png  feature visualizations (written by `construct_features`)
"""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np
from PIL import Image

from ..atlas import Atlas
from ..atlas_render import projection_to_uint8
from ..pages import write_page
from .features import feature_name

TILE_MIN, TILE_MAX = 64, 128  # a tile's longer side: small receptive fields are enlarged, large ones shrunk
THUMB = 96
GAP = 3
FEATURES = "features"


class SiteInfo(NamedTuple):
    """What the pages say about the run: the model, the number of images, how the feature pictures were made."""

    model: str
    num_images: int
    features: str | None  # e.g. "dv.construct, default recipe, 128 px, 256 steps, seed 0"; None: not computed


def page_name(channel: int) -> str:
    return f"channel_{int(channel):04d}.html"


def _tile_name(channel: int, rank: int) -> str:
    return f"tiles/{int(channel):04d}_{rank + 1}.png"


def _thumb_name(channel: int) -> str:
    return f"thumbs/{int(channel):04d}.png"


# --------------------------------------------------------------------------------------------------------------
# Pictures
# --------------------------------------------------------------------------------------------------------------


def _fit(a: np.ndarray, side: int) -> np.ndarray:
    """Scale an (h, w, 3) uint8 image so its longer side is `side` (nearest when enlarging, Lanczos when not)."""
    h, w = a.shape[:2]
    f = side / max(h, w)
    size = (max(1, round(w * f)), max(1, round(h * f)))
    if size == (w, h):
        return a
    return np.asarray(Image.fromarray(a).resize(size, Image.NEAREST if f > 1 else Image.LANCZOS))


def _window(result: Atlas, c: int, j: int) -> tuple[int, int, int, int]:
    """The part of rank j's receptive-field window (rows, cols inside the R x R crop) that lies in the image."""
    rf = result.receptive_field
    row, col = (int(v) for v in result.position[c, j])
    t, b, l, r = (int(v) for v in result.boxes[c, j])
    top, left = rf.offset + rf.stride * row, rf.offset + rf.stride * col
    return t - top, b - top, l - left, r - left


def rank_tile(patch: np.ndarray, deconv: np.ndarray, guided: np.ndarray, window, side: int) -> np.ndarray:
    """One example: the image patch, its DeconvNet projection and its guided projection side by side, each cut to
    the receptive field's part inside the image and scaled so its longer side is `side`; projections are shown
    with `projection_to_uint8` (0 gray, the tile's 98th percentile of |value| white or black)."""
    t, b, l, r = window
    cells = [patch[t:b, l:r], projection_to_uint8(deconv[t:b, l:r]), projection_to_uint8(guided[t:b, l:r])]
    cells = [_fit(np.ascontiguousarray(x), side) for x in cells]
    h, w = cells[0].shape[:2]
    out = np.full((h, 3 * w + 2 * GAP, 3), 255, np.uint8)
    for i, x in enumerate(cells):
        out[:, i * (w + GAP) : i * (w + GAP) + w] = x
    return out


def _save(a: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a).save(path, optimize=True)


# --------------------------------------------------------------------------------------------------------------
# Pages
# --------------------------------------------------------------------------------------------------------------

_STYLE = """body{font-family:sans-serif;margin:1em 1.5em;background:#fafafa;color:#222}
a{color:#1a55a8}nav{margin:.4em 0 1em}nav a{margin-right:1.2em}
.grid{display:flex;flex-wrap:wrap;gap:6px}.grid figure{margin:0;background:#fff;border:1px solid #ddd;padding:3px}
.grid img{display:block;width:96px;height:96px;object-fit:contain}
.grid figcaption{font-size:11px;text-align:center}
table{border-collapse:collapse}td,th{padding:4px 8px;border-bottom:1px solid #ddd;text-align:left;
vertical-align:middle;font-size:13px}
.channel{display:flex;gap:2em;align-items:flex-start;flex-wrap:wrap}.feature{width:260px}
.feature img{width:256px;height:256px;border:1px solid #ccc;image-rendering:auto}h2{font-size:1.15em}.strip img{width:64px;height:64px}
.layer{margin-bottom:1.5em}.muted{color:#777}"""


def _top_heading(result: Atlas, found: int, num_images: int) -> str:
    if result.per_image:
        return f"Top {found} of {num_images} images, each at its strongest unit"
    return f"Top {found} unit{'s' * (found != 1)} over {num_images} images (an image may appear more than once)"


def _fmt(v: float) -> str:
    return f"{v:.4g}" if np.isfinite(v) else "-"


def write_channel_pages(
    result: Atlas,
    guided: np.ndarray,
    layer_dir: str | os.PathLike,
    *,
    selected: Sequence[int],
    info: SiteInfo,
    names: Sequence[str] | None = None,
) -> list[Path]:
    """For each channel of ``result.channels``: its tiles, its thumbnail and ``channel_NNNN.html``.

    `result` holds the DeconvNet projections and the patches of those channels, `guided` (same shape) their
    guided projections; `selected` is every channel of the site (for the links to the neighbours); `names`
    labels the images by index (default: ``result.files``, else "image N"). Feature pictures are looked up in
    ``layer_dir/features`` and shown when present.
    """
    if result.projections is None or result.patches is None:
        raise ValueError("this atlas has no projections; run dv.atlas_project first")
    out = Path(layer_dir)
    selected = [int(c) for c in selected]
    where = {c: i for i, c in enumerate(selected)}
    k, r = result.values.shape[1], result.receptive_field.size
    side = min(TILE_MAX, max(TILE_MIN, r))
    names = list(names) if names is not None else (list(result.files) if result.files else None)
    paths = []
    for i, c in enumerate(int(c) for c in result.channels):
        found = [j for j in range(k) if result.image_index[c, j] >= 0]
        rows = []
        for j in found:
            tile = rank_tile(result.patches[i, j], result.projections[i, j], guided[i, j], _window(result, c, j), side)
            _save(tile, out / _tile_name(c, j))
            n = int(result.image_index[c, j])
            src = names[n] if names is not None else f"image {n}"
            y, x = (int(v) for v in result.position[c, j])
            rows.append(f'<tr id="rank-{j + 1}"><td>{j + 1}</td><td>{_fmt(float(result.values[c, j]))}</td>'
                        f"<td>{html.escape(src)}<br><span class=muted>unit ({y}, {x}) of the map</span></td>"
                        f'<td><img src="{_tile_name(c, j)}" alt="rank {j + 1}: patch, DeconvNet, guided"></td></tr>')
        feature = out / FEATURES / feature_name(c)
        if feature.is_file():
            thumb = np.asarray(Image.open(feature).convert("RGB"))
            fv = (f'<section class="feature"><h2>Feature visualization</h2><img src="{FEATURES}/{feature_name(c)}" '
                  f'alt="feature visualization of channel {c}"><p class="muted">{html.escape(info.features or "")}'
                  "</p></section>")  # fmt: skip
        else:
            thumb = None
            if found:  # the strongest patch stands in
                t, b, l, rr = _window(result, c, found[0])
                thumb = result.patches[i, found[0]][t:b, l:rr]
            fv = ('<section class="feature"><h2>Feature visualization</h2><p class="muted">not computed (run '
                  "<code>deepvis atlas</code> with <code>--construct</code>); the thumbnail in the grid is the top "
                  "patch</p></section>")  # fmt: skip
        if thumb is not None:
            _save(_fit(np.ascontiguousarray(thumb), THUMB), out / _thumb_name(c))
        s = where.get(c)
        prev_c = selected[s - 1] if s is not None and s > 0 else None
        next_c = selected[s + 1] if s is not None and s + 1 < len(selected) else None
        nav = "".join([
            f'<a id="prev" href="{page_name(prev_c)}">&larr; channel {prev_c}</a>' if prev_c is not None else "",
            f'<a id="up" href="index.html">{html.escape(result.layer)}: all channels</a>',
            '<a id="home" href="../index.html">all layers</a>',
            f'<a id="next" href="{page_name(next_c)}">channel {next_c} &rarr;</a>' if next_c is not None else "",
        ])  # fmt: skip
        rf = result.receptive_field
        table = ("<table><tr><th>rank</th><th>activation</th><th>image</th><th>patch &middot; DeconvNet &middot; "
                 f"guided backprop</th></tr>{''.join(rows)}</table>" if rows else "<p>no activations</p>")  # fmt: skip
        title = f"{info.model} {result.layer} channel {c}"
        body = (f'<nav>{nav}</nav><h1>{html.escape(title)}</h1><div class="channel">{fv}<section>'
                f"<h2>{_top_heading(result, len(found), info.num_images)}</h2>"
                f'<p class="muted">Each row: the image patch in the unit\'s receptive field ({rf.size}&times;{rf.size} '
                "px, cut to the image), its projection to pixel space by DeconvNet (Zeiler &amp; Fergus) and by "
                "guided backprop, each scaled on its own (0 is gray).</p>"
                f"{table}</section></div>")  # fmt: skip
        paths.append(write_page(out / page_name(c), title, body, _STYLE))
    return paths


def _thumb_figure(c: int, caption: str, layer_dir: Path, prefix: str = "", layer: str | None = None) -> str:
    """A channel's thumbnail figure, id ``channel-C``; with `layer` (a page of several layers) ``channel-LAYER-C``,
    so that no id repeats on the page."""
    img = (f'<img src="{prefix}{_thumb_name(c)}" alt="channel {c}">' if (layer_dir / _thumb_name(c)).is_file()
           else f'<span class="muted">channel {c}</span>')  # fmt: skip
    fid = f"channel-{c}" if layer is None else f"channel-{html.escape(layer)}-{c}"
    return (f'<figure id="{fid}" data-channel="{c}"><a href="{prefix}{page_name(c)}">{img}</a>'
            f"<figcaption>{caption}</figcaption></figure>")


def write_layer_page(result: Atlas, layer_dir: str | os.PathLike, *, selected: Sequence[int], info: SiteInfo) -> Path:
    """``layer_dir/index.html``: every selected channel's thumbnail, linked to its page."""
    out = Path(layer_dir)
    n_ch = result.values.shape[0]
    figs = [_thumb_figure(int(c), f"{int(c)} &middot; {_fmt(float(result.values[c, 0]))}", out) for c in selected]
    what = "feature visualization" if info.features else "strongest image patch"
    title = f"{info.model} {result.layer}"
    body = (f'<nav><a id="home" href="../index.html">all layers</a></nav><h1>{html.escape(title)}</h1>'
            f"<p>{len(figs)} of {n_ch} channels; each thumbnail is the channel's {what}, the number under it the "
            f"channel and its strongest activation over {info.num_images} images. Click one for its page.</p>"
            f'<div class="grid">{"".join(figs)}</div>')  # fmt: skip
    return write_page(out / "index.html", title, body, _STYLE)


class LayerSummary(NamedTuple):
    layer: str
    channels: int  # in the layer
    selected: tuple  # channels with a page
    receptive_field: int
    features: bool  # whether its feature visualizations were computed


def write_site_index(out_dir: str | os.PathLike, layers: Sequence[LayerSummary], info: SiteInfo,
                     strip: int = 12) -> Path:  # fmt: skip
    """``out_dir/index.html``: every layer, with the first `strip` of its channels' thumbnails."""
    out = Path(out_dir)
    items = []
    for s in layers:
        folder = out / s.layer
        figs = [_thumb_figure(int(c), str(int(c)), folder, f"{s.layer}/", s.layer) for c in s.selected[:strip]]
        what = "feature visualizations" if s.features else "top patches"
        items.append(f'<section class="layer" id="layer-{html.escape(s.layer)}"><h2><a href="{s.layer}/index.html">'
                     f"{html.escape(s.layer)}</a></h2><p>{len(s.selected)} of {s.channels} channels ({what}); "
                     f"receptive field {s.receptive_field}&times;{s.receptive_field} px</p>"
                     f'<div class="grid strip">{"".join(figs)}</div></section>')  # fmt: skip
    with_fv = [s.layer for s in layers if s.features]
    fv = (f"Feature visualizations ({', '.join(with_fv)}): {html.escape(info.features or '')}; elsewhere a channel's "
          "thumbnail is its top patch." if with_fv else "No feature visualizations (run with <code>--construct"
          "</code>): thumbnails show each channel's top patch.")  # fmt: skip
    title = f"{info.model}: atlas of {len(layers)} layer{'s' * (len(layers) != 1)}"
    body = (f"<h1>{html.escape(title)}</h1><p>Each channel's strongest activations over {info.num_images} images, "
            f"projected to pixel space by DeconvNet and guided backprop beside the image patches. {fv}</p>"
            f"{''.join(items)}")  # fmt: skip
    return write_page(out / "index.html", title, body, _STYLE)
