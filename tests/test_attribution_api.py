"""dv.attribute and dv.save_attribution on a tiny graph network (converters.from_torch) in float64: arrays (uint8,
float in [0, 1]), files and a folder in padded batches give the maps of the functional calls on the same pixels
(the predicted class when no target is given), and the PNGs hold `overlay` of those maps pixel for pixel."""

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image

import converters
import deepvis_jax as dv
from reference import as_float64

A = dv.attribution
S = 16


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    tm = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                       nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 6)).eval()  # fmt: skip
    m = converters.from_torch(tm, torch.randn(2, 3, S, S))
    with jax.enable_x64(True):
        return as_float64(m)


def _x(images_u8, dtype=jnp.float64):
    return dv.normalize(jnp.asarray(images_u8, dtype) / 255)


def test_attribute_arrays_in_padded_batches_equal_the_functional_calls(model):
    images = np.random.default_rng(0).integers(0, 256, (5, S, S, 3), dtype=np.uint8)
    x = _x(images)
    predicted = np.asarray(jnp.argmax(dv.classify(model, x), -1))
    layer = dv.layers(model)[1]
    r = dv.attribute(model, images, "grad_cam", layer=layer, batch_size=2)  # batches of 2, 2, 1 (padded)
    want = A.upsample(A.grad_cam(model, x, jnp.asarray(predicted), layer=layer), (S, S))
    np.testing.assert_allclose(r.maps, np.asarray(want), rtol=1e-12, atol=1e-12 * float(np.abs(want).max()))
    np.testing.assert_array_equal(r.target, predicted)
    np.testing.assert_array_equal(r.images, images)
    assert r.paths is None and r.maps.shape == (5, S, S)
    # float images in [0, 1], one image, a per-image target and the signed sum of an input-space method
    one = dv.attribute(model, images[3] / 255.0, "saliency", 4, reduce="sum", abs=False)
    want = A.to_map(A.saliency(model, x[3:4], 4, abs=False))
    np.testing.assert_allclose(one.maps, np.asarray(want), rtol=1e-12, atol=1e-12 * float(np.abs(want).max()))
    assert one.target.tolist() == [4]
    with pytest.raises(ValueError, match="target holds 2 values for 5 images"):
        dv.attribute(model, images, "saliency", [1, 2])
    with pytest.raises(ValueError, match="unknown method 'gradcam'"):
        dv.attribute(model, images, "gradcam", 1)
    with pytest.raises(ValueError, match="smooth_grad needs key="):
        dv.attribute(model, images, "smooth_grad", 1)


def test_attribute_a_folder_with_progress_and_save_attribution(model, tmp_path, capsys):
    rng = np.random.default_rng(1)
    (tmp_path / "in" / "sub").mkdir(parents=True)
    names = ["in/b.png", "in/a.png", "in/sub/c.png"]
    for name in names:
        Image.fromarray(rng.integers(0, 256, (S + 4, S + 9, 3), dtype=np.uint8)).save(tmp_path / name)
    r = dv.attribute(model, tmp_path / "in", "integrated_gradients", [0, 1, 2], size=S, batch_size=2, progress=True,
                     steps=4)  # fmt: skip
    assert "attribute integrated_gradients" in capsys.readouterr().err  # the tqdm bar
    assert [p.relative_to(tmp_path).as_posix() for p in r.paths] == ["in/a.png", "in/b.png", "in/sub/c.png"]
    squares = np.stack([dv._src.images.load_square(p, S) for p in r.paths])
    np.testing.assert_array_equal(r.images, squares)
    want = A.to_map(A.integrated_gradients(model, _x(squares), jnp.asarray([0, 1, 2]), steps=4)[0], "abs_sum")
    np.testing.assert_allclose(r.maps, np.asarray(want), rtol=1e-12, atol=1e-12 * float(np.abs(want).max()))

    rel = [p.relative_to(tmp_path / "in") for p in r.paths]
    paths = dv.save_attribution(tmp_path / "out", r.images, r.maps, names=rel)
    assert [p.name for p in paths] == ["a.png", "b.png", "sub_c.png"]
    for p, img, heat in zip(paths, r.images, r.maps):
        png = np.asarray(Image.open(p))
        np.testing.assert_array_equal(png[:, :S], img)
        np.testing.assert_array_equal(png[:, S : S + 8], 255)
        np.testing.assert_array_equal(png[:, S + 8 :], A.overlay(img, heat))
    one = dv.save_attribution(tmp_path / "one.png", r.images[0], r.maps[0], beside=False, cmap="viridis")
    np.testing.assert_array_equal(np.asarray(Image.open(one[0])), A.overlay(r.images[0], r.maps[0], cmap="viridis"))
    with pytest.raises(FileExistsError, match="pass overwrite=True"):
        dv.save_attribution(tmp_path / "out", r.images, r.maps, names=rel)
    with pytest.raises(ValueError, match=r"got \(3, 16, 16, 3\) and \(16, 16\)"):
        dv.save_attribution(tmp_path / "x", r.images, r.maps[0])
    with pytest.raises(FileNotFoundError, match="no such image file"):
        dv.attribute(model, [tmp_path / "in" / "a.png", tmp_path / "missing.png"], "saliency", 0, size=S)


def test_save_attribution_without_matplotlib_is_one_line(monkeypatch, tmp_path):
    """matplotlib is an optional dependency: without it, one ValueError naming the install."""
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ValueError, match=r"^attribution overlays use matplotlib's colour maps: pip install matplotlib"):
        dv.save_attribution(tmp_path / "a.png", np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4)))
    assert not (tmp_path / "a.png").exists()
