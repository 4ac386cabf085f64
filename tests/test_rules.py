"""Projection rules of every nonlinearity a graph network meets (the table in deepvis_jax/_src/rules.py), op by op
and on a tiny network written both in JAX (through the `ops` object) and in torch (run under
`converters.projection_rules`), float64 elementwise; and the torch reference itself against the nn.ReLU-replacing
one on AlexNet, VGG and ResNet."""

import functools

import jax
import jax.numpy as jnp
import jax.test_util
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import converters
from converters._compare import truncated
from converters._torchvision import detect_architecture
from deepvis_jax._src.activations import ACTIVATIONS, activation_rule, derivative
from deepvis_jax._src.nets import get_architecture, layer_name
from deepvis_jax._src.nets.layers import conv2d
from deepvis_jax._src.crops import CropRecord, CropReplay, window_geometry
from deepvis_jax._src.rules import (
    PLAIN,
    Record,
    Replay,
    Shapes,
    linearized_rule,
    pool_padding,
)
from deepvis_jax._src.windows import slice_window
from reference import as_float64, assert_close, nchw, nhwc, torch_model

# (kind, params, the torch module computing it): every activation of `ACTIVATIONS`, with non-default parameters
CASES = [
    ("hardtanh", {"min_val": 0.0, "max_val": 6.0}, torch.nn.ReLU6()),
    ("hardtanh", {"min_val": -1.0, "max_val": 2.0}, torch.nn.Hardtanh(-1.0, 2.0)),
    ("leaky_relu", {"negative_slope": 0.2}, torch.nn.LeakyReLU(0.2)),
    ("elu", {"alpha": 0.5}, torch.nn.ELU(0.5)),
    ("gelu", {}, torch.nn.GELU()),
    ("gelu", {"approximate": "tanh"}, torch.nn.GELU(approximate="tanh")),
    ("silu", {}, torch.nn.SiLU()),
    ("hardswish", {}, torch.nn.Hardswish()),
]
ONE_EACH = (0, 2, 3, 4, 6, 7)  # one case of each kind: ReLU6, leaky_relu, elu, gelu, silu, hardswish
IDS = [f"{k}-{'-'.join(str(v) for v in p.values())}".rstrip("-") for k, p, _ in CASES]
METHODS = ("deconv", "guided", "gradient")


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


def _points(rng, n=64):
    """Random values over the activations' interesting range, with every kink (0, -1, 2, 6, -3, 3) included."""
    return np.concatenate([[0.0, -1.0, 2.0, 6.0, -3.0, 3.0, 1e-300, -1e-300], rng.uniform(-8, 8, n)])


# ------------------------------------------------------------------------------------------------------------
# Op by op: values and derivatives as torch takes them; each rule's backward by hand and against torch
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind,params,module", CASES, ids=IDS)
def test_values_and_derivatives_equal_torch_including_kinks(kind, params, module):
    x = _points(np.random.default_rng(0))
    xt = torch.tensor(x, requires_grad=True)
    y = module(xt)
    (dy,) = torch.autograd.grad(y, xt, torch.ones_like(y))
    # relative to each tensor's scale: in a tail (gelu far below 0) the two formulas cancel differently; at a kink
    # the other side's derivative would differ by O(1)
    assert_close(ACTIVATIONS[kind](jnp.asarray(x), **params), y.detach().numpy(), 1e-14, err_msg=f"{kind} value")
    assert_close(derivative(jnp.asarray(x), kind, **params), dy.numpy(), 1e-13, err_msg=f"{kind} derivative")


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("kind,params,module", CASES, ids=IDS)
def test_each_rule_by_hand_and_against_torch(kind, params, module, method):
    """The rule's vjp reads only the recorded input: replayed from zeros it is relu(g) (deconv), relu(g) * f'(x)
    (guided) or g * f'(x) (gradient), and equals torch autograd under `projection_rules`."""
    rng = np.random.default_rng(1)
    x, g = _points(rng), rng.standard_normal(72)
    rule = functools.partial(activation_rule, recorded=jnp.asarray(x), kind=kind, params=tuple(sorted(params.items())),
                             method=method)  # fmt: skip
    (ours,) = jax.vjp(lambda v: rule(v), jnp.zeros(72))[1](jnp.asarray(g))
    local = np.asarray(derivative(jnp.asarray(x), kind, **params))
    by_hand = {"deconv": np.maximum(g, 0), "guided": np.maximum(g, 0) * local, "gradient": g * local}[method]
    np.testing.assert_array_equal(ours, by_hand)
    xt = torch.tensor(x, requires_grad=True)
    with converters.projection_rules(method):
        y = module(xt)
    (ref,) = torch.autograd.grad(y, xt, torch.tensor(g))
    assert_close(ours, ref.numpy(), 1e-13, err_msg=f"{kind} {method}")


