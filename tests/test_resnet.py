"""torchvision ResNets: logits and every block against torchvision; the three projection methods against torch
autograd with every nn.ReLU's backward replaced by the method's rule; names, sizes, receptive fields, weights
files, and the library's entry points on a ResNet."""

import copy

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torchvision

import converters
import deepvis_jax as dv
from reference import (
    ISA_CAPPED,
    as_float64,
    channel_signal,
    assert_close,
    assert_topk_winners,
    check_float32_projections,
    check_projections,
    nchw,
    torch_model,
)

RESNETS = ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "wide_resnet50_2"]
HW = (56, 72)  # not square, and not a multiple of 32: floors at every stride


@pytest.fixture(scope="module")
def torch_models():
    return {a: torch_model(a) for a in ("resnet18", "resnet50")}


@pytest.fixture(scope="module")
def models(torch_models):
    return {a: converters.from_torchvision(m) for a, m in torch_models.items()}


def _input(seed=0, hw=HW):
    return np.random.default_rng(seed).standard_normal((1, *hw, 3))


# ------------------------------------------------------------------------------------------------------------
# The forward pass against torchvision
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", RESNETS)
def test_every_resnet_detected_and_equal_to_torchvision(arch):
    """Every block's output (forward hooks on torchvision's modules) and the logits, float32, 1e-4 relative."""
    tm = torch_model(arch)
    model = converters.from_torchvision(tm)
    assert model.arch.name == arch and converters.detect_state_dict(tm.state_dict()) == arch
    n_torch = sum(t.numel() for k, t in tm.state_dict().items() if not k.endswith("num_batches_tracked"))
    assert sum(int(np.prod(v.shape)) for v in jax.tree_util.tree_leaves(model.variables)) == n_torch
    x = _input().astype(np.float32)
    diffs = converters.compare(tm, model, x)
    assert list(diffs) == [*dv.layers(model), "logits"]
    assert all(d.max_rel < 1e-4 for d in diffs.values()), diffs
    ref = tm(nchw(x)).detach().numpy()
    assert_close(dv.classify(model, jnp.asarray(x)), ref, 1e-4)


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_float64_equal_to_torchvision(arch, torch_models):
    tm64 = copy.deepcopy(torch_models[arch]).double()
    x = _input(1, (45, 61))
    with jax.enable_x64(True):
        model = converters.from_torchvision(tm64)
        ref = converters.torch_activations(tm64, nchw(x), model.arch)
        logits, acts = dv._src.nets.all_activations(model, jnp.asarray(x))
        for name in dv.layers(model):
            assert_close(np.asarray(acts[name]).transpose(0, 3, 1, 2), ref[name].numpy(), 1e-10, err_msg=name)
        assert_close(logits, ref["logits"].numpy(), 1e-10, err_msg="logits")


def test_detection_is_structural():
    class Renamed(torch.nn.Module):  # a ResNet-18's modules under an unrelated class
        def __init__(self):
            super().__init__()
            r = torchvision.models.resnet18()
            for n in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool", "fc"):
                setattr(self, n, getattr(r, n))

    assert converters.detect_architecture(Renamed()) == "resnet18"
    odd = torchvision.models.resnet18()
    odd.layer3 = odd.layer3[:1]  # one block fewer
    with pytest.raises(ValueError, match="matches none of the supported ResNets: resnet18, resnet34"):
        converters.detect_architecture(odd)
    with pytest.raises(ValueError, match="10 classes"):
        converters.detect_architecture(torchvision.models.resnet34(num_classes=10))


def test_names_channels_sizes_and_receptive_fields():
    names = dv.layers("resnet50")
    assert names[:5] == ["conv1", "layer1.0", "layer1.1", "layer1.2", "layer2.0"] and names[-1] == "layer4.2"
    assert len(names) == 1 + 3 + 4 + 6 + 3 and len(dv.layers("resnet152")) == 1 + 3 + 8 + 36 + 3
    assert dv.conv_layers("resnet18") == dv.layers("resnet18")
    assert dv.layer_name("resnet18", 2) == dv.layer_name("resnet18", "layer1.0") == "layer1.0"
    chans = {n: dv.layer_channels("resnet50", n) for n in ("conv1", "layer1.0", "layer2.3", "layer4.2")}
    assert chans == {"conv1": 64, "layer1.0": 256, "layer2.3": 512, "layer4.2": 2048}
    assert dv.layer_channels("resnet18", "layer4.1") == 512 and dv.layer_channels("wide_resnet50_2", 2) == 256
    with pytest.raises(ValueError, match=r"unknown layer 'layer5.0' for resnet18; use a layer index 1\.\.9"):
        dv.layer_name("resnet18", "layer5.0")
    # every 3x3/2 conv and the 3x3/2 pad-1 pool keep a 1-pixel map: a 1-pixel image reaches the top
    assert dv.min_image_size("resnet50") == 1
    # by hand, top down: two 3x3/1 convs -> 5 (offset -2); pool 3/2 pad 1 -> 11 (-5); conv1 7/2 pad 3 -> 27 (-13)
    assert dv.receptive_field("resnet18", "layer1.0") == (27, 4, -13)
    assert dv.receptive_field("resnet18", "conv1") == (7, 2, -3)
    # a bottleneck has one 3x3: 1x1, 3x3, 1x1 -> 3 (-1); pool -> 7 (-3); conv1 -> 19 (-9)
    assert dv.receptive_field("resnet50", "layer1.0") == (19, 4, -9)


