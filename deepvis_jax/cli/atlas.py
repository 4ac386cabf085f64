"""`deepvis atlas`: top-k activations of every channel over a folder of images, as a static site.

Stream a folder of images through the network once (sharded over every device, up to the deepest layer), keep
each channel's top-k images of every layer (or, with --all-positions, its top-k units), project them to pixel
space by DeconvNet and guided backprop beside their image patches, optionally grow each channel's feature
visualization (--construct), and write a static site to browse them: OUT/index.html (the layers),
OUT/LAYER/index.html (every channel) and a page per channel (open them from the file system). The running state
of every layer is saved in OUT/atlas_state.npz; --resume continues an interrupted run, and finished feature
visualizations are never recomputed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import deepvis_jax as dv
from deepvis_jax import explorer

from ._common import (add_command, at_least, construct_args, int_arg, load_model, model_arch, model_arg, quiet_arg, warn,
                      weights_arg)  # fmt: skip


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = add_command(sub, common, __name__, model_arg, weights_arg, construct_args)
    p.add_argument("--images", required=True, metavar="DIR", help="folder of images (searched recursively)")
    p.add_argument("--layer", required=True, nargs="+", metavar="L",
                   help="one or more layers: 1-based index or name, e.g. conv4_3 conv5_3 (see `deepvis layers`)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--channels", nargs="+", default=None, metavar="C",
                   help="only these channels of each layer: numbers and ranges, e.g. 0-63 100 (default: all)")
    int_arg(p, "--top-k", 9, "K", "images kept per channel (default: 9)")
    p.add_argument("--all-positions", action="store_true",
                   help="keep each channel's K strongest units, several of which may lie in one image (default: K "
                   "distinct images, each at its strongest unit)")  # fmt: skip
    int_arg(p, "--batch-size", 32, "N", "images per step, over all devices (default: 32)")
    int_arg(p, "--size", 224, "S", "images are resized (shorter side) and center-cropped to SxS (default: 224)")
    p.add_argument("--construct", nargs="*", default=None, metavar="L",
                   help="also grow each channel's feature visualization (dv.construct's default recipe; slow on a "
                   "CPU), cached per channel in OUT/LAYER/features; for every layer, or only for the layers named")
    int_arg(p, "--construct-batch", 8, "N", "channels optimized together in one compiled program (default: 8)")
    int_arg(p, "--checkpoint-every", 20, "N", "save the running state every N batches (default: 20)")
    p.add_argument("--resume", action="store_true",
                   help=f"continue from OUT/{explorer.STATE_FILE} if it exists (refused when the weights, the layers "
                   "or the folder's files changed)")  # fmt: skip
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing atlas in OUT (feature visualizations made with the same weights and "
                   "settings are kept)")  # fmt: skip
    quiet_arg(p)


def _smaller_than(files, size: int) -> list[tuple[Path, int, int]]:
    """(file, width, height) of the images whose shorter side is below `size` (read from their headers only; a
    file that cannot be read is left to the run, which reports it)."""
    from PIL import Image

    small = []
    for f in files:
        try:
            with Image.open(f) as im:
                w, h = im.size
        except Exception:  # noqa: BLE001 - reported when the run reads it
            continue
        if min(w, h) < size:
            small.append((f, w, h))
    return small


def run(args: argparse.Namespace) -> int:
    import jax

    for flag, v in (("--top-k", args.top_k), ("--batch-size", args.batch_size), ("--size", args.size),
                    ("--checkpoint-every", args.checkpoint_every), ("--construct-size", args.construct_size),
                    ("--construct-steps", args.construct_steps), ("--construct-batch", args.construct_batch)):  # fmt: skip
        at_least(flag, v)
    out = Path(args.out)
    files = dv.list_images(args.images)  # fail early on a missing or empty folder
    n_images = len(files)
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
    small = _smaller_than(files, args.size)
    if small:
        f, w, h = small[0]
        warn(f"{len(small)} of {n_images} images are smaller than --size {args.size} (shorter side) and are enlarged "
             f"to {args.size}x{args.size}, e.g. {f.relative_to(args.images)} ({w}x{h})")  # fmt: skip
    model, _ = load_model(args)
    opts = explorer.ConstructOptions(args.construct_size, args.construct_steps, args.construct_batch)
    info = explorer.SiteInfo(arch.name, n_images, opts.describe() if constructed else None)
    digest = explorer.weights_digest(model) if constructed else None
    writer = jax.process_index() == 0
    if args.overwrite and not args.resume and writer:
        for n in names:
            explorer.clear_layer(out / n)
        (out / explorer.STATE_FILE).unlink(missing_ok=True)
    try:
        results = explorer.atlas_pass(model, args.images, names, out, top_k=args.top_k, batch_size=args.batch_size,
                                      size=args.size, checkpoint_every=args.checkpoint_every, resume=args.resume,
                                      per_image=not args.all_positions, progress=not args.quiet)  # fmt: skip
        summaries = []
        for n in names:
            layer_dir = out / n
            summaries.append(explorer.build_layer(
                model, args.images, results[n], layer_dir, channels=selected[n], batch_size=args.batch_size,
                size=args.size, construct=opts if n in constructed else None, replace_features=args.overwrite,
                info=info, progress=not args.quiet, digest=digest))  # fmt: skip
            if writer:
                print(f"atlas of {arch.name} {n}: {len(selected[n])} of {summaries[-1].channels} channels, "
                      f"{n_images} images -> {layer_dir / 'index.html'}")  # fmt: skip
        if writer:
            print(f"site: {explorer.write_site_index(out, summaries, info)}")
    except KeyboardInterrupt:
        state = out / explorer.STATE_FILE
        saved = f"the last checkpoint is {state}" if state.exists() else "no checkpoint was saved yet"
        raise KeyboardInterrupt(f"run the same command with --resume to continue ({saved})") from None
    return 0
