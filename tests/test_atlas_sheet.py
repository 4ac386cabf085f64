"""A channel's sheet says which grid is which (issue 33 item 21): the projections under "<method> projections",
the image patches under "image patches", each grid where the label says."""

import numpy as np

import deepvis_jax as dv
from deepvis_jax._src.atlas_render import GAP, channel_sheet
from deepvis_jax._src.render import LABEL_H


def _atlas(k=4, r=16):
    rng = np.random.default_rng(0)
    return dv.Atlas(layer="conv1", values=np.ones((2, k)), image_index=np.zeros((2, k), int),
                    position=np.zeros((2, k, 2), int), boxes=np.zeros((2, k, 4), int), num_images=k,
                    receptive_field=dv.ReceptiveField(r, 4, 0), image_shape=(32, 32, 3), channels=np.asarray([1]),
                    projections=rng.normal(size=(1, k, r, r, 3)).astype(np.float32),
                    patches=np.full((1, k, r, r, 3), 200, np.uint8))  # fmt: skip


def test_channel_sheet_labels_its_two_grids():
    sheet = channel_sheet(_atlas(), 0, "guided backprop")
    tile, cols = 64, 2  # 16 px fields enlarged 4x to at least 64 px; 4 tiles in 2 columns
    grid_w = cols * tile + GAP
    assert sheet.shape == (LABEL_H + 2 * tile + GAP, 2 * grid_w + 4 * GAP, 3)
    strip = sheet[:LABEL_H]
    left, right = strip[:, :grid_w], strip[:, grid_w + 4 * GAP :]
    assert (left < 100).any() and (right < 100).any()  # dark text above each grid
    x0 = grid_w + 4 * GAP
    assert (sheet[LABEL_H : LABEL_H + tile, x0 : x0 + tile] == 200).all()  # the first patch, right, under its label
    # the label's text is the method's: a different method draws a different strip
    assert not np.array_equal(strip, channel_sheet(_atlas(), 0, "DeconvNet")[:LABEL_H])
