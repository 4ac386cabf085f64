"""What every `deepvis` subcommand shares: the arguments, the model they name, output files, errors.

`model_arch(args)` and `load_model(args)` are the one place a command's model comes from: ``--model`` names the
architecture; without it, a converted ``--weights FILE`` (a .msgpack file records its architecture) decides, else
AlexNet. Every failure a user can cause is an exception that `message` turns into one line.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

import deepvis_jax as dv

PROG = "deepvis"
EXIT_ERROR = 2
EXIT_MISMATCH = 1
EXIT_INTERRUPTED = 130
DEFAULT_MODEL = "alexnet"
MODELS = ", ".join(dv.ARCHITECTURES)
TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
UNTRAINED_CLASSIFIER = ("this model's classifier is untrained (only its conv layers were imported, from a graph "
                        "whose head is not torchvision's ImageNet classifier): no class predictions")  # fmt: skip


class TorchMissingError(ImportError):
    """A subcommand that converts or compares needs torch and torchvision, and they are not installed."""


class OnnxMissingError(TorchMissingError):
    """`deepvis convert --from FILE.onnx` needs the onnx package, and it is not installed."""


def warn(msg: str) -> None:
    print(f"{PROG}: warning: {msg}", file=sys.stderr)


def message(e: BaseException) -> str:
    """One line for an exception: OS errors as 'reason: file', everything else as its message."""
    if isinstance(e, OSError) and e.strerror and e.filename is not None:
        msg = f"{e.strerror}: {e.filename}"
    else:
        msg = str(e) or type(e).__name__
    return " ".join(msg.split())


def import_converters(command: str):
    """(converters, torch, torchvision), or TorchMissingError saying how to install them."""
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


def at_least(flag: str, value: float, low: int = 1) -> None:
    """The check of a numeric flag: ValueError '--flag must be at least 1, got 0'."""
    if value < low:
        raise ValueError(f"{flag} must be at least {low}, got {value}")


# --------------------------------------------------------------------------------------------------------------
# Arguments shared by several subcommands
# --------------------------------------------------------------------------------------------------------------


def add_command(sub: argparse._SubParsersAction, common: argparse.ArgumentParser, module_name: str, *shared,
                compiles: bool = True) -> argparse.ArgumentParser:  # fmt: skip
    """The subparser of the command module `module_name` implements (its `run`), with the `shared` arguments added
    in order (`model_arg`, `weights_arg`, ...). The module's docstring is the command's help: its first line (after
    "`deepvis NAME`: ") the one-line summary, the rest the description. `compiles`: whether the command runs JAX
    programs (then the compilation cache is set up first)."""
    module = sys.modules[module_name]
    first, _, rest = module.__doc__.strip().partition("\n\n")
    name, _, summary = first.partition(": ")
    p = sub.add_parser(name.strip("`").split()[-1], parents=[common], help=summary.rstrip("."),
                       description=" ".join(rest.split()) or summary)  # fmt: skip
    for add in shared:
        add(p)
    p.set_defaults(func=module.run, compiles=compiles)
    return p


def int_arg(p: argparse.ArgumentParser, flag: str, default: int | None, metavar: str, help: str) -> None:
    """An integer flag: --size, --batch-size, --top-k, ..."""
    p.add_argument(flag, type=int, default=default, metavar=metavar, help=help)


def hidden_seed_arg(p: argparse.ArgumentParser) -> None:
    """--seed of the random weights (for tests), not shown in --help."""
    p.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)


def quiet_arg(p: argparse.ArgumentParser, help: str = "no progress bars") -> None:
    p.add_argument("--quiet", action="store_true", help=help)


def model_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None,
                   help=f"architecture: {MODELS} (default: the architecture a converted --weights file records, "
                   f"else {DEFAULT_MODEL})")  # fmt: skip


def weights_arg(p: argparse.ArgumentParser, default: str | None = "imagenet") -> None:
    p.add_argument("--weights", default=default, metavar="imagenet|random|PATH",
                   help="imagenet: torchvision's pretrained weights (downloaded once, cached"
                   + ("; the default" if default == "imagenet" else "")
                   + "); random: untrained, works offline, pictures not meaningful; PATH: a converted .msgpack "
                   "(its architecture is read from it) or a torchvision .pth file")  # fmt: skip


def layer_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--layer", required=True,
                   help="layer: 1-based index or name, e.g. conv3, conv4_2, layer3.1, or a graph network's module "
                   "path such as inception4a (see `deepvis layers`)")  # fmt: skip


def image_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--image", metavar="PATH", default=None,
                   help="an image file (any format Pillow reads; default: the packaged astronaut photo)")
    int_arg(p, "--size", 224, "S", "shrink the image so its shorter side is S pixels; smaller images are kept as "
            "they are (default: 224; 0 keeps every image as it is)")  # fmt: skip


def output_args(p: argparse.ArgumentParser, overwrite_help: str = "replace existing output files") -> None:
    p.add_argument("--out", default="deepvis_out", metavar="DIR", help="output folder (default: deepvis_out)")
    p.add_argument("--overwrite", action="store_true", help=overwrite_help)


def construct_args(p: argparse.ArgumentParser) -> None:
    """The feature visualizations of `atlas` and `serve`."""
    int_arg(p, "--construct-size", 128, "S", "side of the feature visualizations, pixels (default: 128)")
    int_arg(p, "--construct-steps", 256, "N", "gradient-ascent steps per feature visualization (default: 256)")


# --------------------------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------------------------


def resolve_weights(arch: str | None, weights: str) -> tuple[dv.Model, bool]:
    """(model, pretrained?) for --weights imagenet | random | PATH; `arch` None: the one a converted file records.
    A file that records random weights is not pretrained (one warning says so)."""
    if weights.strip().lower() == "random":
        warn("--weights random: an untrained network; its pictures are not meaningful "
             "(use --weights imagenet or a weights file)")  # fmt: skip
        return dv.load_model(arch or DEFAULT_MODEL, weights=None, seed=0), False
    model = dv.load_model(weights) if arch is None else dv.load_model(arch, weights=weights)
    if model.random_weights:  # a file converted from random weights records it
        warn(f"{weights} holds random (untrained) weights: its pictures are not meaningful and no classes are "
             "printed")  # fmt: skip
        return model, False
    return model, True


def _converted_file(weights: str | None) -> bool:
    """Whether --weights names a converted file (it records its architecture), not imagenet/random/a .pth."""
    if weights is None or weights.strip().lower() in ("imagenet", "random"):
        return False
    return Path(weights).suffix.lower() not in TORCH_SUFFIXES


def model_arch(args: argparse.Namespace):
    """The architecture the command works on: --model; else the one a converted --weights file records (the model
    is then loaded here, once, and kept for `load_model`); else AlexNet."""
    if args.model is not None:
        return dv.get_architecture(args.model)
    weights = getattr(args, "weights", None)
    if _converted_file(weights):
        if getattr(args, "loaded", None) is None:
            args.loaded = resolve_weights(None, weights)
        return args.loaded[0].arch
    return dv.get_architecture(DEFAULT_MODEL)


def load_model(args: argparse.Namespace) -> tuple[dv.Model, bool]:
    """(model, pretrained?) of the command's --model and --weights (see `model_arch`)."""
    if getattr(args, "loaded", None) is not None:
        return args.loaded
    args.loaded = resolve_weights(model_arch(args).name, args.weights)
    return args.loaded


