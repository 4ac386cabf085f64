"""`deepvis construct`: images grown to excite chosen filters.

Grow an image from noise by gradient ascent for each filter (activation maximization, `dv.construct`); write
one PNG per filter and a contact sheet.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import deepvis_jax as dv

from ._common import add_command, at_least, int_arg, layer_and_channels, layer_arg, load_model, model_arch, model_arg, output_args
from ._common import planned, save_png, weights_arg


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = add_command(sub, common, __name__, model_arg, weights_arg, layer_arg)
    p.add_argument("--filter", type=int, nargs="+", required=True, metavar="F",
                   help="filter (channel) indices, 0-based")
    int_arg(p, "--steps", None, "N", "gradient-ascent steps (default: the library's, see dv.construct)")
    int_arg(p, "--size", 224, "S", "image side in pixels (default: 224)")
    int_arg(p, "--seed", 0, "K", "seed of the starting noise (default: 0)")
    int_arg(p, "--batch-size", None, "N", "filters optimized at once; bounds memory, does not change the images "
            "(default: from a 1 GiB budget, see dv.default_batch_size; VGG16 conv5_3 at 224 px: 5)")  # fmt: skip
    output_args(p)


def run(args: argparse.Namespace) -> int:
    arch = model_arch(args)
    layer, channels = layer_and_channels(arch, args.layer)
    filters = list(dict.fromkeys(args.filter))  # drop repeats, keep order
    for f in filters:
        if not 0 <= f < channels:
            raise ValueError(f"filter {f} is out of range for {layer} of {arch.name}: use 0..{channels - 1}")
    if args.steps is not None:
        at_least("--steps", args.steps)
    if args.batch_size is not None:
        at_least("--batch-size", args.batch_size)
    if args.size < dv.min_image_size(arch, layer):
        raise ValueError(f"--size {args.size} is too small for {layer} of {arch.name}: it needs at least "
                         f"{dv.min_image_size(arch, layer)} pixels")  # fmt: skip
    out = Path(args.out)
    paths = [out / f"{arch.name}_{layer}_filter{f}.png" for f in filters]
    sheet = out / f"{arch.name}_{layer}_filters.png"
    planned([*paths, sheet], args.overwrite)
    model, _ = load_model(args)

    kwargs = {} if args.steps is None else {"steps": args.steps}
    imgs = np.asarray(dv.construct(model, layer, filters, image_size=args.size, seed=args.seed, verbose=True,
                                   batch_size=args.batch_size, **kwargs))  # fmt: skip
    print(f"layer: {layer} of {arch.name}, {channels} channels; filters {', '.join(map(str, filters))}")
    for img, p in zip(imgs, paths):
        print(f"wrote {save_png(img, p, args.overwrite)}")
    labels = [f"{layer} filter {f}" for f in filters]
    print(f"wrote {save_png(dv.contact_sheet(imgs, labels), sheet, args.overwrite)}")
    return 0
