"""Rendering: sizes as documented, labels drawn, display normalization by hand, files written, no overwrite."""

import math

import numpy as np
import pytest
from PIL import Image

import deepvis_jax as dv
from deepvis_jax._src.render import LABEL_H, PAD, display_normalize


def _load(path):
    with Image.open(path) as img:
        return img.copy()


def _dark_pixels(img, box):
    return int((np.asarray(img.crop(box).convert("L")) < 128).sum())


def test_activation_grid_layout_and_labels():
    rng = np.random.default_rng(0)
    a = rng.random((6, 5, 10)).astype(np.float32)
    a[:, :, 3] = 0.0  # a dead channel renders black, not NaN
    img = dv.activation_grid(a, min_cell=24)
    cols, rows = math.ceil(math.sqrt(10)), math.ceil(10 / math.ceil(math.sqrt(10)))  # 4 x 3 cells
    ch, cw = 30, 25  # 6x5 upscaled by 5 so the smaller side is >= 24
    assert img.size == (cols * (cw + PAD) + PAD, rows * (ch + LABEL_H + PAD) + PAD)
    px = np.asarray(img)
    # cell of channel 6 (row 1, col 2): its brightest unit is white, the map is each channel's own scale
    x0, y0 = PAD + 2 * (cw + PAD), PAD + 1 * (ch + LABEL_H + PAD) + LABEL_H
    cell = px[y0 : y0 + ch, x0 : x0 + cw, 0]
    i, j = np.unravel_index(np.argmax(a[:, :, 6]), (6, 5))
    assert cell[i * 5, j * 5] == 255
    np.testing.assert_array_equal(cell[::5, ::5], (a[:, :, 6] / a[:, :, 6].max() * 255 + 0.5).astype(np.uint8))
    y3, x3 = PAD + LABEL_H, PAD + 3 * (cw + PAD)
    assert (px[y3 : y3 + ch, x3 : x3 + cw] == 0).all()
    # every label strip holds text (dark pixels on white); the unused 11th/12th slots hold none
    for c in range(12):
        r, k = divmod(c, cols)
        x, y = PAD + k * (cw + PAD), PAD + r * (ch + LABEL_H + PAD)
        box = (x, y, x + cw, y + LABEL_H)
        assert (_dark_pixels(img, box) > 0) == (c < 10), c


def test_display_normalize_known_answer():
    x = np.linspace(-1.0, 1.0, 300).reshape(10, 10, 3)
    x.flat[0], x.flat[1] = 100.0, -50.0  # outliers beyond the 98th percentile of |x| clip to white / black
    t = np.percentile(np.abs(x), 98)
    assert 0.9 < t < 1.0
    d = display_normalize(x)
    np.testing.assert_allclose(d.flat[:2], [1.0, 0.0])
    np.testing.assert_allclose(d.flat[2:], 0.5 + 0.5 * np.clip(x.flat[2:] / t, -1, 1))
    assert d.flat[-1] == 1.0 and d.flat[150] == pytest.approx(0.5 + 0.5 * x.flat[150] / t)
    np.testing.assert_array_equal(display_normalize(np.zeros((4, 4, 3))), 0.5)
    sparse = np.zeros((10, 10, 3))
    sparse.flat[:2] = [2.0, -1.0]  # percentile is 0: falls back to the maximum
    np.testing.assert_allclose(display_normalize(sparse).flat[:3], [1.0, 0.25, 0.5])


def test_projection_sheet_and_contact_sheet_sizes():
    rng = np.random.default_rng(0)
    p = rng.standard_normal((3, 32, 40, 3))
    sheet = dv.projection_sheet(p, [5, 17, 2], min_cell=64)
    assert sheet.size == (3 * (80 + PAD) + PAD, 64 + LABEL_H + 2 * PAD)
    with_input = dv.projection_sheet(p, np.array([5, 17, 2]), image=np.full((32, 40, 3), 255, np.uint8), min_cell=64)
    assert with_input.size == (4 * (80 + PAD) + PAD, 64 + LABEL_H + 2 * PAD)
    first = np.asarray(with_input)[PAD + LABEL_H : PAD + LABEL_H + 64, PAD : PAD + 80]
    assert (first == 255).all()  # the input image comes first, unchanged
    with pytest.raises(ValueError, match="K channels"):
        dv.projection_sheet(p, [1, 2])
    cs = dv.contact_sheet(rng.random((5, 20, 20, 3)), ["a", "b", "c", "d", "e"], min_cell=40)
    assert cs.size == (3 * (40 + PAD) + PAD, 2 * (40 + LABEL_H + PAD) + PAD)
    assert np.asarray(cs).std() > 10


