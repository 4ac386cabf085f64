"""JAX networks (issue 29): a Flax linen network, a Flax VGG16 against the hand-written one, an NNX model and a plain
channels-first function imported with `dv.from_flax` / `dv.from_jax`, run by the jaxpr interpreter with the rules
of `rules.py`; checked in float64 against the framework itself and independent references."""

import os
import subprocess
import sys
import textwrap

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import deepvis_jax as dv


# --------------------------------------------------------------------------------------------------------------
# A linen network: convs, BatchNorm (eval), ReLU, LeakyReLU, max and average pooling, a residual addition, a
# concatenation, a dense head. `act` is the rectifier, so that the references can swap in their own.
# --------------------------------------------------------------------------------------------------------------


class Block(nn.Module):
    act: object = nn.relu

    @nn.compact
    def __call__(self, x):
        y = nn.Conv(8, (3, 3), padding="SAME", name="conv")(x)
        return self.act(x + y)


class Net(nn.Module):
    act: object = nn.relu

    @nn.compact
    def __call__(self, x):
        x = nn.Conv(8, (3, 3), padding=1, name="conv1")(x)
        x = nn.BatchNorm(use_running_average=True, name="bn1")(x)
        x = self.act(x)
        x = nn.max_pool(x, (2, 2), (2, 2))
        x = Block(self.act, name="block")(x)
        z = nn.leaky_relu(nn.Conv(4, (1, 1), name="conv2")(x), 0.1)
        x = jnp.concatenate([x, z], -1)
        x = nn.avg_pool(x, (2, 2), (2, 2))
        x = nn.Conv(6, (3, 3), padding=1, name="conv3")(x)
        return nn.Dense(5, name="head")(x.mean(axis=(1, 2)))


def _variables(net, x):
    v = net.init(jax.random.key(0), x)
    # BatchNorm statistics away from their defaults, so that eval mode is tested
    stats = v["batch_stats"]["bn1"]
    k1, k2 = jax.random.split(jax.random.key(3))
    stats = {"mean": jax.random.normal(k1, stats["mean"].shape, x.dtype) * 0.1,
             "var": jax.random.uniform(k2, stats["var"].shape, x.dtype, 0.5, 1.5)}  # fmt: skip
    return {"params": jax.tree_util.tree_map(lambda a: a.astype(x.dtype), v["params"]), "batch_stats": {"bn1": stats}}


@pytest.fixture(scope="module")
def linen():
    with jax.enable_x64(True):
        x = jax.random.normal(jax.random.key(1), (2, 16, 16, 3), jnp.float64)
        net = Net()
        v = _variables(net, x)
        model = dv.from_flax(net, v, x)
        yield net, v, x, model


def _rule_relu(method):
    """A ReLU whose backward is `method`'s rule, written independently as a jax.custom_vjp."""

    @jax.custom_vjp
    def relu(x):
        return jnp.maximum(x, 0)

    def fwd(x):
        return jnp.maximum(x, 0), x

    def bwd(x, g):
        if method == "deconv":
            return (jnp.maximum(g, 0),)
        return (jnp.where(x > 0, jnp.maximum(g, 0), 0.0),)

    relu.defvjp(fwd, bwd)
    return relu


def test_linen_logits_and_every_layer_equal_flax(linen):
    net, v, x, model = linen
    with jax.enable_x64(True):
        assert dv.layers(model) == ["conv1", "bn1", "block.conv", "block", "conv2", "conv3"]
        np.testing.assert_allclose(dv.classify(model, x), net.apply(v, x), rtol=1e-12, atol=1e-12)
        _, state = net.apply(v, x, capture_intermediates=True, mutable=["intermediates"])
        for layer in dv.layers(model):
            ref = state["intermediates"]
            for k in layer.split("."):
                ref = ref[k]
            np.testing.assert_allclose(model.apply(x, upto=layer), ref["__call__"][0], rtol=1e-12, atol=1e-12,
                                       err_msg=layer)  # fmt: skip
        report = model.arch.rules_report()
        assert "relu x2" in report and "leaky_relu x1" in report and "reduce_window_max x1" in report


