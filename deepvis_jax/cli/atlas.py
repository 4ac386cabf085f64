"""`deepvis atlas`: top-k activations of every channel over a folder of images, as a static site.

Stream a folder of images through the network (sharded over every device), keep each channel's top-k
activations of each layer, project them to pixel space by DeconvNet and guided backprop beside their image
patches, optionally grow each channel's feature visualization (--construct), and write a static site to browse
them: OUT/index.html (the layers), OUT/LAYER/index.html (every channel) and a page per channel (open them from
the file system). Each layer's running state is saved in OUT/LAYER/atlas_state.npz; --resume continues an
interrupted run, and finished feature visualizations are never recomputed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import deepvis_jax as dv
from deepvis_jax import explorer

from ._common import add_command, at_least, int_arg, quiet_arg, construct_args, load_model, model_arch, model_arg, weights_arg


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = add_command(sub, common, __name__, model_arg, weights_arg, construct_args)
    p.add_argument("--images", required=True, metavar="DIR", help="folder of images (searched recursively)")
    p.add_argument("--layer", required=True, nargs="+", metavar="L",
                   help="one or more layers: 1-based index or name, e.g. conv4_3 conv5_3 (see `deepvis layers`)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--channels", nargs="+", default=None, metavar="C",
                   help="only these channels of each layer: numbers and ranges, e.g. 0-63 100 (default: all)")
    int_arg(p, "--top-k", 9, "K", "activations kept per channel (default: 9)")
    int_arg(p, "--batch-size", 32, "N", "images per step, over all devices (default: 32)")
    int_arg(p, "--size", 224, "S", "images are resized (shorter side) and center-cropped to SxS (default: 224)")
    p.add_argument("--construct", nargs="*", default=None, metavar="L",
                   help="also grow each channel's feature visualization (dv.construct's default recipe; slow on a "
                   "CPU), cached per channel in OUT/LAYER/features; for every layer, or only for the layers named")
    int_arg(p, "--construct-batch", 8, "N", "channels optimized together in one compiled program (default: 8)")
    int_arg(p, "--checkpoint-every", 20, "N", "save the running state every N batches (default: 20)")
    p.add_argument("--resume", action="store_true",
                   help=f"continue from OUT/LAYER/{explorer.STATE_FILE} if it exists (refused when the weights or "
                   "the folder's files changed)")  # fmt: skip
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing atlas in OUT (feature visualizations made with the same weights and "
                   "settings are kept)")  # fmt: skip
    quiet_arg(p)


def run(args: argparse.Namespace) -> int:
    import jax

    for flag, v in (("--top-k", args.top_k), ("--batch-size", args.batch_size), ("--size", args.size),
                    ("--checkpoint-every", args.checkpoint_every), ("--construct-size", args.construct_size),
                    ("--construct-steps", args.construct_steps), ("--construct-batch", args.construct_batch)):  # fmt: skip
        at_least(flag, v)
    out = Path(args.out)
    n_images = len(dv.list_images(args.images))  # fail early on a missing or empty folder
    arch = model_arch(args)
    names = list(dict.fromkeys(dv.layer_name(arch, layer) for layer in args.layer))  # in the order given
    selected = {n: explorer.parse_channels(args.channels, dv.layer_channels(arch, n), n) for n in names}
    constructed = [] if args.construct is None else names if not args.construct else list(
        dict.fromkeys(dv.layer_name(arch, layer) for layer in args.construct))
    for n in constructed:
        if n not in names:
            raise ValueError(f"--construct {n}: not one of the atlas's layers ({', '.join(names)}); add it to --layer")
    for n in names:
        dv.layer_hw(arch, n, (args.size, args.size))  # ValueError when --size is too small for the layer
        if n in constructed and args.construct_size < dv.min_image_size(arch, n):
            raise ValueError(f"--construct-size {args.construct_size} is too small for {n} of {arch.name}: it needs "
                             f"at least {dv.min_image_size(arch, n)} pixels")  # fmt: skip
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (args.overwrite or args.resume):
        raise FileExistsError(f"{out} is not empty; pass --overwrite to replace the atlas or --resume to continue it")
    model, _ = load_model(args)
    opts = explorer.ConstructOptions(args.construct_size, args.construct_steps, args.construct_batch)
    info = explorer.SiteInfo(arch.name, n_images, opts.describe() if constructed else None)
    digest = explorer.weights_digest(model) if constructed else None
    writer = jax.process_index() == 0
    summaries = []
    for n in names:
        layer_dir = out / n
        if args.overwrite and not args.resume and writer:
            explorer.clear_layer(layer_dir)
        summaries.append(explorer.build_layer(
            model, args.images, n, layer_dir, channels=selected[n], top_k=args.top_k, batch_size=args.batch_size,
            size=args.size, checkpoint_every=args.checkpoint_every, resume=args.resume,
            construct=opts if n in constructed else None, replace_features=args.overwrite, info=info,
            progress=not args.quiet, digest=digest))  # fmt: skip
        if writer:
            print(f"atlas of {arch.name} {n}: {len(selected[n])} of {summaries[-1].channels} channels, {n_images} "
                  f"images -> {layer_dir / 'index.html'}")  # fmt: skip
    if writer:
        print(f"site: {explorer.write_site_index(out, summaries, info)}")
    return 0