@pytest.mark.parametrize("kind,params,module", CASES, ids=IDS)
def test_gradient_rule_check_grads(kind, params, module):
    """The gradient method's custom vjp is the derivative of the activation (finite differences, off the kinks)."""
    x = np.random.default_rng(2).uniform(-5, 5, 40)
    x = x[np.min(np.abs(x[:, None] - np.array([0.0, -1.0, 2.0, 6.0, -3.0, 3.0])), axis=1) > 0.05]
    p = tuple(sorted(params.items()))
    jax.test_util.check_grads(lambda v: activation_rule(v, v, kind, p, "gradient"), (jnp.asarray(x),), order=1,
                              modes=("rev",))  # fmt: skip


def test_linearized_rule_is_the_vjp_at_the_recorded_point():
    """Any other nonlinearity (here a gate of two data tensors and an index held at its recorded value): the vjp
    of its linearization at the recorded arguments, whatever the replayed arguments hold; check_grads at the
    recorded point."""
    rng = np.random.default_rng(3)
    a, s, g = rng.standard_normal((2, 5)), rng.standard_normal((2, 1)), rng.standard_normal((2, 5))
    idx = np.array([4, 0, 1, 2, 3])

    def fn(a, s, idx):
        return jnp.tanh(a[:, idx]) * jax.nn.sigmoid(s) / (1 + a * a)

    recorded = (jnp.asarray(a), jnp.asarray(s), jnp.asarray(idx))
    want = jax.vjp(lambda a, s: fn(a, s, recorded[2]), *recorded[:2])[1](jnp.asarray(g))
    replayed = (jnp.asarray(rng.standard_normal((2, 5))), jnp.zeros((2, 1)), jnp.asarray(idx[::-1].copy()))
    got = jax.vjp(lambda a, s: linearized_rule(fn, recorded, (a, s, replayed[2])), *replayed[:2])[1](jnp.asarray(g))
    for w, o in zip(want, got, strict=True):
        np.testing.assert_allclose(o, w, rtol=1e-14, atol=1e-15)
    at_record = jax.jit(lambda a, s: linearized_rule(fn, (a, s, recorded[2]), (a, s, recorded[2])))
    jax.test_util.check_grads(at_record, recorded[:2], order=1, modes=("rev",))


def test_linearized_records_data_and_takes_constants_from_the_replayed_call():
    """A graph op's arguments as an interpreter passes them: data, an int array derived from it, Python constants
    (a shape list, None, an int), and an attention-like tensor whose first axis is the batch times the heads: data
    is recorded (the last folded to (batch, heads, ...), so that one image's records are a slice), constants are
    passed again; the projection is the vjp at the recorded data, for both images and for one image alone. A
    constant array passed as an argument is refused in one line."""
    rng = np.random.default_rng(9)
    x, g = jnp.asarray(rng.standard_normal((2, 3, 4))), jnp.asarray(rng.standard_normal((2, 12)))

    def fn(t, shape, nothing, axis, idx):
        assert nothing is None and isinstance(shape, list) and isinstance(axis, int)
        return jax.nn.softmax(jnp.take_along_axis(t, idx, axis=-1), axis=axis).reshape(shape) * t.reshape(shape)

    def net(v, ops):
        y = ops.linearized(fn, v, [v.shape[0], 12], None, -1, jnp.argsort(v, axis=-1))
        heads = ops.linearized(lambda q: jnp.tanh(q) * q, y.reshape(-1, 4))  # (batch * 3, 4)
        return heads.reshape(y.shape)

    def plain(v, idx):
        y = fn(v, [v.shape[0], 12], None, -1, idx)
        return jnp.tanh(y) * y

    switches = jax.jit(lambda v: (net(v, record := Record()), record.switches((3, 4)))[1])(x)
    assert [[None if r is None else np.shape(r) for r in rs] for rs in switches.records] == [
        [(2, 3, 4), None, None, None, (2, 3, 4)], [(2, 3, 4)]]
    project = jax.jit(lambda s, x0, g: jax.vjp(lambda v: net(v, Replay(s, "deconv")), x0)[1](g)[0])
    (want,) = jax.vjp(lambda v: plain(v, jnp.argsort(x, axis=-1)), x)[1](g)
    np.testing.assert_allclose(project(switches, jnp.zeros(x.shape), g), want, rtol=1e-14, atol=1e-15)
    one = jax.tree_util.tree_map(lambda r: r[1:], switches)  # image 1's records, as project_units slices them
    np.testing.assert_allclose(project(one, jnp.zeros((1, 3, 4)), g[1:]), want[1:], rtol=1e-14, atol=1e-15)
    with pytest.raises(ValueError, match=r"array argument shaped \(3,\) whose first axis is not the batch \(2\) or "
                       "a multiple of it: pass data tensors batch first, and keep weights and other constant"):
        Record().linearized(lambda t, w: t * w, x, jnp.ones(3))