@pytest.mark.parametrize("layer", ["block", "conv3"])
def test_linen_projections_equal_vjp_references(linen, layer):
    """"gradient" equals jax.vjp of the user's function; "deconv" and "guided" equal jax.vjp of the same module
    with its ReLUs replaced by a custom_vjp of the rule (the leaky ReLU and the pools keep their gradient: the
    leaky ReLU's deconv/guided rules are checked against torch in test_rules)."""
    net, v, x, model = linen
    with jax.enable_x64(True):
        act, sw = dv.forward(model, x, layer)
        signal = jax.random.normal(jax.random.key(5), act.shape, jnp.float64)
        _, state = net.apply(v, x, capture_intermediates=True, mutable=["intermediates"])

        def upto(module):
            def f(xx):
                _, st = module.apply(v, xx, capture_intermediates=True, mutable=["intermediates"])
                ref = st["intermediates"]
                for k in layer.split("."):
                    ref = ref[k]
                return ref["__call__"][0]

            return f

        for method in ("gradient", "deconv", "guided"):
            module = net if method == "gradient" else Net(act=_rule_relu(method))
            _, vjp = jax.vjp(upto(module), x)
            (want,) = vjp(signal)
            got = dv.project(model, sw, signal, layer, method=method)
            scale = float(jnp.abs(want).max())
            assert scale > 0
            if method == "gradient" or layer == "block":
                np.testing.assert_allclose(got, want, rtol=0, atol=1e-12 * scale, err_msg=method)


# --------------------------------------------------------------------------------------------------------------
# A Flax VGG16 with the hand-written VGG16's weights: the same algorithm either way
# --------------------------------------------------------------------------------------------------------------


class FlaxVGG16(nn.Module):
    @nn.compact
    def __call__(self, x):
        for block, (width, n) in enumerate([(64, 2), (128, 2), (256, 3), (512, 3), (512, 3)], 1):
            for i in range(1, n + 1):
                x = nn.relu(nn.Conv(width, (3, 3), padding=1, name=f"conv{block}_{i}")(x))
                x = dv.tag(x, f"relu{block}_{i}")
            x = nn.max_pool(x, (2, 2), (2, 2))
        return x


def test_flax_vgg16_equals_hand_written_vgg16_every_layer_and_method():
    with jax.enable_x64(True):
        hand = dv.load_model("vgg16", weights=None, seed=0)
        hand = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), hand)
        x = jax.random.normal(jax.random.key(2), (1, 32, 32, 3), jnp.float64)
        conv = {k: v for k, v in hand.variables["params"].items() if k.startswith("conv")}
        model = dv.from_flax(FlaxVGG16(), {"params": conv}, x)
        tags = [n for n in dv.layers(model) if n.startswith("relu")]
        assert len(tags) == 13
        _, mine = model.apply(x, upto=tags[-1], collect=True)
        _, theirs = hand.apply(x, upto="conv5_3", collect=True)
        for tag, layer in zip(tags[:-1], dv.layers(hand)):
            np.testing.assert_allclose(mine[tag], theirs[layer], rtol=1e-12, atol=1e-12)
        for tag, layer in ((tags[-1], "conv5_3"),):
            act, sw = dv.forward(model, x, tag)
            act_h, sw_h = dv.forward(hand, x, layer)
            for method in ("deconv", "guided", "gradient"):
                got = dv.project(model, sw, act, tag, method=method)
                want = dv.project(hand, sw_h, act_h, layer, method=method)
                scale = float(jnp.abs(want).max())
                np.testing.assert_allclose(got, want, rtol=0, atol=1e-12 * scale, err_msg=f"{layer} {method}")


# --------------------------------------------------------------------------------------------------------------
# NNX, and a plain channels-first function
# --------------------------------------------------------------------------------------------------------------


