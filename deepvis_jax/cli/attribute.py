"""`deepvis attribute`: attribution maps (Grad-CAM, integrated gradients, SmoothGrad, ...) over the image.

For each --method, one PNG: the image beside the method's map drawn over it (matplotlib's inferno colour map):
`dv.attribute` computes the map, `dv.save_attribution` writes it.
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
from ._common import planned, weights_arg
from .._src.attribution.core import resolve_layer
from .._src.attribution.api import CAMS, METHODS
from .._src.attribution.render import colormap


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


def _options(method: str, args) -> dict:
    """The method's options from the command line (dv.attribute passes them on)."""
    if method == "integrated_gradients":
        return {"steps": args.steps, "chunk": 8}
    if method == "smooth_grad":
        import jax

        return {"key": jax.random.key(args.noise_seed), "samples": args.samples, "chunk": 8}
    return {}


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
        maps = dv.attribute(model, image, method, target, layer=layer, **_options(method, args)).maps
        print(f"{method}: wrote {dv.save_attribution(out, image, maps[0], overwrite=args.overwrite)[0]}")
    return 0
