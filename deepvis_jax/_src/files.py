"""Many image files visualized in compiled batches (`visualize_files`): what ``deepvis visualize --image DIR`` runs.

The files are decoded by a thread pool a few batches ahead of the device (`images.read_ahead`), each one read as
`load_image` reads it (EXIF orientation, alpha on white, 16-bit) and resized and center-cropped to one square
size, so that every batch has one shape and one compiled program serves them all (the last batch is padded).
While the device computes a batch, the caller handles the previous one's results. A file that cannot be read is
reported in its result, never raised, and the others go on.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator, NamedTuple, Sequence

import numpy as np

from .checks import check_int
from .visualize import Visualization, check_options, visualize_chunk
from .images import check_image_size, list_images, load_square, read_ahead
from .input_size import fit_images, side
from .nets import Layer, Model


class FileResult(NamedTuple):
    """One file of `visualize_files`, in the order given: ``index`` its position, ``path`` the file; either
    ``image`` (the S x S uint8 pixels visualized) and ``result`` (its `Visualization`, shaped as for one image), or
    ``error``, the exception reading it raised (``image`` and ``result`` None)."""

    index: int
    path: Path
    image: np.ndarray | None
    result: Visualization | None
    error: Exception | None


def visualize_files(
    model: Model,
    files: str | os.PathLike | Sequence[str | os.PathLike],
    layer: Layer,
    *,
    size: int = 224,
    top_k: int = 9,
    mode: str = "max",
    rank: str = "max",
    method: str = "deconv",
    batch_size: int = 8,
    workers: int | None = None,
    progress: bool = False,
) -> Iterator[FileResult]:
    """`visualize` of every image file in `files`, in compiled batches, one `FileResult` per file, in order.

    `files`: a folder (its image files, searched recursively and sorted by path: `list_images`) or a sequence of
    files. Each file is read like `load_image`, its shorter side resized to `size` and center-cropped to
    ``size x size``; each image's result equals ``visualize(model, image, layer, top_k, mode, rank, method)`` of
    that image alone. Batches of `batch_size` images are read by `workers` threads (default: up to 8) ahead of
    the device and run through one compiled program. A file that cannot be read (missing, not an image,
    corrupt) gives a result with its ``error`` and does not stop the others. ``progress=True`` shows a tqdm bar
    (print beside it with ``tqdm.write``). Bad arguments raise ValueError here, before any file is read.
    """
    name, top_k = check_options(model, layer, top_k, mode, rank, method)
    batch_size = check_int("batch_size", batch_size)
    size = side(model, check_int("size", size))  # a network that takes one square size: that size
    check_image_size(model, (size, size), name)
    paths = list_images(files) if isinstance(files, (str, os.PathLike)) else [Path(f) for f in files]
    return _stream(model, paths, name, size, top_k, mode, rank, method, batch_size, workers, progress)


def _stream(model, paths, name, size, top_k, mode, rank, method, batch_size, workers, progress):
    from tqdm.auto import tqdm

    bar = tqdm(total=len(paths), unit="img", desc=f"visualize {name}", disable=not progress, dynamic_ncols=True)
    pending: list[FileResult] = []  # the previous batch: handed out while the device computes the next
    try:
        for first, n, results in read_ahead(paths, lambda f: fit_images(model, load_square(f, size)), batch_size, workers=workers):
            batch = [FileResult(i, paths[i], None, None, a) if isinstance(a, BaseException)
                     else FileResult(i, paths[i], a, None, None) for i, a in zip(range(first, first + n), results)]  # fmt: skip
            good = [r for r in batch if r.error is None]
            if good:
                images = np.stack([r.image for r in good])
                out = visualize_chunk(model, images, name, top_k, mode, rank, method, batch_size)  # dispatched
                it = iter(range(len(good)))
                batch = [r if r.error is not None else r._replace(result=out[next(it)]) for r in batch]
            yield from pending
            bar.update(len(pending))
            pending = batch
        yield from pending
        bar.update(len(pending))
    finally:
        bar.close()
