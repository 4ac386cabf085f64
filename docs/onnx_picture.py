"""Rebuild docs/onnx_text_detector.png: PaddleOCR's trained PP-OCRv4 text detector (an ONNX graph that
rapidocr-onnxruntime ships, weights in Constant nodes) imported with converters.from_onnx, at work on a photo with
text: its text-probability map, what two of its layers respond to, and which pixels made one detection (the
strongest unsaturated unit of the "output" map projected by the three methods).

    python docs/onnx_picture.py docs/onnx_text_detector.png
"""

import importlib.util
import sys
from importlib import resources

import numpy as np
from PIL import Image, ImageDraw, ImageFont

import converters
import deepvis_jax as dv
from deepvis_jax._src.render import contact_sheet, display_normalize

H, W = 128, 256
# rapidocr reads images with OpenCV (BGR) and feeds the detector (x / 255 - 0.5) / 0.5 (its config.yaml)
PREPROCESSING = {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "scale": 1, "channels": "BGR"}


def photo(seed: int = 0) -> np.ndarray:
    """(H, W, 3) in [0, 1]: two lines of dark text and a grey box on a noisy, shaded background."""
    rng = np.random.default_rng(seed)
    shade = np.linspace(0.95, 0.7, W)[None, :, None]
    bg = np.clip(shade + 0.06 * rng.normal(size=(H, W, 3)), 0, 1)
    img = Image.fromarray((bg * 255).astype(np.uint8))
    d = ImageDraw.Draw(img)
    d.rectangle((180, 70, 240, 115), fill=(120, 130, 140))
    d.text((12, 18), "OPEN 24 HOURS", fill=(25, 25, 40), font=ImageFont.load_default(size=22))
    d.text((14, 72), "deepvis_jax", fill=(90, 20, 20), font=ImageFont.load_default(size=20))
    return np.asarray(img, np.float32) / 255.0


def main(out: str) -> None:
    if importlib.util.find_spec("rapidocr_onnxruntime") is None:
        sys.exit("needs rapidocr-onnxruntime (pip install -e '.[dev]')")
    path = resources.files("rapidocr_onnxruntime") / "models" / "ch_PP-OCRv4_det_infer.onnx"
    model = converters.from_onnx(str(path), preprocessing=PREPROCESSING, input_size=(H, W), name="PP-OCRv4 det")
    x01 = photo()
    xn = dv.normalize(x01[None])
    cells, labels = [x01], ["photo"]
    act, _ = dv.forward(model, xn, "output")
    act = np.asarray(act)
    cells.append(np.repeat(act[0], 3, axis=-1))
    labels.append("output: text probability")
    for layer in ("hardswish_61", "conv2d_458"):
        layer = layer if layer in dv.layers(model) else dv.layers(model)[len(dv.layers(model)) // 2]
        r = dv.visualize(model, x01, layer, top_k=1)
        cells.append(display_normalize(np.asarray(r.projections[0])))
        labels.append(f"{layer} ch {int(r.channels[0])} (deconv)")
    n, y, x, c = np.unravel_index(np.argmax(np.where(act < 0.99, act, -1)), act.shape)
    for method in ("deconv", "guided", "gradient"):
        p = np.asarray(dv.project_units(model, xn, np.asarray([[n, y, x, c]]), act[n, y, x, c][None], "output",
                                        method))[0]  # fmt: skip
        img = display_normalize(p)
        img = np.asarray(img, np.float32).copy()
        img[max(y - 2, 0) : y + 3, max(x - 2, 0) : x + 3] = (1.0, 0.1, 0.1)  # the detection's unit
        cells.append(img)
        labels.append(f"output ({y}, {x}) p={act[n, y, x, c]:.2f}: {method}")
    sheet = contact_sheet(np.stack([np.asarray(c, np.float32) for c in cells]), labels, ncols=4, min_cell=H)
    sheet = sheet.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)  # < 300 KB: the noise
    sheet.save(out, optimize=True)
    print("wrote", out, sheet.size)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "onnx_text_detector.png")
