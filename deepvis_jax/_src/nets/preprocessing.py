"""What a network expects of its input (issue 30's `preprocessing=`), as a function of the library's one input
convention: ImageNet-normalized RGB, channels last.

A preset name or a dict ``{"mean": [r, g, b], "std": [r, g, b], "scale": 1 or 255, "channels": "RGB" | "BGR"}``
(mean and std on that scale): the network sees ``((x01 * scale)[..., channels] - mean) / std``, where ``x01 =
denormalize(x)``. Every op is elementwise per channel, so image borders are exact.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

PRESETS = {
    "imagenet": {"mean": IMAGENET_MEAN, "std": IMAGENET_STD, "scale": 1, "channels": "RGB"},
    "caffe": {"mean": (103.939, 116.779, 123.68), "std": (1.0, 1.0, 1.0), "scale": 255, "channels": "BGR"},
    "unit": {"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0), "scale": 1, "channels": "RGB"},
    "minus_one_one": {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5), "scale": 1, "channels": "RGB"},
}


def resolve(preprocessing: Any) -> dict:
    """The dict form of a preset name or dict; ValueError (one line) for anything else."""
    if isinstance(preprocessing, str):
        if preprocessing not in PRESETS:
            raise ValueError(f"unknown preprocessing {preprocessing!r}; use one of {', '.join(PRESETS)} or a dict "
                             "{'mean': [r, g, b], 'std': [r, g, b], 'scale': 1 or 255, 'channels': 'RGB' or 'BGR'}")
        return dict(PRESETS[preprocessing])
    if not isinstance(preprocessing, dict):
        raise ValueError(f"preprocessing must be a preset name or a dict, got {type(preprocessing).__name__}")
    extra = set(preprocessing) - {"mean", "std", "scale", "channels"}
    if extra:
        raise ValueError(f"unknown preprocessing keys {sorted(extra)}; use mean, std, scale, channels")
    d = {"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0), "scale": 1, "channels": "RGB", **preprocessing}
    for k in ("mean", "std"):
        if len(tuple(d[k])) != 3:
            raise ValueError(f"preprocessing {k} needs 3 values (one per channel), got {d[k]!r}")
    if d["scale"] not in (1, 255) or d["channels"] not in ("RGB", "BGR") or min(d["std"]) <= 0:
        raise ValueError("preprocessing needs scale 1 or 255, channels 'RGB' or 'BGR' and positive std; got "
                         f"{d!r}")
    return {"mean": tuple(float(v) for v in d["mean"]), "std": tuple(float(v) for v in d["std"]),
            "scale": int(d["scale"]), "channels": d["channels"]}


def describe_preprocessing(preprocessing: Any) -> str:
    """A preset's name, or the dict's values (what repr and the saved file show)."""
    if isinstance(preprocessing, str):
        resolve(preprocessing)
        return preprocessing
    d = resolve(preprocessing)
    for k, v in PRESETS.items():
        if v == d:
            return k
    return (f"mean={list(d['mean'])} std={list(d['std'])} scale={d['scale']} channels={d['channels']}")


def preprocess_fn(preprocessing: Any):
    """The map from ImageNet-normalized RGB NHWC input to what the network expects (the identity for
    "imagenet")."""
    d = resolve(preprocessing)
    if d == PRESETS["imagenet"]:
        return lambda x: x

    def pre(x):
        c = lambda v: jnp.asarray(v, x.dtype).reshape((1,) * (x.ndim - 1) + (-1,))  # noqa: E731 - explicit ranks
        x01 = x * c(IMAGENET_STD) + c(IMAGENET_MEAN)
        y = x01 * c(d["scale"]) if d["scale"] != 1 else x01
        if d["channels"] == "BGR":
            y = y[..., ::-1]
        return (y - c(d["mean"])) / c(d["std"])

    return pre
