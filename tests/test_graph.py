"""Graph networks (`converters.from_torch`): a module written here (convs, LeakyReLU, average pooling, a
concatenation, a residual addition) against torch, saving and loading without torch, the interpreter's `upto`,
receptive fields and crops, and every one-line error of the importer."""

import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import msgpack
import numpy as np
import pytest
import torch
import torch.nn as nn

import converters
import deepvis_jax as dv
from deepvis_jax._src.nets.graph import GraphArchitecture
from reference import as_float64, assert_close, nchw, nhwc, torch_hooks


class Net(nn.Module):
    """A small network of its own: convs, LeakyReLU, average pooling, a concatenation and a residual addition."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.left = nn.Conv2d(8, 6, 3, padding=1)
        self.right = nn.Conv2d(8, 6, 1)
        self.act = nn.LeakyReLU(0.1)
        self.pool = nn.AvgPool2d(2)
        self.block = nn.Sequential(nn.Conv2d(12, 12, 3, padding=1), nn.ReLU(), nn.Conv2d(12, 12, 3, stride=2,
                                                                                         padding=1))  # fmt: skip
        self.down = nn.Conv2d(12, 12, 1, stride=2)
        self.relu = nn.ReLU()
        self.head = nn.Linear(12, 10)

    def forward(self, x):
        x = self.stem(x)
        x = self.act(torch.cat([self.left(x), self.right(x)], 1))
        x = self.pool(x)
        x = self.relu(self.down(x) + self.block(x))
        return self.head(x.mean((2, 3)))


LAYERS = ["stem.0", "stem.1", "stem", "left", "right", "act", "pool", "down", "block.0", "block.1", "block.2",
          "block", "relu"]  # fmt: skip


def _net(seed=0, dtype=torch.float32):
    torch.manual_seed(seed)
    return Net().to(dtype).eval()


@pytest.fixture(scope="module")
def net():
    tm = _net()
    return tm, converters.from_torch(tm, torch.randn(2, 3, 24, 24))


def test_user_module_equals_torch_every_layer_float32_and_float64(net):
    tm, model = net
    assert isinstance(model.arch, GraphArchitecture) and model.arch.num_classes == 10
    assert dv.layers(model) == LAYERS
    assert dv.layer_name(model, 3) == "stem" and dv.layer_channels(model, "act") == 12
    x = np.random.default_rng(0).standard_normal((2, 40, 32, 3)).astype(np.float32)  # not the capture's size
    ref = torch_hooks(tm, x, LAYERS)
    logits, acts = dv._src.nets.all_activations(model, jnp.asarray(x))
    assert_close(logits, ref["logits"].numpy(), 1e-4, err_msg="logits")
    for name in LAYERS:
        assert_close(acts[name], nhwc(ref[name]), 1e-4, err_msg=name)
        assert_close(model.apply(jnp.asarray(x), upto=name), nhwc(ref[name]), 1e-4, err_msg=f"{name} upto")
    with jax.enable_x64(True):
        tm64 = _net(dtype=torch.float64)
        m64 = as_float64(model)
        x64 = x.astype(np.float64)
        ref64 = torch_hooks(tm64, x64, LAYERS)
        assert_close(dv.classify(m64, jnp.asarray(x64)), ref64["logits"].numpy(), 1e-10, err_msg="float64 logits")
        for name in ("act", "relu"):
            assert_close(m64.apply(jnp.asarray(x64), upto=name), nhwc(ref64[name]), 1e-10, err_msg=name)


def test_upto_computes_nothing_above_the_layer(net):
    _, model = net
    x = jnp.zeros((1, 24, 24, 3))

    def convs(layer, **kw):
        jaxpr = jax.make_jaxpr(lambda m, x: m.apply(x, upto=layer, **kw))(model, x)
        return str(jaxpr).count("conv_general_dilated")  # nested ones too (a strided conv's custom_jvp)

    assert convs("stem") == 1 and convs("act") == 3 and convs("block.0") == 4 and convs("relu") == 6
    jaxpr = str(jax.make_jaxpr(lambda m, x: m.apply(x, upto="relu", pre_relu=True))(model, x))
    assert "max" not in jaxpr.split("conv_general_dilated")[-1]  # the last ReLU itself is not applied
    assert "dot_general" not in str(jax.make_jaxpr(lambda m, x: m.apply(x, upto="relu"))(model, x))  # no head


def test_pre_relu_and_channels(net):
    tm, model = net
    x = np.random.default_rng(1).standard_normal((1, 24, 24, 3)).astype(np.float32)
    pre = {}
    h = tm.relu.register_forward_pre_hook(lambda m, i: pre.__setitem__("relu", i[0].detach().clone()))
    try:
        with torch.no_grad():
            tm(nchw(x))
    finally:
        h.remove()
    assert_close(model.apply(jnp.asarray(x), upto="relu", pre_relu=True), nhwc(pre["relu"]), 1e-5)
    full = model.apply(jnp.asarray(x), upto="act")
    np.testing.assert_array_equal(model.apply(jnp.asarray(x), upto="act", channels=jnp.array([4, 1])),
                                  full[..., [4, 1]])  # fmt: skip


def test_visualize_and_construct(net):
    tm, model = net
    img = (np.random.default_rng(2).random((24, 24, 3)) * 255).astype(np.uint8)
    with jax.enable_x64(True):
        m64 = as_float64(model)
        for layer in ("stem", "relu"):
            r = dv.visualize(m64, img, layer, top_k=3)
            x = dv.normalize(jnp.asarray(img, jnp.float64)[None] / 255)
            act, sw = dv.forward(m64, x, layer)
            assert_close(r.activations, act[0], 1e-12)
            for k, c in enumerate(np.asarray(r.channels)):
                a = np.asarray(act)[0, :, :, c]
                i, j = np.unravel_index(np.argmax(a), a.shape)
                signal = np.zeros(act.shape)
                signal[0, i, j, c] = a[i, j]
                assert_close(r.projections[k], dv.project(m64, sw, jnp.asarray(signal), layer)[0], 1e-10,
                             err_msg=f"{layer} channel {c}")  # fmt: skip
        # the gradient method at a layer below the LeakyReLU is torch autograd
        x = np.random.default_rng(3).standard_normal((1, 24, 24, 3))
        act, sw = dv.forward(m64, jnp.asarray(x), "stem")
        signal = np.random.default_rng(4).standard_normal(act.shape)
        got = dv.project(m64, sw, jnp.asarray(signal), "stem", method="gradient")
        tm64 = _net(dtype=torch.float64)
        xt = nchw(x).requires_grad_(True)
        (g,) = torch.autograd.grad(tm64.stem(xt), xt, nchw(signal))
        assert_close(got, nhwc(g), 1e-10)
    # construct, every channel of the layer: each filter's image excites its channel more than any other filter's
    # image and than noise does (measured on this net with seeds 0, 1, 2: 12, 11 and 12 of the 12 channels). Being
    # the image's strongest channel is not asserted: this small random net's channels are correlated, and only 3, 2
    # and 3 of 12 channels (seeds 0, 1, 2) come first for their own image.
    filters = list(range(dv.layer_channels(model, "relu")))
    imgs = dv.construct(model, "relu", filters, steps=40, lr=0.05, image_size=24, param="pixel", transforms="none",
                        verbose=False)  # fmt: skip
    assert imgs.shape == (12, 24, 24, 3) and 0 <= imgs.min() and imgs.max() <= 1
    noise = np.random.default_rng(0).random((1, 24, 24, 3)).astype(np.float32)

    def means(images):
        return np.asarray(model.apply(dv.normalize(jnp.asarray(images)), upto="relu", pre_relu=True)).mean((1, 2))

    acts, base = means(imgs), means(noise)[0]
    for i, f in enumerate(filters):
        assert acts[i, f] > max(base[f], np.delete(acts[:, f], i).max()), (f, acts[:, f], base[f])


def test_atlas_and_occlusion_equal_torch(net):
    """The atlas of two layers in one pass (distinct images) and an occlusion map, against the torch module."""
    tm, model = net
    rng = np.random.default_rng(5)
    imgs = (rng.random((6, 24, 24, 3)) * 255).astype(np.uint8)
    result = dv.atlas(model, list(imgs), layers=["act", "relu"], top_k=2, batch_size=4, micro_batch=2, size=24,
                      channels=[0, 1], progress=False)  # fmt: skip
    x = np.asarray(dv.normalize(jnp.asarray(imgs, jnp.float32) / 255))
    ref = torch_hooks(tm, x, ["act", "relu"])
    for layer in ("act", "relu"):
        a, maps = result[layer], nhwc(ref[layer])  # (6, h, w, C)
        best = maps.reshape(6, -1, maps.shape[-1]).max(1)  # each image's strongest unit per channel
        want = -np.sort(-best, axis=0)[:2].T  # (C, 2): the two strongest images' values
        assert_close(a.values, want, 1e-5, err_msg=layer)
        order = np.argsort(-best, axis=0, kind="stable")[:2].T
        gap = np.abs(np.diff(-np.sort(-best, axis=0)[:3], axis=0)).min(0)  # ties would make the order arbitrary
        clear = gap > 1e-4 * np.abs(best).max()
        np.testing.assert_array_equal(a.image_index[clear], order[clear])
        assert a.projections.shape[:2] == (2, 2) and np.abs(a.projections).max() > 0
    img = imgs[0]
    occ = dv.occlusion(model, img, patch=8, stride=8, fill=0.5, layer="relu", channel=3, target=7)
    for i, r0 in enumerate(occ.rows):
        for j, c0 in enumerate(occ.cols):
            unit = img.astype(np.float64) / 255
            unit[r0 : r0 + 8, c0 : c0 + 8] = 0.5
            xi = np.asarray(dv.normalize(jnp.asarray(unit[None], jnp.float32)))
            with torch.no_grad():
                feat = _upto(tm, "relu", nchw(xi))[0, 3].sum().item()
                prob = torch.softmax(tm(nchw(xi)), -1)[0, 7].item()
            assert_close(occ.feature[i, j], feat, 1e-4, err_msg=f"occlusion feature at {(r0, c0)}")
            assert_close(occ.probability[i, j], prob, 1e-4, err_msg=f"occlusion probability at {(r0, c0)}")


class _Stop(Exception):
    pass


def _upto(tm: nn.Module, layer: str, x: torch.Tensor) -> torch.Tensor:
    """The output of submodule `layer` (as its forward hook sees it); the forward stops there."""

    def hook(mod, inputs, output):
        raise _Stop(output)

    handle = dict(tm.named_modules())[layer].register_forward_hook(hook)
    try:
        tm(x)
    except _Stop as stop:
        return stop.args[0]
    finally:
        handle.remove()
    raise AssertionError(f"{layer} was not reached")


@pytest.mark.parametrize("method", ["deconv", "guided", "gradient"])
def test_user_module_projections_equal_torch_with_the_same_rules(net, method):
    """float64, elementwise: `dv.project` through LeakyReLU, average pooling, a concatenation and a residual sum
    against torch autograd under `converters.projection_rules` (the same rule at every rectifier)."""
    tm = _net(dtype=torch.float64)
    _, model = net
    with jax.enable_x64(True):
        m64 = as_float64(model)
        x = np.random.default_rng(7).standard_normal((1, 26, 22, 3))
        for layer in ("act", "relu"):
            act, sw = dv.forward(m64, jnp.asarray(x), layer)
            signal = np.random.default_rng(8).standard_normal(act.shape)
            got = dv.project(m64, sw, jnp.asarray(signal), layer, method)
            xt = nchw(x).requires_grad_(True)
            with converters.projection_rules(method):
                out = _upto(tm, layer, xt)
                (ref,) = torch.autograd.grad(out, xt, nchw(signal))
            assert_close(act, nhwc(out), 1e-12, err_msg=f"{layer} activation")
            assert_close(got, nhwc(ref), 1e-10, elementwise=1e-10, err_msg=f"{method} {layer}")


def test_saved_graph_loads_without_torch(net, tmp_path):
    tm, model = net
    path = converters.save(model, tmp_path / "net.msgpack")
    x = np.random.default_rng(5).standard_normal((2, 28, 24, 3)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    logits = np.asarray(dv.classify(model, jnp.asarray(x)))
    act = np.asarray(model.apply(jnp.asarray(x), upto="act"))
    r = dv.visualize(model, (np.random.default_rng(6).random((24, 24, 3)) * 255).astype(np.uint8), "relu", top_k=2)
    code = f"""