def test_nnx_model_layers_logits_and_gradient():
    from flax import nnx

    class Model(nnx.Module):
        def __init__(self, rngs):
            self.conv1 = nnx.Conv(3, 6, (3, 3), padding=1, rngs=rngs, param_dtype=jnp.float64)
            self.conv2 = nnx.Conv(6, 4, (3, 3), padding=1, rngs=rngs, param_dtype=jnp.float64)
            self.head = nnx.Linear(4, 3, rngs=rngs, param_dtype=jnp.float64)

        def __call__(self, x):
            h1 = jax.nn.relu(self.conv1(x))
            h2 = jax.nn.silu(self.conv2(nnx.max_pool(h1, (2, 2), (2, 2))))
            return self.head(h2.mean(axis=(1, 2)))

    with jax.enable_x64(True):
        net = Model(nnx.Rngs(0))
        x = jax.random.normal(jax.random.key(4), (2, 12, 12, 3), jnp.float64)
        model = dv.from_flax(net, example_input=x)
        assert dv.layers(model) == ["conv1", "conv2"]
        np.testing.assert_allclose(dv.classify(model, x), net(x), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(model.apply(x, upto="conv1"), net.conv1(x), rtol=1e-12, atol=1e-12)
        act, sw = dv.forward(model, x, "conv2")
        _, vjp = jax.vjp(lambda xx: net.conv2(nnx.max_pool(jax.nn.relu(net.conv1(xx)), (2, 2), (2, 2))), x)
        (want,) = vjp(act)
        got = dv.project(model, sw, act, "conv2", method="gradient")
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12 * float(jnp.abs(want).max()))
        assert "silu" in model.arch.rules_report()


def _nchw_apply(params, x):  # a plain channels-first function, as an Equinox model vmapped over a batch is
    dn = ("NCHW", "OIHW", "NCHW")
    h = jax.lax.conv_general_dilated(x, params["w1"], (1, 1), "SAME", dimension_numbers=dn)
    h = dv.tag(jax.nn.relu(h), "features")
    h = jax.lax.reduce_window(h, -jnp.inf, jax.lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")
    return h.mean(axis=(2, 3)) @ params["w2"]


def _nchw_params(dtype):
    k1, k2 = jax.random.split(jax.random.key(7))
    return {"w1": jax.random.normal(k1, (5, 3, 3, 3), dtype), "w2": jax.random.normal(k2, (5, 2), dtype)}


def test_plain_nchw_function_and_tag():
    with jax.enable_x64(True):
        params = _nchw_params(jnp.float64)
        x = jax.random.normal(jax.random.key(8), (2, 3, 10, 10), jnp.float64)
        model = dv.from_jax(_nchw_apply, params, x, layout="NCHW", name="plain")
        assert dv.layers(model) == ["features"] and model.arch.num_classes == 2
        xh = jnp.transpose(x, (0, 2, 3, 1))
        np.testing.assert_allclose(dv.classify(model, xh), _nchw_apply(params, x), rtol=1e-12, atol=1e-12)
        act, sw = dv.forward(model, xh, "features")
        assert act.shape == (2, 10, 10, 5) and len(sw.pools) == 0  # the pool is above the layer
        _, vjp = jax.vjp(lambda xx: _nchw_apply(params, jnp.transpose(xx, (0, 3, 1, 2))), xh)
        (want,) = vjp(jnp.ones((2, 2)))
        logits_model = dv.from_jax(lambda p, xx: dv.tag(_nchw_apply(p, xx)[:, :, None, None], "logits"), params, x,
                                   layout="NCHW")  # fmt: skip
        a, s = dv.forward(logits_model, xh, "logits")
        assert len(s.pools) == 1
        got = dv.project(logits_model, s, jnp.ones_like(a), "logits", method="gradient")
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12 * float(jnp.abs(want).max()))


# --------------------------------------------------------------------------------------------------------------
# The rest of the library on a JAX network; saving; errors
# --------------------------------------------------------------------------------------------------------------


def test_construct_ranks_its_filter_first_and_atlas_two_layers(linen):
    net, v, x, _ = linen
    model = dv.from_flax(net, jax.tree_util.tree_map(lambda a: np.asarray(a, np.float32), v),
                         np.asarray(x, np.float32))  # fmt: skip
    imgs = dv.construct(model, "block", [1, 5], steps=64, image_size=32, param="pixel", transforms="none", seed=0,
                        verbose=False)  # fmt: skip
    # the default objective reads the channel's mean before the layer's final ReLU
    acts = model.apply(dv.normalize(jnp.asarray(imgs)), upto="block", pre_relu=True).mean(axis=(1, 2))
    assert int(jnp.argmax(acts[0])) == 1 and int(jnp.argmax(acts[1])) == 5
    images = np.asarray(jax.random.uniform(jax.random.key(9), (4, 24, 24, 3)))
    both = dv.atlas(model, images, layers=["conv1", "block"], top_k=2, size=24, progress=False)
    for layer in ("conv1", "block"):
        one = dv.atlas(model, images, layer, top_k=2, size=24, progress=False)
        np.testing.assert_array_equal(both[layer].values, one.values)
        np.testing.assert_array_equal(both[layer].image_index, one.image_index)
        assert both[layer].projections.shape[2] == dv.receptive_field(model, layer).size
        np.testing.assert_allclose(both[layer].projections, one.projections, rtol=1e-6, atol=1e-6)


