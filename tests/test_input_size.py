"""`model.input_size` (issue 30 item 2): a torch network with a flatten + linear head captured at 48 px takes
that size only; the high-level calls bring images to it (the rule of `images.square`: cover, bicubic,
center-crop), the functional core refuses another size in one line naming both sizes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn as nn

import converters
import deepvis_jax as dv
from deepvis_jax._src.images import square
from deepvis_jax._src.input_size import fit
from reference import assert_close, nchw


class Head(nn.Module):
    """Convs, a max-pool, then a flatten + linear head: the graph takes one size (48 x 48)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(4 * 24 * 24, 3)

    def forward(self, x):
        x = self.relu(self.conv2(self.pool(torch.relu(self.conv1(x)))))
        return self.fc(torch.flatten(x, 1))


@pytest.fixture(scope="module")
def head():
    torch.manual_seed(0)
    tm = Head().eval()
    return tm, converters.from_torch(tm, torch.randn(2, 3, 48, 48))


def _photo(h=256, w=256):
    return np.asarray(np.random.default_rng(0).integers(0, 256, (h, w, 3)), np.uint8)


LINE = "head was captured for 48x48 inputs only (model.input_size; e.g. a flatten + linear head); got 256x256: " \
       "resize the image to 48x48"


def test_flatten_linear_head_takes_one_size_and_the_core_refuses_others_in_one_line(head):
    tm, model = head
    assert model.input_size == (48, 48) and "input 48x48" in repr(model)
    assert dv.Model(variables={}, arch=dv.get_architecture("alexnet")).input_size is None  # hand-written
    x256 = dv.normalize(jnp.asarray(_photo(), jnp.float32) / 255)[None]
    for call in (lambda: dv.forward(model, x256, "conv2"), lambda: dv.classify(model, x256),
                 lambda: model.apply(x256, upto="conv1")):  # fmt: skip
        with pytest.raises(ValueError) as e:
            call()
        assert str(e.value) == LINE
    x48 = dv.normalize(jnp.asarray(_photo(48, 48), jnp.float32) / 255)[None]
    act, switches = dv.forward(model, x48, "conv2")  # project at the right size works, at another it cannot run
    assert dv.project(model, switches, act, "conv2").shape == (1, 48, 48, 3)
    assert_close(dv.classify(model, x48), tm(nchw(np.asarray(x48))).detach().numpy(), 1e-4)


def test_visualize_occlusion_and_construct_bring_images_to_the_input_size(head):
    _, model = head
    photo = _photo()
    r = dv.visualize(model, photo, "conv2", top_k=2)  # 256 px in: resized, then run
    want = dv.visualize(model, square(photo, 48), "conv2", top_k=2)  # the rule: `square` for a square size
    assert r.projections.shape == (2, 48, 48, 3)
    np.testing.assert_array_equal(np.asarray(r.projections), np.asarray(want.projections))
    batch = dv.visualize(model, np.stack([photo, photo[::-1]]), "conv2", top_k=2)  # the batch path
    assert batch.projections.shape == (2, 2, 48, 48, 3)
    np.testing.assert_array_equal(np.asarray(batch.projections[0]), np.asarray(want.projections))
    occ = dv.occlusion(model, photo, patch=24, stride=24)
    assert occ.rows.tolist() == occ.cols.tolist() == [0, 24]  # positions on the 48 px image
    # construct's default size is the input size; transforms that change it end with a resize back to it
    img = dv.construct(model, "conv2", [0], steps=1, param="pixel", transforms=[dv.transforms.pad(6)])
    assert img.shape == (1, 48, 48, 3)


def test_fit_is_square_for_square_sizes_and_covers_then_crops_otherwise():
    photo = _photo(40, 90)
    np.testing.assert_array_equal(fit(photo, (24, 24)), square(photo, 24))
    out = fit(photo, (20, 30))  # cover: the height needs the larger scale (0.5 vs 1/3): 20 x 45, crop 30 wide
    from PIL import Image

    ref = np.asarray(Image.fromarray(photo).resize((45, 20), Image.BICUBIC))[:, 7:37]
    np.testing.assert_array_equal(out, ref)
    f = fit(photo.astype(np.float32) / 255, (20, 30))
    assert f.dtype == np.float32 and f.shape == (20, 30, 3) and 0 <= f.min() and f.max() <= 1
    assert np.abs(f * 255 - ref).max() <= 1.0  # the same filter in float (uint8 rounds)


def test_a_jax_network_with_a_flatten_dense_head_has_an_input_size_too():
    def apply(p, x):
        y = jax.lax.conv_general_dilated(x, p["k"], (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
        y = dv.tag(jax.nn.relu(y), "conv")
        return y.reshape(y.shape[0], -1) @ p["w"]

    rng = np.random.default_rng(0)
    p = {"k": jnp.asarray(rng.standard_normal((3, 3, 3, 4)), jnp.float32),
         "w": jnp.asarray(rng.standard_normal((8 * 8 * 4, 3)), jnp.float32)}  # fmt: skip
    model = dv.from_jax(apply, p, jnp.zeros((1, 8, 8, 3)))
    assert model.input_size == (8, 8) and "input 8x8" in repr(model)
    photo = _photo(32, 40)
    r = dv.visualize(model, photo, "conv", top_k=1)
    want = dv.visualize(model, square(photo, 8), "conv", top_k=1)
    np.testing.assert_array_equal(np.asarray(r.projections), np.asarray(want.projections))
    with pytest.raises(ValueError, match=r"^apply takes 8x8 inputs only .*got 32x40: resize the image to 8x8"):
        dv.forward(model, jnp.zeros((1, 32, 40, 3)), "conv")
