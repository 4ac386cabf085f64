"""Guided backprop and gradient projections: parity with torch autograd (Captum's GuidedBackprop: ReLU backward
relu(grad) * (input > 0); Saliency without abs: plain autograd) and with JAX's own vjp of the forward pass."""

import copy

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import converters
import deepvis_jax as dv
from deepvis_jax._src.visualize import _visualize
from deepvis_jax._src.nets.layers import conv2d
from reference import (ISA_CAPPED, as_float64, assert_close, check_float32_projections, check_projections,
                       probe_signals, torch_model)


@pytest.fixture(scope="module")
def torch_models():
    return {"alexnet": torch_model("alexnet"), "vgg11_bn": torch_model("vgg11_bn")}


@pytest.fixture(scope="module")
def models(torch_models):
    return {k: converters.from_torchvision(m) for k, m in torch_models.items()}


CASES = [("alexnet", (67, 67), ["conv2", "conv5"]), ("vgg11_bn", (40, 48), ["conv2_1", "conv4_2"])]


@pytest.mark.parity
@pytest.mark.parametrize("arch,hw,layers", CASES, ids=[c[0] for c in CASES])
def test_guided_and_gradient_match_torch(arch, hw, layers, torch_models, models):
    """float64 elementwise at 1e-10 with each framework's own decisions; float32 elementwise at 1e-5 with float64's
    decisions (`reference.check_float32_projections`), which is what holds on every CPU."""
    tm, model = torch_models[arch], models[arch]
    x = np.random.default_rng(0).standard_normal((1, *hw, 3))
    tm64 = copy.deepcopy(tm).double()
    with jax.enable_x64(True):
        model64 = converters.from_torchvision(tm64)
        for layer in layers if not ISA_CAPPED else ():
            g, _ = check_projections(tm64, model64, x, layer, "guided", 1e-10, elementwise=1e-10)
            d, _ = check_projections(tm64, model64, x, layer, "gradient", 1e-10, elementwise=1e-10)
            act, sw = dv.forward(model64, jnp.asarray(x), layer)
            signals = jnp.asarray(probe_signals(act, np.random.default_rng(1)))
            c = jax.vmap(dv.project, in_axes=(None, None, 0, None))(model64, sw, signals, layer)
            # the three methods really differ here (more than one ReLU below the layer)
            assert np.abs(np.asarray(g - d)).max() > 1e-3 * np.abs(np.asarray(d)).max()
            assert np.abs(np.asarray(g - c)).max() > 1e-3 * np.abs(np.asarray(c)).max()
    for layer in layers:
        for method in ("guided", "gradient"):
            check_float32_projections(tm, model, tm64, model64, x, layer, method)


@pytest.mark.parametrize("layer", ["conv2", "conv5"])
def test_gradient_is_jax_vjp_of_the_forward(models, layer):
    """Against JAX's own autodiff of `model.apply` (another program with its own max-pool gradient): in float64, so
    that the two programs' switches cannot differ on a rounding-level near-tie."""
    with jax.enable_x64(True):
        model = as_float64(models["alexnet"])
        x = jnp.asarray(np.random.default_rng(3).standard_normal((2, 67, 75, 3)))
        act, sw = dv.forward(model, x, layer)
        signal = jnp.asarray(np.random.default_rng(4).standard_normal(act.shape))

        def reference(v, s):
            out, vjp = jax.vjp(lambda u: model.apply(u, upto=layer), v)
            return out, vjp(s)[0]

        # compiled as the library compiles (the same convolutions), so the two forward passes are bitwise equal
        out, ref = jax.jit(reference, compiler_options=dv.COMPILER_OPTIONS or None)(x, signal)
        np.testing.assert_array_equal(act, out)
        assert_close(dv.project(model, sw, signal, layer, method="gradient"), ref, 1e-10)