def test_saved_program_reloads_without_the_users_code(tmp_path):
    with jax.enable_x64(True):
        x = jax.random.normal(jax.random.key(1), (1, 16, 16, 3), jnp.float64)
        net = Net()
        model = dv.from_flax(net, _variables(net, x), x)
        path = tmp_path / "net.msgpack"
        dv.save_model(model, path)
        act, sw = dv.forward(model, x, "block")
        want = dv.project(model, sw, act, "block", method="guided")
        np.save(tmp_path / "x.npy", np.asarray(x))
        np.save(tmp_path / "want.npy", np.asarray(want))
        np.save(tmp_path / "logits.npy", np.asarray(dv.classify(model, x)))
    script = textwrap.dedent(f"""
        import sys
        for name in ("equinox", "haiku", "keras", "test_jax_networks"):
            sys.modules[name] = None  # importing any of them now fails
        import jax, numpy as np
        jax.config.update("jax_enable_x64", True)
        import deepvis_jax as dv
        m = dv.load_model({str(path)!r})
        x = np.load({str(tmp_path / 'x.npy')!r})
        assert dv.layers(m) == ["conv1", "bn1", "block.conv", "block", "conv2", "conv3"], dv.layers(m)
        np.testing.assert_array_equal(dv.classify(m, x), np.load({str(tmp_path / 'logits.npy')!r}))
        act, sw = dv.forward(m, x, "block")
        np.testing.assert_array_equal(dv.project(m, sw, act, "block", method="guided"),
                                      np.load({str(tmp_path / 'want.npy')!r}))
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": os.getcwd()})  # fmt: skip
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-2000:]


def test_errors_are_one_line(linen):
    net, v, x, model = linen

    def branchy(p, xx):
        return xx * 2 if xx.sum() > 0 else xx

    with pytest.raises(ValueError, match="Python control flow on array values") as e:
        dv.from_jax(branchy, {}, np.zeros((1, 8, 8, 3), np.float32))
    assert "\n" not in str(e.value)

    def looped(p, xx):
        return jax.lax.while_loop(lambda c: c[1] < 3, lambda c: (c[0] * 2, c[1] + 1), (xx, 0))[0]

    with pytest.raises(ValueError, match="while loop") as e:
        dv.from_jax(looped, {}, np.zeros((1, 8, 8, 3), np.float32))
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="unknown layer 'nope'.*conv1"):
        dv.forward(model, x, "nope")

    def tanh_net(p, xx):
        return dv.tag(jnp.tanh(xx * p["s"]), "t")

    with pytest.raises(ValueError, match="strict: tanh at t") as e:
        dv.from_jax(tanh_net, {"s": np.float32(2.0)}, np.zeros((1, 8, 8, 3), np.float32), strict=True)
    assert "\n" not in str(e.value)
    assert dv.from_jax(tanh_net, {"s": np.float32(2.0)}, np.zeros((1, 8, 8, 3), np.float32)).arch.layers == ("t",)


def test_scan_is_unrolled_and_keeps_its_rules():
    def scanned(p, x):
        def step(h, w):
            h = jax.lax.conv_general_dilated(h, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
            return jax.nn.relu(h), None

        h, _ = jax.lax.scan(step, x, p["ws"])
        return dv.tag(h, "out")

    with jax.enable_x64(True):
        ws = jax.random.normal(jax.random.key(0), (3, 3, 3, 3, 3), jnp.float64)
        x = jax.random.normal(jax.random.key(1), (1, 9, 9, 3), jnp.float64)
        model = dv.from_jax(scanned, {"ws": ws}, x)
        assert "relu x3" in model.arch.rules_report()
        np.testing.assert_allclose(model.apply(x, upto="out"), scanned({"ws": ws}, x), rtol=1e-12, atol=1e-12)
