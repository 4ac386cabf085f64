"""`deepvis attribute`: attribution maps (Grad-CAM, integrated gradients, SmoothGrad, ...) over the image.

For each --method, one PNG: the image beside the method's map drawn over it (matplotlib's inferno colour map).
The CAMs are computed at --layer and upsampled bilinearly to the image; input-space methods are summed over
colour as absolute values. The target is --target (a class index, default: the predicted class).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import jax.numpy as jnp
import numpy as np

import deepvis_jax as dv

from ._common import add_command, image_arg, int_arg, load_input, load_model, model_arch, model_arg, output_args
from ._common import planned, save_png, weights_arg
from .._src.attribution.core import resolve_layer
from .._src.attribution.render import colormap

A = dv.attribution
CAMS = ("grad_cam", "hires_cam", "grad_cam_pp", "xgrad_cam", "layer_cam", "eigen_cam", "score_cam")
INPUT = ("saliency", "input_x_gradient", "guided_backprop", "integrated_gradients", "smooth_grad", "guided_grad_cam",
         "occlusion")  # fmt: skip
METHODS = CAMS + INPUT


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = add_command(sub, common, __name__, model_arg, weights_arg, image_arg)
    p.add_argument("--method", nargs="+", default=["grad_cam"], metavar="NAME",
                   help=f"one or more of: {', '.join(METHODS)} (default: grad_cam)")  # fmt: skip
    p.add_argument("--target", type=int, default=None, metavar="K",
                   help="class index, 0-based (default: the class predicted for the image)")
    p.add_argument("--layer", default=None,
                   help="the CAMs' layer: 1-based index or name, e.g. layer4 or layer3.1 (default: the last layer)")
    int_arg(p, "--steps", 32, "N", "integrated gradients: integration points (default: 32)")
    int_arg(p, "--samples", 16, "N", "smooth_grad: noisy samples of the saliency (default: 16)")
    int_arg(p, "--noise-seed", 0, "S", "smooth_grad: the PRNG seed of its noise (default: 0)")
    output_args(p, "replace existing output files")


def _map(model, x, method: str, target: int, layer: str | None, args) -> np.ndarray:
    """The method's (H, W) map for image 0 of `x`."""
    if method in CAMS:
        cam = getattr(A, method)(model, x, target, layer=layer)
        return np.asarray(A.upsample(cam, x.shape[1:3]))[0]
    if method == "integrated_gradients":
        a = A.integrated_gradients(model, x, target, steps=args.steps, chunk=8)[0]
    elif method == "smooth_grad":
        import jax

        a = A.smooth_grad(A.saliency, model, x, target, jax.random.key(args.noise_seed), samples=args.samples, chunk=8)
    elif method == "guided_grad_cam":
        a = A.guided_grad_cam(model, x, target, layer=layer)
    else:
        a = getattr(A, method)(model, x, target)
    return np.asarray(A.to_map(a, "abs_sum"))[0]


def run(args: argparse.Namespace) -> int:
    arch = model_arch(args)
    unknown = [m for m in args.method if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown --method {unknown[0]!r}; use any of: {', '.join(METHODS)}")
    layer = None if args.layer is None else resolve_layer(arch, args.layer)
    if args.target is not None and not 0 <= args.target < arch.num_classes:
        raise ValueError(f"--target {args.target} is out of range: use 0..{arch.num_classes - 1}")
    image, what = load_input(args.image, args.size)
    dv.check_image_size(arch, image.shape[:2])  # the class scores need the whole network
    colormap("inferno")  # matplotlib is there, before any work
    model, _ = load_model(args)
    x = jnp.asarray(dv.normalize(image.astype(np.float32)[None] / 255.0), model.dtype)
    target = args.target
    if target is None:
        target = int(np.argmax(np.asarray(dv.classify(model, x))[0]))
    tag = f"{layer}_" if layer else ""
    outs = {m: Path(args.out) / f"{arch.name}_{m}_{tag if m in CAMS + ('guided_grad_cam',) else ''}class{target}.png"
            for m in args.method}  # fmt: skip
    planned(list(outs.values()), args.overwrite)
    print(f"image: {what}")
    print(f"target: class {target}" + (" (predicted)" if args.target is None else ""))
    for method, out in outs.items():
        heat = _map(model, x, method, target, layer, args)
        picture = np.concatenate([image, np.full((image.shape[0], 8, 3), 255, np.uint8), A.overlay(image, heat)], 1)
        print(f"{method}: wrote {save_png(picture, out, args.overwrite)}")
    return 0
