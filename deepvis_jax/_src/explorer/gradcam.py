"""The live explorer's Grad-CAM panel (issue 31): an image's top classes, and a chosen class's Grad-CAM at the
layer on screen, drawn over the image (`dv.attribution.overlay`, matplotlib's inferno) beside the projections.

Both run through the explorer's caches and compute lock; Grad-CAM is compiled once per layer (the class is a
traced argument), so clicking another class or another image never compiles. Models without class outputs (a
backbone) answer with a one-line error.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ..attribution.methods import grad_cam, upsample
from ..attribution.render import colormap, overlay
from ..images import imagenet_labels
from ..nets import classify, normalize
from .live import Explorer, png_bytes

TOP = 5  # classes offered per image


def _num_classes(ex: Explorer) -> int:
    k = getattr(ex.model.arch, "num_classes", None)
    if not k:
        raise ValueError(f"{ex.model.arch.name} has no class outputs: Grad-CAM of a class needs a classifier")
    return int(k)


def _input(ex: Explorer, image_id: str) -> jax.Array:
    return normalize(jnp.asarray(ex.image(image_id)[None], ex.model.dtype) / 255)


def classes(ex: Explorer, image_id: str) -> list[tuple[int, float, str]]:
    """The image's `TOP` classes: (index, softmax probability, ImageNet name for 1000 classes, else "")."""
    k = _num_classes(ex)

    def compute():
        with ex.compute_lock:
            logits = np.asarray(classify(ex.model, _input(ex, image_id)), np.float64)[0]
        p = np.exp(logits - logits.max())
        p /= p.sum()
        names = imagenet_labels() if k == 1000 else [""] * k
        return [(int(c), float(p[c]), names[c]) for c in np.argsort(-p, kind="stable")[:TOP]]

    return ex.views.get_or_compute(("classes", image_id), compute)


def class_index(ex: Explorer, value) -> int:
    k = _num_classes(ex)
    try:
        c = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"class must be an integer, got {value!r}") from None
    if not 0 <= c < k:
        raise ValueError(f"class {c} is out of range: {ex.model.arch.name} has classes 0..{k - 1}")
    return c


def grad_cam_png(ex: Explorer, image_id: str, layer: str, cls) -> bytes:
    """PNG of class `cls`'s Grad-CAM at `layer`, upsampled bilinearly to the image and drawn over it."""
    name = ex.layer_name(layer)
    c = class_index(ex, cls)
    colormap("inferno")  # matplotlib is there: a one-line error otherwise

    def compute():
        img = ex.image(image_id)
        with ex.compute_lock:
            cam = grad_cam(ex.model, _input(ex, image_id), jnp.asarray([c], jnp.int32), layer=name)
            heat = np.asarray(upsample(cam, img.shape[:2]))[0]
        return png_bytes(overlay(img, heat))

    return ex.views.get_or_compute(("grad_cam", image_id, name, c), compute)
