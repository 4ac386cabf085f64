"""The `deepvis` command, thin over the library.

    deepvis visualize --weights random --layer 3          # activation grid + DeconvNet projections as PNGs
    deepvis visualize --weights random --layer 3 --image DIR   # every image of a folder, in compiled batches
    deepvis construct --weights random --layer 3 --filter 88
    deepvis convert --model alexnet --from imagenet --out alexnet.msgpack   (needs torch)
    deepvis convert --from vgg16.onnx --preprocessing caffe --out vgg16.msgpack   (needs onnx)
    deepvis layers --model vgg16
    deepvis occlusion --weights random --layer conv5     # occlusion sensitivity maps (the paper's Fig. 7)
    deepvis atlas --images DIR --layer conv4 conv5 --out DIR [--construct]   # a static site over a folder
    deepvis serve --weights random                        # a local web app on http://127.0.0.1:8000/
    deepvis check --model vgg16 --weights random          (needs torch)

Bad input never shows a traceback: the library raises typed exceptions (ValueError and its subclasses
WeightsError / ImageError, FileNotFoundError and other OSErrors, WeightsUnavailableError) and this module prints
their message as one line ``deepvis: error: ...`` on stderr and exits with status 2 (argparse usage errors too).
An interrupt (Ctrl-C) prints ``deepvis: interrupted`` and exits with 130; `check` exits with 1 when the two
frameworks disagree beyond its tolerance.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

import deepvis_jax as dv
from deepvis_jax._src.atlas import _layer_hw, list_images, load_square, read_ahead
from deepvis_jax._src.deconv import visualize_chunk
from deepvis_jax._src.explorer.build import STATE_FILE
from deepvis_jax._src.images import check_image_size, imagenet_labels, resize_shorter
from deepvis_jax._src.render import batch_names, batch_paths, summary_row
from deepvis_jax._src.nets import get_architecture

PROG = "deepvis"
EXIT_ERROR = 2
EXIT_MISMATCH = 1
EXIT_INTERRUPTED = 130
CACHE_ENV = "DEEPVIS_JAX_CACHE"
MODELS = ", ".join(dv.ARCHITECTURES)


# --------------------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------------------


class TorchMissingError(ImportError):
    """A subcommand that converts or compares needs torch and torchvision, and they are not installed."""


class OnnxMissingError(TorchMissingError):
    """`deepvis convert --from FILE.onnx` needs the onnx package, and it is not installed."""


def _warn(msg: str) -> None:
    print(f"{PROG}: warning: {msg}", file=sys.stderr)


def _import_converters(command: str):
    try:
        import converters
        import torch
        import torchvision
    except ImportError as e:
        raise TorchMissingError(
            f"`{PROG} {command}` needs torch and torchvision ({e}); install them with "
            "pip install 'deepvis_jax[torch]'"
        ) from None
    return converters, torch, torchvision


def default_cache_dir() -> Path:
    """$DEEPVIS_JAX_CACHE, else $XDG_CACHE_HOME/deepvis_jax/jax, else ~/.cache/deepvis_jax/jax."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "deepvis_jax" / "jax"


def setup_compilation_cache(cache_dir: str | None = None) -> Path | None:
    """Turn on JAX's persistent compilation cache so repeat runs do not recompile; returns the folder or None.

    ``cache_dir`` (the --cache-dir flag) wins over $DEEPVIS_JAX_CACHE, which wins over a folder already set with
    $JAX_COMPILATION_CACHE_DIR, which wins over the user cache folder. "off" (or "none", "0") disables it.
    """
    import jax

    chosen = cache_dir or os.environ.get(CACHE_ENV)
    if chosen is not None and chosen.strip().lower() in ("off", "none", "0", ""):
        return None
    if chosen is None and jax.config.jax_compilation_cache_dir:
        return Path(jax.config.jax_compilation_cache_dir)
    path = Path(chosen).expanduser() if chosen else default_cache_dir()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        _warn(f"cannot create the compilation cache folder {path}; compiling without a cache")
        return None
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)  # CPU compiles are short: cache them too
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path


def _resolve_weights(arch: str, weights: str) -> tuple[dv.Model, bool]:
    """(model, pretrained?) for --weights imagenet | random | PATH."""
    if weights.strip().lower() == "random":
        _warn("--weights random: an untrained network; its pictures are not meaningful "
              "(use --weights imagenet or a weights file)")  # fmt: skip
        return dv.load_model(arch, weights=None, seed=0), False
    return dv.load_model(arch, weights=weights), True


def _planned(paths: Sequence[Path], overwrite: bool) -> None:
    """Refuse, before any work, to replace files that exist (unless --overwrite)."""
    if overwrite:
        return
    for p in paths:
        if p.exists():
            raise FileExistsError(f"{p} already exists; pass --overwrite to replace it")


