"""DeconvNet: switches and unpooling on hand-computed inputs, parity of `project` with PyTorch autograd where
ReLU's backward is relu(grad) (Zeiler & Fergus; Captum's NeuronDeconvolution), and `visualize`."""

import copy
import functools

import jax
import jax.numpy as jnp
import jax.test_util
import numpy as np
import pytest
import torch

import converters
import deepvis_jax as dv
from deepvis_jax._src import visualizer
from deepvis_jax._src.rules import (
    gather_at_switches,
    max_pool,
    max_pool_with_switches,
    pool_geometry,
    pool_padding,
)
from deepvis_jax._src.visualize import _visualize
from reference import (
    ISA_CAPPED,
    as_float64,
    channel_signal,
    assert_choice,
    assert_close,
    assert_close_up_to_near_ties,
    check_float32_projections,
    check_projections,
    count_flips,
    nchw,
    nhwc,
    probe_signals,
    torch_deconv,
    torch_model,
    visualize_decisions,
)

# ------------------------------------------------------------------------------------------------------------
# Switches and unpooling, by hand and against torch's max_pool2d
# ------------------------------------------------------------------------------------------------------------

X5 = np.array(
    [[1, 3, 3, 0, 2],
     [0, 2, 1, 5, 5],
     [4, 4, 0, 1, 0],
     [0, 1, 7, 2, 2],
     [9, 0, 2, 2, 1]], np.float32,
)  # fmt: skip


def _pool(x2d, window=3, stride=2, padding=0):
    y, sw = max_pool_with_switches(jnp.asarray(x2d)[None, :, :, None], window, stride, padding)
    return np.asarray(y)[0, :, :, 0], sw


def test_switches_known_answer_with_ties_and_overlaps():
    y, sw = _pool(X5)
    np.testing.assert_array_equal(y, [[4, 5], [9, 7]])
    # window (0,0): 4 at (2,0) and (2,1) -> first; (0,1): 5 at (1,1) and (1,2) -> first; then 9 at (2,0), 7 at (1,0)
    np.testing.assert_array_equal(np.asarray(sw.index)[0, :, :, 0], [[6, 4], [6, 3]])
    assert sw.in_hw == (5, 5) and sw.window == 3 and sw.stride == 2
    assert [leaf.dtype for leaf in jax.tree_util.tree_leaves(sw)] == [np.int32]  # static data is no leaf


def test_unpool_overlapping_windows_sharing_a_switch_add():
    x = np.zeros((5, 5), np.float32)
    x[2, 2] = 10.0  # the maximum of all four overlapping 3x3 windows
    _, sw = _pool(x)
    np.testing.assert_array_equal(np.asarray(sw.index)[0, :, :, 0], [[8, 6], [2, 0]])
    signal = np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)
    up = np.asarray(dv.unpool(jnp.asarray(signal)[None, :, :, None], sw))[0, :, :, 0]
    expected = np.zeros((5, 5), np.float32)
    expected[2, 2] = 10.0
    np.testing.assert_array_equal(up, expected)
    # known answer by hand for X5 as well: the signal lands on each window's first maximum
    _, sw = _pool(X5)
    up = np.asarray(dv.unpool(jnp.asarray(signal)[None, :, :, None], sw))[0, :, :, 0]
    expected = np.zeros((5, 5), np.float32)
    expected[2, 0], expected[1, 3], expected[4, 0], expected[3, 2] = 1.0, 2.0, 3.0, 4.0
    np.testing.assert_array_equal(up, expected)


def _torch_offsets(x_nchw, window, stride, padding=0):
    """torch.max_pool2d's flat indices -> row-major offsets inside each (padded) window, NHWC."""
    y, idx = torch.nn.functional.max_pool2d(x_nchw, window, stride, padding, return_indices=True)
    oh, ow = y.shape[2:]
    r, c = idx // x_nchw.shape[3] + padding, idx % x_nchw.shape[3] + padding
    di = r - stride * torch.arange(oh).view(1, 1, -1, 1)
    dj = c - stride * torch.arange(ow).view(1, 1, 1, -1)
    return nhwc(y), (di * window + dj).numpy().transpose(0, 2, 3, 1)


