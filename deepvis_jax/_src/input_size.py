"""Networks that take one input size (issue 30 item 2): bringing images to ``model.input_size``.

The rule is the library's one resizing rule (`images.square`, what the atlas, `visualize_files`, the CLI and the
explorer apply to files), written for any (h, w): scale the image so it covers h x w (the side that needs the
larger scale fits exactly), bicubic, then center-crop to h x w. A square input size is exactly `square`. Images
already of that size, and every image of a model whose ``input_size`` is None, are returned unchanged.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from .images import cover_box, cover_crop


def input_size(model) -> tuple[int, int] | None:
    """``model.input_size`` for a Model, an architecture or a name (None where it has none)."""
    fixed = getattr(getattr(model, "arch", model), "fixed_hw", None)
    return None if fixed is None else (int(fixed[0]), int(fixed[1]))


def fit(image: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """One RGB image (H, W, 3), uint8 or float in [0, 1], brought to `hw` by the rule above (same dtype; a float
    image is resampled per channel in float32 and clipped to [0, 1], since bicubic overshoots)."""
    h, w = int(hw[0]), int(hw[1])
    ih, iw = image.shape[:2]
    if (ih, iw) == (h, w):
        return image
    if image.dtype == np.uint8:
        return cover_crop(np.ascontiguousarray(image), (h, w))
    size, box = cover_box(ih, iw, (h, w))
    chans = [np.asarray(Image.fromarray(np.ascontiguousarray(image[..., c], np.float32))
                        .resize(size, Image.BICUBIC).crop(box)) for c in range(image.shape[-1])]  # fmt: skip
    return np.clip(np.stack(chans, -1), 0.0, 1.0).astype(image.dtype)


def fit_images(model, images: Any) -> Any:
    """`images` ((H, W, 3) or (N, H, W, 3), uint8 or float in [0, 1]) at the model's input size: unchanged (the
    same object) when the model takes any size or they already have it, else resized by `fit` (numpy)."""
    hw = input_size(model)
    if hw is None or tuple(images.shape[-3:-1]) == hw:
        return images
    a = np.asarray(images)
    if a.ndim == 3:
        return fit(a, hw)
    return np.stack([fit(im, hw) for im in a])


def side(model, default: int) -> int:
    """The side of square images for a model: its input size's when it takes one square size, else `default`
    (a non-square input size: images are made `default` square, then `fit_images` brings them to it)."""
    hw = input_size(model)
    return hw[0] if hw is not None and hw[0] == hw[1] else default


class _Fitted:
    """A sequence of images seen at a model's input size (`fit_images` on each item when it is read)."""

    def __init__(self, model, images):
        self.model, self.images = model, images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i):
        return fit_images(self.model, np.asarray(self.images[i]))

    def __iter__(self):
        for im in self.images:
            yield fit_images(self.model, np.asarray(im))


def fit_iterable(model, images: Any) -> Any:
    """An iterable (or sequence) of images as the model sees them: itself when the model takes any size, else
    each image brought to the input size when read (a sequence stays indexable and sized)."""
    if input_size(model) is None:
        return images
    if hasattr(images, "__len__") and hasattr(images, "__getitem__"):
        return _Fitted(model, images)
    return (fit_images(model, np.asarray(im)) for im in images)
