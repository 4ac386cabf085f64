"""`deepvis occlusion`: the paper's occlusion-sensitivity figure (Zeiler & Fergus Fig. 7) for one image.

``add_occlusion_parser(subparsers, parents)`` adds the subcommand to the `deepvis` parser; it runs
``run_occlusion(args)``, which raises ValueError / OSError on bad input (the `deepvis` entry point prints them as one
line and exits with 2) and refuses, before any work, to replace an existing file unless ``--overwrite``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

import deepvis_jax as dv
from deepvis_jax._src.models import ARCHITECTURES, get_architecture
from deepvis_jax._src.render import class_labels

PROG = "deepvis"


def _load_image(path: str | None, size: int) -> np.ndarray:
    """uint8 (H, W, 3): the file (or the packaged sample), its shorter side shrunk to `size` (0: as it is)."""
    from PIL import Image

    if path is None:
        sample = getattr(dv, "sample_image", None)
        if sample is None:
            raise ValueError("no --image given and no packaged sample image in this version; pass --image PATH")
        image = np.asarray(sample())
    elif hasattr(dv, "load_image"):
        image = np.asarray(dv.load_image(path))
    else:
        with Image.open(path) as im:
            image = np.asarray(im.convert("RGB"))
    if image.dtype != np.uint8:
        image = np.clip(np.rint(image.astype(np.float64) * 255.0), 0, 255).astype(np.uint8)
    h, w = image.shape[:2]
    if size < 0:
        raise ValueError(f"--size must be 0 or positive, got {size}")
    if size and min(h, w) > size:
        f = size / min(h, w)
        hw = (max(1, round(w * f)), max(1, round(h * f)))
        image = np.asarray(Image.fromarray(image).resize(hw, Image.BICUBIC))
    return image


def _model(arch: str, weights: str) -> dv.Model:
    if weights.strip().lower() == "random":
        print(f"{PROG}: warning: --weights random: an untrained network; its maps are not meaningful "
              "(use --weights imagenet or a weights file)", file=sys.stderr)  # fmt: skip
        return dv.load_model(arch, weights=None, seed=0)
    return dv.load_model(arch, weights=weights)


def run_occlusion(args: argparse.Namespace) -> int:
    """Compute the three occlusion maps, print a summary, write ``<out>/<model>_<layer>_occlusion.png``."""
    arch = get_architecture(args.model)
    layer = dv.layer_name(arch, args.layer) if args.layer is not None else arch.conv_layers[-1]
    n_ch = dv.layer_channels(arch, layer)
    if args.channel is not None and not 0 <= args.channel < n_ch:
        raise ValueError(f"--channel {args.channel} is out of range for {layer} of {arch.name}: use 0..{n_ch - 1}")
    n_cls = arch.num_classes
    if args.target is not None and not 0 <= args.target < n_cls:
        raise ValueError(f"--class {args.target} is out of range: use 0..{n_cls - 1}")
    out = Path(args.out) / f"{arch.name}_{layer}_occlusion.png"
    if out.exists() and not args.overwrite:
        raise FileExistsError(f"{out} already exists; pass --overwrite to replace it")
    image = _load_image(args.image, args.size)
    model = _model(arch.name, args.weights)

    r = dv.occlusion(model, image, patch=args.patch, stride=args.stride, layer=layer, channel=args.channel,
                     target=args.target, chunk=args.chunk)  # fmt: skip
    labels = class_labels(n_cls)
    h, w = image.shape[:2]
    print(f"image: {args.image or 'packaged sample'} ({w}x{h} pixels)")
    print(f"occluder: {args.patch}x{args.patch} px grey square, stride {args.stride}: "
          f"{len(r.rows)}x{len(r.cols)} positions")  # fmt: skip
    print(f"(a) {layer} feature map {r.channel}: total activation {r.baseline_feature:.4g} unoccluded, "
          f"{r.feature.min():.4g}..{r.feature.max():.4g} occluded")  # fmt: skip
    print(f"(b) class {labels[r.target]}: probability {r.baseline_probability:.3g} unoccluded, "
          f"{r.probability.min():.3g}..{r.probability.max():.3g} occluded")  # fmt: skip
    classes, counts = np.unique(r.top_class, return_counts=True)
    top = ", ".join(f"{labels[c]} ({n})" for c, n in sorted(zip(classes, counts), key=lambda t: -t[1])[:5])
    print(f"(c) most probable classes (positions): {top}")
    out.parent.mkdir(parents=True, exist_ok=True)
    dv.occlusion_figure(image, r, labels=labels).save(out)
    print(f"wrote {out}")
    return 0


def add_occlusion_parser(subparsers, parents: Sequence[argparse.ArgumentParser] = ()) -> argparse.ArgumentParser:
    """Add `occlusion` to the `deepvis` subcommands; its ``func`` is `run_occlusion`."""
    p = subparsers.add_parser(
        "occlusion", parents=list(parents), help="occlusion sensitivity maps (the paper's Fig. 7)",
        description="Slide a grey square over the image and map (a) the total activation of a feature map, "
        "(b) the probability of a class, (c) the most probable class at each position; write them as heat maps "
        "over the image (one PNG).",
    )  # fmt: skip
    p.add_argument("--model", default="alexnet", help=f"architecture: {', '.join(ARCHITECTURES)} (default: alexnet)")
    p.add_argument("--weights", default="imagenet", metavar="imagenet|random|PATH",
                   help="imagenet (default), random (untrained, offline) or a .msgpack / .pth file")  # fmt: skip
    p.add_argument("--image", metavar="PATH", default=None, help="an image file (default: the packaged sample)")
    p.add_argument("--size", type=int, default=224, metavar="S",
                   help="shrink the image so its shorter side is S pixels (default: 224; 0 keeps it)")  # fmt: skip
    p.add_argument("--layer", default=None, help="conv layer of map (a): index or name (default: the top one)")
    p.add_argument("--patch", type=int, default=48, metavar="P", help="side of the grey square (default: 48)")
    p.add_argument("--stride", type=int, default=8, metavar="S", help="step of the square (default: 8)")
    p.add_argument("--channel", type=int, default=None, metavar="C",
                   help="feature map of (a) (default: the strongest on the unoccluded image)")  # fmt: skip
    p.add_argument("--class", dest="target", type=int, default=None, metavar="K",
                   help="class of map (b) (default: the class predicted for the unoccluded image)")  # fmt: skip
    p.add_argument("--chunk", type=int, default=32, metavar="N", help="occluded images per batch (default: 32)")
    p.add_argument("--out", default="deepvis_out", metavar="DIR", help="output folder (default: deepvis_out)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.set_defaults(func=run_occlusion, compiles=True)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry point (``python -m deepvis_jax._src.occlusion_cli``) until `deepvis` wires the command:
    one-line errors, exit status 2."""
    parser = argparse.ArgumentParser(prog=PROG)
    add_occlusion_parser(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    try:
        return args.func(args)
    except (ValueError, OSError) as e:
        print(f"{PROG}: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
