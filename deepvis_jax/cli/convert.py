"""`deepvis convert`: torchvision (needs torch) or ONNX (needs onnx) weights -> a .msgpack file.

Convert torchvision weights, any torchvision classification model (--torchvision NAME: AlexNet, VGG and ResNets
become their hand-written networks, every other one a graph network captured with torch.export) or an ONNX
AlexNet/VGG graph to a deepvis_jax .msgpack file that loads without torch or onnx (--weights FILE; the file
records its architecture). --preprocessing NAME says what input the network expects (stored in the file; with
--torchvision and a NAME other than imagenet every model, AlexNet, VGG and ResNets too, becomes a graph network).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import deepvis_jax as dv

from .._src.nets import IMPORTED
from ._common import (MODELS, PROG, OnnxMissingError, add_command, at_least, hidden_seed_arg, import_converters,
                      planned, warn)


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = add_command(sub, common, __name__, compiles=False)
    p.add_argument("--model", default=None,
                   help=f"architecture: {MODELS} (default: alexnet; for an .onnx file it is recognized from the "
                   "graph, and --model, when given, must agree)")  # fmt: skip
    p.add_argument("--from", dest="source", default="imagenet", metavar="imagenet|random|PATH.pth|PATH.onnx",
                   help="imagenet: torchvision's pretrained weights (download/cache); random: seeded "
                   "untrained weights; PATH.pth: a torchvision state dict; PATH.onnx: an ONNX graph "
                   "(default: imagenet)")  # fmt: skip
    p.add_argument("--preprocessing", choices=PREPROCESSINGS, default=None,
                   help="the input the network expects: imagenet (ImageNet-normalized RGB; torchvision is the same), "
                   "caffe (BGR, 0..255, minus the BGR mean; Keras VGG), unit (RGB in [0, 1]) or minus_one_one "
                   "((x - 0.5) / 0.5); for an ONNX graph (default: caffe) and for --torchvision NAME imported as a "
                   "graph network (default: imagenet); stored in the file")
    p.add_argument("--torchvision", metavar="NAME", default=None,
                   help="any torchvision classification model by name (googlenet, mobilenet_v3_large, "
                   "convnext_tiny, ...): AlexNet, VGG and ResNets become their hand-written networks, every other "
                   "one a graph network captured with torch.export (loads with --weights FILE, no torch needed)")
    p.add_argument("--weights", default=None, metavar="random|imagenet|PATH.pth",
                   help="with --torchvision: random (seeded untrained weights), imagenet (torchvision's pretrained "
                   "weights, downloaded once; the default) or a state-dict .pth file")  # fmt: skip
    p.add_argument("--size", type=int, default=224, metavar="S",
                   help="with --torchvision: the side of the example images the graph is captured with (default: "
                   "224; the graph then takes other sizes where torch.export allows)")  # fmt: skip
    p.add_argument("--out", required=True, metavar="FILE", help="the .msgpack file to write")
    hidden_seed_arg(p)
    p.add_argument("--overwrite", action="store_true", help="replace an existing file")


PREPROCESSINGS = ("imagenet", "caffe", "unit", "minus_one_one", "torchvision")


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
    how = "applied as its first step" if isinstance(model.arch, IMPORTED) else "folded into conv1"
    print(f"wrote {out} ({model!r} from {args.source}, {args.preprocessing or 'caffe'} preprocessing {how})")
    if not model.classifier_trained:
        warn(f"{args.source}: the classifier is not torchvision's {model.arch.name} head, so random weights stand "
             "in for it (recorded in the file): its conv layers are real, its class predictions are not")  # fmt: skip
    return 0


def _progress(msg: str) -> None:
    """A stage of `convert --torchvision` on stderr (the capture takes up to a minute; stdout keeps the result)."""
    print(f"{PROG}: {msg}", file=sys.stderr, flush=True)


def _get_model(torchvision, name: str, weights):
    """torchvision's model, its FutureWarnings silenced (GoogLeNet's and Inception's about their default init:
    torchvision's business, not the user's; the init is the one the weights file or the seed fixes)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning)
        return torchvision.models.get_model(name, weights=weights)


def _convert_torchvision(args: argparse.Namespace) -> int:
    converters, torch, torchvision = import_converters("convert")
    if args.model is not None or args.source != "imagenet":
        raise ValueError("--torchvision NAME takes its weights from --weights (random, imagenet or a .pth file), "
                         "not --model or --from")  # fmt: skip
    preprocessing = "imagenet" if args.preprocessing in (None, "torchvision") else args.preprocessing
    at_least("--size", args.size)
    name = args.torchvision.strip().lower()
    known = torchvision.models.list_models(module=torchvision.models)
    if name not in known:
        raise ValueError(f"unknown torchvision classification model {args.torchvision!r}; choose one of "
                         f"torchvision.models.list_models(), e.g. googlenet, mobilenet_v3_large, convnext_tiny")
    out = Path(args.out)
    planned([out], args.overwrite)
    weights = (args.weights or "imagenet").strip()
    t0 = time.perf_counter()
    if weights.lower() == "random":
        warn("--weights random: an untrained network; its pictures are not meaningful")
        torch.manual_seed(args.seed)
        module = _get_model(torchvision, name, None)
    elif weights.lower() == "imagenet":
        from converters._torchvision import fetch_checkpoint

        fetch_checkpoint(torchvision.models.get_model_weights(name).DEFAULT, name)  # nothing printed when offline
        module = _get_model(torchvision, name, "DEFAULT")  # from the cache
    else:
        module = _get_model(torchvision, name, None)
        state = converters.read_state_dict(weights)
        try:
            module.load_state_dict(state)
        except RuntimeError as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise dv.WeightsError(f"{weights} does not hold {name} weights ({first})") from None
    _progress(f"{name} built with {weights} weights ({time.perf_counter() - t0:.1f} s); importing it "
              "(torch.export and the graph network: 5-60 s) ...")  # fmt: skip
    t0 = time.perf_counter()
    example = torch.randn(2, 3, args.size, args.size, generator=torch.Generator().manual_seed(args.seed))
    if preprocessing != "imagenet":  # a graph network (AlexNet, VGG, ResNets too: the hand-written ones take
        model = converters.from_torch(module.eval(), example, preprocessing=preprocessing)  # ImageNet input only)
    else:
        model = converters.from_torchvision(module.eval(), example_input=example)
    if weights.lower() == "random":
        model = model.replace(random_weights=True)  # recorded in the file: loading it warns, prints no classes
    _progress(f"imported ({time.perf_counter() - t0:.1f} s); writing {out}")
    converters.save(model, out)
    print(f"wrote {out} ({model!r}, {len(dv.layers(model))} layers, from torchvision's {name} with {weights} "
          "weights)")  # fmt: skip
    return 0


def run(args: argparse.Namespace) -> int:
    if args.torchvision is not None:
        return _convert_torchvision(args)
    if args.weights is not None:
        raise ValueError("--weights applies to --torchvision NAME; convert other weights with --from")
    if args.source.strip().lower().endswith(".onnx"):
        return _convert_onnx(args)
    if args.preprocessing is not None:
        raise ValueError("--preprocessing applies to ONNX files (--from FILE.onnx) and to --torchvision NAME; "
                         "the hand-written --model networks take ImageNet-normalized input")
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
        model = model.replace(random_weights=True)  # recorded in the file: loading it warns, prints no classes
    else:
        model = converters.load_pth(source, arch.name)
    converters.save(model, out)
    print(f"wrote {out} ({model!r} from {source})")
    return 0