@pytest.mark.parametrize("window,stride,padding,hw", [(3, 2, 0, (9, 12)), (2, 2, 0, (8, 11)), (3, 2, 0, (10, 7)),
                                                      (3, 2, 1, (9, 12)), (3, 2, 1, (10, 7))])  # fmt: skip
def test_switches_and_unpool_match_torch(window, stride, padding, hw):
    """Small integers (ties everywhere), with and without padding (ResNet's stem pool: 3x3/2, padding 1)."""
    rng = np.random.default_rng(window * 10 + hw[1] + padding)
    x = rng.integers(-2, 3, (2, *hw, 4)).astype(np.float32)  # negative values: padding must never win
    y, sw = max_pool_with_switches(jnp.asarray(x), window, stride, padding)
    np.testing.assert_array_equal(y, max_pool(jnp.asarray(x), window, stride, padding))
    ty, offsets = _torch_offsets(nchw(x), window, stride, padding)
    np.testing.assert_array_equal(y, ty)
    np.testing.assert_array_equal(sw.index, offsets)
    # unpooling is the transpose of max pooling: torch autograd (adds overlapping windows' shares)
    g = rng.standard_normal(y.shape).astype(np.float32)
    xt = nchw(x).requires_grad_(True)
    torch.nn.functional.max_pool2d(xt, window, stride, padding).backward(nchw(g))
    assert_close(dv.unpool(jnp.asarray(g), sw), nhwc(xt.grad), 1e-6)
    # ... and the transpose of the gather at the switches that projections replay
    np.testing.assert_array_equal(gather_at_switches(jnp.asarray(x), sw), y)
    (back,) = jax.vjp(lambda v: gather_at_switches(v, sw), jnp.asarray(x))[1](jnp.asarray(g))
    assert_close(back, nhwc(xt.grad), 1e-6)
    if window == stride:  # no overlaps: max_unpool2d agrees too
        _, idx = torch.nn.functional.max_pool2d(nchw(x), window, stride, return_indices=True)
        ref = torch.nn.functional.max_unpool2d(nchw(g), idx, window, stride, output_size=hw)
        np.testing.assert_array_equal(dv.unpool(jnp.asarray(g), sw), nhwc(ref))


def test_random_pooling_equals_max_pool_exactly():
    x = jax.random.normal(jax.random.key(0), (2, 15, 14, 5))
    pool = jax.jit(max_pool_with_switches, static_argnums=(1, 2))
    for window, stride in [(3, 2), (2, 2)]:
        y, _ = pool(x, window, stride)
        np.testing.assert_array_equal(y, max_pool(x, window, stride))


# ------------------------------------------------------------------------------------------------------------
# Every form torch writes a max-pool in: (h, w) windows and strides, per-axis and asymmetric padding, ceil_mode
# ------------------------------------------------------------------------------------------------------------


def test_ceil_mode_known_answer():
    """2x2/2 with ceil_mode on 5x5: a third row and column of windows hold the last row/column alone."""
    assert pool_padding((5, 5), 2, 2, 0, ceil_mode=True) == ((0, 1), (0, 1))
    y, sw = _pool(X5, 2, 2, pool_padding((5, 5), 2, 2, 0, ceil_mode=True))
    np.testing.assert_array_equal(y, [[3, 5, 5], [4, 7, 2], [9, 2, 1]])
    np.testing.assert_array_equal(np.asarray(sw.index)[0, :, :, 0], [[1, 3, 2], [0, 2, 2], [0, 0, 0]])
    assert (sw.window, sw.stride, sw.padding, sw.in_hw) == (2, 2, ((0, 1), (0, 1)), (5, 5))
    up = dv.unpool(jnp.arange(1.0, 10.0).reshape(1, 3, 3, 1), sw)[0, :, :, 0]
    expected = np.zeros((5, 5))
    for v, (r, c) in enumerate([(0, 1), (1, 3), (1, 4), (2, 0), (3, 2), (3, 4), (4, 0), (4, 2), (4, 4)], 1):
        expected[r, c] = v
    np.testing.assert_array_equal(up, expected)


