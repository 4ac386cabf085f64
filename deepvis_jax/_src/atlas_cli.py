"""`deepvis atlas`: the subcommand's parser and runner, for `deepvis_jax.cli` to register.

    deepvis atlas --images DIR --layer conv5 --out DIR [--model alexnet] [--weights imagenet|random|PATH]
                  [--top-k 9] [--batch-size 32] [--size 224] [--resume] [--overwrite]

Errors are raised as the library's typed exceptions (ValueError, FileNotFoundError, FileExistsError, ...) for the
CLI's `main` to print as one line.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

STATE_FILE = "atlas_state.npz"
CHUNK = 32  # channels projected and rendered at a time (bounds the memory of the projections)


def add_atlas_parser(subparsers, parents: Sequence[argparse.ArgumentParser] = ()) -> argparse.ArgumentParser:
    """Add the ``atlas`` subcommand to `subparsers` (from ``parser.add_subparsers()``); returns its parser."""
    p = subparsers.add_parser(
        "atlas",
        parents=list(parents),
        help="top-k activations of every channel over a folder of images, as a browsable atlas",
        description="Stream a folder of images through the network (sharded over every device), keep each "
        "channel's top-k activations, project them to pixel space (DeconvNet) beside their image patches, and "
        "write one PNG sheet per channel plus an index.html to browse them (open it from the file system). "
        f"The running state is saved in OUT/{STATE_FILE}; --resume continues an interrupted run.",
    )
    p.add_argument("--images", required=True, metavar="DIR", help="folder of images (searched recursively)")
    p.add_argument("--layer", required=True, help="conv layer: 1-based index or name (see `deepvis layers`)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--model", default="alexnet", help="architecture (default: alexnet)")
    p.add_argument("--weights", default="imagenet", metavar="imagenet|random|PATH",
                   help="imagenet: torchvision's pretrained weights (the default); random: untrained, pictures "
                   "not meaningful; PATH: a converted .msgpack or a torchvision .pth file")  # fmt: skip
    p.add_argument("--top-k", type=int, default=9, metavar="K", help="activations kept per channel (default: 9)")
    p.add_argument("--batch-size", type=int, default=32, metavar="N",
                   help="images per step, over all devices (default: 32)")  # fmt: skip
    p.add_argument("--size", type=int, default=224, metavar="S",
                   help="images are resized (shorter side) and center-cropped to SxS (default: 224)")  # fmt: skip
    p.add_argument("--checkpoint-every", type=int, default=20, metavar="N",
                   help="save the running state every N batches (default: 20)")  # fmt: skip
    p.add_argument("--resume", action="store_true", help=f"continue from OUT/{STATE_FILE} if it exists")
    p.add_argument("--overwrite", action="store_true", help="replace an existing atlas in OUT")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    if not any(any("--cache-dir" in a.option_strings for a in q._actions) for q in parents):
        p.add_argument("--cache-dir", metavar="DIR", default=None, help="JAX compilation cache folder")
    p.set_defaults(func=run_atlas, compiles=True)
    return p


def _model(arch: str, weights: str):
    import deepvis_jax as dv

    if weights.strip().lower() == "random":
        print("deepvis: warning: --weights random: an untrained network; its pictures are not meaningful",
              file=sys.stderr)  # fmt: skip
        return dv.load_model(arch, weights=None, seed=0)
    return dv.load_model(arch, weights=weights)


def run_atlas(args: argparse.Namespace) -> int:
    """Run ``deepvis atlas``; returns 0. Raises ValueError / OSError subclasses on bad input."""
    import jax
    from tqdm.auto import tqdm

    import deepvis_jax as dv
    from deepvis_jax._src.atlas import list_images
    from deepvis_jax._src.atlas_render import write_index, write_sheets
    from deepvis_jax._src.atlas import _layer_hw

    for flag, v in (("--top-k", args.top_k), ("--batch-size", args.batch_size), ("--size", args.size),
                    ("--checkpoint-every", args.checkpoint_every)):  # fmt: skip
        if v < 1:
            raise ValueError(f"{flag} must be at least 1, got {v}")
    out = Path(args.out)
    list_images(args.images)  # fail early on a missing or empty folder
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (args.overwrite or args.resume):
        raise FileExistsError(f"{out} is not empty; pass --overwrite to replace the atlas or --resume to continue it")
    model = _model(args.model, args.weights)
    name = dv.layer_name(model, args.layer)
    _layer_hw(model, name, (args.size, args.size))  # ValueError when --size is too small for the layer
    state = out / STATE_FILE
    if args.overwrite and not args.resume and state.exists():
        state.unlink()
    result = dv.atlas(model, args.images, name, top_k=args.top_k, batch_size=args.batch_size, size=args.size,
                      project=False, checkpoint=state, checkpoint_every=args.checkpoint_every, resume=args.resume,
                      progress=not args.quiet)  # fmt: skip
    n_ch = result.values.shape[0]
    writer = jax.process_index() == 0  # every process projects (the arrays span all hosts); one writes
    for s in tqdm(range(0, n_ch, CHUNK), desc="projections", unit="chunk", disable=args.quiet or not writer):
        chunk = dv.atlas_project(model, result, args.images, channels=range(s, min(s + CHUNK, n_ch)),
                                 batch_size=args.batch_size, size=args.size)  # fmt: skip
        if writer:
            write_sheets(chunk, out)
    if not writer:
        return 0
    page = write_index(result, out, title=f"{model.arch.name} {name}: top-{args.top_k} over {result.num_images} images")
    print(f"atlas of {model.arch.name} {name}: {n_ch} channels, {result.num_images} images -> {page}")
    return 0