@pytest.mark.parametrize("layer", ["layer1.0", "layer2.0", "layer3.1"])
def test_receptive_field_contains_gradient_support(models, layer):
    model = models["resnet18"]
    rf = dv.receptive_field(model, layer)
    x = jnp.asarray(_input(2, (96, 96)), jnp.float32)
    h, w = dv._src.nets.layer_hw(model, layer, (96, 96))
    grad = jax.jit(jax.grad(lambda x, row, col: model.apply(x, upto=layer, pre_relu=True)[0, row, col].sum()))
    for row, col in ((0, 0), (h // 2, w // 2), (h - 1, w - 1)):
        ys, xs = np.nonzero(np.abs(np.asarray(grad(x, row, col)[0])).sum(-1))
        t, b, l, r = rf.box(row, col, (96, 96))
        assert t <= ys.min() and ys.max() < b and l <= xs.min() and xs.max() < r


# ------------------------------------------------------------------------------------------------------------
# Projections against torch autograd with every ReLU's backward replaced
# ------------------------------------------------------------------------------------------------------------

CASES = [("resnet18", ["conv1", "layer1.0", "layer2.0", "layer4.1"]), ("resnet50", ["layer1.0", "layer2.0"])]


@pytest.mark.parity
@pytest.mark.parametrize("arch,layers", CASES, ids=[c[0] for c in CASES])
def test_projections_match_torch(arch, layers, torch_models, models):
    """float64 at 1e-10 (peak-relative and elementwise) with each framework's own decisions; float32 at 1e-5 with
    float64's decisions. layer1.0 sits right above the padded stem max-pool; layer2.0 has a strided downsample shortcut."""
    tm, model = torch_models[arch], models[arch]
    x = _input()
    tm64 = copy.deepcopy(tm).double()
    with jax.enable_x64(True):
        model64 = converters.from_torchvision(tm64)
        for layer in layers if not ISA_CAPPED else ():
            out = {m: check_projections(tm64, model64, x, layer, m, 1e-10, elementwise=1e-10)[0]
                   for m in ("deconv", "guided", "gradient")}
            if layer != "conv1":  # more than one ReLU below: the three methods differ
                for a, b in (("guided", "deconv"), ("guided", "gradient")):
                    assert np.abs(np.asarray(out[a] - out[b])).max() > 1e-3 * np.abs(np.asarray(out[b])).max()
    for layer in layers:
        for method in ("deconv", "guided", "gradient"):
            check_float32_projections(tm, model, tm64, model64, x, layer, method)


def test_gradient_is_jax_vjp_of_the_forward(models):
    with jax.enable_x64(True):
        model = as_float64(models["resnet18"])
        x = jnp.asarray(_input(3, (40, 52)))
        act, sw = dv.forward(model, x, "layer2.1")
        out, vjp = jax.vjp(lambda v: model.apply(v, upto="layer2.1"), x)
        assert_close(act, out, 1e-12)  # two programs: BatchNorm may fuse differently
        signal = jnp.asarray(np.random.default_rng(4).standard_normal(act.shape))
        assert_close(dv.project(model, sw, signal, "layer2.1", method="gradient"), vjp(signal)[0], 1e-10)


@pytest.mark.parametrize("mode", ["max", "all"])
def test_visualize_equals_project_one_channel_at_a_time(models, mode):
    with jax.enable_x64(True):  # two JAX programs with their own switches: float64 (see test_deconv)
        model = as_float64(models["resnet50"])
        image = np.random.default_rng(0).random((48, 64, 3))
        r = dv.visualize(model, image, "layer3.1", top_k=3, mode=mode, method="guided")
        act, sw = dv.forward(model, dv.normalize(image)[None], "layer3.1")
        a = np.asarray(act[0])
        np.testing.assert_array_equal(r.channels, np.argsort(-a.max(axis=(0, 1)), kind="stable")[:3])
        for k, c in enumerate(np.asarray(r.channels)):
            signal = channel_signal(a, c, mode)
            one = dv.project(model, sw, jnp.asarray(signal)[None], "layer3.1", "guided")[0]
            assert np.abs(np.asarray(one)).max() > 0
            assert_close(r.projections[k], one, 1e-10, err_msg=f"channel {c}")
            part = dv.project_channels(model, sw, jnp.asarray(signal[..., [c]])[None], jnp.asarray([c]), "layer3.1",
                                       "guided")[0]  # fmt: skip
            assert_close(part, one, 1e-10, err_msg=f"project_channels {c}")


# ------------------------------------------------------------------------------------------------------------
# construct, occlusion, atlas, weights files
# ------------------------------------------------------------------------------------------------------------


def test_objectives_compute_only_the_target_channel(models):
    """The channel objective's block computes one output channel (conv3/bn3 and the shortcut): same value as
    the full forward pass, before the ReLU."""
    model = models["resnet50"]
    x = dv.normalize(jnp.asarray(np.random.default_rng(1).random((64, 64, 3)), jnp.float32))
    for layer in ("conv1", "layer1.0", "layer2.1"):
        pre = np.asarray(model.apply(x[None], upto=layer, pre_relu=True))[0]
        t = jnp.asarray(17)
        assert_close(dv.objectives.channel(layer)(model, x, t), pre[..., 17].mean(), 1e-5, err_msg=layer)
        assert_close(dv.objectives.neuron(layer, y=1, x=2)(model, x, t), pre[1, 2, 17], 1e-5, err_msg=layer)
    imgs = dv.construct(model, "layer2.1", [0, 5], steps=2, image_size=64, verbose=False)
    assert imgs.shape == (2, 64, 64, 3) and np.isfinite(imgs).all() and 0 <= imgs.min() and imgs.max() <= 1
    # a rank criterion, not only a range: each filter's image excites its filter more than the other filter's
    # image does (the mean pre-ReLU activation construct maximizes)
    means = np.asarray(model.apply(dv.normalize(jnp.asarray(imgs)), upto="layer2.1", pre_relu=True)).mean((1, 2))
    assert means[0, 0] > means[1, 0] and means[1, 5] > means[0, 5], means[:, [0, 5]]


def test_occlusion_equals_a_naive_loop(models):
    model = models["resnet18"]
    img = (np.random.default_rng(2).uniform(0, 1, (64, 64, 3)) * 255).astype(np.uint8)
    r = dv.occlusion(model, img, patch=32, stride=32, layer="layer3.1", chunk=3)
    assert r.feature.shape == (2, 2) and r.layer == "layer3.1"
    x01 = img.astype(np.float32) / 255
    for i, y in enumerate(r.rows):
        for j, x in enumerate(r.cols):
            occ = x01.copy()
            occ[y : y + 32, x : x + 32] = dv._src.nets.IMAGENET_MEAN
            act = np.asarray(model.apply(dv.normalize(occ)[None], upto="layer3.1"))[0, :, :, r.channel]
            assert r.feature[i, j] == pytest.approx(act.sum(), rel=1e-5)


@pytest.mark.parity
def test_atlas_on_a_resnet(models):
    model = models["resnet18"]
    rng = np.random.default_rng(3)
    images = [rng.integers(0, 256, (48, 48, 3), dtype=np.uint8) for _ in range(6)]
    r = dv.atlas(model, images, "layer2.0", top_k=3, batch_size=4, channels=[0, 7], per_image=False,
                 progress=False)  # fmt: skip
    act = np.asarray(model.apply(dv.normalize(np.stack(images).astype(np.float32) / 255), upto="layer2.0"))
    n, h, w, c = act.shape
    flat = act.transpose(3, 0, 1, 2).reshape(c, -1)
    order = np.stack([np.lexsort((np.arange(n * h * w), -row))[:3] for row in flat])  # -value, image, position
    # (every position competes: per_image=False; distinct images are tested in test_atlas.py)
    values = np.take_along_axis(flat, order, 1)
    index, pos = order // (h * w), order % (h * w)
    assert_topk_winners(act, r.values, r.image_index, r.position, values, index, np.stack([pos // w, pos % w], -1))
    size = dv.receptive_field(model, "layer2.0").size
    assert r.projections.shape == (2, 3, size, size, 3) and np.abs(r.projections).max() > 0


def test_weights_files_round_trip(models, tmp_path):
    model = models["resnet18"]
    path = converters.save(model, tmp_path / "r18.msgpack")
    loaded = dv.load_model("resnet18", weights=path)
    for a, b in zip(jax.tree_util.tree_leaves(model.variables), jax.tree_util.tree_leaves(loaded.variables),
                    strict=True):
        np.testing.assert_array_equal(a, b)
    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "r18.pth")
    assert dv.load_model("resnet18", weights=tmp_path / "r18.pth").arch.name == "resnet18"
    with pytest.raises(dv.WeightsError, match="holds resnet18 weights, not resnet34; pick --model resnet18"):
        dv.load_model("resnet34", weights=tmp_path / "r18.pth")
    with pytest.raises(dv.WeightsError, match="holds resnet18 weights, not resnet50"):
        dv.load_model("resnet50", weights=path)
