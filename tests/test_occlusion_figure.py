"""occlusion_figure: layout, the nearest-position mapping of the maps onto the image, colours and legend."""

import numpy as np
import pytest

import deepvis_jax as dv
from deepvis_jax._src import render_occlusion as render
from deepvis_jax._src.render import LABEL_H, PAD


def _result(**kw):
    rows = cols = np.array([0, 8, 16])
    feature = np.zeros((3, 3))
    feature[0, 0] = 5.0  # hottest where the top-left square sits
    prob = np.linspace(0.1, 0.9, 9).reshape(3, 3)
    top = np.array([[7, 7, 7], [7, 3, 3], [7, 7, 42]])
    base = dict(feature=feature, probability=prob, top_class=top, rows=rows, cols=cols, layer="conv2", channel=4,
                target=7, patch=16, baseline_feature=1.0, baseline_probability=0.5)  # fmt: skip
    base.update(kw)
    return dv.OcclusionResult(**base)


def test_occlusion_figure_layout_and_pixels():
    image = np.full((32, 32, 3), 100, np.uint8)
    r = _result()
    fig = dv.occlusion_figure(image, r, min_cell=64, alpha=1.0)
    cell = 64
    grid_h = cell + LABEL_H + 2 * PAD
    assert fig.size[0] == 4 * (cell + PAD) + PAD
    assert fig.size[1] > grid_h  # the legend strip below
    a = np.asarray(fig)
    assert a.std() > 10

    def panel(k):  # panel k at image resolution (64 px = 32 px upscaled x2, nearest)
        x0, y0 = PAD + k * (cell + PAD), PAD + LABEL_H
        return a[y0 : y0 + cell : 2, x0 : x0 + cell : 2]

    # (a): the pixel nearest the first square's centre (7.5, 7.5) is the hottest colour, the others the coldest
    hot, cold = dv.to_uint8(render.heat(1.0)), dv.to_uint8(render.heat(0.0))
    np.testing.assert_array_equal(panel(1)[7, 7], hot)
    np.testing.assert_array_equal(panel(1)[0, 0], hot)
    np.testing.assert_array_equal(panel(1)[12, 12], cold)  # nearer (15.5, 15.5): position (1, 1)
    np.testing.assert_array_equal(panel(1)[31, 31], cold)
    # (b): min..max stretch; bottom-right is p = 0.9, the maximum
    np.testing.assert_array_equal(panel(2)[31, 31], hot)
    np.testing.assert_array_equal(panel(2)[0, 0], cold)
    # (c): class 7 is most frequent -> first palette colour, class 3 second, class 42 third
    np.testing.assert_array_equal(panel(3)[0, 0], render._PALETTE[0])
    np.testing.assert_array_equal(panel(3)[16, 16], render._PALETTE[1])
    np.testing.assert_array_equal(panel(3)[31, 31], render._PALETTE[2])
    # the legend holds one swatch per class that occurs, in the palette's colours
    legend = a[grid_h:]
    for k in range(3):
        assert (legend == render._PALETTE[k]).all(axis=-1).any(), k
    assert not (legend == render._PALETTE[3]).all(axis=-1).any()


def test_occlusion_figure_with_alpha_blends_and_checks_sizes():
    image = np.zeros((32, 32, 3), np.float32)
    fig = dv.occlusion_figure(image, _result(), min_cell=32, alpha=0.5)
    a = np.asarray(fig)
    x0 = PAD + 3 * (32 + PAD)
    np.testing.assert_array_equal(a[PAD + LABEL_H, x0], dv.to_uint8(render._PALETTE[0] / 255.0 * 0.5))
    with pytest.raises(ValueError, match="do not fit"):
        dv.occlusion_figure(np.zeros((20, 20, 3)), _result())
    with pytest.raises(ValueError, match="shaped"):
        dv.occlusion_figure(image, _result(feature=np.zeros((2, 3))))


def test_class_labels_fall_back_to_indices():
    labels = render.class_labels(10)
    assert labels == [str(i) for i in range(10)]  # the packaged file has 1000 names
    assert render.class_labels(1000)[281] == "281 tabby"


def test_figure_of_a_real_occlusion_result():
    model = dv.load_model("alexnet", seed=0)
    img = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    r = dv.occlusion(model, img, patch=24, stride=20, layer="conv2")
    fig = dv.occlusion_figure(img, r)  # 64 px upscaled x4 to >= 224
    assert fig.size[0] == 4 * (256 + PAD) + PAD and np.asarray(fig).std() > 10


def test_public_names():
    from deepvis_jax._src.occlusion import OcclusionResult, occlusion

    assert dv.occlusion is occlusion and dv.OcclusionResult is OcclusionResult
    assert dv.occlusion_figure is render.occlusion_figure
