"""dv.attribution and dv.targets against their peers, in float64 on 64 px images: a hand-written ResNet-18
(random weights, converters.from_torchvision) and a graph network with squeeze-excitation, SiLU and hardswish
(converters.from_torch). Peers: Captum (Saliency, InputXGradient, GuidedBackprop, IntegratedGradients with its
delta, LayerGradCam, GuidedGradCam, Occlusion, the NoiseTunnel's rules) and pytorch-grad-cam (GradCAM, HiResCAM,
GradCAMPlusPlus, XGradCAM, LayerCAM, EigenCAM, ScoreCAM: their maps before scaling and resizing), both on the
same weights in float64 torch. Where a peer rounds to float32 internally the tolerance says so, and a float64
torch computation of the same formula is checked to 1e-10 beside it."""

import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import converters
import deepvis_jax as dv
from deepvis_jax._src.attribution.methods import ig_rule
from reference import as_float64, assert_close, nchw, nhwc, torch_model

A = dv.attribution
HW = (64, 64)
# the ResNet-18 rows of the matrix that CI leaves out for time (the graph network runs those methods in CI)
wide = pytest.mark.skipif(not os.environ.get("DEEPVIS_SLOW_TESTS"), reason="the wider matrix (ResNet-18 for every "
                          "method); set DEEPVIS_SLOW_TESTS=1 to run it")  # fmt: skip


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


class SENet(nn.Module):
    """Conv-BN-ReLU, a max-pool, Conv-BN-SiLU, squeeze-excitation (a sigmoid gate), Conv-hardswish, a linear head."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.pool = nn.MaxPool2d(3, 2, 1)
        self.block = nn.Sequential(nn.Conv2d(16, 24, 3, padding=1), nn.BatchNorm2d(24), nn.SiLU())
        self.squeeze = nn.Conv2d(24, 8, 1)
        self.excite = nn.Conv2d(8, 24, 1)
        self.features = nn.Sequential(nn.Conv2d(24, 32, 3, padding=1), nn.Hardswish())
        self.head = nn.Linear(32, 10)

    def forward(self, x):
        x = self.block(self.pool(self.stem(x)))
        x = x * torch.sigmoid(self.excite(torch.relu(self.squeeze(x.mean((2, 3), keepdim=True)))))
        return self.head(self.features(x).mean((2, 3)))


@pytest.fixture(scope="module")
def resnet():
    tm = torch_model("resnet18")
    with jax.enable_x64(True):
        model = as_float64(converters.from_torchvision(tm))
    return tm.double(), model


@pytest.fixture(scope="module")
def senet():
    torch.manual_seed(0)
    tm = SENet().eval()
    with torch.no_grad():
        for bn in (tm.stem[1], tm.block[1]):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
    model = converters.from_torch(tm, torch.randn(2, 3, *HW))
    with jax.enable_x64(True):
        model = as_float64(model)
    return tm.double(), model


def _images(n=2, seed=0):
    return np.random.default_rng(seed).standard_normal((n, *HW, 3))


def _t(x):
    """NCHW float64 torch input that requires grad (Captum warns otherwise, and warnings are errors here)."""
    return nchw(x).double().requires_grad_(True)


def _close_delta(delta, ref, attributions, rtol, err_msg=""):
    """The convergence delta is a small difference of the attributions' sum and the score change: compared with an
    absolute tolerance of `rtol` times the largest sum of an image's attributions."""
    scale = float(np.max(np.abs(np.sum(np.asarray(attributions), axis=(1, 2, 3)))))
    np.testing.assert_allclose(np.asarray(delta), np.asarray(ref), rtol=0, atol=rtol * scale, err_msg=err_msg)


def _np(a):
    return a.detach().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)


# ----------------------------------------------------------------------------------------------------------------
# Input-space methods against Captum
# ----------------------------------------------------------------------------------------------------------------