def _load_input(path: str | None, size: int) -> tuple[np.ndarray, str]:
    """The image (file or packaged sample), shrunk to --size, and a description of it for printing."""
    image = dv.load_image(path) if path else dv.sample_image()
    h, w = image.shape[:2]
    image = resize_shorter(image, size)
    what = f"{path} ({image.shape[1]}x{image.shape[0]} pixels" if path else (
        f"the packaged sample photo of a NASA astronaut ({image.shape[1]}x{image.shape[0]} pixels")
    what += f", resized from {w}x{h})" if image.shape[:2] != (h, w) else ")"
    return image, what


def _layer_and_channels(arch_name: str, layer: str) -> tuple[str, int]:
    arch = get_architecture(arch_name)
    name = dv.layer_name(arch, layer)
    return name, dv.layer_channels(arch, name)


def _to_uint8(img) -> np.ndarray:
    a = np.asarray(img)
    if a.dtype == np.uint8:
        return a
    return np.clip(np.rint(a.astype(np.float64) * 255.0), 0, 255).astype(np.uint8)


def _save_png(image, path: Path, overwrite: bool) -> Path:
    from PIL import Image

    if not overwrite and path.exists():
        raise FileExistsError(f"{path} already exists; pass --overwrite to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    (image if isinstance(image, Image.Image) else Image.fromarray(_to_uint8(image))).save(path)
    return path


UNTRAINED_CLASSIFIER = ("this model's classifier is untrained (only its conv layers were imported, from a graph "
                        "whose head is not torchvision's ImageNet classifier): no class predictions")


def _top_classes(model: dv.Model, image: np.ndarray, k: int = 5) -> list[tuple[int, float]]:
    x = dv.normalize(image.astype(np.float32)[None] / 255.0)
    logits = np.asarray(dv.classify(model, x.astype(model.dtype)), dtype=np.float64)[0]
    p = np.exp(logits - logits.max())
    p /= p.sum()
    top = np.argsort(-p)[:k]
    return [(int(i), float(p[i])) for i in top]


# --------------------------------------------------------------------------------------------------------------
# Subcommands
# --------------------------------------------------------------------------------------------------------------


def cmd_visualize(args: argparse.Namespace) -> int:
    arch = get_architecture(args.model)
    layer, channels = _layer_and_channels(arch.name, args.layer)
    if not 1 <= args.top_k <= channels:
        raise ValueError(f"--top-k {args.top_k} is out of range for {layer} of {arch.name}: use 1..{channels}")
    if args.image and (len(args.image) > 1 or Path(args.image[0]).is_dir()):
        return _visualize_many(args, arch, layer)
    image, what = _load_input(args.image[0] if args.image else None, args.size)
    check_image_size(arch, image.shape[:2], layer)
    out = Path(args.out)
    model, pretrained = _resolve_weights(arch.name, args.weights)

    r = dv.visualize(model, image, layer, top_k=args.top_k, mode=args.mode, method=args.method)
    h, w = image.shape[:2]
    print(f"image: {what}")
    print(f"layer: {layer} of {arch.name}, {channels} channels, feature map {r.activations.shape[1]}x"
          f"{r.activations.shape[0]}")  # fmt: skip
    print(f"top {len(r.channels)} channels by {'strongest activation' if args.mode == 'max' else 'total activation'}:")
    for c, s in zip(np.asarray(r.channels).tolist(), np.asarray(r.scores).tolist()):
        print(f"  channel {c:4d}  score {s:10.4f}")
    if pretrained and not model.classifier_trained:
        print(f"({UNTRAINED_CLASSIFIER})")
    elif pretrained:
        if min(h, w) >= dv.min_image_size(arch):
            labels = imagenet_labels()
            print("top-5 ImageNet classes:")
            for i, p in _top_classes(model, image):
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
            files += [(f, f.relative_to(p).as_posix()) for f in list_images(p)]
        else:
            files.append((p, p.name))
    return files


def _visualize_many(args: argparse.Namespace, arch, layer: str) -> int:
    """`visualize --image DIR` (or several files): batches of --batch-size images read and resized by a thread
    pool while the device computes the previous batch; one pair of PNGs per image and a summary sheet. A file that
    cannot be read is reported in one line and skipped."""
    from tqdm.auto import tqdm

    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.size < 1:
        raise ValueError(f"--size {args.size}: several images are visualized in batches of one size, so they are "
                         "resized and center-cropped to SxS; give --size S (at least 1)")  # fmt: skip
    check_image_size(arch, (args.size, args.size), layer)
    files = _image_files(args.image)
    stems = batch_names(len(files), [name for _, name in files])
    out = Path(args.out)
    summary = out / f"{layer}_summary.png"
    _planned([*batch_paths(out, layer, stems), summary], args.overwrite)
    model, _ = _resolve_weights(arch.name, args.weights)
    print(f"images: {len(files)} files, resized and center-cropped to {args.size}x{args.size}, "
          f"{args.batch_size} at a time")  # fmt: skip
    print(f"layer: {layer} of {arch.name}, {dv.layer_channels(arch, layer)} channels; top {args.top_k} channels "
          f"per image by {'strongest' if args.mode == 'max' else 'total'} activation")  # fmt: skip

    rows, row_channels, row_stems, skipped = [], [], [], 0
    bar = tqdm(total=len(files), unit="img", desc=f"visualize {layer}", disable=args.quiet, dynamic_ncols=True)

    def finish(r, imgs, names):  # to the host: print, write the PNGs, keep the summary's thumbnails
        for j, stem in enumerate(names):
            ch, sc = np.asarray(r.channels[j]).tolist(), np.asarray(r.scores[j]).tolist()
            bar.write(f"{stem}: " + ", ".join(f"ch {c} ({s:.4g})" for c, s in zip(ch, sc)), file=sys.stdout)
        dv.save_result(r, out, image=imgs, overwrite=args.overwrite, names=names)
        for j in range(len(names)):
            rows.append(summary_row(imgs[j], np.asarray(r.projections[j]), np.asarray(r.channels[j])))
            row_channels.append(np.asarray(r.channels[j]))
        row_stems.extend(names)

    pending = None
    try:
        for first, n, results in read_ahead([f for f, _ in files], lambda f: load_square(f, args.size),
                                            args.batch_size):  # fmt: skip
            good = []
            for i, a in zip(range(first, first + n), results):
                if isinstance(a, BaseException):
                    skipped += 1
                    msg = _message(a)
                    msg = msg if str(files[i][0]) in msg else f"{files[i][0]}: {msg}"
                    bar.write(f"{PROG}: warning: skipped {msg}", file=sys.stderr)
                else:
                    good.append((i, a))
            if good:
                imgs = np.stack([a for _, a in good])
                r = visualize_chunk(model, imgs, layer, args.top_k, args.mode, "max", args.method, args.batch_size)
                if pending is not None:  # the device computes this batch while the last one is written
                    finish(*pending)
                pending = (r, imgs, [stems[i] for i, _ in good])
            bar.update(n)
        if pending is not None:
            finish(*pending)
    finally:
        bar.close()
    if not rows:
        raise ValueError(f"none of the {len(files)} images could be read")
    sheet = dv.batch_sheet(None, None, np.stack(row_channels), names=row_stems, rows=rows)
    _save_png(sheet, summary, args.overwrite)
    print(f"wrote {2 * len(rows)} PNGs to {out} ({len(rows)} images: <name>_{layer}_activations.png and "
          f"<name>_{layer}_projections.png)")  # fmt: skip
    print(f"wrote {summary}")
    if skipped:
        print(f"skipped {skipped} of {len(files)} files that could not be read (see the warnings)")
    return 0


def cmd_construct(args: argparse.Namespace) -> int:
    arch = get_architecture(args.model)
    layer, channels = _layer_and_channels(arch.name, args.layer)
    filters = list(dict.fromkeys(args.filter))  # drop repeats, keep order
    for f in filters:
        if not 0 <= f < channels:
            raise ValueError(f"filter {f} is out of range for {layer} of {arch.name}: use 0..{channels - 1}")
    if args.steps is not None and args.steps < 1:
        raise ValueError(f"--steps must be at least 1, got {args.steps}")
    if args.batch_size is not None and args.batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.size < dv.min_image_size(arch, layer):
        raise ValueError(f"--size {args.size} is too small for {layer} of {arch.name}: it needs at least "
                         f"{dv.min_image_size(arch, layer)} pixels")  # fmt: skip
    out = Path(args.out)
    paths = [out / f"{arch.name}_{layer}_filter{f}.png" for f in filters]
    sheet = out / f"{arch.name}_{layer}_filters.png"
    _planned([*paths, sheet], args.overwrite)
    model, _ = _resolve_weights(arch.name, args.weights)

    kwargs = {} if args.steps is None else {"steps": args.steps}
    imgs = np.asarray(dv.construct(model, layer, filters, image_size=args.size, seed=args.seed, verbose=True,
                                   batch_size=args.batch_size, **kwargs))  # fmt: skip
    print(f"layer: {layer} of {arch.name}, {channels} channels; filters {', '.join(map(str, filters))}")
    for img, p in zip(imgs, paths):
        print(f"wrote {_save_png(img, p, args.overwrite)}")
    labels = [f"{layer} filter {f}" for f in filters]
    print(f"wrote {_save_png(dv.contact_sheet(imgs, labels), sheet, args.overwrite)}")
    return 0


def cmd_occlusion(args: argparse.Namespace) -> int:
    arch = get_architecture(args.model)
    layer, channels = _layer_and_channels(arch.name, args.layer if args.layer is not None else arch.conv_layers[-1])
    if args.channel is not None and not 0 <= args.channel < channels:
        raise ValueError(f"--channel {args.channel} is out of range for {layer} of {arch.name}: use 0..{channels - 1}")
    if args.target is not None and not 0 <= args.target < arch.num_classes:
        raise ValueError(f"--class {args.target} is out of range: use 0..{arch.num_classes - 1}")
    image, what = _load_input(args.image, args.size)
    check_image_size(arch, image.shape[:2])  # the class maps need the whole network
    out = Path(args.out) / f"{arch.name}_{layer}_occlusion.png"
    _planned([out], args.overwrite)
    model, _ = _resolve_weights(arch.name, args.weights)

    r = dv.occlusion(model, image, patch=args.patch, stride=args.stride, layer=layer, channel=args.channel,
                     target=args.target, chunk=args.chunk)  # fmt: skip
    labels = imagenet_labels() if arch.num_classes == 1000 else [str(i) for i in range(arch.num_classes)]
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
    print(f"wrote {_save_png(dv.occlusion_figure(image, r, labels=legend), out, args.overwrite)}")
    return 0


def cmd_layers(args: argparse.Namespace) -> int:
    arch = get_architecture(args.model)
    names = dv.layers(arch)
    kind = "conv layers" if isinstance(arch, dv.Architecture) else "layers (the stem, then each residual block)"
    print(f"{arch.name}: {len(names)} {kind} (--layer takes the index or the name)")
    width = max(8, *map(len, names))
    print(f"{'index':>5}  {'name':<{width}} {'channels':>8}  {'min image':>9}")
    for i, name in enumerate(names, 1):
        n = dv.min_image_size(arch, name)
        print(f"{i:>5}  {name:<{width}} {dv.layer_channels(arch, name):>8}  {f'{n}x{n}':>9}")
    n = dv.min_image_size(arch)
    print(f"classifier: {arch.num_classes} classes, needs at least {n}x{n} pixels")
    return 0


def _convert_onnx(args: argparse.Namespace) -> int:
    try:
        import converters
        import onnx  # noqa: F401
    except ImportError as e:
        raise OnnxMissingError(f"`{PROG} convert --from FILE.onnx` needs onnx ({e}); install it with "
                                "pip install 'deepvis_jax[onnx]'") from None  # fmt: skip
    out = Path(args.out)
    _planned([out], args.overwrite)
    model = converters.from_onnx(args.source, preprocessing=args.preprocessing or "caffe", seed=args.seed)
    if args.model is not None and get_architecture(args.model).name != model.arch.name:
        raise ValueError(f"{args.source} holds a {model.arch.name}, not a {get_architecture(args.model).name}; "
                         f"pick --model {model.arch.name} or leave --model out")  # fmt: skip
    converters.save(model, out)
    print(f"wrote {out} ({model!r} from {args.source}, {args.preprocessing or 'caffe'} preprocessing folded "
          "into conv1)")  # fmt: skip
    if not model.classifier_trained:
        _warn(f"{args.source}: the classifier is not torchvision's {model.arch.name} head, so random weights stand "
              "in for it (recorded in the file): its conv layers are real, its class predictions are not")  # fmt: skip
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    if args.source.strip().lower().endswith(".onnx"):
        return _convert_onnx(args)
    if args.preprocessing is not None:
        raise ValueError("--preprocessing applies to ONNX files only (--from FILE.onnx)")
    converters, torch, torchvision = _import_converters("convert")
    arch = get_architecture(args.model or "alexnet")
    out = Path(args.out)
    _planned([out], args.overwrite)
    source = args.source
    if source.strip().lower() == "imagenet":
        model = converters.from_state_dict(converters.imagenet_state_dict(arch.name), arch.name)
    elif source.strip().lower() == "random":
        _warn("--from random: an untrained network; its pictures are not meaningful")
        torch.manual_seed(args.seed)
        model = converters.from_torchvision(torchvision.models.get_model(arch.name, weights=None))
    else:
        model = converters.load_pth(source, arch.name)
    converters.save(model, out)
    print(f"wrote {out} ({model!r} from {source})")
    return 0


def _torch_pair(args: argparse.Namespace, arch: str, converters, torch, torchvision):
    """(torchvision module, deepvis_jax model) holding the same weights."""
    w = args.weights.strip()
    if w.lower() == "random":
        _warn("--weights random: comparing an untrained network (enough to check the conversion)")
        torch.manual_seed(args.seed)
        module = torchvision.models.get_model(arch, weights=None)
        return module.eval(), converters.from_torchvision(module)
    module = torchvision.models.get_model(arch, weights=None)
    if w.lower() == "imagenet":
        sd = converters.imagenet_state_dict(arch)
        model = converters.from_state_dict(sd, arch)
    else:
        if Path(w).suffix.lower() not in (".pth", ".pt", ".bin", ".ckpt"):
            raise ValueError(f"`{PROG} check` compares with torchvision and needs torch weights (.pth), not {w}")
        model = converters.load_pth(w, arch)  # validates the file: weights_only, names, shapes, architecture
        sd = torch.load(w, map_location="cpu", weights_only=True)
        if "state_dict" in sd and isinstance(sd["state_dict"], dict):
            sd = sd["state_dict"]
        sd = {k.removeprefix("module."): v for k, v in sd.items()}
    module.load_state_dict(sd, strict=False)  # names already checked; BN's num_batches_tracked may be absent
    return module.eval(), model


def cmd_check(args: argparse.Namespace) -> int:
    converters, torch, torchvision = _import_converters("check")
    arch = get_architecture(args.model)
    image, what = _load_input(args.image, args.size)
    check_image_size(arch, image.shape[:2])
    module, model = _torch_pair(args, arch.name, converters, torch, torchvision)
    x = np.asarray(dv.normalize(image.astype(np.float32)[None] / 255.0))
    diffs = converters.compare(module, model, x)
    print(f"{arch.name}: torchvision vs deepvis_jax on {what}, {model.dtype}")
    print(f"{'layer':<8} {'max abs diff':>13} {'max rel diff':>13}")
    for name, d in diffs.items():
        print(f"{name:<8} {d.max_abs:>13.3e} {d.max_rel:>13.3e}")
    worst = max(d.max_rel for d in diffs.values())
    if worst > args.rtol:
        print(f"MISMATCH: largest relative difference {worst:.3e} exceeds --rtol {args.rtol:g}")
        return EXIT_MISMATCH
    print(f"OK: every relative difference is within --rtol {args.rtol:g}")
    return 0


def cmd_atlas(args: argparse.Namespace) -> int:
    import jax

    from deepvis_jax._src.explorer import build, site

    for flag, v in (("--top-k", args.top_k), ("--batch-size", args.batch_size), ("--size", args.size),
                    ("--checkpoint-every", args.checkpoint_every), ("--construct-size", args.construct_size),
                    ("--construct-steps", args.construct_steps), ("--construct-batch", args.construct_batch)):  # fmt: skip
        if v < 1:
            raise ValueError(f"{flag} must be at least 1, got {v}")
    out = Path(args.out)
    n_images = len(list_images(args.images))  # fail early on a missing or empty folder
    arch = get_architecture(args.model)
    names = list(dict.fromkeys(dv.layer_name(arch, layer) for layer in args.layer))  # in the order given
    selected = {n: build.parse_channels(args.channels, dv.layer_channels(arch, n), n) for n in names}
    constructed = [] if args.construct is None else names if not args.construct else list(
        dict.fromkeys(dv.layer_name(arch, layer) for layer in args.construct))
    for n in constructed:
        if n not in names:
            raise ValueError(f"--construct {n}: not one of the atlas's layers ({', '.join(names)}); add it to --layer")
    for n in names:
        _layer_hw(arch, n, (args.size, args.size))  # ValueError when --size is too small for the layer
        if n in constructed and args.construct_size < dv.min_image_size(arch, n):
            raise ValueError(f"--construct-size {args.construct_size} is too small for {n} of {arch.name}: it needs "
                             f"at least {dv.min_image_size(arch, n)} pixels")  # fmt: skip
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (args.overwrite or args.resume):
        raise FileExistsError(f"{out} is not empty; pass --overwrite to replace the atlas or --resume to continue it")
    model, _ = _resolve_weights(arch.name, args.weights)
    opts = build.ConstructOptions(args.construct_size, args.construct_steps, args.construct_batch)
    info = site.SiteInfo(arch.name, n_images, opts.describe() if constructed else None)
    digest = build.weights_digest(model) if constructed else None
    writer = jax.process_index() == 0
    summaries = []
    for n in names:
        layer_dir = out / n
        if args.overwrite and not args.resume and writer:
            build.clear_layer(layer_dir)
        summaries.append(build.build_layer(
            model, args.images, n, layer_dir, channels=selected[n], top_k=args.top_k, batch_size=args.batch_size,
            size=args.size, checkpoint_every=args.checkpoint_every, resume=args.resume,
            construct=opts if n in constructed else None, replace_features=args.overwrite, info=info,
            progress=not args.quiet, digest=digest))  # fmt: skip
        if writer:
            print(f"atlas of {arch.name} {n}: {len(selected[n])} of {summaries[-1].channels} channels, {n_images} "
                  f"images -> {layer_dir / 'index.html'}")  # fmt: skip
    if writer:
        print(f"site: {site.write_site_index(out, summaries, info)}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from deepvis_jax._src.explorer import live, server

    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port must be in 0..65535, got {args.port}")
    for flag, v in (("--size", args.size), ("--construct-size", args.construct_size),
                    ("--construct-steps", args.construct_steps)):  # fmt: skip
        if v < 1:
            raise ValueError(f"{flag} must be at least 1, got {v}")
    if not args.max_upload > 0:
        raise ValueError(f"--max-upload must be a positive number of megabytes, got {args.max_upload:g}")
    arch = get_architecture(args.model)
    model, _ = _resolve_weights(arch.name, args.weights)
    explorer = live.Explorer(model, size=args.size, construct_size=args.construct_size,
                             construct_steps=args.construct_steps)  # fmt: skip
    httpd = server.make_server(explorer, args.host, args.port, max_upload=int(args.max_upload * 1e6),
                               weights=args.weights)  # fmt: skip
    host, port = httpd.server_address[:2]
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        _warn(f"--host {args.host}: the explorer is reachable from other machines; it has no authentication")
    print(f"serving {arch.name} on http://{'[' + host + ']' if ':' in host else host}:{port}/ (Ctrl-C stops)",
          flush=True)  # fmt: skip
    server.serve(httpd)
    return 0


# --------------------------------------------------------------------------------------------------------------
# Parser and entry point
# --------------------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Deep visualization (Zeiler & Fergus DeconvNet, activation maximization) of AlexNet and VGG "
        "in JAX.",
        epilog=f"Errors print one line '{PROG}: error: ...' and exit with status 2; Ctrl-C exits with 130.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {dv.__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--cache-dir", metavar="DIR", default=None,
                        help=f"JAX compilation cache folder (default: ${CACHE_ENV}, else "
                        "$XDG_CACHE_HOME/deepvis_jax/jax); 'off' disables it")  # fmt: skip

    def model_arg(p: argparse.ArgumentParser, default: str | None = "alexnet") -> None:
        p.add_argument("--model", default=default, required=default is None,
                       help=f"architecture: {MODELS}" + (f" (default: {default})" if default else ""))  # fmt: skip

    def construct_args(p: argparse.ArgumentParser) -> None:  # the feature visualizations of atlas and serve
        p.add_argument("--construct-size", type=int, default=128, metavar="S",
                       help="side of the feature visualizations, pixels (default: 128)")
        p.add_argument("--construct-steps", type=int, default=256, metavar="N",
                       help="gradient-ascent steps per feature visualization (default: 256)")

    def weights_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("--weights", default="imagenet", metavar="imagenet|random|PATH",
                       help="imagenet: torchvision's pretrained weights (downloaded once, cached; the default); "
                       "random: untrained, works offline, pictures not meaningful; PATH: a converted .msgpack "
                       "or a torchvision .pth file")  # fmt: skip

    def image_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("--image", metavar="PATH", default=None,
                       help="an image file (any format Pillow reads; default: the packaged astronaut photo)")
        p.add_argument("--size", type=int, default=224, metavar="S",
                       help="shrink the image so its shorter side is S pixels; smaller images are kept as they "
                       "are (default: 224; 0 keeps every image as it is)")  # fmt: skip

    def layer_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("--layer", required=True, help="layer: 1-based index or name, e.g. conv3, conv4_2, layer3.1 (see `deepvis layers`)")

    def output_args(p: argparse.ArgumentParser, overwrite_help: str = "replace existing output files") -> None:
        p.add_argument("--out", default="deepvis_out", metavar="DIR", help="output folder (default: deepvis_out)")
        p.add_argument("--overwrite", action="store_true", help=overwrite_help)

    p = sub.add_parser("visualize", parents=[common], help="activations of a layer and DeconvNet projections",
                       description="Run an image through the network, write the layer's activation grid and the "
                       "DeconvNet projections of its most active channels as PNGs, and print the layer, its "
                       "channel count, the top channels and (pretrained weights) the top-5 ImageNet classes. With "
                       "a folder or several files (--image DIR or --image A B ...), every image is visualized "
                       "(in compiled batches of --batch-size, read ahead in the background, with a progress bar): "
                       "one line of top channels and a pair of PNGs per image, plus one summary sheet; a file that "
                       "cannot be read is reported in one line and skipped.")
    model_arg(p)
    weights_arg(p)
    p.add_argument("--image", metavar="PATH", nargs="+", default=None,
                   help="an image file (any format Pillow reads; default: the packaged astronaut photo); or a "
                   "folder (searched recursively) or several files: each image is resized and center-cropped to "
                   "SxS, visualized in batches, and written as <name>_<layer>_activations.png and "
                   "<name>_<layer>_projections.png plus a summary sheet <layer>_summary.png; a file that cannot "
                   "be read is reported and skipped")  # fmt: skip
    p.add_argument("--size", type=int, default=224, metavar="S",
                   help="one image: shrink it so its shorter side is S pixels, smaller images are kept as they are "
                   "(0 keeps every image as it is); several: resize the shorter side to S and center-crop to SxS "
                   "(default: 224)")  # fmt: skip
    p.add_argument("--batch-size", type=int, default=8, metavar="N",
                   help="several images: images per compiled batch; bounds memory (default: 8)")  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="several images: no progress bar")
    layer_arg(p)
    p.add_argument("--top-k", type=int, default=9, metavar="K", help="channels to project (default: 9)")
    p.add_argument("--mode", choices=("max", "all"), default="max",
                   help="max: project each channel's strongest activation (the paper's figures); all: its whole "
                   "feature map (default: max)")  # fmt: skip
    p.add_argument("--method", choices=("deconv", "guided", "gradient"), default="deconv",
                   help="deconv: Zeiler & Fergus's DeconvNet; guided: guided backpropagation; gradient: the plain "
                   "gradient (default: deconv)")  # fmt: skip
    output_args(p)
    p.set_defaults(func=cmd_visualize, compiles=True)

    p = sub.add_parser("occlusion", parents=[common], help="occlusion sensitivity maps (the paper's Fig. 7)",
                       description="Slide a grey square over the image and map (a) the total activation of a "
                       "feature map of the layer, (b) the probability of a class, (c) the most probable class at "
                       "each position; write the three maps as heat maps over the image (one PNG) and print a "
                       "summary.")  # fmt: skip
    model_arg(p)
    weights_arg(p)
    image_arg(p)
    p.add_argument("--layer", default=None, help="layer of map (a): 1-based index or name (default: the top one)")
    p.add_argument("--patch", type=int, default=48, metavar="P", help="side of the grey square, pixels (default: 48)")
    p.add_argument("--stride", type=int, default=8, metavar="S", help="step of the square, pixels (default: 8)")
    p.add_argument("--channel", type=int, default=None, metavar="C",
                   help="feature map of (a), 0-based (default: the strongest on the unoccluded image)")  # fmt: skip
    p.add_argument("--class", dest="target", type=int, default=None, metavar="K",
                   help="ImageNet class of map (b), 0-based (default: the class predicted for the unoccluded "
                   "image)")  # fmt: skip
    p.add_argument("--chunk", type=int, default=32, metavar="N",
                   help="occluded images evaluated at once, at most; bounds memory (default: 32)")  # fmt: skip
    output_args(p, "replace an existing output file")
    p.set_defaults(func=cmd_occlusion, compiles=True)

    p = sub.add_parser("construct", parents=[common], help="images grown to excite chosen filters",
                       description="Grow an image from noise by gradient ascent for each filter; write one PNG "
                       "per filter and a contact sheet.")
    model_arg(p)
    weights_arg(p)
    layer_arg(p)
    p.add_argument("--filter", type=int, nargs="+", required=True, metavar="F",
                   help="filter (channel) indices, 0-based")
    p.add_argument("--steps", type=int, default=None, metavar="N", help="gradient-ascent steps "
                   "(default: the library's, see dv.construct)")  # fmt: skip
    p.add_argument("--size", type=int, default=224, metavar="S", help="image side in pixels (default: 224)")
    p.add_argument("--seed", type=int, default=0, metavar="K", help="seed of the starting noise (default: 0)")
    p.add_argument("--batch-size", type=int, default=None, metavar="N",
                   help="filters optimized at once; bounds memory, does not change the images (default: from a "
                   "1 GiB budget, see dv.default_batch_size; VGG16 conv5_3 at 224 px: 5)")  # fmt: skip
    output_args(p)
    p.set_defaults(func=cmd_construct, compiles=True)

    p = sub.add_parser("convert", parents=[common],
                       help="torchvision (needs torch) or ONNX (needs onnx) weights -> a .msgpack file",
                       description="Convert torchvision weights or an ONNX AlexNet/VGG graph to a deepvis_jax "
                       ".msgpack file that loads without torch or onnx (--weights FILE).")  # fmt: skip
    p.add_argument("--model", default=None,
                   help=f"architecture: {MODELS} (default: alexnet; for an .onnx file it is recognized from the "
                   "graph, and --model, when given, must agree)")  # fmt: skip
    p.add_argument("--from", dest="source", default="imagenet", metavar="imagenet|random|PATH.pth|PATH.onnx",
                   help="imagenet: torchvision's pretrained weights (download/cache); random: seeded "
                   "untrained weights; PATH.pth: a torchvision state dict; PATH.onnx: an ONNX graph "
                   "(default: imagenet)")  # fmt: skip
    p.add_argument("--preprocessing", choices=("caffe", "torchvision", "unit"), default=None,
                   help="the input an ONNX graph expects, folded into conv1: caffe (BGR, 0..255, minus the BGR "
                   "mean; Keras VGG), torchvision (normalized RGB) or unit (RGB in [0, 1]) (default: caffe)")
    p.add_argument("--out", required=True, metavar="FILE", help="the .msgpack file to write")
    p.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--overwrite", action="store_true", help="replace an existing file")
    p.set_defaults(func=cmd_convert, compiles=False)

    p = sub.add_parser("layers", parents=[common], help="list the layers and their channel counts",
                       description="List the visualizable layers of a model: index, name, channels, smallest image.")
    model_arg(p)
    p.set_defaults(func=cmd_layers, compiles=False)

    p = sub.add_parser("check", parents=[common], help="compare with torchvision layer by layer (needs torch)",
                       description="Convert weights, run torchvision and deepvis_jax on the same image and print "
                       "the per-layer differences (exit status 1 when one exceeds --rtol).")
    model_arg(p)
    weights_arg(p)
    image_arg(p)
    p.add_argument("--rtol", type=float, default=1e-3, help="largest relative difference accepted (default: 1e-3)")
    p.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_check, compiles=True)

    p = sub.add_parser("atlas", parents=[common],
                       help="top-k activations of every channel over a folder of images, as a static site",
                       description="Stream a folder of images through the network (sharded over every device), "
                       "keep each channel's top-k activations of each layer, project them to pixel space by "
                       "DeconvNet and guided backprop beside their image patches, optionally grow each channel's "
                       "feature visualization (--construct), and write a static site to browse them: OUT/index.html "
                       "(the layers), OUT/LAYER/index.html (every channel) and a page per channel (open them from the "
                       f"file system). Each layer's running state is saved in OUT/LAYER/{STATE_FILE}; --resume "
                       "continues an interrupted run, and finished feature visualizations are never recomputed.")  # fmt: skip
    p.add_argument("--images", required=True, metavar="DIR", help="folder of images (searched recursively)")
    p.add_argument("--layer", required=True, nargs="+", metavar="L",
                   help="one or more layers: 1-based index or name, e.g. conv4_3 conv5_3 (see `deepvis layers`)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    model_arg(p)
    weights_arg(p)
    p.add_argument("--channels", nargs="+", default=None, metavar="C",
                   help="only these channels of each layer: numbers and ranges, e.g. 0-63 100 (default: all)")
    p.add_argument("--top-k", type=int, default=9, metavar="K", help="activations kept per channel (default: 9)")
    p.add_argument("--batch-size", type=int, default=32, metavar="N",
                   help="images per step, over all devices (default: 32)")  # fmt: skip
    p.add_argument("--size", type=int, default=224, metavar="S",
                   help="images are resized (shorter side) and center-cropped to SxS (default: 224)")  # fmt: skip
    p.add_argument("--construct", nargs="*", default=None, metavar="L",
                   help="also grow each channel's feature visualization (dv.construct's default recipe; slow on a "
                   "CPU: see the README), cached per channel in OUT/LAYER/features; for every layer, or only for "
                   "the layers named")  # fmt: skip
    construct_args(p)
    p.add_argument("--construct-batch", type=int, default=8, metavar="N",
                   help="channels optimized together in one compiled program (default: 8)")
    p.add_argument("--checkpoint-every", type=int, default=20, metavar="N",
                   help="save the running state every N batches (default: 20)")  # fmt: skip
    p.add_argument("--resume", action="store_true", help=f"continue from OUT/LAYER/{STATE_FILE} if it exists")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing atlas in OUT (feature visualizations made with the same weights and "
                   "settings are kept)")  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_atlas, compiles=True)

    p = sub.add_parser("serve", parents=[common], help="a local web app: click a channel, see what drives it",
                       description="Serve a local web page: pick the sample photo or upload one, pick a layer, see "
                       "its activation grid, click a channel to see its DeconvNet, guided-backprop and gradient "
                       "projections and its feature visualization (computed on demand and cached). Images are "
                       "resized (shorter side) and center-cropped to SxS. Uploads are held in memory and a "
                       "temporary folder that is removed on exit.")  # fmt: skip
    model_arg(p)
    weights_arg(p)
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default: 127.0.0.1, this machine only; the app has no "
                   "authentication)")  # fmt: skip
    p.add_argument("--port", type=int, default=8000, help="port (default: 8000; 0 picks a free one)")
    p.add_argument("--size", type=int, default=224, metavar="S",
                   help="images are resized (shorter side, only ever shrunk) and center-cropped to SxS (default: 224)")
    p.add_argument("--max-upload", type=float, default=20.0, metavar="MB",
                   help="largest upload accepted, megabytes (default: 20)")
    construct_args(p)
    p.set_defaults(func=cmd_serve, compiles=True)
    return parser


def _message(e: BaseException) -> str:
    """One line for an exception: OS errors as 'reason: file', everything else as its message."""
    if isinstance(e, OSError) and e.strerror and e.filename is not None:
        msg = f"{e.strerror}: {e.filename}"
    else:
        msg = str(e) or type(e).__name__
    return " ".join(msg.split())


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `deepvis` command; returns the exit status (0 ok, 1 check mismatch, 2 error, 130 interrupted)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version (0) and usage errors (2)
        return int(e.code or 0)
    try:
        if args.compiles:
            setup_compilation_cache(args.cache_dir)
        return args.func(args)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except dv.WeightsUnavailableError as e:
        print(f"{PROG}: error: {_message(e)}; try --weights random or --weights PATH", file=sys.stderr)
        return EXIT_ERROR
    except (ValueError, OSError, TorchMissingError) as e:  # WeightsError and ImageError are ValueErrors
        print(f"{PROG}: error: {_message(e)}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