# ------------------------------------------------------------------------------------------------------------
# A tiny network in both frameworks: conv -> activation -> squeeze-excitation gate -> conv -> ReLU -> ceil-mode
# max-pool -> layer norm -> activation
# ------------------------------------------------------------------------------------------------------------


def _torch_net(seed=0):
    torch.manual_seed(seed)
    conv1, conv2 = torch.nn.Conv2d(3, 6, 3, padding=1), torch.nn.Conv2d(6, 5, 3, padding=1)
    norm = torch.nn.LayerNorm(5)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-0.5, 0.5)
    return [m.double() for m in (conv1, conv2, norm)]


def _torch_forward(mods, module, x):
    conv1, conv2, norm = mods
    y = module(conv1(x))
    y = y * torch.sigmoid(y.mean((2, 3), keepdim=True))
    y = F.relu(conv2(y), inplace=True)
    y = F.max_pool2d(y, 3, 2, ceil_mode=True)
    y = norm(y.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    return module(y)


def _jax_forward(mods, kind, params, x, ops):
    conv1, conv2, norm = [{k: jnp.asarray(v.detach().numpy()) for k, v in m.named_parameters()} for m in mods]

    def conv(v, p):
        return conv2d(v, jnp.transpose(p["weight"], (2, 3, 1, 0)), 1, 1) + p["bias"].reshape(1, 1, 1, -1)

    def layer_norm(v):
        mean = jnp.mean(v, -1, keepdims=True)
        var = jnp.mean((v - mean) ** 2, -1, keepdims=True)
        scale, shift = norm["weight"].reshape(1, 1, 1, -1), norm["bias"].reshape(1, 1, 1, -1)
        return (v - mean) / jnp.sqrt(var + 1e-5) * scale + shift

    y = ops.activation(conv(x, conv1), kind, **params)
    y = ops.linearized(lambda t: t * jax.nn.sigmoid(jnp.mean(t, (1, 2), keepdims=True)), y)
    y = ops.relu(conv(y, conv2))
    y = ops.max_pool(y, 3, 2, pool_padding(y.shape[1:3], 3, 2, 0, ceil_mode=True))
    y = ops.linearized(layer_norm, y)
    return ops.activation(y, kind, **params)


@pytest.mark.parametrize("kind,params,module", [CASES[i] for i in ONE_EACH], ids=[IDS[i] for i in ONE_EACH])
def test_tiny_network_projections_equal_torch_reference(kind, params, module):
    """Record then replay (from zeros, and from a random input: the same projection) against torch autograd with
    the same rules, for the three methods (float64, 1e-10 peak-relative and elementwise); one network per
    activation (the other parameter variants of `CASES` are checked op by op above)."""
    mods = _torch_net()
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 10, 9, 3))
    net = functools.partial(_jax_forward, mods, kind, params)
    signal = jnp.asarray(rng.standard_normal((2, 5, 4, 5)))

    @jax.jit
    def run(x, x0):  # record at x, then each method's projection replayed from x0
        act = net(x, record := Record())
        switches = record.switches(x.shape[1:3])
        return act, switches, {m: jax.vjp(lambda v: net(v, Replay(switches, m)), x0)[1](signal)[0] for m in METHODS}

    act, switches, ours = run(jnp.asarray(x), jnp.zeros(x.shape))
    _, _, again = run(jnp.asarray(x), jnp.asarray(rng.standard_normal(x.shape)))
    xt = nchw(x).requires_grad_(True)
    assert_close(act, nhwc(_torch_forward(mods, module, xt)), 1e-12, err_msg="forward")
    assert [len(r) for r in switches.records] == [1, 1, 1, 1] and len(switches.relus) == len(switches.pools) == 1
    for method in METHODS:
        with converters.projection_rules(method):
            out = _torch_forward(mods, module, xt)
        (ref,) = torch.autograd.grad(out, xt, nchw(signal))
        assert np.abs(nhwc(ref)).max() > 0
        assert_close(ours[method], nhwc(ref), 1e-10, elementwise=1e-10, err_msg=f"{kind} {method}")
        np.testing.assert_array_equal(again[method], ours[method])