def _torch_pool_offsets(x_nchw, window, stride, padding, ceil_mode):
    """torch's max_pool2d (any form) and its flat indices as row-major offsets ``di * kw + dj`` in each window."""
    (kh, kw), (sh, sw), ((t, _), (l, _)) = pool_geometry(window, stride, padding)
    y, idx = torch.nn.functional.max_pool2d(x_nchw, window, stride, padding, ceil_mode=ceil_mode, return_indices=True)
    r, c = idx // x_nchw.shape[3] + t, idx % x_nchw.shape[3] + l
    di = r - sh * torch.arange(y.shape[2]).view(1, 1, -1, 1)
    dj = c - sw * torch.arange(y.shape[3]).view(1, 1, 1, -1)
    return nhwc(y), (di * kw + dj).numpy().transpose(0, 2, 3, 1)


POOL_FORMS = [  # window, stride, torch padding, ceil_mode, input hw
    (3, 2, 0, True, (9, 12)),  # GoogLeNet's 3x3/2 ceil-mode pools
    (3, 2, 1, True, (10, 7)),
    (2, 2, 0, True, (7, 9)),  # GoogLeNet's maxpool4
    (3, 1, 1, True, (6, 5)),  # GoogLeNet's inception branch pool
    ((2, 3), (1, 2), (1, 0), False, (8, 9)),  # non-square window and stride, per-axis padding
    ((3, 2), (2, 1), (0, 1), True, (10, 7)),
    ((1, 3), (3, 2), 0, True, (8, 8)),
]


@pytest.mark.parametrize("window,stride,padding,ceil_mode,hw", POOL_FORMS)
def test_pool_forms_match_torch(window, stride, padding, ceil_mode, hw):
    """Values, switches (ties: small integers; negative values so padding could only lose), the unpooling and the
    gradient equal torch's max_pool2d and its autograd (float64, exactly)."""
    rng = np.random.default_rng(len(str((window, stride, padding, hw))))
    x = rng.integers(-2, 3, (2, *hw, 3)).astype(np.float64)
    pads = pool_padding(hw, window, stride, padding, ceil_mode)
    pool = functools.partial(max_pool, window=window, stride=stride, padding=pads)
    with jax.enable_x64(True):
        y, sw = jax.jit(max_pool_with_switches, static_argnums=(1, 2, 3))(jnp.asarray(x), window, stride, pads)
        ty, offsets = _torch_pool_offsets(nchw(x), window, stride, padding, ceil_mode)
        np.testing.assert_array_equal(y, ty)
        np.testing.assert_array_equal(sw.index, offsets)
        g = rng.standard_normal(y.shape)
        xt = nchw(x).requires_grad_(True)
        torch.nn.functional.max_pool2d(xt, window, stride, padding, ceil_mode=ceil_mode).backward(nchw(g))
        # the unpooling, the gather's transpose and max_pool's gradient; overlapping windows add their shares in
        # another order than torch's: equal to rounding
        back = jax.jit(lambda v, g: (dv.unpool(g, sw), jax.vjp(lambda u: gather_at_switches(u, sw), v)[1](g)[0],
                                     *jax.vjp(pool, v)))(jnp.asarray(x), jnp.asarray(g))  # fmt: skip
        np.testing.assert_array_equal(back[2], ty)
        for b in (back[0], back[1], back[3](jnp.asarray(g))[0]):
            assert_close(b, nhwc(xt.grad), 1e-14)
        smooth = jnp.asarray(rng.standard_normal(x.shape))  # no ties: finite differences are valid
        jax.test_util.check_grads(jax.jit(pool), (smooth,), order=1, modes=("fwd", "rev"))


def test_asymmetric_padding_matches_torch_pad_then_pool():
    """((top, bottom), (left, right)) padding = torch's -inf F.pad followed by an unpadded max_pool2d."""
    rng = np.random.default_rng(5)
    x = rng.integers(-2, 3, (1, 7, 8, 2)).astype(np.float64)
    pads = ((2, 0), (0, 1))
    with jax.enable_x64(True):
        y, sw = max_pool_with_switches(jnp.asarray(x), (3, 2), (2, 3), pads)
        xt = nchw(x).requires_grad_(True)
        ty = torch.nn.functional.max_pool2d(torch.nn.functional.pad(xt, (0, 1, 2, 0), value=-np.inf), (3, 2), (2, 3))
        np.testing.assert_array_equal(y, nhwc(ty))
        g = rng.standard_normal(y.shape)
        ty.backward(nchw(g))
        assert_close(dv.unpool(jnp.asarray(g), sw), nhwc(xt.grad), 1e-14)
        assert sw.padding == ((2, 0), (0, 1)) and sw.window == (3, 2) and sw.stride == (2, 3)


