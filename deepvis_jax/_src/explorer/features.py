"""Feature visualizations of many channels, computed in fixed-size batches and cached per channel on disk.

`construct_features` runs `construct` (its default recipe) over a layer's channels ``batch`` at a time: one
compiled program for the whole run, since the filter indices are traced and the last batch is padded with
repeats of its last channel. Every finished channel is written at once as ``channel_NNNN.png`` (atomically), so
an interrupted or repeated run skips it. A channel's image does not depend on the other channels in its batch
(`construct` draws filter ``f``'s randomness from ``fold_in(key(seed), f)``), so batches may be cut anywhere.
``key.json`` beside the pictures records what they depend on -- the architecture, a digest of the weights, the
layer and the recipe's settings -- and a folder made with other settings is never mixed in.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ..batching import pad_batch
from ..digest import weights_digest
from ..images import to_uint8
from ..nets import Model, layer_channels, layer_name
from ..optvis.construct import construct
from ..optvis.recipe import describe_recipe, resolve_recipe

KEY_FILE = "key.json"
KEY_VERSION = 2


def feature_name(channel: int) -> str:
    return f"channel_{int(channel):04d}.png"


def feature_key(model: Model, layer, *, image_size: int, steps: int, seed: int, digest: str | None = None) -> dict:
    """What a folder of feature visualizations depends on (written to ``key.json``): the recipe is the one
    `construct` resolves for this call (`describe_recipe`), so a change of its defaults invalidates the folder."""
    return {
        "version": KEY_VERSION,
        "model": model.arch.name,
        "weights": digest or weights_digest(model),
        "dtype": str(np.dtype(model.dtype)),
        "layer": layer_name(model, layer),
        "recipe": describe_recipe(resolve_recipe(layer_name(model, layer), steps=steps)),
        "image_size": int(image_size),
        "steps": int(steps),
        "seed": int(seed),
    }


def _describe(key: dict) -> str:
    return (f"{key.get('model')} {key.get('layer')}, {key.get('image_size')} px, {key.get('steps')} steps, "
            f"seed {key.get('seed')}, weights {str(key.get('weights'))[:8]}")  # fmt: skip


def open_cache(folder: str | os.PathLike, key: dict, replace: bool) -> Path:
    """Make `folder` hold pictures made with `key`: create it, or check its ``key.json``.

    A folder made with another key raises ValueError, or with ``replace=True`` loses its pictures.
    """
    folder = Path(folder)
    path = folder / KEY_FILE
    if path.exists():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            old = None
        if old == key:
            return folder
        if not replace:
            what = _describe(old) if isinstance(old, dict) else "an unreadable key.json"
            if isinstance(old, dict):
                what += "; differs: " + ", ".join(k for k in key if old.get(k) != key[k])
            raise ValueError(f"{folder} holds feature visualizations made with other settings ({what}; now "
                             f"{_describe(key)}); pass --overwrite to replace them")  # fmt: skip
    elif folder.is_dir() and any(folder.glob("channel_*.png")) and not replace:
        raise ValueError(f"{folder} holds feature visualizations without {KEY_FILE}; pass --overwrite to replace them")
    folder.mkdir(parents=True, exist_ok=True)
    for p in folder.glob("channel_*.png"):
        p.unlink()
    tmp = path.with_name(KEY_FILE + ".tmp")
    tmp.write_text(json.dumps(key, indent=1), encoding="utf-8")
    os.replace(tmp, path)
    return folder


def _save_png(img01: np.ndarray, path: Path) -> None:
    """Write a [0, 1] image as PNG atomically: a half-written file never counts as a finished channel."""
    from PIL import Image

    a = to_uint8(np.asarray(img01, np.float64))
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        Image.fromarray(a).save(f, format="PNG")
    os.replace(tmp, path)


def construct_features(
    model: Model,
    layer,
    channels: Sequence[int] | None,
    folder: str | os.PathLike,
    *,
    batch: int = 8,
    image_size: int = 128,
    steps: int = 256,
    seed: int = 0,
    replace: bool = False,
    progress: bool = True,
    digest: str | None = None,
) -> dict[int, Path]:
    """Each channel's feature visualization (`construct`'s default recipe) as ``folder/channel_NNNN.png``.

    Channels already in `folder` (made with the same model, weights, layer and settings: ``key.json``) are
    skipped; the others are computed `batch` at a time in one compiled program, each written as soon as its batch
    ends. Returns ``{channel: path}`` for every channel asked (default: all of the layer's).
    """
    name = layer_name(model, layer)
    n = layer_channels(model, name)
    chans = list(range(n)) if channels is None else [int(c) for c in channels]
    bad = [c for c in chans if not 0 <= c < n]
    if bad:
        raise ValueError(f"channel {bad[0]} is out of range for {name} of {model.arch.name}: use 0..{n - 1}")
    if not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be an int >= 1, got {batch!r}")
    key = feature_key(model, name, image_size=image_size, steps=steps, seed=seed, digest=digest)
    folder = open_cache(folder, key, replace)
    paths = {c: folder / feature_name(c) for c in chans}
    todo = [c for c in dict.fromkeys(chans) if not paths[c].is_file()]
    if not todo:
        return paths
    size = min(batch, len(todo))  # one compiled program: every call gets `size` filters
    from tqdm.auto import tqdm

    bar = tqdm(total=len(todo), desc=f"feature visualizations {name}", unit="channel", disable=not progress,
               dynamic_ncols=True)  # fmt: skip
    try:
        for s in range(0, len(todo), size):
            part = todo[s : s + size]
            filters = pad_batch(part, size)
            imgs = construct(model, name, filters, image_size=image_size, steps=steps, seed=seed, verbose=False)
            for c, img in zip(part, imgs):
                _save_png(img, paths[c])
            bar.update(len(part))
    finally:
        bar.close()
    return paths
