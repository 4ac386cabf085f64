"""`deepvis occlusion`: occlusion sensitivity maps (the paper's Fig. 7).

Slide a grey square over the image and map (a) the total activation of a feature map of the layer, (b) the
probability of a class, (c) the most probable class at each position; write the three maps as heat maps over the
image (one PNG) and print a summary.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import deepvis_jax as dv

from ._common import UNTRAINED_CLASSIFIER, add_command, int_arg, image_arg, layer_and_channels, load_input, load_model, model_arch
from ._common import model_arg, output_args, planned, save_png, weights_arg


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = add_command(sub, common, __name__, model_arg, weights_arg, image_arg)
    p.add_argument("--layer", default=None, help="layer of map (a): 1-based index or name (default: the top one)")
    int_arg(p, "--patch", 48, "P", "side of the grey square, pixels (default: 48)")
    int_arg(p, "--stride", 8, "S", "step of the square, pixels (default: 8)")
    int_arg(p, "--channel", None, "C", "feature map of (a), 0-based (default: the strongest on the unoccluded image)")
    p.add_argument("--class", dest="target", type=int, default=None, metavar="K",
                   help="ImageNet class of map (b), 0-based (default: the class predicted for the unoccluded "
                   "image)")  # fmt: skip
    int_arg(p, "--chunk", 32, "N", "occluded images evaluated at once, at most; bounds memory (default: 32)")
    output_args(p, "replace an existing output file")


def run(args: argparse.Namespace) -> int:
    arch = model_arch(args)
    layer, channels = layer_and_channels(arch, args.layer if args.layer is not None else arch.conv_layers[-1])
    if args.channel is not None and not 0 <= args.channel < channels:
        raise ValueError(f"--channel {args.channel} is out of range for {layer} of {arch.name}: use 0..{channels - 1}")
    if args.target is not None and not 0 <= args.target < arch.num_classes:
        raise ValueError(f"--class {args.target} is out of range: use 0..{arch.num_classes - 1}")
    image, what = load_input(args.image, args.size)
    dv.check_image_size(arch, image.shape[:2])  # the class maps need the whole network
    out = Path(args.out) / f"{arch.name}_{layer}_occlusion.png"
    planned([out], args.overwrite)
    model, _ = load_model(args)

    r = dv.occlusion(model, image, patch=args.patch, stride=args.stride, layer=layer, channel=args.channel,
                     target=args.target, chunk=args.chunk)  # fmt: skip
    labels = dv.imagenet_labels() if arch.num_classes == 1000 else [str(i) for i in range(arch.num_classes)]
    print(f"image: {what}")
    print(f"occluder: {args.patch}x{args.patch} px grey square, stride {args.stride}: "
          f"{len(r.rows)}x{len(r.cols)} positions")  # fmt: skip
    print(f"(a) {layer} feature map {r.channel}: total activation {r.baseline_feature:.4g} unoccluded, "
          f"{r.feature.min():.4g}..{r.feature.max():.4g} occluded")  # fmt: skip
    if model.classifier_trained:
        print(f"(b) class {labels[r.target]} ({r.target}): probability {r.baseline_probability:.3g} unoccluded, "
              f"{r.probability.min():.3g}..{r.probability.max():.3g} occluded")  # fmt: skip
        classes, counts = np.unique(r.top_class, return_counts=True)
        common = sorted(zip(classes.tolist(), counts.tolist()), key=lambda t: -t[1])[:5]
        print("(c) most probable classes (positions): " + ", ".join(f"{labels[c]} ({c}): {n}" for c, n in common))
    else:
        print(f"(b), (c) not shown: {UNTRAINED_CLASSIFIER}")
    legend = [f"{i} {name}" for i, name in enumerate(labels)]
    print(f"wrote {save_png(dv.occlusion_figure(image, r, labels=legend), out, args.overwrite)}")
    return 0
