"""Reading images: any file Pillow opens or an array -> RGB uint8 (H, W, 3), plus the packaged sample photo.

Conversions (never rejections): EXIF orientation is applied; grayscale, bilevel ("1"), palette, CMYK, YCbCr, LAB
and HSV become RGB; transparency (LA, RGBA, PA, palette with a transparent colour) is composited on white, as a
viewer shows it; 16-bit integer images ("I;16*", and "I" with values in 0..65535) are scaled by 255/65535; 32-bit
integer images outside that range and float images ("F") outside [0, 1] are stretched from their min..max.
Animated files give their first frame. Every failure is a typed error with a one-line message.

This is the one image reader of the library: `load_square` (read, then `square`: shorter side resized to S and
center-cropped) is how the atlas, `visualize_files` and the live app read a file, `list_images` how they list a
folder, `read_ahead` how they decode a few batches ahead of the device, and `to_uint8` the one float -> uint8
conversion (np.rint) of every picture.
"""

from __future__ import annotations

import collections
import concurrent.futures
import os
import warnings
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .nets import Model, get_architecture, layer_name, min_size


IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


class ImageError(ValueError):
    """A file or array that cannot be read as an image: not an image, truncated, corrupt, or a bad array."""


def to_uint8(images: Any) -> np.ndarray:
    """Images as uint8, the one conversion of the library: uint8 is returned as it is; any other array is read as
    float in [0, 1] and becomes ``clip(rint(x * 255), 0, 255)`` (round half to even; values outside [0, 1]
    clip to 0 or 255). Any shape."""
    a = np.asarray(images)
    if a.dtype == np.uint8:
        return a
    return np.clip(np.rint(a.astype(np.float64) * 255.0), 0, 255).astype(np.uint8)


def _numeric_to_rgb(im: Image.Image) -> np.ndarray:
    """Single-channel integer / float modes ("I;16*", "I", "F") -> RGB uint8."""
    a = np.asarray(im).astype(np.float64)
    if a.size and not np.all(np.isfinite(a)):
        a = np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
    if im.mode.startswith("I;16") or (im.mode == "I" and lo >= 0 and hi <= 65535):
        g = a / 65535.0
    elif im.mode == "F" and lo >= 0 and hi <= 1:
        g = a
    else:  # values of unknown scale: stretch what is there
        g = (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
    return np.repeat(to_uint8(g)[..., None], 3, axis=-1)


def _pil_to_rgb(im: Image.Image) -> np.ndarray:
    if im.mode.startswith("I;16") or im.mode in ("I", "F"):
        return _numeric_to_rgb(im)
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode in ("LA", "La", "PA", "RGBA", "RGBa"):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(white, rgba)
    return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()


def _from_array(a: Any) -> np.ndarray:
    x = np.asarray(a)
    if x.ndim == 3 and x.shape[-1] == 1:
        x = x[..., 0]
    if x.ndim == 2:
        x = np.repeat(x[..., None], 3, axis=-1)
    if x.ndim != 3 or x.shape[-1] not in (3, 4):
        raise ImageError(f"expected an image array shaped (H, W), (H, W, 3) or (H, W, 4), got shape {x.shape}")
    if x.shape[-1] == 4:  # RGBA: composite on white, like files
        alpha = _as_unit(x[..., 3:])
        return to_uint8(_as_unit(x[..., :3]) * alpha + (1.0 - alpha))
    if x.dtype == np.uint8:
        return np.ascontiguousarray(x)
    return to_uint8(_as_unit(x))


def _as_unit(x: np.ndarray) -> np.ndarray:
    """An image array of any supported dtype -> float64 in [0, 1]."""
    if x.dtype == np.bool_:
        return x.astype(np.float64)
    if x.dtype == np.uint8:
        return x / 255.0
    if x.dtype == np.uint16:
        return x / 65535.0
    if np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
        if x.size and not (np.all(np.isfinite(x)) and x.min() >= 0.0 and x.max() <= 1.0):
            raise ImageError("a float image array must hold finite values in [0, 1]; divide uint8 data by 255")
        return x
    raise ImageError(f"unsupported image array dtype {x.dtype}; use uint8, uint16, bool or float in [0, 1]")


def load_image(image: str | os.PathLike | Image.Image | Any) -> np.ndarray:
    """Any image file Pillow reads, a PIL image, or an array -> RGB uint8 array (H, W, 3).

    Raises FileNotFoundError for a missing file and `ImageError` (a ValueError) for a file that is not an image,
    a truncated or corrupt one, or an array of the wrong shape or range. See the module docstring for conversions.
    """
    if isinstance(image, Image.Image):
        out = _pil_to_rgb(ImageOps.exif_transpose(image))
    elif isinstance(image, (str, os.PathLike)):
        out = _read_file(Path(image))
    else:
        out = _from_array(image)
    if out.shape[0] < 1 or out.shape[1] < 1:
        raise ImageError(f"the image is empty ({out.shape[0]}x{out.shape[1]} pixels)")
    return out


def _read_file(path: Path) -> np.ndarray:
    if not path.exists():
        raise FileNotFoundError(f"image file {str(path)!r} does not exist")
    if not path.is_file():
        raise ImageError(f"{path} is not a file")
    try:
        with warnings.catch_warnings():  # Pillow warns about odd EXIF/chunks it then handles; errors still raise
            warnings.simplefilter("ignore")
            with Image.open(path) as im:
                im.load()
                return _pil_to_rgb(ImageOps.exif_transpose(im))
    except UnidentifiedImageError:
        raise ImageError(f"{path} is not an image file Pillow can read") from None
    except Image.DecompressionBombError as e:
        raise ImageError(f"{path} is too large to open safely ({e})") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError, TypeError, ZeroDivisionError) as e:
        # Pillow's decoders report truncation and corruption with several exception types
        if isinstance(e, PermissionError):
            raise
        raise ImageError(f"{path} is truncated or corrupt ({type(e).__name__}: {str(e).strip()[:100]})") from None


