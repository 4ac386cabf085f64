"""`deepvis check`: compare with torchvision layer by layer (needs torch).

Convert weights, run torchvision and deepvis_jax on the same image and print the per-layer differences (exit
status 1 when one exceeds --rtol).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import deepvis_jax as dv

from ._common import add_command, hidden_seed_arg, EXIT_MISMATCH, PROG, TORCH_SUFFIXES, image_arg, import_converters, load_input, model_arch
from ._common import model_arg, warn, weights_arg


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = add_command(sub, common, __name__, model_arg, weights_arg, image_arg)
    p.add_argument("--rtol", type=float, default=1e-3, help="largest relative difference accepted (default: 1e-3)")
    hidden_seed_arg(p)


def _torch_pair(args: argparse.Namespace, arch: str, converters, torch, torchvision):
    """(torchvision module, deepvis_jax model) holding the same weights."""
    w = args.weights.strip()
    if w.lower() == "random":
        warn("--weights random: comparing an untrained network (enough to check the conversion)")
        torch.manual_seed(args.seed)
        module = torchvision.models.get_model(arch, weights=None)
        return module.eval(), converters.from_torchvision(module)
    module = torchvision.models.get_model(arch, weights=None)
    if w.lower() == "imagenet":
        sd = converters.imagenet_state_dict(arch)
        model = converters.from_state_dict(sd, arch)
    else:  # a torch file (`run` refused anything else)
        model = converters.load_pth(w, arch)  # validates the file: weights_only, names, shapes, architecture
        sd = torch.load(w, map_location="cpu", weights_only=True)
        if "state_dict" in sd and isinstance(sd["state_dict"], dict):
            sd = sd["state_dict"]
        sd = {k.removeprefix("module."): v for k, v in sd.items()}
    module.load_state_dict(sd, strict=False)  # names already checked; BN's num_batches_tracked may be absent
    return module.eval(), model


def run(args: argparse.Namespace) -> int:
    converters, torch, torchvision = import_converters("check")
    w = args.weights.strip()
    if w.lower() not in ("imagenet", "random") and Path(w).suffix.lower() not in TORCH_SUFFIXES:
        raise ValueError(f"`{PROG} check` compares with torchvision and needs torch weights (.pth), not {w}")
    arch = model_arch(args)
    image, what = load_input(args.image, args.size)
    dv.check_image_size(arch, image.shape[:2])
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
