"""Parity of the Flax AlexNet/VGG with torchvision: logits and every conv layer, float32 and float64."""

import jax
import numpy as np
import pytest
import torch

import converters
import deepvis_jax as dv
from deepvis_jax._src.nets import all_activations
from reference import assert_close, nchw, torch_model

ARCHS = ["alexnet", "vgg11", "vgg13", "vgg16", "vgg19", "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn"]


def _check(tm, model, x, rtol, classify=False):
    """Elementwise comparison of every conv activation and the logits; with `classify`, also dv.classify and
    converters.compare agreeing (once per architecture: they repeat the same forward passes)."""
    ref = converters.torch_activations(tm, nchw(x).to(next(tm.parameters()).dtype), model.arch)
    logits, acts = all_activations(model, x)
    for name in dv.conv_layers(model):
        assert_close(np.asarray(acts[name]).transpose(0, 3, 1, 2), ref[name].numpy(), rtol, err_msg=name)
    assert_close(logits, ref["logits"].numpy(), rtol, err_msg="logits")
    if classify:
        assert_close(dv.classify(model, x), ref["logits"].numpy(), rtol, err_msg="classify")
        diffs = converters.compare(tm, model, x)
        assert list(diffs) == [*dv.conv_layers(model), "logits"]
        assert all(d.max_rel < 10 * rtol for d in diffs.values()), diffs


@pytest.mark.parametrize("arch", ARCHS)
def test_parity_with_torchvision(arch):
    rng = np.random.default_rng(0)
    tm = torch_model(arch)
    model = converters.from_torchvision(tm)
    assert model.arch.name == arch and model.dtype == np.float32
    # 224 px (AdaptiveAvgPool2d is the identity) for one AlexNet and a VGG with and without BatchNorm; the other
    # VGGs are the same code with more layers, checked at the odd size below
    x224 = rng.standard_normal((1, 224, 224, 3), dtype=np.float32)
    if arch in ("alexnet", "vgg16", "vgg11_bn"):
        _check(tm, model, x224, 1e-5)
    # non-square, not a multiple of the pooling: exercises AdaptiveAvgPool2d with uneven (and upsampling) bins
    odd = rng.standard_normal((2, 67, 101, 3))
    _check(tm, model, odd.astype(np.float32), 1e-5, classify=True)
    with jax.enable_x64(True):
        tm64 = tm.double()
        model64 = converters.from_torchvision(tm64)
        assert model64.dtype == np.float64
        _check(tm64, model64, odd, 1e-10)
        if arch in ("alexnet", "vgg11_bn"):
            _check(tm64, model64, rng.standard_normal((1, 224, 224, 3)), 1e-10)


def test_adaptive_pool_known_answer():
    # 3 -> 2 bins: [0, 2) and [1, 3) (torch's floor/ceil bins overlap in the middle)
    x = np.arange(3.0, dtype=np.float32).reshape(1, 3, 1, 1) * np.ones((1, 1, 2, 1), np.float32)
    from deepvis_jax._src.nets.layers import adaptive_avg_pool

    y = adaptive_avg_pool(x, (2, 1))
    np.testing.assert_allclose(np.asarray(y)[0, :, 0, 0], [0.5, 1.5], rtol=1e-7)
    ref = torch.nn.AdaptiveAvgPool2d((2, 1))(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()))
    np.testing.assert_allclose(np.asarray(y).transpose(0, 3, 1, 2), ref.numpy(), rtol=1e-7)


def test_layer_names_and_indices():
    assert dv.conv_layers("alexnet") == ["conv1", "conv2", "conv3", "conv4", "conv5"]
    vgg16 = dv.conv_layers("vgg16")
    assert len(vgg16) == 13 and vgg16[0] == "conv1_1" and vgg16[-1] == "conv5_3" and vgg16[2] == "conv2_1"
    assert dv.conv_layers("vgg11")[:3] == ["conv1_1", "conv2_1", "conv3_1"]
    assert dv.layer_name("alexnet", 3) == "conv3"
    assert dv.layer_name("vgg16", "conv4_2") == dv.layer_name("vgg16", 9) == "conv4_2"
    assert dv.layer_channels("alexnet", "conv3") == 384
    for bad in (0, 6, "conv6", "fc6", True, 2.0):
        with pytest.raises(ValueError, match=r"1\.\.5.*conv1, conv2, conv3, conv4, conv5"):
            dv.layer_name("alexnet", bad)
    with pytest.raises(ValueError, match="unknown model 'densenet121'.*vgg16_bn.*resnet50"):
        dv.load_model("densenet121")


def test_normalize_known_answer():
    img = np.array([[[[0.485, 0.456, 0.406], [1.0, 0.0, 0.5]]]], np.float32)
    x = dv.normalize(img)
    np.testing.assert_allclose(x[0, 0, 0], [0, 0, 0], atol=1e-7)
    np.testing.assert_allclose(x[0, 0, 1], [(1 - 0.485) / 0.229, -0.456 / 0.224, (0.5 - 0.406) / 0.225], rtol=1e-6)
    np.testing.assert_allclose(dv.denormalize(x), img, atol=1e-6)
    with pytest.raises(TypeError, match="uint8"):
        dv.normalize(np.zeros((1, 2, 2, 3), np.uint8))


def test_random_init_is_seeded_and_shaped_like_torchvision():
    a, b, c = dv.load_model("alexnet", seed=0), dv.load_model("alexnet", seed=0), dv.load_model("alexnet", seed=1)
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.allclose(a.params["conv2"]["kernel"], c.params["conv2"]["kernel"])
    # kaiming normal, fan_out, relu gain (torchvision's VGG scheme): std sqrt(2 / (5*5*192)) for conv2
    std = float(np.std(a.params["conv2"]["kernel"]))
    assert abs(std - np.sqrt(2 / (25 * 192))) < 0.02 * np.sqrt(2 / (25 * 192))
    # a torchvision state dict converts to exactly the names and shapes of our Flax definition
    import torchvision
    from deepvis_jax._src.weights import expected_shapes

    converted = converters.from_state_dict(torchvision.models.vgg11_bn().state_dict(), "vgg11_bn")
    flat = {k: v.shape for k, v in jax.tree_util.tree_leaves_with_path(converted.variables)}
    assert len(flat) == len(expected_shapes(converted.arch)) == 8 * 2 + 8 * 4 + 3 * 2


def test_detects_architecture_from_structure_not_class_name():
    import torchvision

    class Renamed(torch.nn.Module):  # same structure, unrelated class name
        def __init__(self):
            super().__init__()
            v = torchvision.models.vgg13()
            self.features, self.avgpool, self.classifier = v.features, v.avgpool, v.classifier

    assert converters.detect_architecture(Renamed()) == "vgg13"
    assert converters.detect_architecture(torchvision.models.vgg13_bn()) == "vgg13_bn"
    with pytest.raises(ValueError, match="not an AlexNet/VGG-style"):
        converters.detect_architecture(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="match none"):
        v = torchvision.models.vgg11()
        v.features[0] = torch.nn.Conv2d(3, 32, 3, padding=1)
        converters.detect_architecture(v)