def _torch_ig(tm, x, target, alphas, weights, baseline=None):
    """Integrated gradients in float64 torch: ((x - b) * sum_i w_i grad(b + a_i (x - b)), sum - (f(x) - f(b)))."""
    xt = nchw(x).double()
    b = torch.zeros_like(xt) if baseline is None else nchw(baseline).double()
    pts = torch.cat([b + a * (xt - b) for a in alphas]).requires_grad_(True)
    idx = torch.tensor(list(target) * len(alphas))
    (g,) = torch.autograd.grad(tm(pts)[torch.arange(len(idx)), idx].sum(), pts)
    total = (torch.tensor(weights, dtype=torch.float64)[:, None, None, None, None] * g.view(len(alphas), *xt.shape))
    attr = (xt - b) * total.sum(0)
    with torch.no_grad():
        ends = tm(torch.cat([xt, b]))
    n, t = len(target), torch.tensor(target)
    delta = attr.sum((1, 2, 3)) - (ends[torch.arange(n), t] - ends[n + torch.arange(n), t])
    return nhwc(attr), _np(delta)


@wide
@pytest.mark.filterwarnings("ignore:Setting backward hooks on ReLU")
def test_resnet_input_methods_equal_captum(resnet):
    """Saliency (abs and signed), InputXGradient and GuidedBackprop of two images with two classes, 1e-10 (in CI:
    guided backprop inside guided Grad-CAM on ResNet-18, Saliency and InputXGradient on the graph network)."""
    from captum.attr import GuidedBackprop, InputXGradient, Saliency

    tm, model = resnet
    x, target = _images(), [3, 7]
    xj = jnp.asarray(x)
    assert_close(A.saliency(model, xj, target), nhwc(Saliency(tm).attribute(_t(x), target=target)), 1e-10)
    assert_close(A.saliency(model, xj, target, abs=False),
                 nhwc(Saliency(tm).attribute(_t(x), target=target, abs=False)), 1e-10)  # fmt: skip
    assert_close(A.input_x_gradient(model, xj, target), nhwc(InputXGradient(tm).attribute(_t(x), target=target)),
                 1e-10)  # fmt: skip
    assert_close(A.guided_backprop(model, xj, target), nhwc(GuidedBackprop(tm).attribute(_t(x), target=target)),
                 1e-10)  # fmt: skip


@wide
def test_resnet_integrated_gradients_equal_captum(resnet):
    """IntegratedGradients on ResNet-18 (Gauss-Legendre, 4 steps, with its delta): Captum casts its step sizes to
    float32, so against Captum 1e-6, and against the same sum in float64 torch 1e-10 (the graph network's test
    below runs every rule in CI)."""
    from captum.attr import IntegratedGradients

    tm, model = resnet
    x, target = _images(), [3, 7]
    ig, delta = A.integrated_gradients(model, jnp.asarray(x), target, steps=4)
    ref, ref_delta = IntegratedGradients(tm).attribute(_t(x), target=target, n_steps=4,
                                                       return_convergence_delta=True)  # fmt: skip
    assert_close(ig, nhwc(ref), 1e-6, err_msg="Captum (float32 step sizes)")
    _close_delta(delta, _np(ref_delta), ig, 1e-6, err_msg="Captum's delta")
    exact, exact_delta = _torch_ig(tm, x, target, *ig_rule("gauss_legendre", 4))
    assert_close(ig, exact, 1e-10, err_msg="float64 torch")
    _close_delta(delta, exact_delta, ig, 1e-10, err_msg="float64 torch delta")