import sys
sys.modules["torch"] = None  # any import of torch fails
import numpy as np, jax.numpy as jnp
import deepvis_jax as dv
model = dv.load_model({str(path)!r})
x = np.load({str(tmp_path / "x.npy")!r})
img = (np.random.default_rng(6).random((24, 24, 3)) * 255).astype(np.uint8)
r = dv.visualize(model, img, "relu", top_k=2)
np.savez({str(tmp_path / "out.npz")!r}, logits=dv.classify(model, jnp.asarray(x)),
         act=model.apply(jnp.asarray(x), upto="act"), proj=r.projections, layers=np.array(dv.layers(model)))
assert "torch" not in [m.split(".")[0] for m in sys.modules if sys.modules[m] is not None]
"""
    subprocess.run([sys.executable, "-c", code], check=True)
    out = np.load(tmp_path / "out.npz")
    assert list(out["layers"]) == LAYERS
    np.testing.assert_allclose(out["logits"], logits, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(out["act"], act, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(out["proj"], r.projections, rtol=1e-5, atol=1e-7)
    again = dv.load_model(path)
    assert again.arch == model.arch and hash(again.arch) == hash(model.arch)


def _unpack(data: bytes) -> dict:
    return msgpack.unpackb(data, raw=False, strict_map_key=False, ext_hook=lambda c, d: msgpack.ExtType(c, d))


def test_saved_file_is_plain_msgpack_and_bad_files_get_one_line(net, tmp_path):
    _, model = net
    path = converters.save(model, tmp_path / "net.msgpack")
    raw = _unpack(path.read_bytes())
    assert raw["version"] == 2 and raw["arch"] == "net"
    graph = json.loads(raw["graph"])  # the graph is JSON: op names, static arguments, module paths
    assert [n[0] for n in graph["nodes"]].count("convolution") == 6
    assert [spec[0] for spec in graph["layers"]] == LAYERS
    bad = tmp_path / "bad.msgpack"
    graph["nodes"][-1][0] = "no_such_op"
    # without the checksum (a file written before it), so that the graph's own checks are reached
    unsigned = {k: v for k, v in raw.items() if k != "checksum"}
    bad.write_bytes(msgpack.packb({**unsigned, "graph": json.dumps(graph)}, use_bin_type=True))
    with pytest.raises(dv.WeightsError, match="no_such_op"):
        dv.load_model(bad)
    raw = {k: v for k, v in _unpack(path.read_bytes()).items() if k != "checksum"}
    del raw["variables"]["params"]["head.weight"]
    bad.write_bytes(msgpack.packb(raw, use_bin_type=True))
    with pytest.raises(dv.WeightsError, match="missing the weight head.weight"):
        dv.load_model(bad)
    with pytest.raises(ValueError, match="pass it alone"):
        dv.load_model(path, weights="imagenet")


# ------------------------------------------------------------------------------------------------------------
# Receptive fields and crops
# ------------------------------------------------------------------------------------------------------------


class Chain(nn.Module):
    """Paths of different reach: a 5x5 conv beside a 1x1, a padded ceil-mode max pool, a strided conv, a GELU, an
    average pool that counts only the image; then a global mean."""

    def __init__(self):
        super().__init__()
        self.a = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        self.b5 = nn.Conv2d(4, 4, 5, padding=2)
        self.b1 = nn.Conv2d(4, 4, 1)
        self.pool = nn.MaxPool2d(3, 2, padding=1, ceil_mode=True)
        self.c = nn.Sequential(nn.Conv2d(8, 6, 3, stride=2), nn.GELU())
        self.avg = nn.AvgPool2d(3, 2, padding=1, ceil_mode=True, count_include_pad=False)
        self.head = nn.Linear(6, 3)

    def forward(self, x):
        x = self.a(x)
        x = self.pool(torch.cat([torch.relu(self.b5(x)), torch.relu(self.b1(x))], 1))
        x = self.avg(self.c(x))
        return self.head(x.mean((2, 3)))


@pytest.fixture(scope="module")
def chain():
    torch.manual_seed(1)
    tm = Chain().eval()
    return tm, converters.from_torch(tm, torch.randn(2, 3, 32, 32))


def test_receptive_fields_over_all_paths(chain):
    _, model = chain
    # a: 3x3 -> size 3, offset -1; cat: 5x5 path on top -> 7, offset -3; pool 3/2 pad 1: 7 + 2 = 9, stride 2,
    # offset -3 - 1 = -4; c: 3x3/2 unpadded: 9 + 2*2 = 13, stride 4, offset -4
    assert dv.receptive_field(model, "a") == dv.ReceptiveField(3, 1, -1)
    assert dv.receptive_field(model, "pool") == dv.ReceptiveField(9, 2, -4)
    assert dv.receptive_field(model, "c") == dv.ReceptiveField(13, 4, -4)
    assert dv.receptive_field(model, "avg") == dv.ReceptiveField(21, 8, -8)  # 13 + 4 * 2; -4 - 4 * 1
    # the gradient of one unit is non-zero only inside its field (and reaches its edges)
    with jax.enable_x64(True):
        m64 = as_float64(model)
        x = jnp.asarray(np.random.default_rng(0).standard_normal((1, 29, 31, 3)))
        act = m64.apply(x, upto="c")
        i, j = 2, 3
        g = jax.grad(lambda x: m64.apply(x, upto="c")[0, i, j].sum())(x)
        rows, cols = np.nonzero(np.abs(np.asarray(g[0])).sum(-1))
        rf = dv.receptive_field(model, "c")
        assert act.shape[1:3] == dv._src.nets.layer_hw(model, "c", (29, 31))
        assert rows.min() >= rf.offset + rf.stride * i and rows.max() <= rf.offset + rf.stride * i + rf.size - 1
        assert cols.min() >= rf.offset + rf.stride * j and cols.max() <= rf.offset + rf.stride * j + rf.size - 1
        assert rows.max() - rows.min() >= rf.size - 3


@pytest.mark.parametrize("which,layers", [("chain", ("pool", "c", "avg")), ("net", ("act", "relu"))])
def test_project_units_on_crops_equal_whole_image(which, layers, request):
    """float64, units at the corners (crops reaching past the image) and the centre, every method, from switches
    and from images: ReLU, GELU and LeakyReLU, ceil-mode max and average pools, a concatenation, a residual sum."""
    _, model = request.getfixturevalue(which)
    with jax.enable_x64(True):
        m64 = as_float64(model)
        hw = (45, 41) if which == "chain" else (37, 33)
        x = dv.normalize(jnp.asarray(np.random.default_rng(1).random((1, *hw, 3))))
        for layer in layers:
            act, sw = dv.forward(m64, x, layer)
            h, w = act.shape[1:3]
            assert dv._src.deconv.crop_geometry(m64, layer, hw)[0] != hw  # the crop is smaller than the image
            a = np.asarray(act)
            spots = [(0, 0), (h - 1, w - 1), (0, w - 1), (h // 2, w // 2)]
            units = np.array([(0, r, c, int(np.argmax(a[0, r, c]))) for r, c in spots], np.int32)
            values = jnp.asarray(a[tuple(units.T)])
            for method in ("deconv", "guided", "gradient"):
                signals = np.zeros((len(units), *a.shape))
                for k, (n, r, c, ch) in enumerate(units):
                    signals[k, n, r, c, ch] = a[n, r, c, ch]
                whole = jax.vmap(dv.project, in_axes=(None, None, 0, None, None))(m64, sw, jnp.asarray(signals),
                                                                                   layer, method)[:, 0]  # fmt: skip
                for source in (sw, x):
                    got = dv.project_units(m64, source, jnp.asarray(units), values, layer, method)
                    for k in range(len(units)):
                        assert np.abs(whole[k]).max() > 0
                        assert_close(got[k], whole[k], 1e-12, err_msg=f"{layer} {method} {units[k]}")


class Gated(nn.Module):
    """A squeeze-excitation gate (computed from the whole map) and an upsampling: everything above sees the whole
    image."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        self.fc = nn.Conv2d(4, 4, 1)
        self.gate = nn.Sigmoid()
        self.up = nn.Upsample(scale_factor=2)
        self.out = nn.Conv2d(4, 2, 3)

    def forward(self, x):
        x = self.conv(x)
        x = x * self.gate(self.fc(x.mean((2, 3), keepdim=True)))
        return self.out(self.up(x))


