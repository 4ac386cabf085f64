"""The PyTorch reference script for the cold-start benchmark: what `deepvis visualize --layer 3` does, written the
PyTorch way (torchvision AlexNet, per-channel DeconvNet backward passes, PNGs with Pillow).

    python -m benchmarks.torch_visualize OUT_DIR [IMAGE [WEIGHTS.pt]]

IMAGE defaults to the packaged astronaut photo (resized to 224 x 224), WEIGHTS (a state dict) to torchvision's
random init with seed 0. It prints the top channels and their strongest activations (the lines
`bench_coldstart` compares with deepvis's).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
import torchvision
from PIL import Image

from benchmarks._deconv_torch import top_k_projections
from converters import backward_features


def main(out: str, image: str | None = None, weights: str | None = None) -> None:
    torch.manual_seed(0)
    model = torchvision.models.alexnet(weights=None).eval()
    if weights is not None:
        model.load_state_dict(torch.load(weights, weights_only=True))
    src = image or Path(__file__).resolve().parents[1] / "deepvis_jax" / "data" / "astronaut.jpg"
    img = np.asarray(Image.open(src).convert("RGB").resize((224, 224)), np.float32) / 255
    mean, std = np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32)
    x = torch.from_numpy(((img - mean) / std).transpose(2, 0, 1)[None].copy())
    feats = backward_features(model, "conv3")
    with torch.no_grad():
        act = feats(x)[0]
    channels, projections = top_k_projections(feats, x, 9)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    grid = act.numpy()
    grid = (255 * grid / max(grid.max(), 1e-12)).astype(np.uint8)
    Image.fromarray(np.concatenate(list(grid[:64]), axis=1)).save(out_dir / "activations.png")
    p = projections.numpy().transpose(0, 2, 3, 1)
    p = np.clip(p / (2 * np.abs(p).max() + 1e-12) + 0.5, 0, 1)
    Image.fromarray((255 * np.concatenate(list(p), axis=1)).astype(np.uint8)).save(out_dir / "projections.png")
    print("top channels:", channels.tolist())
    print("scores:", act.amax(dim=(1, 2))[channels].tolist())


if __name__ == "__main__":
    main(*sys.argv[1:4])