@pytest.mark.parametrize("args,match", [
    ((0, 2, 0), "window must be an int >= 1"),
    (((3, 3, 3), 2, 0), "window must be an int >= 1"),
    ((3, (2, 0), 0), "stride must be an int >= 1"),
    ((3, 2, -1), "padding must be an int >= 0"),
    ((3, 2, ((1, 0), (0,))), "padding must be an int, an"),
    ((3, 2, "same"), "padding must be an int, an"),
    ((9, 2, 0), "has no window on a 5x5 map"),
])  # fmt: skip
def test_pool_forms_bad_input_is_one_clear_line(args, match):
    with pytest.raises(ValueError, match=match) as e:
        max_pool(jnp.zeros((1, 5, 5, 1)), *args)
    assert "\n" not in str(e.value)


# ------------------------------------------------------------------------------------------------------------
# PyTorch reference: autograd with ReLU's backward replaced by relu(grad)
# ------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def torch_models():
    """The torch references, built once (float32; deep-copy before .double())."""
    return {"alexnet": torch_model("alexnet"), "vgg11_bn": torch_model("vgg11_bn")}


@pytest.fixture(scope="module")
def alexnet(torch_models):
    return converters.from_torchvision(torch_models["alexnet"])


@pytest.fixture(scope="module")
def vgg(torch_models):
    return converters.from_torchvision(torch_models["vgg11_bn"])  # non-trivial BatchNorm statistics


CASES = [("alexnet", (67, 80), dv.conv_layers("alexnet")), ("vgg11_bn", (48, 64), ["conv1_1", "conv3_1", "conv5_2"])]


@pytest.mark.parity
@pytest.mark.parametrize("arch,hw,layers", CASES, ids=[c[0] for c in CASES])
def test_project_matches_torch_deconv(arch, hw, layers, torch_models, alexnet, vgg):
    """float64: every decision of both frameworks is unambiguous, so everything is compared elementwise at 1e-10.
    float32: see `reference.check_float32_projections` (elementwise 1e-5, with float64's decisions)."""
    tm = torch_models[arch]
    x = np.random.default_rng(0).standard_normal((1, *hw, 3))
    model = {"alexnet": alexnet, "vgg11_bn": vgg}[arch]
    tm64 = copy.deepcopy(tm).double()
    with jax.enable_x64(True):
        model64 = converters.from_torchvision(tm64)
        for layer in layers if not ISA_CAPPED else ():
            check_projections(tm64, model64, x, layer, "deconv", 1e-10, elementwise=1e-10)
    for layer in layers:
        check_float32_projections(tm, model, tm64, model64, x, layer, "deconv")


def _torch_visualize(tm, x, mode, top_k):
    """torch's activation of conv5, its top-k channels by max, and their DeconvNet projections (mode max/all)."""
    out = torch_deconv(tm, None, x, "conv5", [])[0][0]
    channels = np.argsort(-out.max(axis=(0, 1)), kind="stable")[:top_k]
    signals = np.zeros((top_k, 1, *out.shape), out.dtype)
    for k, c in enumerate(channels):
        if mode == "max":
            i, j = np.unravel_index(np.argmax(out[:, :, c]), out.shape[:2])
            signals[k, 0, i, j, c] = out[i, j, c]
        else:
            signals[k, 0, :, :, c] = out[:, :, c]
    return out, channels, torch_deconv(tm, None, x, "conv5", signals)[1][:, 0]


