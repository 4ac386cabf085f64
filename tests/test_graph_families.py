"""torchvision's classification families imported as graph networks (`converters.from_torch`), against torch:
logits in float32 (1e-4 relative) and float64 (1e-9), every layer against the forward hook's output, forward and
projections running, `construct` on GoogLeNet inception4a and ConvNeXt, and a detection backbone (FPN's dict of
maps). Projections: the DeconvNet projection of a random signal at each family's visualized layer against torch
autograd under `converters.projection_rules` (float64, 1e-9 peak-relative and elementwise), for the families
test_graph_projections does not cover (GoogLeNet, MobileNet v3, DenseNet, ConvNeXt and ViT are there, at two
layers and three methods), and at one layer of the detection backbone; CI runs SqueezeNet's and the backbone's,
``--families`` the rest (ShuffleNet v2's in `test_family_projection`).

Each family is one test with one capture (torch.export takes 5-60 s a model). CI runs the families in `CI`; the
rest are marked ``families`` and run with ``pytest --families``.
"""

import copy

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torchvision

import converters
import deepvis_jax as dv
from deepvis_jax._src.nets import all_activations
from reference import as_float64, assert_close, nchw, nhwc, torch_hooks
from test_graph import _upto
from test_graph_projections import _as_torch

# family: (input size, the layers checked against torch hooks: "all" or None (logits only), a layer to visualize);
# the transformers are captured at their one image size (dynamic=False: torch.export's dynamic capture of Swin
# does not finish in minutes; ViT and MaxViT check their input size anyway)
FAMILIES = {
    "squeezenet1_0": (64, "all", "features.7"),
    "googlenet": (64, "all", "inception4a"),
    "mobilenet_v3_small": (64, "all", "features.4"),
    "shufflenet_v2_x0_5": (64, "all", "stage3"),
    "convnext_tiny": (64, "all", "features.3.2"),
    "inception_v3": (80, None, "Mixed_6a"),
    "densenet121": (64, None, "features.denseblock2"),
    "mobilenet_v2": (64, None, "features.7"),
    "mnasnet0_5": (64, None, "layers.9"),
    "efficientnet_b0": (64, None, "features.4"),
    "efficientnet_v2_s": (64, None, "features.4"),
    "regnet_y_400mf": (64, None, "trunk_output.block2"),
    "resnext50_32x4d": (64, None, "layer2"),
    "vit_b_16": (224, "all", "encoder.layers.encoder_layer_6"),
    "swin_t": (224, None, "features.3"),
    "maxvit_t": (224, None, "blocks.1"),
}
# convnext_tiny (90 s: every layer, and construct's winners) runs with --families; CI projects a small ConvNeXt
# (test_graph_projections)
CI = ("squeezenet1_0", "googlenet", "mobilenet_v3_small", "shufflenet_v2_x0_5")
PROJECTED_ELSEWHERE = ("googlenet", "mobilenet_v3_small", "densenet121", "convnext_tiny", "vit_b_16")
CI_PROJECTED = ("squeezenet1_0",)  # ShuffleNet v2's (41 s on 2 busy cores) is in test_family_projection


