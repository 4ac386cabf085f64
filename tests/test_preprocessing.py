"""`preprocessing=` on graph networks (issue 30 item 1): a torch module that expects its own input statistics,
imported with `converters.from_torch(..., preprocessing=P)`, takes the library's one input (ImageNet-normalized RGB,
NHWC) and equals the torch module on ``P(x01)`` (float64, 1e-9), at the image borders too (the images' borders
are far from the mean colour, so folding P into a zero-padded convolution would differ there); a saved file keeps
it; old graph files (format 1) still read as "imagenet"."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn as nn

import converters
import deepvis_jax as dv
from deepvis_jax import cli
from deepvis_jax._src.nets.graph import from_json, to_json
from reference import as_float64, assert_close, nchw, nhwc, torch_hooks

DICT = {"mean": [120.0, 110.0, 100.0], "std": [60.0, 55.0, 50.0], "scale": 255, "channels": "BGR"}


def reference_preprocessing(x01: np.ndarray, p) -> np.ndarray:
    """P(x01) written out by hand (NHWC, float64): what each preset means, independently of the library."""
    if p == "imagenet":
        return (x01 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    if p == "caffe":
        return x01[..., ::-1] * 255 - np.array([103.939, 116.779, 123.68])
    if p == "unit":
        return x01
    if p == "minus_one_one":
        return (x01 - 0.5) / 0.5
    return (x01[..., ::-1] * 255 - np.array(DICT["mean"])) / np.array(DICT["std"])  # mean/std in BGR order


class Tiny(nn.Module):
    """A few zero-padded convs (the padding is where a folded preprocessing would be wrong) and a linear head."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 6, 3, stride=2, padding=1)
        self.relu = nn.ReLU()
        self.head = nn.Linear(6, 5)

    def forward(self, x):
        x = self.relu(self.conv2(torch.relu(self.conv1(x))))
        return self.head(x.mean((2, 3)))


def _images() -> np.ndarray:
    """Two images in [0, 1]: random, and one with a white border ring and black corners (far from any mean)."""
    x = np.random.default_rng(0).uniform(size=(2, 14, 12, 3))
    x[1, 0, :], x[1, -1, :], x[1, :, 0], x[1, :, -1] = 1.0, 1.0, 1.0, 1.0
    x[1, 0, 0] = x[1, -1, -1] = 0.0
    return x


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return Tiny().eval()


@pytest.mark.parametrize("p", ["imagenet", "caffe", "unit", "minus_one_one", "dict"])
def test_model_on_normalized_input_equals_torch_on_preprocessed_float64(tiny, p, tmp_path):
    pre = DICT if p == "dict" else p
    model = converters.from_torch(tiny, torch.randn(2, 3, 16, 16), preprocessing=pre)
    want_name = ("mean=[120.0, 110.0, 100.0] std=[60.0, 55.0, 50.0] scale=255 channels=BGR" if p == "dict" else p)
    assert model.preprocessing == want_name
    assert (f"preprocessing {want_name}" in repr(model)) == (p != "imagenet")
    path = converters.save(model, tmp_path / "tiny.msgpack")
    reloaded = dv.load_model(path)
    assert reloaded.preprocessing == want_name and reloaded.arch == model.arch
    x01 = _images()
    with jax.enable_x64(True):
        tm = Tiny().double().eval()
        tm.load_state_dict(tiny.state_dict())
        ref = torch_hooks(tm, reference_preprocessing(x01, p), ["conv1"])
        x = dv.normalize(jnp.asarray(x01))
        for m in (as_float64(model), as_float64(reloaded)):
            assert_close(m.apply(x), ref["logits"].numpy(), 1e-9, elementwise=1e-9, err_msg=f"{p} logits")
            assert_close(dv.classify(m, x), ref["logits"].numpy(), 1e-9, elementwise=1e-9, err_msg=f"{p} classify")
            # the first conv's map, border units included: its zero padding is in the preprocessed space
            assert_close(m.apply(x, upto="conv1"), nhwc(ref["conv1"]), 1e-9, elementwise=1e-9, err_msg=f"{p} conv1")


def test_unit_projections_on_crops_past_the_border_equal_the_whole_image(tiny):
    """`project_units` on a crop reaching past the image (a corner unit): the crop outside the image is zero in
    the preprocessed space, as the whole image's zero padding is (float64, 1e-12)."""
    model = converters.from_torch(tiny, torch.randn(2, 3, 16, 16), preprocessing="caffe")
    with jax.enable_x64(True):
        m64 = as_float64(model)
        x = dv.normalize(jnp.asarray(_images()[1:]))
        act, sw = dv.forward(m64, x, "relu")
        a = np.asarray(act)
        assert dv._src.deconv.crop_geometry(m64, "relu", (14, 12))[0] != (14, 12)  # a crop, not the image
        for r, c in [(0, 0), (a.shape[1] - 1, a.shape[2] - 1)]:
            ch = int(np.argmax(a[0, r, c]))
            signal = np.zeros(a.shape)
            signal[0, r, c, ch] = a[0, r, c, ch]
            whole = dv.project(m64, sw, jnp.asarray(signal), "relu", "deconv")[0]
            got = dv.project_units(m64, x, jnp.asarray([(0, r, c, ch)], jnp.int32), jnp.asarray([a[0, r, c, ch]]),
                                   "relu", "deconv")[0]  # fmt: skip
            assert np.abs(whole).max() > 0
            assert_close(got, whole, 1e-12, elementwise=1e-12, err_msg=f"unit {(r, c, ch)}")


def test_old_graph_files_read_as_imagenet_and_bad_presets_are_one_line(tiny):
    model = converters.from_torch(tiny, torch.randn(2, 3, 16, 16), preprocessing="caffe")
    d = json.loads(to_json(model.arch))
    assert d["version"] == 2 and d["preprocessing"] == "caffe"
    assert from_json(json.dumps(d)) == model.arch
    d["version"] = 1
    del d["preprocessing"]  # a file written before issue 30
    old = from_json(json.dumps(d))
    assert old.preprocessing == "imagenet" and old.nodes == model.arch.nodes
    with pytest.raises(ValueError, match=r"unknown preprocessing 'bgr'; use one of imagenet, caffe"):
        converters.from_torch(tiny, torch.randn(2, 3, 16, 16), preprocessing="bgr")
    with pytest.raises(ValueError, match=r"preprocessing mean needs 3 values"):
        converters.from_torch(tiny, preprocessing={"mean": [1, 2]})


def test_from_torchvision_passes_it_to_graph_networks_and_refuses_it_for_handwritten_ones():
    import torchvision

    torch.manual_seed(0)
    resnet = torchvision.models.resnet18().eval()
    with pytest.raises(ValueError, match=r"resnet18 a hand-written network.*converters.from_torch\(module, "
                                         r"preprocessing=\.\.\.\)"):  # fmt: skip
        converters.from_torchvision(resnet, preprocessing="unit")
    assert converters.from_torchvision(resnet).preprocessing == "imagenet"  # the hand-written ResNet-18


def test_cli_layers_shows_it(tiny, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(cli.CACHE_ENV, "off")
    model = converters.from_torch(tiny, torch.randn(2, 3, 16, 16), preprocessing="minus_one_one")
    path = converters.save(model, tmp_path / "tiny.msgpack")
    code = cli.main(["layers", "--weights", str(path)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "input: any size; preprocessing minus_one_one (applied inside the model" in out