def test_replay_refuses_records_of_another_network_in_one_line():
    net = functools.partial(_jax_forward, _torch_net(), "silu", {})
    x = jax.ShapeDtypeStruct((1, 10, 9, 3), jnp.float64)
    sw = jax.eval_shape(lambda v: (net(v, record := Record()), record.switches((10, 9)))[1], x)

    def replay(switches, method):
        jax.eval_shape(lambda v, s: net(v, Replay(s, method)), x, switches)

    with pytest.raises(ValueError, match="hold 2 records of activations and other nonlinearities, but this network"):
        replay(sw.replace(records=sw.records[:2]), "guided")
    with pytest.raises(ValueError, match=r"record 2 of these switches holds shapes \[\(1, 5, 4, 5\)\], but this "
                       r"network's linearized function takes \[\(1, 10, 9, 6\)\]; record the switches with forward"):
        replay(sw.replace(records=(sw.records[0], sw.records[2], sw.records[1], sw.records[3])), "deconv")
    with pytest.raises(ValueError, match="unknown activation 'mish'; use one of: hardtanh, "):
        PLAIN.activation(jnp.zeros(3), "mish")
    with pytest.raises(ValueError, match="activation 'elu' takes alpha; got negative_slope"):
        PLAIN.activation(jnp.zeros(3), "elu", negative_slope=0.1)


def test_channels_of_an_activation_at_the_top_use_those_channels_of_its_record():
    """`project_channels`' top: an activation computed for only some channels reads those channels' inputs."""
    rng = np.random.default_rng(5)
    x, g = rng.standard_normal((1, 4, 4, 6)), rng.standard_normal((1, 4, 4, 2))
    ops = Record()
    ops.activation(jnp.asarray(x), "gelu")
    channels = jnp.array([4, 1])
    for method in METHODS:
        replay = Replay(ops.switches((4, 4)), method)
        (ours,) = jax.vjp(lambda v: replay.activation(v, "gelu", channels), jnp.zeros((1, 4, 4, 2)))[1](jnp.asarray(g))
        (full,) = jax.vjp(lambda v: Replay(ops.switches((4, 4)), method).activation(v, "gelu"),
                          jnp.zeros(x.shape))[1](jnp.zeros(x.shape).at[..., channels].set(g))  # fmt: skip
        np.testing.assert_array_equal(ours, full[..., channels])


# ------------------------------------------------------------------------------------------------------------
# Crops (`project_units`): activations and linearized functions read the windows of their records
# ------------------------------------------------------------------------------------------------------------


def _crop_net(mods, x, ops):
    """conv 3x3 -> layer norm (linearized) -> hardswish -> 2x2/2 ceil-mode pool -> conv 3x3 -> gelu: a unit's field
    is 8 pixels, its stride 2, its offset -3."""
    conv1, conv2, norm = [{k: jnp.asarray(v.detach().numpy()) for k, v in m.named_parameters()} for m in mods]

    def layer_norm(v):
        mean = jnp.mean(v, -1, keepdims=True)
        return (v - mean) / jnp.sqrt(jnp.mean((v - mean) ** 2, -1, keepdims=True) + 1e-5)

    y = conv2d(x, jnp.transpose(conv1["weight"], (2, 3, 1, 0)), 1, 1) + conv1["bias"].reshape(1, 1, 1, -1)
    y = ops.activation(ops.linearized(layer_norm, y), "hardswish")
    y = ops.max_pool(y, 2, 2, pool_padding(y.shape[1:3], 2, 2, 0, ceil_mode=True))
    y = conv2d(y, jnp.transpose(conv2["weight"], (2, 3, 1, 0)), 1, 1) + conv2["bias"].reshape(1, 1, 1, -1)
    return ops.activation(y, "gelu")