def layer_and_channels(arch, layer: str) -> tuple[str, int]:
    name = dv.layer_name(arch, layer)
    return name, dv.layer_channels(arch, name)


# --------------------------------------------------------------------------------------------------------------
# Inputs and outputs
# --------------------------------------------------------------------------------------------------------------


def planned(paths: Sequence[Path], overwrite: bool) -> None:
    """Refuse, before any work, to replace files that exist (unless --overwrite)."""
    if overwrite:
        return
    for p in paths:
        if p.exists():
            raise FileExistsError(f"{p} already exists; pass --overwrite to replace it")


def save_png(image, path: Path, overwrite: bool) -> Path:
    from PIL import Image

    if not overwrite and path.exists():
        raise FileExistsError(f"{path} already exists; pass --overwrite to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    (image if isinstance(image, Image.Image) else Image.fromarray(dv.to_uint8(image))).save(path)
    return path


def load_input(path: str | None, size: int) -> tuple[np.ndarray, str]:
    """The image (file or packaged sample), shrunk to --size, and a description of it for printing."""
    image = dv.load_image(path) if path else dv.sample_image()
    h, w = image.shape[:2]
    image = dv.resize_shorter(image, size)
    what = f"{path} ({image.shape[1]}x{image.shape[0]} pixels" if path else (
        f"the packaged sample photo of a NASA astronaut ({image.shape[1]}x{image.shape[0]} pixels")
    what += f", resized from {w}x{h})" if image.shape[:2] != (h, w) else ")"
    return image, what


def top_classes(model: dv.Model, image: np.ndarray, k: int = 5) -> list[tuple[int, float]]:
    x = dv.normalize(image.astype(np.float32)[None] / 255.0)
    logits = np.asarray(dv.classify(model, x.astype(model.dtype)), dtype=np.float64)[0]
    p = np.exp(logits - logits.max())
    p /= p.sum()
    top = np.argsort(-p)[:k]
    return [(int(i), float(p[i])) for i in top]
