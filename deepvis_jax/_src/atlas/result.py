"""What the atlas returns (`Atlas`), built from the running top-k once the stream ends."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..nets import Model, ReceptiveField, layer_hw, receptive_field
from .topk import NONE, TopK


class Atlas(NamedTuple):
    """The top-k atlas of one layer. Per channel c and rank j (best first):

    ``values[c, j]`` activation, ``image_index[c, j]`` index of the image in the stream (-1: fewer candidates than
    k), ``position[c, j]`` (row, col) in the layer's map, ``boxes[c, j]`` its receptive field in the image
    ``(top, bottom, left, right)`` (ends exclusive, clipped). For the channels in ``channels`` (C',):
    ``projections`` (C', k, R, R, 3) float32, the DeconvNet projection of the winner cropped to its receptive field
    (R = ``receptive_field.size``; zero outside the image), and ``patches`` (C', k, R, R, 3) uint8, the same window
    of the image. ``files`` names the images when they came from a folder. ``per_image``: each channel's top-k are
    k distinct images, each at its strongest unit (the default of `atlas`); False: the k strongest units, several
    of which may lie in one image.
    """

    layer: str
    values: np.ndarray
    image_index: np.ndarray
    position: np.ndarray
    boxes: np.ndarray
    num_images: int
    receptive_field: ReceptiveField
    image_shape: tuple
    channels: np.ndarray
    projections: np.ndarray | None
    patches: np.ndarray | None
    files: tuple | None = None
    per_image: bool = True


def make_result(model: Model, name: str, state: TopK, consumed: int, hw: tuple, files, per_image: bool) -> Atlas:
    """The `Atlas` (no projections yet) of a final host-side top-k `state` over `consumed` images of size `hw`."""
    rf = receptive_field(model, name, hw)
    h, w = hw
    _, mw = layer_hw(model, name, hw)
    ok = state.index != NONE
    index = np.where(ok, state.index, -1).astype(np.int64)
    pos = np.where(ok, state.position, -1).astype(np.int64)
    position = np.stack([np.where(ok, pos // mw, -1), np.where(ok, pos % mw, -1)], axis=-1)
    boxes = np.full(position.shape[:2] + (4,), -1, np.int64)
    for c, j in zip(*np.nonzero(ok)):
        boxes[c, j] = rf.box(int(position[c, j, 0]), int(position[c, j, 1]), (h, w))
    values = np.where(ok, state.values, -np.inf).astype(np.float32)
    return Atlas(name, values, index, position, boxes, int(consumed), rf, (int(h), int(w)),
                 np.zeros((0,), np.int64), None, None, files, bool(per_image))  # fmt: skip
