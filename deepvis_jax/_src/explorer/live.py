"""The compute core of `deepvis serve`: images in, activation grids, projections and feature pictures out.

One compiled program per layer and image size: `_layer_state` (the forward pass, its switches and masks) and
`_channel_projections` (the clicked channel's strongest unit projected by DeconvNet, guided backprop and the
gradient, all three in one program) take the channel as a traced argument, so a click never compiles; every
image is resized and center-cropped to one size, so a new image does not compile either. Feature
visualizations (`construct`, its default recipe) depend on the layer and channel only, not on the image; they
compile once per layer. Every result is cached (bounded, least recently used first) as PNG bytes; uploads are
decoded from a temporary folder that `Explorer.close` removes.
"""

from __future__ import annotations

import collections
import functools
import hashlib
import io
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from ..compile import jit
from ..deconv import forward, project_units
from ..images import ImageError, check_image_size, load_image, sample_image, square, to_uint8
from ..input_size import fit_images, side
from ..nets import Model, layer_channels, layer_name, layers, min_size, normalize
from ..optvis.construct import construct
from ..render import activation_grid, display_normalize
from ..rules import METHODS

MAX_PIXELS = 50_000_000  # an upload larger than this (decoded) is refused before it is decoded
GRID_CELL = 48  # smallest cell of the activation grid, pixels (maps are enlarged to it)


# --------------------------------------------------------------------------------------------------------------
# The compiled programs
# --------------------------------------------------------------------------------------------------------------


@functools.partial(jit, static_argnames=("name",))
def _layer_state(model: Model, image: jax.Array, name: str):
    """(activation (h, w, C), switches) of one uint8 image (H, W, 3)."""
    x = normalize(image.astype(model.dtype) / 255)[None]
    act, switches = forward(model, x, name)
    return act[0], switches


@functools.partial(jit, static_argnames=("name",))
def _channel_projections(model: Model, switches, act: jax.Array, channel: jax.Array, name: str):
    """The strongest unit of `channel` (traced) projected by every method: ((3, H, W, 3), value, row, col).

    Each is `project` of a signal that is the unit's activation at the unit and zero elsewhere, computed on the
    crop that holds the unit's receptive field (`project_units`, as `visualize(mode="max")` does).
    """
    w = act.shape[1]
    amap = jnp.take(act, channel, axis=2)  # (h, w)
    j = jnp.argmax(amap.reshape(-1))
    row, col = j // w, j % w
    value = amap.reshape(-1)[j]
    unit = jnp.stack([jnp.zeros_like(row), row, col, jnp.asarray(channel, row.dtype)]).astype(jnp.int32)
    proj = [project_units(model, switches, unit[None], value[None], name, m)[0] for m in METHODS]
    return jnp.stack(proj), value, row, col


# --------------------------------------------------------------------------------------------------------------
# Caches and results
# --------------------------------------------------------------------------------------------------------------


class _LRU:
    """A thread-safe bounded mapping; `get_or_compute` computes a missing value once even when asked
    concurrently (one lock per key)."""

    def __init__(self, size: int):
        self.size = size
        self.data: collections.OrderedDict = collections.OrderedDict()
        self.lock = threading.Lock()
        self.pending: dict[Any, threading.Lock] = {}

    def get(self, key):
        with self.lock:
            if key in self.data:
                self.data.move_to_end(key)
                return self.data[key]
        return None

    def put(self, key, value) -> None:
        with self.lock:
            self.data[key] = value
            self.data.move_to_end(key)
            while len(self.data) > self.size:
                self.data.popitem(last=False)

    def get_or_compute(self, key, compute: Callable[[], Any]):
        hit = self.get(key)
        if hit is not None:
            return hit
        with self.lock:
            lock = self.pending.setdefault(key, threading.Lock())
        try:
            with lock:
                hit = self.get(key)
                if hit is None:
                    hit = compute()
                    self.put(key, hit)
        finally:
            with self.lock:
                self.pending.pop(key, None)
        return hit


def png_bytes(a: np.ndarray | Image.Image) -> bytes:
    img = a if isinstance(a, Image.Image) else Image.fromarray(a)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


class Cancelled(Exception):
    """A queued computation whose client went away."""


class UnknownImageError(LookupError):
    """An image id the explorer does not hold (never shown, or dropped from its bounded cache)."""


