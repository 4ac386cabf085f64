"""Where the atlas's images come from: a folder, an iterable of arrays, or (for the projections) an indexed source.

Every source gives RGB uint8 images of one size, numbered in order. A folder's files are read exactly as
`load_image` reads them (EXIF orientation, alpha on white, 16-bit), resized and center-cropped to a square
(`images.load_square`): the same pixels `deepvis visualize --image DIR` sees.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Iterable

import numpy as np

from ..images import list_images, load_square, read_ahead, to_uint8


def as_uint8(image: Any, i: int) -> np.ndarray:
    """Image `i` of a stream as RGB uint8 (uint8 as it is, float in [0, 1] by `to_uint8`); ValueError otherwise."""
    a = np.asarray(image)
    if a.ndim != 3 or a.shape[-1] != 3:
        raise ValueError(f"image {i} has shape {a.shape}; expected RGB images shaped (H, W, 3)")
    if a.dtype != np.uint8 and not np.issubdtype(a.dtype, np.floating):
        raise ValueError(f"image {i} has dtype {a.dtype}; expected uint8 or float in [0, 1]")
    return to_uint8(a)


class Folder:
    """Files read and resized by a thread pool, a few batches ahead of the device."""

    def __init__(self, folder, size: int, workers: int | None):
        self.root = folder
        self.files = list_images(folder)
        self.size = size
        self.workers = workers or min(8, os.cpu_count() or 1)
        self.shape = (size, size, 3)

    def __len__(self) -> int:
        return len(self.files)

    def batches(self, start: int, batch: int, rows: tuple[int, int]):
        """Yields ``(first index, images (n, H, W, 3))``; only `rows` of each batch are decoded (the rest zero)."""
        lo, hi = rows
        for first, n, results in read_ahead(self.files, self.fetch_file, batch, start=start, rows=rows,
                                            workers=self.workers):  # fmt: skip
            out = np.zeros((n, *self.shape), np.uint8)
            for r, a in zip(range(lo, hi), results):
                if isinstance(a, BaseException):
                    raise a
                out[r] = a
            yield first, out

    def fetch_file(self, path) -> np.ndarray:
        return load_square(path, self.size)

    def fetch(self, index: int) -> np.ndarray:
        return self.fetch_file(self.files[index])


class Stream:
    """An iterable of arrays. Images that may still win are kept (bounded) for the projections afterwards."""

    def __init__(self, images: Iterable[Any]):
        self.images = images
        self.cache: dict[int, np.ndarray] = {}
        self.shape: tuple | None = None
        self.keep: Callable[[int], bool] = lambda i: True

    def _check(self, a: np.ndarray, i: int) -> np.ndarray:
        if self.shape is None:
            self.shape = a.shape
        elif a.shape != self.shape:
            raise ValueError(f"image {i} is {a.shape[1]}x{a.shape[0]}, image 0 was {self.shape[1]}x{self.shape[0]}; "
                             "all images must have the same size (resize them, or pass a folder)")  # fmt: skip
        return a

    def batches(self, start: int, batch: int, rows: tuple[int, int]):
        buf: list[np.ndarray] = []
        first = start
        for i, image in enumerate(self.images):
            a = self._check(as_uint8(image, i), i)
            if i < start:  # already counted before the interruption; keep it only if it is a winner
                if self.keep(i):
                    self.cache[i] = a
                continue
            buf.append(a)
            self.cache[i] = a
            if len(buf) == batch:
                yield first, np.stack(buf)
                first, buf = first + batch, []
        if buf:
            yield first, np.stack(buf)

    def prune(self, winners: set) -> None:
        self.cache = {i: a for i, a in self.cache.items() if i in winners}

    def fetch(self, index: int) -> np.ndarray:
        return self.cache[index]


class Indexed:
    """A sequence of arrays or of image files fetched by image index (for `atlas_project`)."""

    def __init__(self, images, size: int):
        files = len(images) > 0 and isinstance(images[0], (str, os.PathLike))
        self.get = (lambda i: load_square(images[i], size)) if files else (lambda i: as_uint8(images[i], i))

    def fetch(self, index: int) -> np.ndarray:
        return self.get(index)


def indexed(images: Any, size: int):
    """What `atlas_project` fetches winners from: a folder, a source `atlas` used, or a sequence."""
    if isinstance(images, (str, os.PathLike)):
        return Indexed(list_images(images), size)
    if hasattr(images, "fetch"):
        return images
    return Indexed(images, size)
