"""`deepvis atlas`'s work: one pass over the images for the top-k of every layer (`atlas_pass`), then per layer
the feature visualizations, the projections and the pages (`build_layer`).

The order bounds what an interruption costs: the running top-k of every layer is checkpointed in one file
(``OUT/atlas_state.npz``, ``--resume``), the feature visualizations are cached per channel
(`construct_features`), and the projections are recomputed `chunk` channels at a time (by DeconvNet and by
guided backprop) and written at once as pages.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import NamedTuple, Sequence

import jax
import numpy as np

from ..atlas import Atlas, atlas, atlas_project
from ..atlas_render import write_sheets
from ..images import list_images
from ..nets import Model, layer_channels
from .features import construct_features, weights_digest
from .site import FEATURES, LayerSummary, SiteInfo, write_channel_pages, write_layer_page

STATE_FILE = "atlas_state.npz"  # in the site's folder: every layer's running top-k
SHEETS = "sheets"  # in a layer's folder: channel_NNNN.png, the channel's projections beside its patches
CHUNK = 32  # channels projected and rendered at a time (bounds the memory of the projections)


class ConstructOptions(NamedTuple):
    """`construct`'s default recipe at this size and step count, `batch` channels per compiled call."""

    image_size: int = 128
    steps: int = 256
    batch: int = 8
    seed: int = 0

    def describe(self) -> str:
        return (f"dv.construct, default recipe, {self.image_size} px, {self.steps} steps, seed {self.seed}")


def parse_channels(specs: Sequence[str] | None, n: int, layer: str) -> list[int]:
    """``["0-63", "100", "7"]`` -> sorted unique channels, each checked against the layer's `n` channels."""
    if not specs:
        return list(range(n))
    out = set()
    for spec in specs:
        for part in str(spec).split(","):
            part = part.strip()
            lo, sep, hi = part.partition("-")
            try:
                a, b = int(lo), int(hi) if sep else int(lo)
            except ValueError:
                raise ValueError(f"--channels: {part!r} is not a channel or a range such as 0-63") from None
            if a > b or a < 0 or b >= n:
                raise ValueError(f"--channels {part} is out of range for {layer}: use 0..{n - 1}")
            out.update(range(a, b + 1))
    return sorted(out)


def clear_layer(layer_dir: Path) -> None:
    """Remove what an earlier run wrote for this layer (never the feature cache, which checks its own key)."""
    for sub in ("tiles", "thumbs", SHEETS):
        shutil.rmtree(layer_dir / sub, ignore_errors=True)
    for p in [*layer_dir.glob("channel_*.html"), layer_dir / "index.html"]:
        p.unlink(missing_ok=True)


def atlas_pass(
    model: Model,
    images: str | os.PathLike,
    names: Sequence[str],
    out_dir: str | os.PathLike,
    *,
    top_k: int,
    batch_size: int,
    size: int,
    checkpoint_every: int,
    resume: bool,
    per_image: bool = True,
    progress: bool = True,
) -> dict[str, Atlas]:
    """Every layer's top-k (no projections) in one pass over the folder `images`, checkpointed in
    ``out_dir/STATE_FILE`` (``resume``: continue from it)."""
    return atlas(model, images, layers=list(names), top_k=top_k, per_image=per_image, batch_size=batch_size,
                 size=size, project=False, checkpoint=Path(out_dir) / STATE_FILE, checkpoint_every=checkpoint_every,
                 resume=resume, progress=progress)  # fmt: skip


def build_layer(
    model: Model,
    images: str | os.PathLike,
    result: Atlas,
    layer_dir: Path,
    *,
    channels: Sequence[int],
    batch_size: int,
    size: int,
    construct: ConstructOptions | None,
    replace_features: bool,
    info: SiteInfo,
    progress: bool = True,
    digest: str | None = None,
) -> LayerSummary:
    """Everything of one layer in `layer_dir` from its top-k `result` (`atlas_pass`, or `atlas` with
    ``project=False`` over the folder `images`); returns what the site's index shows of it."""
    from tqdm.auto import tqdm

    name = result.layer
    info = info if construct is not None else info._replace(features=None)
    writer = jax.process_index() == 0  # every process projects (the arrays span all hosts); one writes
    if construct is not None and writer:
        construct_features(model, name, channels, layer_dir / FEATURES, batch=construct.batch,
                           image_size=construct.image_size, steps=construct.steps, seed=construct.seed,
                           replace=replace_features, progress=progress, digest=digest)  # fmt: skip
    root = Path(images)
    names = [os.path.relpath(f, root) for f in list_images(root)]
    chunks = range(0, len(channels), CHUNK)
    for s in tqdm(chunks, desc=f"projections {name}", unit="chunk", disable=not progress or not writer):
        part = channels[s : s + CHUNK]
        deconv = atlas_project(model, result, images, channels=part, batch_size=batch_size, size=size)
        guided = atlas_project(model, result, images, channels=part, batch_size=batch_size, size=size,
                               method="guided")  # fmt: skip
        if writer:
            write_channel_pages(deconv, np.asarray(guided.projections), layer_dir, selected=channels, info=info,
                                names=names)  # fmt: skip
            write_sheets(deconv, layer_dir / SHEETS)  # one PNG per channel: projections beside patches, labelled
    if writer:
        write_layer_page(result, layer_dir, selected=channels, info=info)
    return LayerSummary(name, layer_channels(model, name), tuple(channels), result.receptive_field.size,
                        construct is not None)  # fmt: skip


__all__ = ["CHUNK", "STATE_FILE", "ConstructOptions", "atlas_pass", "build_layer", "clear_layer", "parse_channels",
           "weights_digest"]  # fmt: skip
