"""JAX networks (issue 29): a Flax linen network, a Flax VGG16 against the hand-written one, an NNX model and a plain
channels-first function imported with `dv.from_flax` / `dv.from_jax`, run by the jaxpr interpreter with the rules
of `rules.py`; checked in float64 against the framework itself and independent references."""

import importlib.util
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
    with jax.enable_x64(True):  # made in float64; each test enters x64 again (a fixture must not leave it on)
        x = jax.random.normal(jax.random.key(1), (2, 16, 16, 3), jnp.float64)
        net = Net()
        v = _variables(net, x)
        model = dv.from_flax(net, v, x)
    return net, v, x, model


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

    with pytest.raises(ValueError, match="strict: tanh at the top level") as e:
        dv.from_jax(tanh_net, {"s": np.float32(2.0)}, np.zeros((1, 8, 8, 3), np.float32), strict=True)
    assert "\n" not in str(e.value)
    assert dv.from_jax(tanh_net, {"s": np.float32(2.0)}, np.zeros((1, 8, 8, 3), np.float32)).arch.layers == ("t", "output")


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


# --------------------------------------------------------------------------------------------------------------
# Equinox (channels-first, vmapped per image) and Haiku (hk.nets.ResNet18, transform_with_state)
# --------------------------------------------------------------------------------------------------------------


def test_equinox_model_layers_logits_and_projections():
    eqx = pytest.importorskip("equinox")

    class CNN(eqx.Module):
        convs: list
        pool: eqx.nn.MaxPool2d
        head: eqx.nn.Linear
        act: object = eqx.field(static=True, default=jax.nn.relu)

        def __call__(self, x):
            x = self.pool(self.act(self.convs[0](x)))
            x = jax.nn.gelu(self.convs[1](x), approximate=False)
            return self.head(jax.nn.gelu(self.convs[2](x)).mean(axis=(1, 2)))

    with jax.enable_x64(True):
        k = jax.random.split(jax.random.key(0), 4)
        net = CNN([eqx.nn.Conv2d(3, 6, 3, padding=1, key=k[0], dtype=jnp.float64),
                   eqx.nn.Conv2d(6, 5, 3, padding=1, key=k[1], dtype=jnp.float64),
                   eqx.nn.Conv2d(5, 4, 3, padding=1, key=k[2], dtype=jnp.float64)],
                  eqx.nn.MaxPool2d(2, 2), eqx.nn.Linear(4, 3, key=k[3], dtype=jnp.float64))  # fmt: skip
        x = jax.random.normal(jax.random.key(1), (2, 3, 12, 12), jnp.float64)
        model = dv.from_equinox(net, x)
        xh = jnp.transpose(x, (0, 2, 3, 1))
        assert dv.layers(model) == ["convs.0", "pool", "convs.1", "convs.2"]
        assert "gelu x2" in model.arch.rules_report() and "nonlinear" not in model.arch.rules_report()
        np.testing.assert_allclose(dv.classify(model, xh), jax.vmap(net)(x), rtol=1e-12, atol=1e-12)

        def pooled(n):
            return lambda xx: jax.vmap(lambda im: n.pool(n.act(n.convs[0](jnp.transpose(im, (2, 0, 1))))))(xx)

        np.testing.assert_allclose(model.apply(xh, upto="pool"), jnp.transpose(pooled(net)(xh), (0, 2, 3, 1)),
                                   rtol=1e-12, atol=1e-12)  # fmt: skip
        act, sw = dv.forward(model, xh, "pool")
        signal = jnp.transpose(act, (0, 3, 1, 2))
        for method in ("gradient", "deconv", "guided"):
            ref = net if method == "gradient" else CNN(net.convs, net.pool, net.head, _rule_relu(method))
            _, vjp = jax.vjp(pooled(ref), xh)
            (want,) = vjp(signal)
            got = dv.project(model, sw, act, "pool", method=method)
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-12 * float(jnp.abs(want).max()), err_msg=method)