def test_integration_rules_equal_captum(senet):
    """Every rule's points and weights are Captum's (Gauss-Legendre exactly; Captum's Riemann points come from a
    float32 linspace: 1e-7); on the graph network each rule's attributions and delta (6 steps in chunks of 4)
    equal Captum's to 1e-6 (its float32 step sizes) and the float64 torch sum to 1e-10; so does a baseline other
    than zero."""
    from captum.attr import IntegratedGradients
    from captum.attr._utils.approximation_methods import approximation_parameters

    tm, model = senet
    x, target = _images(), [1, 4]
    xj = jnp.asarray(x)
    names = {"gauss_legendre": "gausslegendre", "riemann_left": "riemann_left", "riemann_right": "riemann_right",
             "riemann_middle": "riemann_middle", "riemann_trapezoid": "riemann_trapezoid"}  # fmt: skip
    assert set(names) == set(A.RULES)
    for rule, theirs in names.items():
        alphas, weights = ig_rule(rule, 6)
        step_fn, alpha_fn = approximation_parameters(theirs)
        tol = 0 if rule == "gauss_legendre" else 1e-7
        np.testing.assert_allclose(alphas, alpha_fn(6), rtol=0, atol=tol, err_msg=rule)
        np.testing.assert_allclose(weights, step_fn(6), rtol=0, atol=1e-15, err_msg=rule)
        ig, delta = A.integrated_gradients(model, xj, target, steps=6, rule=rule, chunk=4)
        ref, ref_delta = IntegratedGradients(tm).attribute(_t(x), target=target, n_steps=6, method=theirs,
                                                           return_convergence_delta=True)  # fmt: skip
        assert_close(ig, nhwc(ref), 1e-6, err_msg=rule)
        _close_delta(delta, _np(ref_delta), ig, 1e-6, err_msg=rule)
        exact, exact_delta = _torch_ig(tm, x, target, alphas, weights)
        assert_close(ig, exact, 1e-10, err_msg=rule)
        _close_delta(delta, exact_delta, ig, 1e-10, err_msg=rule)
    base = 0.3 * _images(seed=5)
    ig_b, delta_b = A.integrated_gradients(model, xj, target, baseline=base, steps=6, chunk=4)
    ref_b, ref_delta_b = IntegratedGradients(tm).attribute(_t(x), baselines=nchw(base).double(), target=target,
                                                           n_steps=6, return_convergence_delta=True)  # fmt: skip
    assert_close(ig_b, nhwc(ref_b), 1e-6)
    _close_delta(delta_b, _np(ref_delta_b), ig_b, 1e-6)
    exact, exact_delta = _torch_ig(tm, x, target, *ig_rule("gauss_legendre", 6), baseline=base)
    assert_close(ig_b, exact, 1e-10, err_msg="baseline")
    _close_delta(delta_b, exact_delta, ig_b, 1e-10, err_msg="baseline")


def test_smooth_grad_is_the_mean_of_captums_gradients_on_the_same_noise(senet):
    """SmoothGrad's noise is `smooth_noise` (sigma times each image's range, from the key); with that noise the
    three kinds equal the mean, the mean square and the variance of Captum's Saliency (signed) on the noisy
    images, 1e-10; so are plain Saliency (abs) and InputXGradient on the graph network."""
    from captum.attr import InputXGradient, Saliency

    tm, model = senet
    x, target, key = _images(), [2, 5], jax.random.key(3)
    xj = jnp.asarray(x)
    noise = np.asarray(A.smooth_noise(xj, key, 5, 0.2))
    spread = x.max(axis=(1, 2, 3)) - x.min(axis=(1, 2, 3))
    assert_close(noise.std(axis=(0, 2, 3, 4)), 0.2 * spread, 0.05, err_msg="noise scale: sigma * range")
    noisy = x[None] + noise
    grads = np.stack([nhwc(Saliency(tm).attribute(_t(v), target=target, abs=False)) for v in noisy])
    want = {"mean": grads.mean(0), "square": (grads**2).mean(0), "var": grads.var(0)}
    for kind, ref in want.items():
        got = A.smooth_grad(A.saliency, model, xj, target, key, samples=5, sigma=0.2, kind=kind, chunk=2, abs=False)
        assert_close(got, ref, 1e-10, err_msg=kind)
    assert_close(A.saliency(model, xj, target), nhwc(Saliency(tm).attribute(_t(x), target=target)), 1e-10)
    assert_close(A.input_x_gradient(model, xj, target), nhwc(InputXGradient(tm).attribute(_t(x), target=target)),
                 1e-10)  # fmt: skip


