"""The high-level attribution calls: `attribute` (ordinary RGB images or image files in, one (H, W) map per image
out, in compiled batches) and `save_attribution` (the maps drawn over their images, as PNG files)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ..batching import pad_batch
from ..checks import check_choice, check_int
from ..images import check_image_size, list_images, load_square, read_ahead, to_uint8
from ..nets import Model, classify, normalize
from ..render import batch_names
from . import methods as M
from .core import resolve_layer
from .render import colormap, overlay
from .targets import Target

CAMS = ("grad_cam", "hires_cam", "grad_cam_pp", "xgrad_cam", "layer_cam", "eigen_cam", "score_cam")
INPUT_METHODS = ("saliency", "input_x_gradient", "guided_backprop", "integrated_gradients", "smooth_grad",
                 "guided_grad_cam", "occlusion")  # fmt: skip
METHODS = CAMS + INPUT_METHODS


class Attribution(NamedTuple):
    """What `attribute` returns, numpy arrays in the order of the images: ``maps`` (N, H, W) float, one per image
    at the image's size; ``target`` (N,) int, the class each map explains (the predicted class where `attribute`
    was given ``target=None``; -1 for a ``dv.targets.*`` target); ``images`` (N, H, W, 3) uint8, the pixels
    attributed (files after `load_square`); ``paths``: the files read, or None for arrays."""

    maps: np.ndarray
    target: np.ndarray
    images: np.ndarray
    paths: list[Path] | None


def _method(method: str | Callable, layer: str | None, options: dict) -> Callable:
    """fn(model, x, target) -> (N, H, W) maps at the image size."""
    opts = dict(options)
    reduce = opts.pop("reduce", "abs_sum")
    if callable(method):
        def run(model, x, t):
            a = method(model, x, t, **opts)
            a = a[0] if isinstance(a, tuple) else a
            return M.to_map(a, reduce) if a.ndim == 4 else M.upsample(a, x.shape[1:3])

        return run
    check_choice("method", method, METHODS)
    if method in CAMS:
        return lambda model, x, t: M.upsample(getattr(M, method)(model, x, t, layer=layer, **opts), x.shape[1:3])
    if method == "smooth_grad":
        key = opts.pop("key", None)
        if key is None:
            raise ValueError("method smooth_grad needs key=jax.random.key(seed) (its noise's PRNG key)")
        inner = opts.pop("inner", M.saliency)
        return lambda model, x, t: M.to_map(M.smooth_grad(inner, model, x, t, key, **opts), reduce)
    if method == "guided_grad_cam":
        opts["layer"] = layer
    fn = getattr(M, method)

    def run(model, x, t):
        a = fn(model, x, t, **opts)
        return M.to_map(a[0] if isinstance(a, tuple) else a, reduce)

    return run


def _rows(target: Any, n: int, lo: int, hi: int, width: int) -> Any:
    """Images lo..hi of a per-image target (an index list, or the per-image leaves of a ``dv.targets.*``),
    padded to `width` by repeating the last; a batch-wide target as it is."""
    def take(a):
        a = np.asarray(a) if not isinstance(a, jax.Array) else a
        if getattr(a, "ndim", 0) >= 1 and a.shape[0] == n and n > 1:
            return pad_batch(a[lo:hi], width)
        return a

    if isinstance(target, Target):
        return jax.tree_util.tree_map(take, target)
    if target is None or np.ndim(target) == 0:
        return target
    a = np.asarray(target)
    if a.ndim != 1 or a.shape[0] != n:
        raise ValueError(f"target holds {a.shape[0] if a.ndim == 1 else a.shape} values for {n} images; give one "
                         "per image or a single one for all")  # fmt: skip
    return take(a)


def _images(images: Any, size: int, workers: int | None):
    """(a source of uint8 batches, N, paths): arrays as they are; a folder, a file or a list of files read with
    `load_square` at `size`, `workers` threads ahead of the device."""
    if isinstance(images, (str, os.PathLike)) or (isinstance(images, (list, tuple)) and images
                                                  and isinstance(images[0], (str, os.PathLike))):  # fmt: skip
        if isinstance(images, (str, os.PathLike)):
            paths = list_images(images) if Path(images).is_dir() else [Path(images)]
        else:
            paths = [Path(p) for p in images]
        for p in paths:
            if not p.is_file():
                raise FileNotFoundError(2, "no such image file", str(p))
        size = check_int("size", size)

        def source(batch):
            for first, n, results in read_ahead(paths, lambda f: load_square(f, size), batch, workers=workers):
                for path, r in zip(paths[first : first + n], results):
                    if isinstance(r, BaseException):
                        raise type(r)(f"{path}: {r}") from r
                yield np.stack(results)

        return source, len(paths), paths
    a = images if hasattr(images, "dtype") else np.asarray(images)
    if a.ndim == 3:
        a = a[None]
    if a.ndim != 4 or a.shape[-1] != 3 or a.shape[0] == 0:
        raise ValueError(f"expected an RGB image (H, W, 3), a batch (N, H, W, 3), a file, a list of files or a "
                         f"folder, got shape {tuple(a.shape)}")  # fmt: skip
    if not (a.dtype == np.uint8 or np.issubdtype(a.dtype, np.floating)):
        raise TypeError(f"expected uint8 images or float images in [0, 1], got dtype {a.dtype}")
    a = to_uint8(np.asarray(a))

    def source(batch):
        for s in range(0, len(a), batch):
            yield a[s : s + batch]

    return source, len(a), None


def attribute(model: Model, images: Any, method: str | Callable = "grad_cam", target: Any = None, *,
              layer=None, size: int = 224, batch_size: int = 8, progress: bool = False, workers: int | None = None,
              **options) -> Attribution:  # fmt: skip
    """Attribution maps of ordinary images, one (H, W) map per image at its size, in compiled batches.

    `images`: as `dv.visualize` takes them, one RGB image (H, W, 3) or a batch (N, H, W, 3) of one size, uint8 or
    float in [0, 1]; or image files: a path, a list of paths or a folder (its images, recursively, sorted by path),
    each read like `dv.load_image`, its shorter side resized to `size` and center-cropped (`load_square`), read by
    `workers` threads ahead of the device. Images go through the model in batches of `batch_size` (the last one
    padded, so one compiled program serves all); ``progress=True`` shows a tqdm bar.
    `method`: a name of `dv.attribution` (``"grad_cam"``, ``"integrated_gradients"``, ``"smooth_grad"``, ...: the
    CAMs at `layer`, upsampled bilinearly to the image; the input-space methods summed over colour as absolute
    values, ``reduce="sum"`` for signed sums) or any ``fn(model, x, target, **options)`` returning (N, H, W, 3)
    or (N, h, w). `options` go to the method (``steps=``, ``samples=``, ``chunk=``; `smooth_grad` needs
    ``key=`` and takes ``inner=`` its gradient method, default `saliency`).
    `target`: None (each image's predicted class), a class index (one for all, or one per image) or a
    ``dv.targets.*`` target (per-image values are split with the batches). Returns an `Attribution`.
    """
    from tqdm.auto import tqdm

    batch_size = check_int("batch_size", batch_size)
    layer = None if layer is None else resolve_layer(model, layer)
    run = _method(method, layer, options)
    source, n, paths = _images(images, size, workers)
    if target is None:
        k = getattr(model.arch, "num_classes", None)
        if not k:
            raise ValueError(f"{model.arch.name} has no class outputs: give a target (dv.targets.*)")
    width = min(batch_size, n)
    maps, targets, pixels = [], [], []
    bar = tqdm(total=n, unit="img", desc=f"attribute {getattr(method, '__name__', method)}", disable=not progress,
               dynamic_ncols=True)  # fmt: skip
    try:
        lo = 0
        for batch in source(width):
            m = len(batch)
            if lo == 0 and (target is None or not isinstance(target, Target) or target.layer is None):
                check_image_size(model, batch.shape[1:3])  # the class scores need the whole network
            x = normalize(jnp.asarray(pad_batch(batch, width), model.dtype) / 255)
            t = _rows(target, n, lo, lo + m, width)
            if t is None:
                t = jnp.argmax(classify(model, x), axis=-1).astype(jnp.int32)
            maps.append(np.asarray(run(model, x, t))[:m])
            targets.append(np.full(m, -1) if isinstance(t, Target) else np.broadcast_to(np.asarray(t), (width,))[:m])
            pixels.append(batch)
            lo += m
            bar.update(m)
    finally:
        bar.close()
    return Attribution(np.concatenate(maps), np.concatenate(targets).astype(np.int64), np.concatenate(pixels), paths)


def save_attribution(path: str | os.PathLike, image: Any, maps: Any, *, alpha: float = 0.5, cmap: str = "inferno",
                     percentile: float = 99.0, beside: bool = True, names: Sequence[Any] | None = None,
                     overwrite: bool = False) -> list[Path]:  # fmt: skip
    """Write attribution maps drawn over their images (`overlay`: matplotlib's colour map `cmap`, blended with
    `alpha`, scaled to the map's `percentile`) as PNG files; with ``beside=True`` the image is shown on the left
    of its overlay, 8 white pixels between. One image (H, W, 3) and map (H, W): `path` is the PNG file. A batch
    (N, H, W, 3) and (N, H, W), e.g. an `Attribution`'s ``images`` and ``maps``: `path` is a folder (created),
    the files ``<name>.png`` named by `names` as `dv.batch_names` makes stems (``sub/c.png`` -> ``sub_c``; default
    ``image000``, ...). Existing
    files raise FileExistsError unless ``overwrite=True``; nothing is written then. Returns the paths."""
    from PIL import Image

    img, m = np.asarray(image), np.asarray(maps)
    colormap(cmap)  # matplotlib is there and knows the map, before anything is written
    if img.ndim == 3 and m.ndim == 2:
        items, paths = [(img, m)], [Path(path)]
    elif img.ndim == 4 and m.ndim == 3 and len(img) == len(m):
        items = list(zip(img, m))
        paths = [Path(path) / f"{stem}.png" for stem in batch_names(len(img), names)]
    else:
        raise ValueError(f"expected an image (H, W, 3) with a map (H, W), or images (N, H, W, 3) with maps "
                         f"(N, H, W), got {img.shape} and {m.shape}")  # fmt: skip
    if not overwrite:
        for p in paths:
            if p.exists():
                raise FileExistsError(f"{p} exists; pass overwrite=True to replace it")
    pictures = []
    for im, heat in items:
        over = overlay(im, heat, alpha=alpha, cmap=cmap, percentile=percentile)
        if beside:
            u8 = to_uint8(im)
            over = np.concatenate([u8, np.full((u8.shape[0], 8, 3), 255, np.uint8), over], axis=1)
        pictures.append(over)
    for p, pic in zip(paths, pictures):
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pic).save(p)
    return paths


__all__ = ["Attribution", "CAMS", "INPUT_METHODS", "METHODS", "attribute", "save_attribution"]