def test_save_result_writes_pngs_and_refuses_to_overwrite(tmp_path):
    model = dv.load_model("alexnet", seed=0)
    image = np.random.default_rng(0).integers(0, 256, (67, 67, 3), dtype=np.uint8)
    r = dv.visualize(model, image, "conv2", top_k=4)
    out = tmp_path / "new" / "dir"
    paths = dv.save_result(r, out, image=image)
    assert [p.name for p in paths] == ["conv2_activations.png", "conv2_projections.png"]
    grid, sheet = (_load(p) for p in paths)
    assert grid.size == dv.activation_grid(np.asarray(r.activations)).size
    cols = math.ceil(math.sqrt(192))
    assert grid.size[0] == cols * (49 + PAD) + PAD  # 7x7 maps upscaled to 49
    assert sheet.size[0] == 5 * (134 + PAD) + PAD  # the input and 4 projections, 67 px upscaled x2 to >= 96
    assert np.asarray(sheet).std() > 10 and np.asarray(grid).std() > 10  # not blank
    with pytest.raises(FileExistsError, match="conv2_activations.png"):
        dv.save_result(r, out)
    assert dv.save_result(r, out, overwrite=True) == paths
    v = dv.Visualizer(model)
    with pytest.raises(RuntimeError, match="visualize"):
        v.save(tmp_path)
    r2 = v.visualize(image, 2, top_k=4)
    np.testing.assert_array_equal(r2.projections, r.projections)
    assert [p.name for p in v.save(tmp_path / "v")] == [p.name for p in paths]
    assert set(v.figures()) == {"activations", "projections"}


def test_one_rounding_rule_half_to_even_everywhere():
    """Smell 6: every picture rounds a [0, 1] value to a grey level as `dv.to_uint8` does (np.rint: half to even),
    the rule of images, the atlas and the explorer: values that fall exactly halfway, k + 0.5 grey levels, go to
    the even neighbour (half up would give k + 1 for every k)."""
    from deepvis_jax._src.atlas_render import projection_to_uint8

    ks = [k for k in range(255) if (k + 0.5) / 255.0 * 255.0 == k + 0.5]
    assert len(ks) > 100
    v = np.array([(k + 0.5) / 255.0 for k in ks])
    want = np.array([k + (k % 2) for k in ks])  # rint: the even neighbour (half up: k + 1)
    np.testing.assert_array_equal(dv.to_uint8(v), want)
    img = np.repeat(np.resize(v, 16 * 16).reshape(16, 16)[..., None], 3, axis=2)
    sheet = np.asarray(dv.contact_sheet(img[None], ["x"], min_cell=16))
    np.testing.assert_array_equal(sheet[PAD + LABEL_H : PAD + LABEL_H + 16, PAD : PAD + 16], dv.to_uint8(img))
    grid = np.asarray(dv.activation_grid(img[:, :, :1], min_cell=16, scale="global"))
    top = img[:, :, 0].max()
    cell = grid[PAD + LABEL_H : PAD + LABEL_H + 16, PAD : PAD + 16, 0]
    np.testing.assert_array_equal(cell, dv.to_uint8(img[:, :, 0] / top))  # stretched to its maximum
    row = dv.summary_row(img, np.zeros((1, 16, 16, 3)), [0], cell=16)
    np.testing.assert_array_equal(row[0], dv.to_uint8(img))
    p = np.linspace(-1, 1, 16 * 16 * 3).reshape(16, 16, 3)
    np.testing.assert_array_equal(projection_to_uint8(p), dv.to_uint8(display_normalize(p)))
    assert dv.to_uint8(np.array([-0.2, 1.7])).tolist() == [0, 255]
    u = np.arange(256, dtype=np.uint8)
    assert dv.to_uint8(u) is u  # uint8 is already an image


def test_contact_sheet_captions_fit_their_cells():
    """A caption wider than its cell (48 px) is fitted inside it (smaller type, or two lines): before, it ran past
    the cell and was cut at the sheet's edge, so "filter 200" read as "filter 20"."""
    images = np.random.default_rng(0).random((4, 16, 16, 3))
    labels = ["filter 200", "filter 20", "conv5_3 filter 511", "features.denseblock2.denselayer16 filter 1023"]
    img = dv.contact_sheet(images, labels, ncols=4, min_cell=48)
    cw = ch = 48
    assert img.size == (4 * (cw + PAD) + PAD, ch + LABEL_H + 2 * PAD)
    px = (np.asarray(img.convert("L")) < 128)[PAD : PAD + LABEL_H]  # the label strips' dark pixels
    strips = []
    for k in range(4):
        x0 = PAD + k * (cw + PAD)
        inside, gap = px[:, x0 : x0 + cw], px[:, x0 + cw : x0 + cw + PAD]
        assert inside.sum() > 20 and not gap.any(), (labels[k], inside.sum(), gap.sum())
        strips.append(inside)
    assert (strips[0] != strips[1]).any()  # "filter 200" is not cut to "filter 20"