def test_global_layers_see_the_whole_image():
    torch.manual_seed(2)
    tm = Gated().eval()
    model = converters.from_torch(tm, torch.randn(2, 3, 16, 16))
    assert dv.layers(model) == ["conv.0", "conv.1", "conv", "up", "out"]  # fc and gate: 1x1, no map
    assert model.arch.num_classes is None  # its output is a map: classify refuses
    with pytest.raises(ValueError, match="no class logits"):
        dv.classify(model, jnp.zeros((1, 16, 16, 3)))
    assert dv.receptive_field(model, "conv") == dv.ReceptiveField(3, 1, -1)
    for layer in ("up", "out"):
        with pytest.raises(ValueError, match="sees the whole image"):
            dv.receptive_field(model, layer)
    # with the image size: a window holding the whole image from every unit
    rf = dv.receptive_field(model, "out", hw=(16, 12))
    assert rf == dv.ReceptiveField(16 + 30 - 1, 1, -(30 - 1))
    assert rf.box(0, 0, (16, 12)) == (0, 16, 0, 12) and rf.box(29, 21, (16, 12)) == (0, 16, 0, 12)
    x = np.random.default_rng(0).standard_normal((1, 16, 12, 3)).astype(np.float32)
    with torch.no_grad():
        ref = tm(nchw(x))
    assert_close(model.apply(jnp.asarray(x), upto="out"), nhwc(ref), 1e-5)
    with jax.enable_x64(True):  # single units project through the whole image, exactly
        m64 = as_float64(model)
        act, sw = dv.forward(m64, jnp.asarray(x, jnp.float64), "conv")
        units = jnp.array([[0, 3, 4, 1]])
        got = dv.project_units(m64, sw, units, jnp.array([1.0]), "conv", "gradient")
        signal = np.zeros(act.shape)
        signal[0, 3, 4, 1] = 1.0
        assert_close(got[0], dv.project(m64, sw, jnp.asarray(signal), "conv", "gradient")[0], 1e-12)