@wide
def test_smooth_grad_takes_any_method(senet):
    """Integrated gradients (a static ``steps=``) and guided backprop with a softmax target inside SmoothGrad equal
    the mean of those methods on the same noisy images, 1e-12."""
    tm, model = senet
    x, key = jnp.asarray(_images()), jax.random.key(1)
    noise = A.smooth_noise(x, key, 3, 0.1)
    got = A.smooth_grad(A.integrated_gradients, model, x, [1, 2], key, samples=3, sigma=0.1, chunk=2, steps=3)
    ref = np.mean([np.asarray(A.integrated_gradients(model, x + n, [1, 2], steps=3)[0]) for n in noise], 0)
    assert_close(got, ref, 1e-12, err_msg="integrated gradients")
    target = dv.targets.softmax([1, 2])
    got = A.smooth_grad(A.guided_backprop, model, x, target, key, samples=3, sigma=0.1)
    ref = np.mean([np.asarray(A.guided_backprop(model, x + n, target)) for n in noise], 0)
    assert_close(got, ref, 1e-12, err_msg="guided backprop")


def test_occlusion_equals_captum(senet):
    """Captum's Occlusion with a (3, 12, 12) window, stride 10 (the last window clipped at the edge) and baseline
    0: the mean score drop over the windows covering each pixel. Captum divides in float32: 1e-6."""
    from captum.attr import Occlusion

    tm, model = senet
    x, target = _images(), [0, 9]
    got = A.occlusion(model, jnp.asarray(x), target, window=12, stride=10, chunk=16)
    with torch.no_grad():
        ref = Occlusion(tm).attribute(nchw(x).double(), sliding_window_shapes=(3, 12, 12), strides=(3, 10, 10),
                                      baselines=0, target=target)  # fmt: skip
    assert_close(got, nhwc(ref), 1e-6)


# ----------------------------------------------------------------------------------------------------------------
# The CAM family against pytorch-grad-cam and Captum
# ----------------------------------------------------------------------------------------------------------------


def _grad_cam_raw(cls, tm, layer, x, targets):
    """pytorch-grad-cam's map before its scaling and resizing: its whole call runs (activations and gradients
    recorded by its hooks), then ``max(get_cam_image(...), 0)``, what it scales (`BaseCAM.compute_cam_per_layer`)."""
    cam = cls(model=tm, target_layers=[layer])
    xt = nchw(x).double()
    cam(input_tensor=xt, targets=targets)
    acts = cam.activations_and_grads.activations[0].numpy()
    grads = cam.activations_and_grads.gradients[0].numpy() if cam.uses_gradients else None
    raw = cam.get_cam_image(xt, layer, targets, acts, grads, False)
    cam.activations_and_grads.release()
    return np.maximum(raw, 0), acts


def _check_cams(tm, model, module, layer, x, target, targets):
    from pytorch_grad_cam import EigenCAM, GradCAM, GradCAMPlusPlus, HiResCAM, LayerCAM, XGradCAM

    xj = jnp.asarray(x)
    for fn, cls in ((A.grad_cam, GradCAM), (A.hires_cam, HiResCAM), (A.grad_cam_pp, GradCAMPlusPlus),
                    (A.xgrad_cam, XGradCAM), (A.layer_cam, LayerCAM)):  # fmt: skip
        ref, _ = _grad_cam_raw(cls, tm, module, x, targets)
        got = fn(model, xj, target, layer=layer)
        assert got.shape == ref.shape
        assert_close(got, ref, 1e-10, err_msg=cls.__name__)
    # EigenCAM: the peer's projection is float32 with an arbitrary sign; ours fixes the largest magnitude positive
    ref, acts = _grad_cam_raw(EigenCAM, tm, module, x, targets)
    signed = A.eigen_cam(model, xj, layer=layer, relu=False)
    assert_close(A.eigen_cam(model, xj, layer=layer), np.maximum(signed, 0), 0)
    for n in range(len(x)):  # the peer's map is max(+-p, 0): compare p with the sign ours fixed
        m = acts[n].reshape(acts.shape[1], -1).T
        m = m - m.mean(0)
        p = (m @ np.linalg.svd(m)[2][0]).reshape(acts.shape[2:])
        p = -p if abs(p.min()) > abs(p.max()) else p
        assert_close(signed[n], p, 1e-10, err_msg="EigenCAM in float64 numpy")
        peer = np.asarray(ref[n], np.float64)
        flipped = np.allclose(peer, np.maximum(-p, 0), rtol=1e-5, atol=1e-5 * np.abs(p).max())
        assert_close(np.maximum(p if not flipped else -p, 0), peer, 1e-5, err_msg="pytorch-grad-cam EigenCAM")