def test_haiku_resnet18_layers_logits_and_gradient():
    hk = pytest.importorskip("haiku")

    def f(x, is_training):
        return hk.nets.ResNet18(7, resnet_v2=False)(x, is_training=is_training)

    t = hk.transform_with_state(f)
    with jax.enable_x64(True):
        x = jax.random.normal(jax.random.key(1), (2, 32, 32, 3), jnp.float64)
        params, state = t.init(jax.random.key(0), x, True)
        params, state = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), (params, state))

        def apply(p, xx):  # the documented recipe: parameters and state as one pytree, eval mode
            return t.apply(p[0], p[1], None, xx, False)[0]

        model = dv.from_jax(apply, (params, state), x, name="resnet18")
        blocks = [n for n in dv.layers(model) if n.count(".") == 2 and ".block_" in n]
        assert blocks[0] == "res_net18.block_group_0.block_0" and len(blocks) == 8
        np.testing.assert_allclose(dv.classify(model, x), apply((params, state), x), rtol=1e-12, atol=1e-12)
        layer = "res_net18.block_group_1.block_1"

        def upto(xx):  # the block's output, read by Haiku's own method interceptor
            seen = {}

            def record(next_f, args, kwargs, context):
                out = next_f(*args, **kwargs)
                if context.method_name == "__call__":
                    seen.setdefault(context.module.module_name.replace("/~/", "."), out)
                return out

            with hk.intercept_methods(record):
                t.apply(params, state, None, xx, False)
            return seen[layer]

        np.testing.assert_allclose(model.apply(x, upto=layer), upto(x), rtol=1e-12, atol=1e-12)
        act, sw = dv.forward(model, x, layer)
        _, vjp = jax.vjp(upto, x)
        (want,) = vjp(act)
        got = dv.project(model, sw, act, layer, method="gradient")
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12 * float(jnp.abs(want).max()))


# --------------------------------------------------------------------------------------------------------------
# Keras 3: an application on the JAX backend against the same weights on Keras's torch backend (each backend in
# its own process: Keras picks one per process), with converters.projection_rules as the torch reference
# --------------------------------------------------------------------------------------------------------------

_KERAS = """
import os, sys
os.environ["KERAS_BACKEND"] = sys.argv[1]
if sys.argv[1] == "jax":  # before Keras makes its variables, or they are float32
    import jax
    jax.config.update("jax_enable_x64", True)
import numpy as np, keras
keras.config.set_floatx("float64")
keras.config.set_dtype_policy("float64")  # the layers' variables and computations in float64
folder, layer = sys.argv[2], "block_2_expand_relu"
app = keras.applications.MobileNetV2(weights=None, input_tensor=keras.Input((32, 32, 3), dtype="float64"),
                                     classes=5, alpha=0.35, classifier_activation=None)
x = np.load(os.path.join(folder, "x.npy"))
if sys.argv[1] == "jax":
    import deepvis_jax as dv
    np.savez(os.path.join(folder, "weights.npz"), *app.get_weights())
    params = ([v.value for v in app.trainable_variables], [v.value for v in app.non_trainable_variables])
    model = dv.from_jax(lambda p, im: app.stateless_call(p[0], p[1], im, training=False)[0], params, x,
                        name="mobilenetv2", preprocessing="minus_one_one")
    assert layer in dv.layers(model), dv.layers(model)[:8]
    xn = np.asarray(dv.normalize(x))
    np.save(os.path.join(folder, "logits_jax.npy"), np.asarray(dv.classify(model, xn)))
    act, sw = dv.forward(model, xn, layer)
    np.save(os.path.join(folder, "act.npy"), np.asarray(act))
    for method in ("deconv", "guided", "gradient"):
        # in the image's [0, 1] units, as torch differentiates x: d(normalized x)/d(x) = 1 / std per channel
        r = np.asarray(dv.project(model, sw, act, layer, method=method))
        per_unit = np.asarray(dv.normalize(np.ones(3)) - dv.normalize(np.zeros(3)))
        np.save(os.path.join(folder, method + "_jax.npy"), r * per_unit)
else:
    import torch
    import converters
    data = np.load(os.path.join(folder, "weights.npz"))
    app.set_weights([data[f"arr_{i}"] for i in range(len(data.files))])
    np.save(os.path.join(folder, "logits_torch.npy"), keras.ops.convert_to_numpy(app(x * 2 - 1, training=False)))
    sub = keras.Model(app.inputs, app.get_layer(layer).output)
    act = torch.from_numpy(np.load(os.path.join(folder, "act.npy")))
    for method in ("deconv", "guided", "gradient"):
        t = torch.tensor(x, requires_grad=True)
        with converters.projection_rules(method):
            y = sub(t * 2 - 1, training=False)
            y.backward(act)
        np.save(os.path.join(folder, method + "_torch.npy"), t.grad.numpy())
print("ok")
"""