@pytest.mark.parametrize("method", METHODS)
def test_crop_replay_of_activations_and_linearized_equals_the_whole_image(method):
    """A unit's projection computed on the crop that holds its field (with the whole image's records, and with
    the crop's own) equals the whole image's projection there and is zero elsewhere, at the border and inside."""
    mods = _torch_net()
    rng = np.random.default_rng(6)
    x = jnp.asarray(rng.standard_normal((1, 13, 12, 3)))
    net = functools.partial(_crop_net, mods)
    stride, offset, side = 2, -3, 9  # side: field 8 + stride - 1

    def calls(h, w):
        ops = Shapes()
        jax.eval_shape(lambda v: net(v, ops), jax.ShapeDtypeStruct((1, h, w, 3), jnp.float64))
        return ops.calls

    geometry = window_geometry(calls(13, 12), calls(15, 14), stride)
    assert [c[0] for c in geometry] == ["lin", "act", "pool", "act"] and geometry[0][1][0] == ((13, 12), 1)
    first = -(offset // stride)  # the unit's row in its crop

    @jax.jit
    def unit(row, col):
        record = Record()
        act = net(x, record)
        switches = record.switches((13, 12))
        signal = jnp.zeros(act.shape).at[0, row, col, 1].set(1.5)
        (whole,) = jax.vjp(lambda v: net(v, Replay(switches, method)), jnp.zeros(x.shape))[1](signal)
        tops = jnp.stack([stride * (row - first), stride * (col - first)])
        crop = slice_window(x, tops, (side, side), 0)
        local = CropRecord(geometry, tops)
        net(crop, local)
        placed = []
        for source, is_local in [(switches, False), (local.switches((side, side)), True)]:
            ops = CropReplay(source, method, geometry, tops, local=is_local)
            out, vjp = jax.vjp(lambda v: net(v, ops), jnp.zeros(crop.shape))
            (part,) = vjp(jnp.zeros(out.shape).at[0, first, first, 1].set(1.5))
            canvas = jnp.zeros((13 + 2 * side, 12 + 2 * side, 3))
            canvas = jax.lax.dynamic_update_slice(canvas, part[0], (tops[0] + side, tops[1] + side, 0 * tops[0]))
            placed.append(canvas[side : side + 13, side : side + 12])
        return whole[0], placed

    for row, col in [(0, 0), (3, 2), (6, 5)]:
        whole, placed = unit(row, col)
        assert np.abs(whole).max() > 0
        for p, is_local in zip(placed, [False, True]):
            assert_close(p, whole, 1e-12, err_msg=f"{method} unit {(row, col)} local={is_local}")


def test_crop_geometry_of_relus_and_pools_only_replays_the_crops_own_records():
    """A geometry without the activation and linearized calls (a graph interpreter zeroing its maps itself): inside
    the image the crop's own records give the whole image's projection; the whole image's records are refused."""
    mods = _torch_net()
    x = jnp.asarray(np.random.default_rng(6).standard_normal((1, 13, 12, 3)))
    net = functools.partial(_crop_net, mods)
    shapes = [Shapes(), Shapes()]
    for ops, hw in zip(shapes, [(13, 12), (15, 14)]):
        jax.eval_shape(lambda v: net(v, ops), jax.ShapeDtypeStruct((1, *hw, 3), jnp.float64))
    geometry = tuple(c for c in window_geometry(shapes[0].calls, shapes[1].calls, 2) if c[0] == "pool")
    tops = jnp.array([2, 0])  # unit (3, 2): its 9x9 crop lies inside the image

    @jax.jit
    def both():
        act = net(x, record := Record())
        switches = record.switches((13, 12))
        (whole,) = jax.vjp(lambda v: net(v, Replay(switches, "guided")), jnp.zeros(x.shape))[1](
            jnp.zeros(act.shape).at[0, 3, 2, 1].set(1.0))
        crop = slice_window(x, tops, (9, 9), 0)
        net(crop, local := CropRecord(geometry, tops))
        ops = CropReplay(local.switches((9, 9)), "guided", geometry, tops, local=True)
        out, vjp = jax.vjp(lambda v: net(v, ops), jnp.zeros(crop.shape))
        return whole[0, 2:11, 0:9], vjp(jnp.zeros(out.shape).at[0, 2, 2, 1].set(1.0))[0][0], switches

    whole, part, switches = both()
    assert np.abs(whole).max() > 0
    assert_close(part, whole, 1e-12)
    with pytest.raises(ValueError, match="crop's geometry does not describe the network's linearized function calls"):
        jax.eval_shape(lambda v: net(v, CropReplay(switches, "guided", geometry, tops)), jnp.zeros((1, 9, 9, 3)))


# ------------------------------------------------------------------------------------------------------------
# The torch reference against the nn.ReLU-replacing one (the hand-written families)
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("arch,layer,hw", [("alexnet", "conv3", 67), ("vgg11", "conv2_1", 32),
                                           ("resnet18", "layer2.1", 40)])  # fmt: skip
def test_projection_rules_equal_the_relu_module_reference(arch, layer, hw):
    """Every ReLU, module or functional, intercepted by the TorchFunctionMode: the same numbers as replacing the
    nn.ReLU modules, for the three methods (exactly)."""
    tm = torch_model(arch, dtype=torch.float64)
    x = torch.from_numpy(np.random.default_rng(7).standard_normal((1, 3, hw, hw))).requires_grad_(True)
    name = layer_name(get_architecture(detect_architecture(tm)), layer)
    plain = truncated(tm, get_architecture(detect_architecture(tm)), name).eval()
    for method in METHODS:
        out = converters.backward_features(tm, layer, method)(x)
        g = torch.from_numpy(np.random.default_rng(8).standard_normal(out.shape))
        (want,) = torch.autograd.grad(out, x, g)
        with converters.projection_rules(method):
            out2 = plain(x)
        (got,) = torch.autograd.grad(out2, x, g)
        np.testing.assert_array_equal(out2.detach(), out.detach())
        np.testing.assert_array_equal(got, want, err_msg=f"{arch} {layer} {method}")


def test_projection_rules_pass_hardsigmoid_exactly():
    """Gates keep their true backward under every method; hardsigmoid's is computed in full precision (torch's
    kernel multiplies by a float32 1/6: ~3e-8 off in float64), in place or not."""
    x = torch.tensor([-4.0, -3.0, -1.0, 0.0, 2.5, 3.0, 5.0], dtype=torch.float64, requires_grad=True)
    g = torch.arange(1.0, 8.0, dtype=torch.float64)
    want = np.where((x.detach().numpy() > -3) & (x.detach().numpy() < 3), g.numpy() / 6, 0.0)
    for method in METHODS:
        for call in (F.hardsigmoid, torch.nn.Hardsigmoid(inplace=True)):
            with converters.projection_rules(method):
                y = call(x * 1.0)
            np.testing.assert_array_equal(y.detach(), F.hardsigmoid(x).detach())
            (got,) = torch.autograd.grad(y, x, g)
            np.testing.assert_array_equal(got, want)


def test_project_units_without_masks_or_records_is_one_clear_line():
    """Switches recorded without ReLU masks (a hand-made Switches) or without records: Replay says so."""
    import deepvis_jax as dv

    model = as_float64(dv.load_model("alexnet"))  # this file runs in float64
    x = jax.ShapeDtypeStruct((1, 67, 67, 3), jnp.float64)
    sw = jax.eval_shape(lambda m, v: dv.forward(m, v, "conv2")[1], model, x)
    units, values = jnp.zeros((1, 4), jnp.int32), jnp.ones(1)
    with pytest.raises(ValueError, match="method 'guided' needs the forward ReLU masks: these switches hold 0, but "
                       "this network has more ReLUs; record the switches with forward()"):
        jax.eval_shape(lambda m, s: dv.project_units(m, s, units, values, "conv2", "guided"), model,
                       sw.replace(relus=()))  # fmt: skip