def test_resnet_cams_equal_pytorch_grad_cam_and_captum(resnet):
    """On ResNet-18's layer3 (4x4 at 64 px; "layer3" is torchvision's module, its last block): Grad-CAM, HiResCAM,
    Grad-CAM++, XGrad-CAM, LayerCAM 1e-10 against pytorch-grad-cam; EigenCAM 1e-10 against the SVD in float64
    numpy and 1e-5 against pytorch-grad-cam (float32, sign as LAPACK leaves it); Grad-CAM against Captum's
    LayerGradCam(relu_attributions=True) and guided Grad-CAM against Captum's GuidedGradCam, 1e-10."""
    from captum.attr import GuidedGradCam, LayerGradCam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    tm, model = resnet
    x, target = _images(), [3, 7]
    _check_cams(tm, model, tm.layer3, "layer3", x, target, [ClassifierOutputTarget(c) for c in target])
    ref = LayerGradCam(tm, tm.layer3).attribute(_t(x), target=target, relu_attributions=True)[:, 0]
    assert_close(A.grad_cam(model, jnp.asarray(x), target, layer="layer3"), _np(ref), 1e-10, err_msg="Captum")
    ggc = A.guided_grad_cam(model, jnp.asarray(x), target, layer="layer3")
    with pytest.warns(UserWarning, match="Setting backward hooks on ReLU"):
        ref = GuidedGradCam(tm, tm.layer3).attribute(_t(x), target=target)
    assert_close(ggc, nhwc(ref), 1e-10, err_msg="Captum GuidedGradCam")


def test_graph_network_cams_and_targets(senet):
    """The graph network at its `features` layer (16x16, after hardswish): the CAM family against pytorch-grad-cam
    (as on ResNet); a softmax target against its ClassifierOutputSoftmaxTarget, 1e-10."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget, ClassifierOutputTarget

    tm, model = senet
    x, target = _images(), [1, 6]
    assert "features" in dv.layers(model)
    _check_cams(tm, model, tm.features, "features", x, target, [ClassifierOutputTarget(c) for c in target])
    ref, _ = _grad_cam_raw(GradCAM, tm, tm.features, x, [ClassifierOutputSoftmaxTarget(c) for c in target])
    assert_close(A.grad_cam(model, jnp.asarray(x), dv.targets.softmax(target), layer="features"), ref, 1e-10)


def _score_cam_peer(tm, module, model, layer, target, x):
    from pytorch_grad_cam import ScoreCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    ref, acts = _grad_cam_raw(ScoreCAM, tm, module, x, [ClassifierOutputTarget(c) for c in target])
    got = A.score_cam(model, jnp.asarray(x), target, layer=layer, chunk=16)
    assert_close(got, ref, 1e-5, err_msg=layer)
    return acts


@wide
def test_resnet_score_cam_equals_pytorch_grad_cam(resnet):
    """Score-CAM on ResNet-18's layer1 (64 channels): pytorch-grad-cam keeps the masked scores in float32, 1e-5."""
    tm, model = resnet
    _score_cam_peer(tm, tm.layer1, model, "layer1", [3, 7], _images(seed=1))


def test_score_cam_equals_pytorch_grad_cam(senet):
    """Score-CAM on the graph network's `features` (32 channels): pytorch-grad-cam collects the masked scores in
    a float32 tensor, so 1e-5; the paper's weights (``"increase"``: each masked image's score minus the zero
    image's) against the same in float64 torch, 1e-10."""
    tm, model = senet
    x, target = _images(seed=1), [1, 6]
    acts = _score_cam_peer(tm, tm.features, model, "features", target, x)
    a = torch.from_numpy(acts)  # the masks as pytorch-grad-cam makes them
    up = F.interpolate(a, size=HW, mode="bilinear", align_corners=True)
    lo, hi = up.amin((2, 3), keepdim=True), up.amax((2, 3), keepdim=True)
    masks = (up - lo) / (hi - lo + 1e-8)
    xt = nchw(x).double()
    with torch.no_grad():
        s = torch.stack([tm(xt[n] * masks[n][:, None])[:, target[n]] for n in range(2)])
        s0 = tm(torch.zeros_like(xt))[torch.arange(2), torch.tensor(target)]
    ref = torch.relu(((s - s0[:, None])[:, :, None, None] * a).sum(1)).numpy()
    got = A.score_cam(model, jnp.asarray(x), target, layer="features", chunk=16, weights="increase")
    assert_close(got, ref, 1e-10, err_msg="the paper's weights")