@pytest.mark.parity
def test_visualize_224_alexnet_matches_torch(torch_models, alexnet):
    """float64: `visualize` (channel choice, signals, vmapped projections) equals torch elementwise. float32: its
    activations and scores (continuous) elementwise; its channels up to near-ties; its projections, which pass
    through its own float32 switches, within `assert_close_up_to_near_ties` of float64's."""
    tm, model = torch_models["alexnet"], alexnet
    image = np.random.default_rng(2).integers(0, 256, (224, 224, 3), dtype=np.uint8)
    tm64 = copy.deepcopy(tm).double()
    with jax.enable_x64(True):
        x = np.asarray(dv.normalize(image.astype(np.float64) / 255))[None]
    decisions32 = visualize_decisions(model, image, "conv5")
    with jax.enable_x64(True):  # float32's decisions against float64's, which are clear of ties
        flips = count_flips(decisions32, visualize_decisions(converters.from_torchvision(tm64), image, "conv5"))
    for mode in ("max", "all"):
        with jax.enable_x64(True):
            r64 = dv.visualize(converters.from_torchvision(tm64), image, "conv5", top_k=3, mode=mode)
            out, ch, ref = _torch_visualize(tm64, x, mode, 3)
            assert r64.projections.shape == (3, 224, 224, 3) and r64.activations.shape == (13, 13, 256)
            assert_close(r64.activations, out, 1e-10)
            np.testing.assert_array_equal(r64.channels, ch)
            assert_close(r64.scores, out.max(axis=(0, 1))[ch], 1e-10)
            assert_close(r64.projections, ref, 1e-10, err_msg=mode)
        r = dv.visualize(model, image, "conv5", top_k=3, mode=mode)
        out32 = torch_deconv(tm, None, x.astype(np.float32), "conv5", [])[0][0]
        assert r.projections.dtype == jnp.float32
        assert_close(r.activations, out32, 1e-5)
        assert_close(r.scores, np.sort(out32.max(axis=(0, 1)))[::-1][:3], 1e-5)  # top-k values are continuous
        assert_choice(r.channels, ch, out.max(axis=(0, 1)), err_msg=mode)
        same = np.asarray(r.channels) == ch  # a channel chosen on a near-tie has another projection
        assert_close_up_to_near_ties(np.asarray(r.projections)[same], np.asarray(r64.projections)[same], flips,
                                     err_msg=mode)  # fmt: skip


# ------------------------------------------------------------------------------------------------------------
# visualize
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode,rank", [("max", "max"), ("all", "mean")])
def test_visualize_equals_project_one_channel_at_a_time(vgg, mode, rank):
    """Two JAX programs (visualize's and forward + project's) with their own switches: float64, so that no switch
    sits on a rounding-level near-tie whatever the CPU."""
    with jax.enable_x64(True):
        vgg64 = as_float64(vgg)
        image = np.random.default_rng(0).random((40, 56, 3))
        r = dv.visualize(vgg64, image, "conv3_2", top_k=4, mode=mode, rank=rank)
        act, sw = dv.forward(vgg64, dv.normalize(image)[None], "conv3_2")
        a = np.asarray(act[0])
        assert r.projections.dtype == jnp.float64
        np.testing.assert_array_equal(r.activations, a)
        score = a.max(axis=(0, 1)) if rank == "max" else a.mean(axis=(0, 1))
        np.testing.assert_array_equal(r.channels, np.argsort(-score, kind="stable")[:4])
        assert_close(r.scores, score[np.asarray(r.channels)], 1e-12)  # mean: summation order may differ
        assert r.layer == "conv3_2" and r.mode == mode and r.rank == rank
        for k, c in enumerate(np.asarray(r.channels)):
            signal = channel_signal(a, c, mode)
            one = dv.project(vgg64, sw, jnp.asarray(signal)[None], "conv3_2")[0]
            assert np.abs(np.asarray(one)).max() > 0
            assert_close(r.projections[k], one, 1e-10, err_msg=f"channel {c}")


def test_visualize_does_not_recompile(vgg):
    rng = np.random.default_rng(0)
    dv.visualize(vgg, rng.random((40, 40, 3)).astype(np.float32), 2, top_k=3)
    size = _visualize._cache_size()
    r = dv.visualize(vgg, rng.random((40, 40, 3)).astype(np.float32), 2, top_k=3)
    assert _visualize._cache_size() == size
    dv.visualize(vgg, rng.random((40, 40, 3)).astype(np.float32), "conv2_1", top_k=3)  # same layer by name
    assert _visualize._cache_size() == size
    dv.visualize(vgg, rng.random((40, 40, 3)).astype(np.float32), 2, top_k=4)  # new static value: compiles
    assert _visualize._cache_size() == size + 1
    assert r.channels.shape == (3,)