# ------------------------------------------------------------------------------------------------------------
# One-line errors
# ------------------------------------------------------------------------------------------------------------


class DataDependent(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3)

    def forward(self, x):
        y = self.conv(x)
        if y.sum() > 0:  # control flow on the data: torch.export cannot capture it
            return y * 2
        return y


class Cumulative(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3)
        self.body = nn.Sequential(nn.Identity())

    def forward(self, x):
        return torch.cumsum(self.conv(x), dim=1)


class FixedSize(nn.Module):
    """Refuses every input size but 20 x 20 (as torchvision's ViT refuses all but its image size)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3)

    def forward(self, x):
        torch._assert(x.shape[2] == 20 and x.shape[3] == 20, "wrong size")
        return self.conv(x).flatten(1)


def _one_line(excinfo) -> str:
    msg = str(excinfo.value).split("\n--------------------\nFor simplicity, JAX")[0]  # JAX's note under jit
    assert "\n" not in msg, msg
    return msg


def test_import_errors_are_one_line():
    import torchvision

    detector = torchvision.models.detection.fasterrcnn_mobilenet_v3_large_fpn(weights=None, weights_backbone=None)
    with pytest.raises(ValueError, match=r"whole detector.*from_torch\(model.backbone\)") as e:
        converters.from_torch(detector)
    _one_line(e)
    for bad in (torch.randn(2, 5), torch.randn(2, 1, 16, 16), (torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 8))):
        with pytest.raises(ValueError, match=r"one image tensor \(N, 3, H, W\)") as e:
            converters.from_torch(_net(), bad)
        _one_line(e)
    with pytest.raises(ValueError, match="torch.export cannot capture DataDependent") as e:
        converters.from_torch(DataDependent(), torch.randn(2, 3, 8, 8))
    _one_line(e)
    with pytest.raises(ValueError, match=r"uses cumsum \(in the top-level forward\).*no JAX lowering") as e:
        converters.from_torch(Cumulative(), torch.randn(2, 3, 8, 8))
    _one_line(e)
    with pytest.raises(ValueError, match="needs a torch.nn.Module"):
        converters.from_torch(lambda x: x)


def test_input_size_errors_are_one_line(net):
    _, model = net
    with pytest.raises(ValueError, match="unknown layer 'nope'.*stem") as e:
        dv.forward(model, jnp.zeros((1, 24, 24, 3)), "nope")
    _one_line(e)
    torch.manual_seed(0)
    fixed = converters.from_torch(FixedSize(), torch.randn(2, 3, 20, 20))
    assert fixed.arch.fixed_hw == (20, 20)
    with pytest.raises(ValueError, match="captured for 20x20 inputs only.*got 24x20") as e:
        dv.classify(fixed, jnp.zeros((1, 24, 20, 3)))
    _one_line(e)
    assert dv.classify(fixed, jnp.zeros((3, 20, 20, 3))).shape == (3, 2 * 18 * 18)  # any batch
    with pytest.raises(ValueError, match="1x1 pixels is too small for layer relu of net: .*use at least 2x2") as e:
        dv.forward(model, jnp.zeros((1, 1, 1, 3)), "relu")
    _one_line(e)
    with pytest.raises(ValueError, match="imported graph network"):
        dv._src.nets.init_model(model.arch)


# ------------------------------------------------------------------------------------------------------------
# The command line
# ------------------------------------------------------------------------------------------------------------


def test_cli_convert_torchvision_then_layers_and_visualize_from_the_file(capsys, tmp_path, monkeypatch):
    from deepvis_jax import cli

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(cli.CACHE_ENV, "off")

    def run(*argv):
        code = cli.main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return code, out, err

    code, out, err = run("convert", "--torchvision", "squeezenet1_0", "--weights", "random", "--size", "64",
                         "--out", "sq.msgpack")  # fmt: skip
    assert code == 0, err
    assert "wrote sq.msgpack" in out and "64 layers" in out
    code, out, err = run("layers", "--weights", "sq.msgpack")
    assert code == 0, err
    assert "squeezenet: 64 layers (the module paths" in out and "features.3.expand3x3" in out
    code, out, err = run("visualize", "--weights", "sq.msgpack", "--layer", "features.3", "--size", "64",
                         "--top-k", "2", "--out", "vis")  # fmt: skip
    assert code == 0, err
    # the file records its random weights: no ImageNet classes are printed for them (issue 33, item 13)
    assert "layer: features.3 of squeezenet, 128 channels" in out and "top-5 ImageNet classes" not in out
    assert (tmp_path / "vis" / "features.3_projections.png").is_file()
    for argv, fragment in [
        (("convert", "--torchvision", "nonet", "--weights", "random", "--out", "x.msgpack"),
         "unknown torchvision classification model 'nonet'"),
        (("convert", "--model", "vgg16", "--weights", "random", "--out", "x.msgpack"),
         "--weights applies to --torchvision NAME"),
        (("convert", "--torchvision", "googlenet", "--model", "vgg16", "--out", "x.msgpack"),
         "--torchvision NAME takes its weights from --weights"),
        (("visualize", "--weights", "sq.msgpack", "--layer", "features.99"), "unknown layer 'features.99'"),
    ]:  # fmt: skip
        code, out, err = run(*argv)
        assert code == 2 and "Traceback" not in err, err
        assert err.strip().splitlines()[-1].startswith("deepvis: error: ") and fragment in err, (fragment, err)