def check_projection_float64(tm64, m64, layer: str, hw: tuple[int, int], what: str) -> None:
    """`dv.project` (DeconvNet) of a random signal over `layer`'s map against torch autograd with the same rules
    (`converters.projection_rules`), float64, 1e-9 peak-relative and elementwise. Call inside x64."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((1, *hw, 3))
    act, sw = dv.forward(m64, jnp.asarray(x), layer)
    signal = rng.standard_normal(act.shape)
    got = dv.project(m64, sw, jnp.asarray(signal), layer, "deconv")
    xt = nchw(x).requires_grad_(True)
    with converters.projection_rules("deconv"):
        out = _upto(tm64, layer, xt)
        ref_act, cot = _as_torch(m64.arch.spec(layer), out, signal)
        (ref,) = torch.autograd.grad(out, xt, cot)
    assert_close(act, ref_act, 1e-9, err_msg=f"{what} {layer} float64 activation")
    assert np.abs(nhwc(ref)).max() > 0
    assert_close(got, nhwc(ref), 1e-9, elementwise=1e-9, err_msg=f"{what} {layer} float64 deconv projection")


def torch_family(name: str, dtype=torch.float32) -> torch.nn.Module:
    """Seeded random weights, eval mode, BatchNorm statistics measured on random images (a train-mode pass with
    momentum 1): non-trivial statistics that keep the deep layers responsive to their input, as trained ones do
    (random statistics make GoogLeNet's inception4a nearly constant, and construct could do nothing there)."""
    torch.manual_seed(0)
    # init_weights=False: torch's default init; torchvision's (std 0.01) leaves deep layers nearly blind to the input
    kwargs = {"aux_logits": False, "init_weights": False} if name in ("googlenet", "inception_v3") else {}
    m = torchvision.models.get_model(name, weights=None, **kwargs)
    for lin in m.modules():  # ViT's head starts at zero: its logits would all be 0, and equal whatever the import
        if isinstance(lin, torch.nn.Linear) and not lin.weight.any():
            torch.nn.init.normal_(lin.weight, std=0.02)
    size = FAMILIES[name][0]
    bns = [mod for mod in m.modules() if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm)]
    for bn in bns:
        bn.momentum = 1.0
    m.train()
    with torch.no_grad():
        m(torch.randn(4, 3, size, size, generator=torch.Generator().manual_seed(1)))
    return m.to(dtype).eval()


def as_map(name: str, model, t: torch.Tensor) -> np.ndarray:
    """A hook's output as the layer's (N, h, w, C) map (the layer kinds of `dv.layers`)."""
    spec = model.arch.spec(name)
    a = t.numpy()
    if spec.kind == "nchw":
        return a.transpose(0, 2, 3, 1)
    if spec.kind == "nhwc":
        return a
    return None  # tokens: compared through the model's own grid below


def check_family(name: str):
    size, every_layer, layer = FAMILIES[name]
    tm = torch_family(name)
    dynamic = False if name in ("vit_b_16", "swin_t", "maxvit_t") else None
    model = converters.from_torch(tm, torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(2)),
                                  dynamic=dynamic)  # fmt: skip
    assert model.arch.num_classes == 1000 and layer in dv.layers(model)
    x = np.random.default_rng(0).standard_normal((2, size, size, 3)).astype(np.float32)
    names = dv.layers(model) if every_layer == "all" else [layer]
    ref = torch_hooks(tm, x, names)
    with jax.enable_x64(True):
        tm64 = torch_family(name, torch.float64)
        m64 = as_float64(model)
        with torch.no_grad():
            ref64 = tm64(nchw(x.astype(np.float64))).numpy()
        assert_close(dv.classify(m64, jnp.asarray(x, jnp.float64)), ref64, 1e-9, err_msg=f"{name} float64 logits")
        if name not in PROJECTED_ELSEWHERE and (name not in CI or name in CI_PROJECTED):
            check_projection_float64(tm64, m64, layer, (size, size), name)
    # float32: 1e-4 relative, or twice torch's own float32 error where that is larger (measured: EfficientNet-V2-S
    # at these random weights, whose logits reach 185, has torch float32 2.7e-4 from the exact logits, JAX 1.3e-4)
    ref32 = ref["logits"].numpy()
    torch_error = np.abs(ref32 - ref64).max() / np.abs(ref64).max()
    logits, acts = all_activations(model, jnp.asarray(x))
    assert_close(logits, ref32, max(1e-4, 2 * torch_error), err_msg=f"{name} logits")
    for n in names:
        spec = model.arch.spec(n)
        if spec.kind == "tokens":
            t = ref[n].numpy()[:, spec.skip :]
            assert_close(acts[n], t.reshape(acts[n].shape), 1e-4, err_msg=f"{name} {n}")
        else:
            assert_close(acts[n], as_map(n, model, ref[n]), 1e-4, err_msg=f"{name} {n}")
    if name == "googlenet":  # pre-ReLU of a concatenation: each branch before its ReLU (what construct maximizes)
        bns = [f"inception4a.branch{b}.bn" for b in ("1", "2.1", "3.1", "4.1")]
        pre = torch_hooks(tm, x, bns)
        want = np.concatenate([nhwc(pre[b]) for b in bns], axis=-1)
        assert_close(model.apply(jnp.asarray(x), upto="inception4a", pre_relu=True), want, 1e-4)
    # forward and the three projections run at a layer (their rules at non-ReLU nonlinearities: rules.py)
    img = (np.random.default_rng(1).random((size, size, 3)) * 255).astype(np.uint8)
    r = dv.visualize(model, img, layer, top_k=2)
    h, w = dv._src.nets.layer_hw(model, layer, (size, size))
    assert r.activations.shape == (h, w, model.arch.channels(layer)) and r.projections.shape == (2, size, size, 3)
    assert np.all(np.isfinite(np.asarray(r.projections))) and np.abs(np.asarray(r.projections)).max() > 0
    return model


