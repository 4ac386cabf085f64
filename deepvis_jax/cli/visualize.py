"""`deepvis visualize`: activations of a layer and DeconvNet projections.

Run an image through the network, write the layer's activation grid and the DeconvNet projections of its most
active channels as PNGs, and print the layer, its channel count, the top channels and (pretrained weights) the
top-5 ImageNet classes. With a folder or several files (--image DIR or --image A B ...), every image is
visualized (in compiled batches of --batch-size, read ahead in the background, with a progress bar): one line of
top channels and a pair of PNGs per image, plus one summary sheet; a file that cannot be read is reported in one
line and skipped.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

import deepvis_jax as dv
from deepvis_jax._src.input_size import fit_images, side

from ._common import (PROG, add_command, int_arg, quiet_arg, UNTRAINED_CLASSIFIER, at_least, layer_and_channels, layer_arg, load_input, load_model,
                      message, model_arch, model_arg, output_args, planned, save_png, top_classes,
                      weights_arg)  # fmt: skip


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = add_command(sub, common, __name__, model_arg, weights_arg, layer_arg)
    p.add_argument("--image", metavar="PATH", nargs="+", default=None,
                   help="an image file (any format Pillow reads; default: the packaged astronaut photo); or a "
                   "folder (searched recursively) or several files: each image is resized and center-cropped to "
                   "SxS, visualized in batches, and written as <name>_<layer>_activations.png and "
                   "<name>_<layer>_projections.png plus a summary sheet <layer>_summary.png; a file that cannot "
                   "be read is reported and skipped")  # fmt: skip
    int_arg(p, "--size", 224, "S", "one image: shrink it so its shorter side is S pixels, smaller images are kept "
            "as they are (0 keeps every image as it is); several: resize the shorter side to S and center-crop to "
            "SxS (default: 224)")  # fmt: skip
    int_arg(p, "--batch-size", 8, "N", "several images: images per compiled batch; bounds memory (default: 8)")
    quiet_arg(p, "several images: no progress bar")
    int_arg(p, "--top-k", 9, "K", "channels to project (default: 9)")
    p.add_argument("--mode", choices=("max", "all"), default="max",
                   help="max: project each channel's strongest activation (the paper's figures); all: its whole "
                   "feature map (default: max)")  # fmt: skip
    p.add_argument("--method", choices=("deconv", "guided", "gradient"), default="deconv",
                   help="deconv: Zeiler & Fergus's DeconvNet; guided: guided backpropagation; gradient: the plain "
                   "gradient (default: deconv)")  # fmt: skip
    output_args(p)


def run(args: argparse.Namespace) -> int:
    arch = model_arch(args)
    layer, channels = layer_and_channels(arch, args.layer)
    if not 1 <= args.top_k <= channels:
        raise ValueError(f"--top-k {args.top_k} is out of range for {layer} of {arch.name}: use 1..{channels}")
    if args.image and (len(args.image) > 1 or Path(args.image[0]).is_dir()):
        return _visualize_many(args, arch, layer)
    image, what = load_input(args.image[0] if args.image else None, args.size)
    if fit_images(arch, image) is not image:  # a network that takes one size: the image is resized to it
        hw = arch.fixed_hw
        image, what = fit_images(arch, image), f"{what}, resized to the network's input size {hw[0]}x{hw[1]}"
    dv.check_image_size(arch, image.shape[:2], layer)
    out = Path(args.out)
    model, pretrained = load_model(args)

    r = dv.visualize(model, image, layer, top_k=args.top_k, mode=args.mode, method=args.method)
    h, w = image.shape[:2]
    print(f"image: {what}")
    print(f"layer: {layer} of {arch.name}, {channels} channels, feature map {r.activations.shape[1]}x"
          f"{r.activations.shape[0]}")  # fmt: skip
    print(f"top {len(r.channels)} channels by {'strongest activation' if args.mode == 'max' else 'total activation'}:")
    for c, s in zip(np.asarray(r.channels).tolist(), np.asarray(r.scores).tolist()):
        print(f"  channel {c:4d}  score {s:#10.5g}")  # significant digits: ~1e-5 is not 0.0000
    if pretrained and not model.classifier_trained:
        print(f"({UNTRAINED_CLASSIFIER})")
    elif pretrained and arch.num_classes == len(dv.imagenet_labels()):
        if min(h, w) >= dv.min_image_size(arch):
            labels = dv.imagenet_labels()
            print("top-5 ImageNet classes:")
            for i, p in top_classes(model, image):
                print(f"  {p:6.1%}  {labels[i]} ({i})")
        else:
            print(f"(image smaller than {dv.min_image_size(arch)} px: too small to classify)")
    for p in dv.save_result(r, out, image=image, overwrite=args.overwrite):
        print(f"wrote {p}")
    return 0


def _image_files(paths: Sequence[str]) -> list[tuple[Path, str]]:
    """(file, name) for each --image path: a folder's image files (recursively, sorted; named by their path inside
    it), a file as given (named by its file name; a missing one is reported and skipped like a corrupt one)."""
    files = []
    for p in map(Path, paths):
        if p.is_dir():
            files += [(f, f.relative_to(p).as_posix()) for f in dv.list_images(p)]
        else:
            files.append((p, p.name))
    return files


def _visualize_many(args: argparse.Namespace, arch, layer: str) -> int:
    """`visualize --image DIR` (or several files): `dv.visualize_files`, one pair of PNGs per image and a summary
    sheet. A file that cannot be read is reported in one line and skipped."""
    from tqdm.auto import tqdm

    at_least("--batch-size", args.batch_size)
    if args.size < 1:
        raise ValueError(f"--size {args.size}: several images are visualized in batches of one size, so they are "
                         "resized and center-cropped to SxS; give --size S (at least 1)")  # fmt: skip
    args.size = side(arch, args.size)  # a network that takes one square size: that size (dv.visualize_files too)
    dv.check_image_size(arch, (args.size, args.size), layer)
    files = _image_files(args.image)
    stems = dv.batch_names(len(files), [name for _, name in files])
    out = Path(args.out)
    summary = out / f"{layer}_summary.png"
    planned([*dv.batch_paths(out, layer, stems), summary], args.overwrite)
    model, _ = load_model(args)
    print(f"images: {len(files)} files, resized and center-cropped to {args.size}x{args.size}, "
          f"{args.batch_size} at a time")  # fmt: skip
    print(f"layer: {layer} of {arch.name}, {dv.layer_channels(arch, layer)} channels; top {args.top_k} channels "
          f"per image by {'strongest' if args.mode == 'max' else 'total'} activation")  # fmt: skip

    rows, row_channels, row_stems, skipped = [], [], [], 0
    results = dv.visualize_files(model, [f for f, _ in files], layer, size=args.size, top_k=args.top_k,
                                 mode=args.mode, method=args.method, batch_size=args.batch_size,
                                 progress=not args.quiet)  # fmt: skip
    for item in results:
        if item.error is not None:
            skipped += 1
            msg = message(item.error)
            msg = msg if str(item.path) in msg else f"{item.path}: {msg}"
            tqdm.write(f"{PROG}: warning: skipped {msg}", file=sys.stderr)
            continue
        stem, r = stems[item.index], item.result
        ch, sc = np.asarray(r.channels).tolist(), np.asarray(r.scores).tolist()
        tqdm.write(f"{stem}: " + ", ".join(f"ch {c} ({s:.4g})" for c, s in zip(ch, sc)), file=sys.stdout)
        dv.save_result(r, out, image=item.image, overwrite=args.overwrite, names=[stem])
        rows.append(dv.summary_row(item.image, np.asarray(r.projections), np.asarray(r.channels)))
        row_channels.append(np.asarray(r.channels))
        row_stems.append(stem)
    if not rows:
        raise ValueError(f"none of the {len(files)} images could be read")
    sheet = dv.batch_sheet(None, None, np.stack(row_channels), names=row_stems, rows=rows)
    save_png(sheet, summary, args.overwrite)
    print(f"wrote {2 * len(rows)} PNGs to {out} ({len(rows)} images: <name>_{layer}_activations.png and "
          f"<name>_{layer}_projections.png)")  # fmt: skip
    print(f"wrote {summary}")
    if skipped:
        print(f"skipped {skipped} of {len(files)} files that could not be read (see the warnings)")
    return 0