def test_guided_is_rectified_and_masked_by_hand(models):
    """conv1 (one conv + ReLU): guided = relu(s) * (pre > 0), gradient = s * (pre > 0), deconv = relu(s)."""
    model = models["alexnet"]
    x = jnp.asarray(np.random.default_rng(5).standard_normal((1, 40, 40, 3)), jnp.float32)
    act, sw = dv.forward(model, x, "conv1")
    mask = np.asarray(sw.relus[0])
    assert sw.relus[0].dtype == jnp.bool_ and mask.shape == act.shape and 0 < mask.mean() < 1
    s = np.random.default_rng(6).standard_normal(act.shape).astype(np.float32)
    op = model.arch.features[0]
    spec = jax.ShapeDtypeStruct(x.shape, x.dtype)
    conv_t = jax.linear_transpose(lambda v: conv2d(v, model.params["conv1"]["kernel"], op.stride, op.padding), spec)
    for method, back in [("deconv", np.maximum(s, 0)), ("guided", np.maximum(s, 0) * mask), ("gradient", s * mask)]:
        (ref,) = conv_t(jnp.asarray(back))
        assert_close(dv.project(model, sw, jnp.asarray(s), "conv1", method=method), ref, 1e-5, err_msg=method)


@pytest.mark.parametrize("method", ["guided", "gradient"])
def test_visualize_and_project_channels_with_methods(models, method):
    with jax.enable_x64(True):  # two JAX programs, each with its own switches and masks: see test_deconv
        vgg = as_float64(models["vgg11_bn"])
        image = np.random.default_rng(0).random((40, 48, 3))
        r = dv.visualize(vgg, image, "conv3_2", top_k=3, mode="all", method=method)
        assert r.method == method
        act, sw = dv.forward(vgg, dv.normalize(image)[None], "conv3_2")
        a = np.asarray(act[0])
        for k, c in enumerate(np.asarray(r.channels)):
            signal = np.zeros_like(a)
            signal[:, :, c] = a[:, :, c]
            one = dv.project(vgg, sw, jnp.asarray(signal)[None], "conv3_2", method)[0]
            assert np.abs(np.asarray(one)).max() > 0
            assert_close(r.projections[k], one, 1e-10, err_msg=f"channel {c}")
        # the default is still the DeconvNet
        assert dv.visualize(vgg, image, "conv3_2", top_k=3, mode="all").method == "deconv"


def test_switch_pytree_and_errors(models):
    alex = models["alexnet"]
    act, sw = dv.forward(alex, jnp.zeros((1, 67, 67, 3)), "conv2")
    leaves = jax.tree_util.tree_leaves(sw)
    assert [leaf.dtype for leaf in leaves] == [np.int32, np.bool_, np.bool_]  # one pool, two ReLU masks
    with pytest.raises(ValueError, match="unknown method 'smooth'.*deconv, guided, gradient"):
        dv.project(alex, sw, act, "conv2", method="smooth")
    with pytest.raises(ValueError, match="unknown method"):
        dv.visualize(alex, np.zeros((67, 67, 3), np.uint8), "conv2", method="smooth")
    bare = dv.Switches(pools=sw.pools, input_hw=sw.input_hw)  # built by hand, without masks
    dv.project(alex, bare, act, "conv2")  # the DeconvNet needs no masks
    with pytest.raises(ValueError, match="method 'guided' needs the forward ReLU masks.*hold 0.*has 2 ReLUs"):
        dv.project(alex, bare, act, "conv2", method="guided")


def test_methods_compile_once_each(models):
    vgg = models["vgg11_bn"]
    rng = np.random.default_rng(0)
    dv.visualize(vgg, rng.random((40, 40, 3)).astype(np.float32), 2, top_k=2, method="guided")
    size = _visualize._cache_size()
    dv.visualize(vgg, rng.random((40, 40, 3)).astype(np.float32), "conv2_1", top_k=2, method="guided")
    assert _visualize._cache_size() == size
