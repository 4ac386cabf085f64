"""`deepvis convert`: torchvision (needs torch) or ONNX (needs onnx) weights -> a .msgpack file.

Convert torchvision weights or an ONNX AlexNet/VGG graph to a deepvis_jax .msgpack file that loads without torch
or onnx (--weights FILE; the file records its architecture).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import deepvis_jax as dv

from ._common import MODELS, add_command, hidden_seed_arg, PROG, OnnxMissingError, import_converters, planned, warn


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = add_command(sub, common, __name__, compiles=False)
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
    hidden_seed_arg(p)
    p.add_argument("--overwrite", action="store_true", help="replace an existing file")


def _convert_onnx(args: argparse.Namespace) -> int:
    try:
        import onnx  # noqa: F401

        import converters
    except ImportError as e:
        raise OnnxMissingError(f"`{PROG} convert --from FILE.onnx` needs onnx ({e}); install it with "
                                "pip install 'deepvis_jax[onnx]'") from None  # fmt: skip
    out = Path(args.out)
    planned([out], args.overwrite)
    model = converters.from_onnx(args.source, preprocessing=args.preprocessing or "caffe", seed=args.seed)
    if args.model is not None and dv.get_architecture(args.model).name != model.arch.name:
        raise ValueError(f"{args.source} holds a {model.arch.name}, not a {dv.get_architecture(args.model).name}; "
                         f"pick --model {model.arch.name} or leave --model out")  # fmt: skip
    converters.save(model, out)
    print(f"wrote {out} ({model!r} from {args.source}, {args.preprocessing or 'caffe'} preprocessing folded "
          "into conv1)")  # fmt: skip
    if not model.classifier_trained:
        warn(f"{args.source}: the classifier is not torchvision's {model.arch.name} head, so random weights stand "
             "in for it (recorded in the file): its conv layers are real, its class predictions are not")  # fmt: skip
    return 0


def run(args: argparse.Namespace) -> int:
    if args.source.strip().lower().endswith(".onnx"):
        return _convert_onnx(args)
    if args.preprocessing is not None:
        raise ValueError("--preprocessing applies to ONNX files only (--from FILE.onnx)")
    converters, torch, torchvision = import_converters("convert")
    arch = dv.get_architecture(args.model or "alexnet")
    out = Path(args.out)
    planned([out], args.overwrite)
    source = args.source
    if source.strip().lower() == "imagenet":
        model = converters.from_state_dict(converters.imagenet_state_dict(arch.name), arch.name)
    elif source.strip().lower() == "random":
        warn("--from random: an untrained network; its pictures are not meaningful")
        torch.manual_seed(args.seed)
        model = converters.from_torchvision(torchvision.models.get_model(arch.name, weights=None))
    else:
        model = converters.load_pth(source, arch.name)
    converters.save(model, out)
    print(f"wrote {out} ({model!r} from {source})")
    return 0