def winners(model, layer: str, filters, size: int, steps: int):
    """`construct` without transforms on pixels; the channels whose mean (pre-ReLU) each image excites most. One
    step per compiled chunk (the same images as any chunk: test_construct): XLA compiles ConvNeXt's unrolled
    8-step chunk in about a minute, one step in about 15 s."""
    imgs = dv.construct(model, layer, filters, steps=steps, lr=0.05, image_size=size, param="pixel",
                        transforms="none", verbose=False, chunk=1)  # fmt: skip
    act = model.apply(dv.normalize(jnp.asarray(imgs)), upto=layer, pre_relu=True)
    return np.asarray(jnp.mean(act, axis=(1, 2)))


def check_construct(name: str, model) -> None:
    """GoogLeNet's and ConvNeXt's construct: each filter's image makes its filter the strongest channel, by 1.3x."""
    if name in ("googlenet", "convnext_tiny"):
        layer = "inception4a" if name == "googlenet" else "features.3.2"
        filters = [0, 7, 100]
        means = winners(model, layer, filters, 64, 48)
        for i, f in enumerate(filters):
            assert np.argmax(means[i]) == f, (layer, f)
            assert means[i, f] > 1.3 * np.delete(means[i], f).max(), (layer, f)


@pytest.mark.parametrize("name", CI)
def test_family(name):
    check_construct(name, check_family(name))


@pytest.mark.families
@pytest.mark.parametrize("name", [n for n in FAMILIES if n not in CI])
def test_family_more(name):
    check_construct(name, check_family(name))


@pytest.mark.families
@pytest.mark.parametrize("name", [n for n in CI if n not in PROJECTED_ELSEWHERE + CI_PROJECTED])
def test_family_projection(name):
    """The projection check of the CI families that CI leaves out for its time (ShuffleNet v2)."""
    size, _, layer = FAMILIES[name]
    tm = torch_family(name)
    model = converters.from_torch(tm, torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(2)))
    with jax.enable_x64(True):
        check_projection_float64(torch_family(name, torch.float64), as_float64(model), layer, (size, size), name)


def test_detection_backbone_with_several_outputs():
    """Faster R-CNN's ResNet-50 + FPN backbone: a dict of five maps; its layers visualize; classify refuses."""
    det = torchvision.models.detection.fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None)
    tm = det.backbone.eval()
    model = converters.from_torch(tm, torch.randn(2, 3, 64, 64))
    assert model.arch.output_keys == ("0", "1", "2", "3", "pool") and model.arch.num_classes is None
    x = np.random.default_rng(0).standard_normal((1, 72, 64, 3)).astype(np.float32)
    with torch.no_grad():
        ref = tm(nchw(x))
    out = jax.jit(lambda m, x: m.apply(x))(model, jnp.asarray(x))
    assert list(out) == list(ref)
    for k in ref:
        assert_close(out[k], nhwc(ref[k]), 1e-4, err_msg=f"FPN output {k}")
    names = dv.layers(model)
    for layer in ("body.layer2", "fpn.layer_blocks.1", "fpn"):
        assert layer in names or layer == "fpn", layer
    assert "fpn" not in names  # several outputs: not one map
    with pytest.raises(ValueError, match="no class logits"):
        dv.classify(model, jnp.asarray(x))
    img = (np.random.default_rng(1).random((64, 64, 3)) * 255).astype(np.uint8)
    for layer in ("body.layer2", "fpn.layer_blocks.1"):
        r = dv.visualize(model, img, layer, top_k=2)
        assert np.abs(np.asarray(r.projections)).max() > 0
    with jax.enable_x64(True):
        check_projection_float64(copy.deepcopy(tm).double(), as_float64(model), "body.layer2", (64, 64), "FPN")