# ----------------------------------------------------------------------------------------------------------------
# Targets, batches, jit and vmap, errors
# ----------------------------------------------------------------------------------------------------------------


def _hooked(tm, module, x):
    """(torch input, module's output) for a gradient of a layer's activation."""
    out = {}
    handle = module.register_forward_hook(lambda m, i, o: out.setdefault("a", o))
    xt = _t(x)
    tm(xt)
    handle.remove()
    return xt, out["a"]


def test_layer_targets_equal_torch_autograd(senet):
    """dv.targets.channel (a channel's mean), unit (one unit) and mask (a region's sum) at a layer, and a function
    of the outputs: saliency against torch autograd of the same score, 1e-10; Grad-CAM at a layer below a
    channel target against the gradient at that layer."""
    tm, model = senet
    x = _images()
    xj = jnp.asarray(x)
    xt, a = _hooked(tm, tm.features, x)
    (g,) = torch.autograd.grad(a[0, 5].mean() + a[1, 9].mean(), xt)
    assert_close(A.saliency(model, xj, dv.targets.channel("features", [5, 9]), abs=False), nhwc(g), 1e-10)
    xt, a = _hooked(tm, tm.features, x)
    (g,) = torch.autograd.grad(a[:, 3, 2, 7].sum(), xt)
    assert_close(A.saliency(model, xj, dv.targets.unit("features", 2, 7, 3), abs=False), nhwc(g), 1e-10)
    mask = (np.arange(16)[:, None] + np.arange(16)[None] < 10).astype(np.float64)
    xt, a = _hooked(tm, tm.features, x)
    (g,) = torch.autograd.grad((a[:, 4] * torch.from_numpy(mask)).sum(), xt)
    assert_close(A.saliency(model, xj, dv.targets.mask("features", mask, 4), abs=False), nhwc(g), 1e-10)
    xt = _t(x)
    (g,) = torch.autograd.grad(torch.logsumexp(tm(xt), 1).sum(), xt)
    fn = dv.targets.function(lambda out: jax.scipy.special.logsumexp(out, axis=1))
    assert_close(A.saliency(model, xj, fn, abs=False), nhwc(g), 1e-10)
    # Grad-CAM at "block" (the SiLU map) of a channel of "features"
    xt, acts = _t(x), {}
    hooks = [m.register_forward_hook(lambda m, i, o, k=k: acts.setdefault(k, o)) for k, m in
             (("block", tm.block), ("features", tm.features))]  # fmt: skip
    tm(xt)
    for h in hooks:
        h.remove()
    (g,) = torch.autograd.grad(acts["features"][:, 5].mean((1, 2)).sum(), acts["block"])
    ref = torch.relu((g.mean((2, 3), keepdim=True) * acts["block"]).sum(1))
    got = A.grad_cam(model, xj, dv.targets.channel("features", 5), layer="block")
    assert_close(got, _np(ref), 1e-10)


def _one_line(excinfo) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg, msg
    return msg