def test_project_is_differentiable_and_jittable(torch_models):
    with jax.enable_x64(True):
        tm = copy.deepcopy(torch_models["alexnet"]).double()
        model = converters.from_torchvision(tm)
        x = jnp.asarray(np.random.default_rng(0).standard_normal((1, 67, 67, 3)))
        act, sw = dv.forward(model, x, "conv2")
        signal = jnp.asarray(np.random.default_rng(1).standard_normal(act.shape))
        jax.test_util.check_grads(lambda s: dv.project(model, sw, s, "conv2"), (signal,), order=1, modes=("rev",))
        # and through a user's own jit with the switches and model as ordinary arguments
        f = jax.jit(lambda m, s, sig: jnp.sum(dv.project(m, s, sig, 2) ** 2))
        g = jax.grad(f, argnums=2)(model, sw, signal)
        assert g.shape == signal.shape and np.isfinite(np.asarray(g)).all()


def test_bad_inputs_raise_useful_errors(vgg, alexnet):
    img = np.zeros((40, 40, 3), np.uint8)
    with pytest.raises(ValueError, match="conv1_1, conv2_1"):
        dv.visualize(vgg, img, "conv9")
    with pytest.raises(ValueError, match="mode 'best'.*max, all"):
        dv.visualize(vgg, img, 1, mode="best")
    with pytest.raises(ValueError, match="rank 'sum'.*max, mean"):
        dv.visualize(vgg, img, 1, rank="sum")
    for k in (0, 65, True, 2.0):
        with pytest.raises(ValueError, match=r"top_k must be an int in 1\.\.64"):
            dv.visualize(vgg, img, 1, top_k=k)
    for shape in [(40, 40), (1, 40, 40, 4), (40, 40, 4)]:  # (N, H, W, 3) is a batch (tests/test_batch.py)
        with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
            dv.visualize(vgg, np.zeros(shape, np.float32), 1)
    with pytest.raises(ValueError, match="dtype int64"):
        dv.visualize(vgg, np.zeros((40, 40, 3), np.int64), 1)
    alex = alexnet
    with pytest.raises(ValueError, match="30x30 pixels is too small for layer conv5 of alexnet.*at least 31x31"):
        dv.visualize(alex, np.zeros((30, 30, 3), np.float32), "conv5")
    dv.visualize(alex, np.zeros((30, 30, 3), np.float32), "conv1", top_k=2)  # conv1 is fine at 30 px
    with pytest.raises(ValueError, match=r"\(N, H, W, 3\)"):
        dv.forward(alex, jnp.zeros((67, 67, 3)), 1)
    act, sw = dv.forward(alex, jnp.zeros((1, 67, 67, 3)), "conv2")
    with pytest.raises(ValueError, match=r"shaped like conv2's activation \(1, 7, 7, 192\)"):
        dv.project(alex, sw, act[..., :10], "conv2")
    with pytest.raises(ValueError, match="1 max-pools, but conv3 of alexnet has 2"):
        dv.project(alex, sw, jnp.zeros((1, 3, 3, 384)), "conv3")


def test_public_names():
    names = ["forward", "project", "project_channels", "unpool", "max_pool_with_switches", "visualize",
             "Visualization", "Switches", "PoolSwitches", "Visualizer", "activation_grid", "projection_sheet",
             "contact_sheet", "save_result"]  # fmt: skip
    assert all(hasattr(dv, n) for n in names), [n for n in names if not hasattr(dv, n)]


def test_visualizer_construct_calls_dv_construct(monkeypatch):
    calls = []

    def fake(model, layer, filters, **kw):
        calls.append((layer, list(filters), kw))
        return np.stack([np.full((8, 8, 3), f / 100.0) for f in filters])

    monkeypatch.setattr(visualizer, "construct", fake)
    v = dv.Visualizer("model")
    np.testing.assert_array_equal(v.construct(3, 88, steps=5), np.full((8, 8, 3), 0.88))
    assert v.construct("conv2", [1, 2]).shape == (2, 8, 8, 3) and v.constructed.shape == (2, 8, 8, 3)
    assert calls == [(3, [88], {"steps": 5}), ("conv2", [1, 2], {})]
