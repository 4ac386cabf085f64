"""A graph network's output map as a layer (issue 30 item 5): a small fully convolutional torch module (a
segmentation-like head) imported with `converters.from_torch`; its strongest output unit projects by the three
methods, through `dv.visualize(model, image, "output", units=[(y, x, c)])` and `dv.project_units`, inside its
receptive field, equal to torch autograd under the same rules (float64) and to the whole-image projection; the
CLI takes ``--layer output``."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn as nn

import converters
import deepvis_jax as dv
from deepvis_jax import cli
from reference import as_float64, assert_close, nchw, nhwc


class Seg(nn.Module):
    """conv, ReLU, max-pool, conv, ReLU, then a 1x1 conv to two class maps (no activation on the output)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.body = nn.Sequential(nn.Conv2d(6, 6, 3, padding=1), nn.ReLU())
        self.head = nn.Conv2d(6, 2, 1)

    def forward(self, x):
        return self.head(self.body(self.stem(x)))


class Heads(nn.Module):
    """Two output maps in a dict (a multi-output module) beside a logits-free backbone."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        self.a = nn.Conv2d(4, 2, 1)
        self.b = nn.Conv2d(4, 3, 3, stride=2, padding=1)

    def forward(self, x):
        y = self.conv(x)
        return {"mask": self.a(y), "boxes": self.b(y)}


@pytest.fixture(scope="module")
def seg():
    torch.manual_seed(0)
    tm = Seg().eval()
    return tm, converters.from_torch(tm, torch.randn(2, 3, 32, 32))


def test_output_is_a_layer_by_name_and_not_in_layers(seg):
    _, model = seg
    assert model.arch.output_layers == ("output",) and "output" not in dv.layers(model)
    assert dv.layer_name(model, "output") == "output" and dv.layer_channels(model, "output") == 2
    assert dv.conv_layers(model) == dv.layers(model) and dv.layers(model)[-1] == "head"
    rf = dv.receptive_field(model, "output")
    assert (rf.size, rf.stride, rf.offset) == (8, 2, -3)  # 3x3 conv (pad 1), 2x2 pool, 3x3 conv (pad 1), 1x1
    torch.manual_seed(0)
    heads = converters.from_torch(Heads().eval(), torch.randn(2, 3, 16, 16))
    assert heads.arch.output_layers == ("output.mask", "output.boxes")
    assert dv.layer_channels(heads, "output.boxes") == 3
    with pytest.raises(ValueError, match=r"unknown layer 'output' .*or an output: output.mask, output.boxes"):
        dv.layer_name(heads, "output")


@pytest.mark.parametrize("method", ["deconv", "guided", "gradient"])
def test_strongest_output_unit_projects_inside_its_field_and_equals_torch(seg, method):
    tm, model = seg
    tm64 = Seg().double().eval()
    tm64.load_state_dict(tm.state_dict())
    rng = np.random.default_rng(3)
    x01 = rng.random((40, 36, 3))
    with jax.enable_x64(True):
        m64 = as_float64(model)
        x = dv.normalize(jnp.asarray(x01))[None]
        act, sw = dv.forward(m64, x, "output")
        a = np.asarray(act[0])
        y, xx, c = (int(v) for v in np.unravel_index(np.argmax(a), a.shape))
        r = dv.visualize(m64, x01, "output", units=[(y, xx, c)], method=method)
        assert r.channels.tolist() == [c] and float(r.scores[0]) == a[y, xx, c]
        got = np.asarray(r.projections[0])
        units = jnp.asarray([(0, y, xx, c)], jnp.int32)
        pu = dv.project_units(m64, sw, units, jnp.asarray([a[y, xx, c]]), "output", method)
        signal = np.zeros(act.shape)
        signal[0, y, xx, c] = a[y, xx, c]
        whole = dv.project(m64, sw, jnp.asarray(signal), "output", method)
        xt = nchw(np.asarray(x)).requires_grad_(True)
        with converters.projection_rules(method):
            out = tm64(xt)
            (ref,) = torch.autograd.grad(out, xt, nchw(signal))
    assert_close(act, nhwc(out), 1e-12, err_msg="output map")
    assert_close(got, nhwc(ref)[0], 1e-10, elementwise=1e-10, err_msg=f"{method} visualize(units=)")
    assert_close(pu[0], whole[0], 1e-12, elementwise=1e-12, err_msg=f"{method} project_units vs whole image")
    rows, cols = np.nonzero(np.abs(got).sum(-1))
    rf = dv.receptive_field(model, "output")
    assert rows.size > 0
    assert rows.min() >= rf.offset + rf.stride * y and rows.max() <= rf.offset + rf.stride * y + rf.size - 1
    assert cols.min() >= rf.offset + rf.stride * xx and cols.max() <= rf.offset + rf.stride * xx + rf.size - 1


def test_cli_layer_output(seg, tmp_path, capsys, monkeypatch):
    _, model = seg
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(cli.CACHE_ENV, "off")
    converters.save(model, "seg.msgpack")
    code = cli.main(["visualize", "--weights", "seg.msgpack", "--layer", "output", "--size", "32", "--top-k", "2",
                     "--out", "vis"])  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "layer: output of seg, 2 channels, feature map 16x16" in out
    assert (tmp_path / "vis" / "output_projections.png").is_file()
    code = cli.main(["layers", "--weights", "seg.msgpack"])
    out, err = capsys.readouterr()
    assert code == 0 and re.search(r"^\s+-\s+output\s+2\s+2x2\s+\(the network's output map; --layer output\)$", out,
                                   re.M), out  # fmt: skip