def test_batches_jit_vmap_and_errors(senet):
    """A batch equals its single-image calls (per-image targets); a method under the
    user's jax.jit equals the direct call, and vmapped over images equals the batch; a target list of the wrong
    length, a layer target below the CAM's layer, a class out of range, a float target and a bad rule raise one line
    each."""
    tm, model = senet
    x, target = jnp.asarray(_images(3)), np.array([1, 6, 2])
    for fn in (A.grad_cam, A.layer_cam):
        batch = fn(model, x, target)
        for n in range(3):
            assert_close(batch[n : n + 1], fn(model, x[n : n + 1], int(target[n])), 1e-12, err_msg=fn.__name__)
    jitted = jax.jit(lambda m, v, t: A.grad_cam_pp(m, v, t, layer="features"))(model, x, jnp.asarray(target))
    assert_close(jitted, A.grad_cam_pp(model, x, target, layer="features"), 1e-12)
    vmapped = jax.vmap(lambda v, t: A.grad_cam(model, v[None], t)[0])(x, jnp.asarray(target))
    assert_close(vmapped, A.grad_cam(model, x, target), 1e-12)
    with pytest.raises(ValueError) as e:
        A.grad_cam(model, x, [1, 2])
    assert re.search(r"holds 2 values for a batch of 3 images", _one_line(e))
    with pytest.raises(ValueError) as e:
        A.saliency(model, x, dv.targets.unit("features", 0, 0, [1, 2, 3, 4]))
    assert "batch of 3" in _one_line(e)
    with pytest.raises(ValueError) as e:
        A.grad_cam(model, x, dv.targets.channel("block", 0), layer="features")
    assert "does not depend on layer features" in _one_line(e)
    with pytest.raises(ValueError) as e:
        A.saliency(model, x, dv.targets.softmax(10))
    assert "class index 10 is out of range" in _one_line(e) and "10 classes (0..9)" in _one_line(e)
    with pytest.raises(TypeError) as e:
        A.saliency(model, x, 1.5)
    assert "int class index" in _one_line(e)
    with pytest.raises(ValueError) as e:
        A.integrated_gradients(model, x, 1, rule="simpson")
    assert "riemann_trapezoid" in _one_line(e)


def test_upsample_and_to_map_equal_torch():
    """upsample equals torch's F.interpolate: bilinear (align_corners False and True) and nearest, to 1e-12, on a
    7x5 map to 32x19; to_map sums or abs-sums over colour."""
    m = np.random.default_rng(0).standard_normal((2, 7, 5))
    t = torch.from_numpy(m)[:, None]
    for mode, corners in (("bilinear", False), ("bilinear", True), ("nearest", None)):
        ref = F.interpolate(t, size=(32, 19), mode=mode, align_corners=corners)[:, 0].numpy()
        got = A.upsample(jnp.asarray(m), (32, 19), mode=mode, align_corners=bool(corners))
        assert_close(got, ref, 1e-12, err_msg=f"{mode} {corners}")
    a = np.random.default_rng(1).standard_normal((2, 4, 4, 3))
    assert_close(A.to_map(jnp.asarray(a)), a.sum(-1), 1e-15)
    assert_close(A.to_map(jnp.asarray(a), "abs_sum"), np.abs(a).sum(-1), 1e-15)


def test_cli_writes_overlays(tmp_path, capsys, monkeypatch):
    """`deepvis attribute` writes one PNG per method: the image, a white gap, and the map over the image, equal
    pixel for pixel to `overlay` of the library's map (Grad-CAM at conv5, upsampled); an unknown method is one
    line with status 2."""
    from PIL import Image

    from deepvis_jax import cli

    monkeypatch.setenv(cli.CACHE_ENV, "off")
    image = np.random.default_rng(0).integers(0, 256, (72, 72, 3), dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "in.png")
    argv = ["attribute", "--weights", "random", "--image", str(tmp_path / "in.png"), "--size", "0", "--method",
            "grad_cam", "--target", "3", "--layer", "conv5", "--out", str(tmp_path / "out")]  # fmt: skip
    assert cli.main(argv) == 0, capsys.readouterr().err
    model = dv.load_model("alexnet", weights=None, seed=0)
    x = jnp.asarray(dv.normalize(image.astype(np.float32)[None] / 255.0), model.dtype)
    want = {"grad_cam_conv5": A.upsample(A.grad_cam(model, x, 3, layer="conv5"), (72, 72))[0]}
    for name, heat in want.items():
        png = np.asarray(Image.open(tmp_path / "out" / f"alexnet_{name}_class3.png"))
        assert png.shape == (72, 72 + 8 + 72, 3)
        np.testing.assert_array_equal(png[:, :72], image)
        np.testing.assert_array_equal(png[:, 80:], A.overlay(image, np.asarray(heat)))
    assert cli.main([*argv[:7], "--method", "gradcam", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("deepvis: error: unknown --method 'gradcam'; use any of: grad_cam")
