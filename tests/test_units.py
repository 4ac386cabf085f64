"""Single-unit projections on the receptive-field crop (`project_units`) against the whole image's projection.

The crop path replays the whole image's switches and ReLU masks on a window of the input, so in float64 it must
reproduce `project` of a one-unit signal to rounding: every layer of AlexNet, VGG16, VGG11-BN and ResNet18 (and
ResNet50's first stages), units at the corners, the edges and the centre, odd image sizes."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import deepvis_jax as dv
from deepvis_jax._src.crops import CropRecord, cone_geometry
from deepvis_jax._src.deconv import crop_geometry
from deepvis_jax._src.nets import get_architecture
from reference import as_float64, assert_close


def _units(act, n=0):
    """Corners, edge midpoints and the centre of image `n`'s map, each in its most active channel there."""
    h, w = act.shape[1:3]
    spots = [(0, 0), (0, w - 1), (h - 1, 0), (h - 1, w - 1), (h // 2, 0), (0, w // 2), (h // 2, w // 2)]
    spots = list(dict.fromkeys(spots))
    return np.array([(n, r, c, np.argmax(act[n, r, c])) for r, c in spots], np.int32)


def _whole_image(model, sw, act, units, layer, method):
    signals = np.zeros((len(units), *act.shape), act.dtype)
    for k, (n, r, c, ch) in enumerate(units):
        signals[k, n, r, c, ch] = act[n, r, c, ch]
    proj = jax.vmap(dv.project, in_axes=(None, None, 0, None, None))(model, sw, jnp.asarray(signals), layer, method)
    return np.asarray(proj)[:, 0]


def _check(model, hw, layers, methods, seed=0):
    rng = np.random.default_rng(seed)
    x = dv.normalize(jnp.asarray(rng.random((1, *hw, 3))))
    cropped = 0
    for layer in layers:
        act, sw = dv.forward(model, x, layer)
        act = np.asarray(act)
        units = _units(act)
        values = jnp.asarray(act[tuple(units.T)])
        crop_hw = crop_geometry(model, layer, hw)[0]
        cropped += crop_hw != tuple(hw)
        for method in methods:
            full = _whole_image(model, sw, act, units, layer, method)
            got = np.asarray(dv.project_units(model, sw, jnp.asarray(units), values, layer, method))
            assert got.dtype == np.float64 and got.shape == full.shape
            assert np.abs(full).reshape(len(units), -1).max(axis=1).min() > 0, f"{layer}: a zero projection"
            for k in range(len(units)):
                assert_close(got[k], full[k], 1e-12, err_msg=f"{layer} {method} unit {units[k].tolist()} "
                                                              f"crop {crop_hw} of {hw}")  # fmt: skip
    return cropped


# (arch, image size, layers also checked with guided backprop and gradient): DeconvNet on every layer; the other
# two methods differ only in the ReLU rule, whose recorded masks the crop slices like the switches
# CI runs AlexNet and ResNet-18; the VGGs (about 110 s of CI's time: VGG16 83 s) with DEEPVIS_SLOW_TESTS=1
_SLOW = pytest.mark.skipif(not os.environ.get("DEEPVIS_SLOW_TESTS"), reason="the VGG rows (about 110 s); set "
                           "DEEPVIS_SLOW_TESTS=1 to run them")  # fmt: skip
CASES = [
    ("alexnet", (227, 235), dv.conv_layers("alexnet")),
    pytest.param("vgg16", (101, 107), ("conv3_3",), marks=_SLOW),  # cones up to conv4_3 (field 92), then whole
    pytest.param("vgg11_bn", (75, 89), ("conv2_1",), marks=_SLOW),
    ("resnet18", (97, 103), ("layer1.1", "layer2.0")),
]


@pytest.mark.parametrize("arch,hw,other_methods", CASES, ids=["alexnet", "vgg16", "vgg11_bn", "resnet18"])
def test_crop_projection_equals_whole_image_every_layer(arch, hw, other_methods):
    """Every layer crops somewhere below its top at these sizes (at least half of the layers crop at the top)."""
    with jax.enable_x64(True):
        model = as_float64(dv.load_model(arch))
        layers = dv.conv_layers(model)
        cropped = _check(model, hw, layers, ("deconv",))
        assert cropped >= len(layers) // 2, f"only {cropped} of {len(layers)} layers were cropped at {hw}"
        _check(model, hw, other_methods, ("guided", "gradient"))


def test_crop_projection_deep_layers_at_224():
    """VGG16 conv5_3 (its 196-pixel cone in 224) and ResNet50's first two stages."""
    with jax.enable_x64(True):
        assert _check(as_float64(dv.load_model("vgg16")), (224, 224), ["conv5_3"], ("deconv",)) == 1
        assert _check(as_float64(dv.load_model("resnet50")), (99, 107), ["layer1.0", "layer2.1"], ("deconv",)) == 2


def test_cones_shrink_layer_by_layer():
    """AlexNet's and VGG's units are projected on cones where their field fits the image: each map exactly the
    positions the unit depends on (hand-computed for AlexNet conv5: its 1x1 reads 3x3 of conv4, 5x5 of conv3, 7x7
    after pool2, 15x15 of conv2, 19x19 after pool1, 39x39 of conv1, the 163-pixel field). A larger field, and the
    ResNets, keep boxes (field + stride - 1)."""
    model = dv.load_model("alexnet")
    assert crop_geometry(model, "conv5", (224, 224)) == ((163, 163), 163, 16, -66)
    record = CropRecord(cone_geometry(model.arch, "conv5", (224, 224)), jnp.asarray([-66, 94]), cone=True)
    model.apply(jnp.zeros((1, 163, 163, 3)), upto="conv5", ops=record)
    got = record.switches((163, 163))
    assert [m.shape[1:3] for m in got.relus] == [(39, 39), (15, 15), (5, 5), (3, 3), (1, 1)]
    assert [p.in_hw for p in got.pools] == [(39, 39), (15, 15)]
    vgg = dv.Model({}, get_architecture("vgg16"))  # the geometry needs no weights
    assert crop_geometry(vgg, "conv3_3", (224, 224))[0] == (40, 40)
    assert crop_geometry(vgg, "conv5_3", (200, 224))[0] == (196, 196)
    assert crop_geometry(vgg, "conv5_3", (190, 224))[0] == (190, 196 + 16 - 1)  # field 196 > 190: a box
    resnet = dv.Model({}, get_architecture("resnet18"))
    assert crop_geometry(resnet, "layer2.0", (224, 224))[0] == (67 + 8 - 1, 67 + 8 - 1)


def test_crop_to_field_is_the_field_window_of_the_whole_projection():
    """Each tile is the unit's receptive-field window of the whole-image projection, zero outside the image."""
    with jax.enable_x64(True):
        model = as_float64(dv.load_model("alexnet"))
        hw = (131, 147)
        x = dv.normalize(jnp.asarray(np.random.default_rng(3).random((2, *hw, 3))))
        act, sw = dv.forward(model, x, "conv3")
        act = np.asarray(act)
        spots = [(0, 0, 0), (1, 3, 4), (1, act.shape[1] - 1, act.shape[2] - 1)]
        units = np.array([(n, r, c, np.argmax(act[n, r, c])) for n, r, c in spots], np.int32)
        values = jnp.asarray(act[tuple(units.T)])
        tiles = np.asarray(dv.project_units(model, sw, jnp.asarray(units), values, "conv3", crop_to_field=True))
        full = np.asarray(dv.project_units(model, sw, jnp.asarray(units), values, "conv3"))
        size, stride, offset = dv.receptive_field(model, "conv3")
        assert tiles.shape == (3, size, size, 3)
        pad = size
        for k, (n, r, c, ch) in enumerate(units):
            padded = np.pad(full[k], ((pad, pad), (pad, pad), (0, 0)))
            t, l = offset + stride * r + pad, offset + stride * c + pad
            np.testing.assert_array_equal(tiles[k], padded[t : t + size, l : l + size])
            assert np.abs(tiles[k]).max() > 0


def test_float32_crop_projection_matches_whole_image():
    """Float32, the same recorded switches for both paths (no decision can differ): elementwise 1e-5."""
    model = dv.load_model("vgg16")
    hw = (96, 104)
    x = dv.normalize(jnp.asarray(np.random.default_rng(5).random((1, *hw, 3)), jnp.float32))
    for layer in ("conv2_2", "conv3_3"):
        act, sw = dv.forward(model, x, layer)
        act = np.asarray(act)
        units = _units(act)
        got = dv.project_units(model, sw, jnp.asarray(units), jnp.asarray(act[tuple(units.T)]), layer)
        assert got.dtype == jnp.float32
        full = _whole_image(model, sw, act, units, layer, "deconv")
        for k in range(len(units)):
            assert_close(got[k], full[k], 1e-5, err_msg=f"{layer} unit {units[k].tolist()}")


def test_visualize_max_mode_is_the_crop_path():
    """visualize(mode="max") projects each top channel's peak unit on its crop: equal to project_units."""
    with jax.enable_x64(True):
        model = as_float64(dv.load_model("alexnet"))
        image = np.random.default_rng(7).random((150, 171, 3))
        r = dv.visualize(model, image, "conv4", top_k=5, method="guided")
        act, sw = dv.forward(model, dv.normalize(jnp.asarray(image))[None], "conv4")
        a = np.asarray(act[0])
        units = []
        for c in np.asarray(r.channels):
            i, j = np.unravel_index(np.argmax(a[:, :, c]), a.shape[:2])
            units.append((0, i, j, c))
        units = np.array(units, np.int32)
        full = _whole_image(model, sw, np.asarray(act), units, "conv4", "guided")
        for k in range(len(units)):
            assert_close(r.projections[k], full[k], 1e-12, err_msg=f"channel {units[k, 3]}")


def test_bad_units_raise():
    model = dv.load_model("alexnet")
    x = dv.normalize(jnp.zeros((1, 67, 67, 3)))
    _, sw = dv.forward(model, x, "conv2")
    with pytest.raises(ValueError, match=r"units must be shaped \(K, 4\)"):
        dv.project_units(model, sw, jnp.zeros((3,), jnp.int32), jnp.zeros((3,)), "conv2")
    with pytest.raises(ValueError, match=r"values must be shaped \(2,\)"):
        dv.project_units(model, sw, jnp.zeros((2, 4), jnp.int32), jnp.zeros((3,)), "conv2")
    with pytest.raises(ValueError, match="method"):
        dv.project_units(model, sw, jnp.zeros((2, 4), jnp.int32), jnp.zeros((2,)), "conv2", method="lrp")


@pytest.mark.parametrize("arch,layer,hw", [("alexnet", "conv5", (227, 235)), ("vgg11_bn", "conv3_2", (75, 89)),
                                           ("resnet18", "layer2.0", (97, 103))])  # fmt: skip
@pytest.mark.parametrize("method", ["deconv", "guided"])
def test_crop_forward_from_the_images_equals_whole_image(arch, layer, hw, method):
    """`project_units` given the images: the crop's own forward pass records the switches and masks inside the
    field (padded pools reading -inf outside the map, as ResNet's stem pool does), equal to the whole image's."""
    with jax.enable_x64(True):
        model = as_float64(dv.load_model(arch))
        x = dv.normalize(jnp.asarray(np.random.default_rng(11).random((2, *hw, 3))))
        act, sw = dv.forward(model, x, layer)
        act = np.asarray(act)
        units = np.concatenate([_units(act, 0), _units(act, 1)])
        values = jnp.asarray(act[tuple(units.T)])
        assert crop_geometry(model, layer, hw)[0] != hw
        for crop in (False, True):
            got = dv.project_units(model, x, jnp.asarray(units), values, layer, method, crop_to_field=crop)
            want = dv.project_units(model, sw, jnp.asarray(units), values, layer, method, crop_to_field=crop)
            assert np.abs(np.asarray(want)).reshape(len(units), -1).max(axis=1).min() > 0
            assert_close(got, want, 1e-12, err_msg=f"{arch} {layer} {method} crop_to_field={crop}")