def sample_image() -> np.ndarray:
    """The packaged sample photograph (NASA's portrait of astronaut Eileen Collins, public domain), RGB uint8."""
    with resources.as_file(resources.files("deepvis_jax") / "data" / "astronaut.jpg") as p:
        return load_image(p)


def imagenet_labels() -> list[str]:
    """The 1000 ImageNet-1k class labels in class-index order (torchvision's names)."""
    text = (resources.files("deepvis_jax") / "data" / "imagenet_classes.txt").read_text(encoding="utf-8")
    return text.splitlines()


def resize_shorter(image: np.ndarray, size: int) -> np.ndarray:
    """Shrink an RGB uint8 image so its shorter side is `size` (aspect kept; Lanczos). Smaller images are kept."""
    h, w = image.shape[:2]
    if size <= 0 or min(h, w) <= size:
        return image
    scale = size / min(h, w)
    hw = (max(size, round(h * scale)), max(size, round(w * scale)))
    return np.asarray(Image.fromarray(image).resize((hw[1], hw[0]), Image.LANCZOS))


def square(im: Any, size: int) -> np.ndarray:
    """A PIL image (or RGB uint8 array): shorter side resized to `size` (bicubic), center-cropped to
    ``size x size``; RGB uint8."""
    return cover_crop(im, (size, size))


def cover_box(ih: int, iw: int, hw: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int, int, int]]:
    """For an ``ih x iw`` image and a target ``h x w``: the PIL size ``(nw, nh)`` that covers the target (the side
    that needs the larger scale fits exactly) and the centered crop box ``(left, top, right, bottom)`` in it."""
    h, w = int(hw[0]), int(hw[1])
    scale = max(h / ih, w / iw)
    nw, nh = max(w, round(iw * scale)), max(h, round(ih * scale))
    left, top = (nw - w) // 2, (nh - h) // 2
    return (nw, nh), (left, top, left + w, top + h)


def cover_crop(im: Any, hw: tuple[int, int]) -> np.ndarray:
    """A PIL image (or RGB uint8 array) scaled so that it covers ``h x w`` (`cover_box`; bicubic), then
    center-cropped to it; RGB uint8. `square` is its square case."""
    if not isinstance(im, Image.Image):
        im = Image.fromarray(np.asarray(im, np.uint8))
    iw, ih = im.size
    size, box = cover_box(ih, iw, hw)
    if size != (iw, ih):
        im = im.resize(size, Image.BICUBIC)
    return np.asarray(im.crop(box), dtype=np.uint8)


def load_square(path: str | os.PathLike, size: int) -> np.ndarray:
    """`dv.load_image` of a file (every mode converted to RGB, EXIF orientation applied, typed errors), then
    `square`: what ``deepvis visualize`` reads from a folder."""
    return square(load_image(path), size)


def read_ahead(files: Sequence[Any], read: Callable[[Any], np.ndarray], batch: int, *, start: int = 0,
               rows: tuple[int, int] | None = None, workers: int | None = None, ahead: int = 3):  # fmt: skip
    """Read `files` with ``read(file)`` in a thread pool, `ahead` batches ahead of the consumer (the device
    computes while the next batches are decoded). Yields ``(first, n, results)`` per batch of `batch` files from
    `start`: `results` holds, for the batch's rows ``rows`` (default: all), the image or the exception its read
    raised (the consumer decides whether a bad file stops it)."""
    workers = workers or min(8, os.cpu_count() or 1)

    def guarded(f):
        try:
            return read(f)
        except Exception as e:  # handed to the consumer, raised or reported there
            return e

    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        pending: collections.deque = collections.deque()

        def submit(first):
            n = min(batch, len(files) - first)
            lo, hi = rows if rows is not None else (0, n)
            pending.append((first, n, [pool.submit(guarded, files[first + r]) for r in range(lo, min(hi, n))]))

        nxt = start
        while nxt < len(files) and len(pending) < ahead:
            submit(nxt)
            nxt += batch
        while pending:
            first, n, futs = pending.popleft()
            if nxt < len(files):
                submit(nxt)
                nxt += batch
            yield first, n, [f.result() for f in futs]


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files under `folder` (recursively), sorted by their relative path: this order numbers them."""
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(2, "no such folder", str(root))
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if not files:
        raise ValueError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found under {root}")
    return files


def min_image_size(model: Model | str, layer: str | int | None = None) -> int:
    """Smallest side (pixels) an image needs so that `layer` (or, with None, the whole network) has a feature map."""
    return min_size(model, layer)


def check_image_size(model: Model | str, hw: tuple[int, int], layer: str | int | None = None) -> None:
    """Raise ValueError naming the minimum size when an image of size `hw` is too small to reach `layer`."""
    n = min_image_size(model, layer)
    if min(hw[0], hw[1]) < n:
        arch = get_architecture(model) if isinstance(model, str) else model  # a Model and an architecture: .name
        what = f"{layer_name(model, layer)} of {arch.name}" if layer is not None else f"{arch.name}'s classifier"
        raise ValueError(
            f"the image is {hw[1]}x{hw[0]} pixels, too small for {what}: it needs at least {n}x{n} pixels"
        )