class LayerView(NamedTuple):
    """What the page needs to draw a layer's activation grid and make each channel clickable."""

    layer: str
    channels: int
    map_hw: tuple  # (h, w) of the feature map
    grid_png: bytes
    grid_hw: tuple  # (height, width) of the grid picture, pixels
    cells: list  # per channel: (left, top, width, height) of its map in the grid picture, pixels
    top: list  # [(channel, max activation)], strongest first (at most 12)


class ChannelView(NamedTuple):
    layer: str
    channel: int
    value: float  # the channel's strongest activation
    position: tuple  # (row, col) of that unit
    projections: dict  # method -> PNG bytes


# --------------------------------------------------------------------------------------------------------------
# The explorer
# --------------------------------------------------------------------------------------------------------------


class Explorer:
    """The state of `deepvis serve`: the model, the images it was shown, and caches of everything computed.

    Thread-safe: network computations run one at a time (`compute_lock`), feature visualizations one at a time
    on their own lock (so a slow one does not hold up projections), and each result is computed once.
    """

    def __init__(self, model: Model, *, size: int = 224, construct_size: int = 128, construct_steps: int = 256,
                 max_images: int = 16, max_results: int = 256, tmpdir: str | os.PathLike | None = None):  # fmt: skip
        self.model = model
        self.size = side(model, int(size))  # a network that takes one square size: that size
        self.construct_size = side(model, int(construct_size))
        self.construct_steps = int(construct_steps)
        self.layers = [n for n in layers(model) if min_size(model, n) <= self.size]
        if not self.layers:
            raise ValueError(f"--size {size} is too small for every layer of {model.arch.name}")
        self.tmp = Path(tempfile.mkdtemp(prefix="deepvis-serve-", dir=tmpdir))  # uploads, while being read
        self.images = _LRU(max_images)
        self.names: dict[str, str] = {}
        self.states = _LRU(8)  # (image, layer) -> (act, switches) on the device
        self.views = _LRU(max_results)
        self.features = _LRU(max_results)
        self.compute_lock = threading.Lock()
        self.construct_lock = threading.Lock()
        self.feature_seconds: dict[tuple, float] = {}  # (layer, channel) -> seconds its construct took
        self.sample_id = self.add_image(sample_image(), "the sample photo (NASA astronaut)")

    # -- images ----------------------------------------------------------------------------------------------

    def prepare(self, image: np.ndarray) -> np.ndarray:
        """The image as the network sees it here: its shorter side resized to `size` (shrunk or enlarged), then
        center-cropped to ``size x size`` (`images.square`, as the atlas reads files): every image has the one
        size, so a new one never compiles."""
        return fit_images(self.model, square(image, self.size))

    def add_image(self, image: np.ndarray, name: str) -> str:
        """Keep a prepared copy of an RGB uint8 image; returns its id (a digest of its pixels)."""
        image = self.prepare(image)
        check_image_size(self.model, image.shape[:2], self.layers[0])
        digest = hashlib.blake2b(image.tobytes() + str(image.shape).encode(), digest_size=8).hexdigest()
        self.images.put(digest, image)
        self.names[digest] = name
        return digest

    def add_upload(self, data: bytes, filename: str) -> str:
        """Decode uploaded bytes as the CLI reads an image file (`load_image`); ImageError if they are not one.

        The bytes go to a file in the temporary folder (removed right after reading) so that exactly the CLI's
        checks and conversions apply; messages name the uploaded file, never the temporary one.
        """
        name = os.path.basename(filename or "").strip() or "upload"
        fd, path = tempfile.mkstemp(dir=self.tmp, suffix=Path(name).suffix[:10] or ".img")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            w = h = 0
            try:
                with Image.open(path) as im:  # the header only: refuse huge images before decoding them
                    w, h = im.size
            except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError):
                pass  # not readable as an image: load_image below says how, in the CLI's words
            if w * h > MAX_PIXELS:
                raise ImageError(f"{name} is {w}x{h} pixels; the server takes images of at most "
                                 f"{MAX_PIXELS // 1_000_000} megapixels")  # fmt: skip
            try:
                image = load_image(path)
            except (ImageError, OSError) as e:
                raise ImageError(" ".join(str(e).replace(path, name).split())) from None
        finally:
            os.unlink(path)
        try:
            return self.add_image(image, name)
        except ValueError as e:
            raise ImageError(f"{name}: {e}") from None

    def image(self, image_id: str) -> np.ndarray:
        img = self.images.get(image_id)
        if img is None:
            raise UnknownImageError(f"unknown image {image_id!r}; the server keeps the last {self.images.size} images: "
                           "upload it again")  # fmt: skip
        return img

    def image_png(self, image_id: str) -> bytes:
        return self.views.get_or_compute(("image", image_id), lambda: png_bytes(self.image(image_id)))

    # -- layers and channels ---------------------------------------------------------------------------------

    def layer_name(self, layer: str) -> str:
        name = layer_name(self.model, layer)
        if name not in self.layers:
            raise ValueError(f"{name} of {self.model.arch.name} needs images of at least "
                             f"{min_size(self.model, name)} pixels; this server uses {self.size} (--size)")  # fmt: skip
        return name

    def channel_index(self, name: str, channel: Any) -> int:
        n = layer_channels(self.model, name)
        try:
            c = int(channel)
        except (TypeError, ValueError):
            raise ValueError(f"channel must be an integer, got {channel!r}") from None
        if not 0 <= c < n:
            raise ValueError(f"channel {c} is out of range for {name}: use 0..{n - 1}")
        return c

    def _state(self, image_id: str, name: str):
        def compute():
            img = self.image(image_id)
            check_image_size(self.model, img.shape[:2], name)
            with self.compute_lock:
                return jax.block_until_ready(_layer_state(self.model, img, name))

        return self.states.get_or_compute((image_id, name), compute)

    def layer(self, image_id: str, layer: str) -> LayerView:
        name = self.layer_name(layer)

        def compute():
            act, _ = self._state(image_id, name)
            a = np.asarray(act, np.float32)
            h, w, c = a.shape
            grid, cells = activation_grid(a, min_cell=GRID_CELL, return_cells=True)
            peak = a.max(axis=(0, 1))
            order = np.argsort(-peak, kind="stable")[:12]
            return LayerView(name, c, (h, w), png_bytes(grid), (grid.height, grid.width), cells,
                             [(int(i), float(peak[i])) for i in order])  # fmt: skip

        return self.views.get_or_compute(("layer", image_id, name), compute)

    def channel(self, image_id: str, layer: str, channel: Any) -> ChannelView:
        name = self.layer_name(layer)
        c = self.channel_index(name, channel)

        def compute():
            act, switches = self._state(image_id, name)
            with self.compute_lock:
                proj, value, row, col = jax.device_get(
                    _channel_projections(self.model, switches, act, jnp.asarray(c, jnp.int32), name))
            pngs = {m: png_bytes(to_uint8(display_normalize(p))) for m, p in zip(METHODS, proj)}
            return ChannelView(name, c, float(value), (int(row), int(col)), pngs)

        return self.views.get_or_compute(("channel", image_id, name, c), compute)

    def feature(self, layer: str, channel: Any, cancelled: Callable[[], bool] = lambda: False) -> bytes:
        """The channel's feature visualization (`construct`, default recipe) as PNG bytes; slow the first time.

        One is computed at a time. While waiting for its turn, a request whose `cancelled()` turns true (its
        client went away: the page asked for another channel) gives up with `Cancelled`, so clicking through
        channels does not queue up work nobody waits for.
        """
        name = self.layer_name(layer)
        c = self.channel_index(name, channel)
        if self.construct_size < min_size(self.model, name):
            raise ValueError(f"--construct-size {self.construct_size} is too small for {name}: it needs at least "
                             f"{min_size(self.model, name)} pixels")  # fmt: skip
        hit = self.features.get((name, c))
        if hit is not None:
            return hit
        while not self.construct_lock.acquire(timeout=0.1):
            if cancelled():
                raise Cancelled(f"feature visualization of {name} channel {c}: the client went away")
        try:
            hit = self.features.get((name, c))
            if hit is None:
                t0 = time.perf_counter()
                img = construct(self.model, name, [c], image_size=self.construct_size, steps=self.construct_steps,
                                verbose=False)[0]  # fmt: skip
                hit = png_bytes(to_uint8(img))
                self.features.put((name, c), hit)
                self.feature_seconds[(name, c)] = time.perf_counter() - t0
        finally:
            self.construct_lock.release()
        return hit

    def feature_ready(self, layer: str, channel: Any) -> bool:
        name = self.layer_name(layer)
        return self.features.get((name, self.channel_index(name, channel))) is not None

    def close(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)
