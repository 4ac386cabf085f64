"""The `deepvis` command, thin over the library: one module per subcommand, each with `register` and `run`.

    deepvis visualize --weights random --layer 3          # activation grid + DeconvNet projections as PNGs
    deepvis visualize --weights random --layer 3 --image DIR   # every image of a folder, in compiled batches
    deepvis construct --weights random --layer 3 --filter 88
    deepvis convert --model alexnet --from imagenet --out alexnet.msgpack   (needs torch)
    deepvis convert --from vgg16.onnx --preprocessing caffe --out vgg16.msgpack   (needs onnx)
    deepvis layers --model vgg16                          # or --weights FILE.msgpack: its architecture
    deepvis occlusion --weights random --layer conv5     # occlusion sensitivity maps (the paper's Fig. 7)
    deepvis attribute --method grad_cam --target 281 --layer layer4 --model resnet50   # attribution overlays
    deepvis atlas --images DIR --layer conv4 conv5 --out DIR [--construct]   # a static site over a folder
    deepvis serve --weights random                        # a local web app on http://127.0.0.1:8000/
    deepvis check --model vgg16 --weights random          (needs torch)

Every command takes its model from ``--model`` and ``--weights`` through `_common.load_model` (a converted
``--weights FILE`` records its architecture, so ``--model`` may be left out). Bad input never shows a traceback:
the library raises typed exceptions (ValueError and its subclasses WeightsError / ImageError, FileNotFoundError
and other OSErrors, WeightsUnavailableError) and `main` prints their message as one line ``deepvis: error: ...``
on stderr and exits with status 2 (argparse usage errors too). An interrupt (Ctrl-C) prints
``deepvis: interrupted`` (atlas adds that --resume continues it) and exits with 130; `check` exits with 1 when the two frameworks disagree beyond its
tolerance.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

import deepvis_jax as dv

from . import atlas, attribute, check, construct, convert, layers, occlusion, serve, visualize
from ._cache import CACHE_ENV, default_cache_dir, setup_compilation_cache
from ._common import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_MISMATCH, PROG, TorchMissingError, message

COMMANDS = (visualize, occlusion, attribute, construct, convert, layers, check, atlas, serve)  # in `deepvis --help` order


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
    for command in COMMANDS:
        command.register(sub, common)
    return parser


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
    except KeyboardInterrupt as e:  # a command may say how to continue (atlas: --resume)
        print(f"{PROG}: interrupted" + (f"; {e}" if str(e) else ""), file=sys.stderr)
        return EXIT_INTERRUPTED
    except (ValueError, OSError, TorchMissingError, dv.WeightsUnavailableError) as e:
        # WeightsError and ImageError are ValueErrors; each message already says what to do, once
        print(f"{PROG}: error: {message(e)}", file=sys.stderr)
        return EXIT_ERROR


__all__ = ["CACHE_ENV", "EXIT_ERROR", "EXIT_INTERRUPTED", "EXIT_MISMATCH", "PROG", "build_parser",
           "default_cache_dir", "main", "setup_compilation_cache"]  # fmt: skip