@pytest.mark.frameworks
def test_keras_application_jax_backend_equals_torch_backend_rules(tmp_path):
    if importlib.util.find_spec("keras") is None:  # importing it here would pick a backend for this process
        pytest.skip("keras is not installed")
    x = np.asarray(jax.random.uniform(jax.random.key(3), (2, 32, 32, 3)), np.float64)
    np.save(tmp_path / "x.npy", x)
    for backend in ("jax", "torch"):
        out = subprocess.run([sys.executable, "-c", _KERAS, backend, str(tmp_path)], capture_output=True, text=True,
                             timeout=600, env={**os.environ, "PYTHONPATH": os.getcwd()})  # fmt: skip
        assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-3000:]
    np.testing.assert_allclose(np.load(tmp_path / "logits_jax.npy"), np.load(tmp_path / "logits_torch.npy"),
                               rtol=1e-9, atol=1e-9)  # fmt: skip
    # Keras's BatchNormalization casts the data to float32 in places even in a float64 model (7 casts on the
    # data path in these scopes of the traced program, and the same code on the torch backend), so the two
    # backends agree to float32 rounding: 2.7e-7 of the peak measured, bounded at 1e-6
    for method in ("deconv", "guided", "gradient"):
        want = np.load(tmp_path / f"{method}_torch.npy")
        got = np.load(tmp_path / f"{method}_jax.npy")
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6 * np.abs(want).max(), err_msg=method)


def test_bfloat16_model_runs_in_the_working_dtype():
    """A mixed-precision linen network (bfloat16 parameters and computation) is imported in float32: the same
    function with its parameters and casts widened, so its numbers equal the float32 network's."""

    class Half(nn.Module):
        dtype: object = jnp.bfloat16

        @nn.compact
        def __call__(self, x):
            x = nn.relu(nn.Conv(4, (3, 3), dtype=self.dtype, param_dtype=self.dtype, name="conv")(x))
            return nn.Dense(3, dtype=self.dtype, param_dtype=self.dtype, name="head")(x.mean(axis=(1, 2)))

    x = jax.random.normal(jax.random.key(0), (2, 8, 8, 3), jnp.float32)
    v = Half().init(jax.random.key(1), x)
    model = dv.from_flax(Half(), v, x)
    assert {a.dtype for a in jax.tree_util.tree_leaves(model.variables)} == {jnp.dtype(jnp.float32)}
    v32 = jax.tree_util.tree_map(lambda a: a.astype(jnp.float32), v)
    want = Half(dtype=jnp.float32).apply(v32, x)
    np.testing.assert_allclose(dv.classify(model, x), want, rtol=1e-6, atol=1e-6)
    assert dv.classify(model, x).dtype == jnp.float32


def test_grad_cam_of_a_jax_network_equals_flax_intercepted_gradient(linen):
    """dv.attribution's layer methods on a JAX network: Grad-CAM at `block` equals the CAM from the gradient that
    Flax's own `intercept_methods` gives (a zero added to the block's output), float64."""
    net, v, x, model = linen
    with jax.enable_x64(True):
        targets = jnp.array([1, 3])
        cam = dv.attribution.grad_cam(model, x, targets, layer="block")
        _, state = net.apply(v, x, capture_intermediates=True, mutable=["intermediates"])
        act = state["intermediates"]["block"]["__call__"][0]

        def score(delta):
            def add(next_fun, args, kwargs, context):
                out = next_fun(*args, **kwargs)
                return out + delta if context.module.name == "block" and context.method_name == "__call__" else out

            with nn.intercept_methods(add):
                logits = net.apply(v, x)
            return jnp.sum(logits[jnp.arange(2), targets])

        grads = jax.grad(score)(jnp.zeros_like(act))
        want = jax.nn.relu(jnp.sum(grads.mean(axis=(1, 2), keepdims=True) * act, axis=-1))
        np.testing.assert_allclose(cam, want, rtol=0, atol=1e-12 * float(jnp.abs(want).max()))
