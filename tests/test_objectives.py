"""Lucid's and Lucent's objective set: each value on fixed activations against its definition written out in numpy
(float64, 1e-12), the algebra, `evaluate`, construct with a batch objective, snapshots, and the defects of issue 32
(neuron positions, the algebra, Lucid-scaled penalties, jitter's range, what blur_every blurs)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import deepvis_jax as dv
from deepvis_jax._src.optvis.construct import _TRACES
from deepvis_jax._src.optvis.objectives import _evaluate
from deepvis_jax._src.optvis.param import COLOR_CORRELATION
from reference import as_float64, assert_close

O = dv.objectives
RTOL = 1e-12


@pytest.fixture(scope="module")
def alexnet():
    return dv.load_model("alexnet", seed=0)


@pytest.fixture(scope="module")
def fixed(alexnet):
    """Float64 AlexNet, five 67 px images, and their conv1/conv2 activations (before and after the ReLU)."""
    with jax.enable_x64(True):
        model = as_float64(alexnet)
        images01 = np.random.default_rng(3).random((5, 67, 67, 3))
        x = dv.normalize(jnp.asarray(images01))
        acts = {}
        for layer in ("conv1", "conv2"):  # each conv's ReLU follows it directly
            acts[(layer, True)] = np.asarray(model.apply(x, upto=layer, pre_relu=True), np.float64)
            acts[(layer, False)] = np.maximum(acts[(layer, True)], 0.0)
    return model, x, images01, acts


def _eval(objective, model, x, targets=None, batch=False):
    with jax.enable_x64(True):
        return np.asarray(O.evaluate(objective, model, x, targets, batch=batch), np.float64)


def _eval_all(objectives, model, x, targets):
    """[(per-image values, batch value)] of each objective, in ONE compiled program (evaluate inside a jit: the
    shared forward passes are computed once, and the suite compiles once instead of once per objective)."""

    def run(model, x):
        return [(O.evaluate(o, model, x, targets if o.targets(model) else None),
                 O.evaluate(o, model, x, targets if o.targets(model) else None, batch=True)) for o in objectives]  # fmt: skip

    with jax.enable_x64(True):
        return jax.tree_util.tree_map(lambda v: np.asarray(v, np.float64), jax.jit(run)(model, x))


# ------------------------------------------------------------------------------------------ numpy definitions


def np_dot_cossim(a, v, pow_=0, cosine=False):
    dot = (a * v).sum(-1)
    if cosine:  # Lucent: torch.nn.CosineSimilarity(dim=1), eps 1e-8
        return dot / np.maximum(np.linalg.norm(a, axis=-1) * np.linalg.norm(v), 1e-8)
    if not pow_:
        return dot
    cos = dot / (1e-4 + np.linalg.norm(a, axis=-1)) / (1e-4 + np.linalg.norm(v))  # Lucid's _dot_cossim
    return dot * np.maximum(0.1, cos) ** pow_


def np_tv(a):  # tf.image.total_variation of one image
    return np.abs(a[1:] - a[:-1]).sum() + np.abs(a[:, 1:] - a[:, :-1]).sum()


def np_lucid_blur(img):  # Lucid's _tf_blur: SAME conv with 0.5 around a centre of 1, over the same conv of ones
    k = np.full((3, 3), 0.5)
    k[1, 1] = 1.0
    h, w, _ = img.shape
    num, den = np.zeros_like(img), np.zeros_like(img)
    for i in range(h):
        for j in range(w):
            for di in (-1, 0, 1):
                for dj in (-1, 0, 1):
                    if 0 <= i + di < h and 0 <= j + dj < w:
                        num[i, j] += k[di + 1, dj + 1] * img[i + di, j + dj]
                        den[i, j] += k[di + 1, dj + 1]
    return num / den


def np_diversity(a):  # Lucid's diversity on (N, h, w, C)
    n = a.shape[0]
    f = a.reshape(n, -1, a.shape[-1])
    grams = np.stack([fi.T @ fi for fi in f])
    grams = grams / np.sqrt((grams**2).sum(axis=(1, 2), keepdims=True))
    return sum((grams[i] * grams[j]).sum() for i in range(n) for j in range(n) if j != i) / n


def np_alignment(a, decay):  # Lucid's alignment
    acc = 0.0
    for d in (1, 2, 3, 4):
        for i in range(a.shape[0] - d):
            acc += ((a[i] - a[i + d]) ** 2).mean() / decay**d
    return -acc


# ------------------------------------------------------------------------------------------ values


def test_layer_objectives_equal_their_definitions(fixed):
    """Per-image values (and Lucid's batch reduction: mean, or sum for neuron, l1, total_variation) on fixed
    activations equal the Lucid/Lucent definitions written out in numpy."""
    model, x, _, acts = fixed
    pre, post = acts[("conv2", True)], acts[("conv2", False)]
    n, h, w, c = pre.shape
    t = np.array([3, 17, 17, 100, 191])
    rng = np.random.default_rng(0)
    v, wt = rng.normal(size=c), rng.normal(size=c)
    idx = np.arange(n)
    cases = [  # (objective, per-image numpy values, batch reduction)
        (O.channel("conv2"), pre[idx, :, :, t].mean(axis=(1, 2)), "mean"),
        (O.channel("conv2", pre_relu=False), post[idx, :, :, t].mean(axis=(1, 2)), "mean"),
        (O.neuron("conv2"), pre[idx, h // 2, w // 2, t], "sum"),
        (O.neuron("conv2", y=1, x=5), pre[idx, 1, 5, t], "sum"),
        (O.direction("conv2", v), np_dot_cossim(pre, v).mean(axis=(1, 2)), "mean"),
        (O.direction("conv2", v, cossim_pow=2), np_dot_cossim(pre, v, 2).mean(axis=(1, 2)), "mean"),
        (O.direction("conv2", v, cosine=True, pre_relu=False), np_dot_cossim(post, v, cosine=True).mean(axis=(1, 2)),
         "mean"),
        (O.direction_neuron("conv2", v, y=2, x=4, cossim_pow=1), np_dot_cossim(pre[:, 2, 4], v, 1), "mean"),
        (O.direction_neuron("conv2", v, cosine=True), np_dot_cossim(pre[:, h // 2, w // 2], v, cosine=True), "mean"),
        (O.channel_weight("conv2", wt), (pre * wt).mean(axis=(1, 2, 3)), "mean"),
        (O.neuron_weight("conv2", wt, y=0, x=6), (pre[:, 0, 6] * wt).mean(axis=1), "mean"),
        (O.neuron_weight("conv2"), pre[:, h // 2, w // 2].mean(axis=1), "mean"),
        (O.localgroup_weight("conv2", wt, y=2, x=1, wy=3, wx=2), (pre[:, 2:5, 1:3] * wt).mean(axis=(1, 2, 3)), "mean"),
        (O.localgroup_weight("conv2", None, y=5, x=5, wy=2, wx=2), pre[:, 5:7, 5:7].mean(axis=(1, 2, 3)), "mean"),
        (O.deepdream("conv2", pre_relu=False), (post**2).mean(axis=(1, 2, 3)), "mean"),
        (O.l1("conv2", constant=0.5), np.abs(pre - 0.5).sum(axis=(1, 2, 3)), "sum"),
        (O.total_variation("conv2"), np.array([np_tv(a) for a in pre]), "sum"),
    ]
    # Lucid's L2 is one norm over the whole batch, not a sum of per-image norms
    cases.append((O.l2("conv2", constant=0.1), np.sqrt(1e-6 + ((pre - 0.1) ** 2).sum(axis=(1, 2, 3))),
                  np.sqrt(1e-6 + ((pre - 0.1) ** 2).sum())))  # fmt: skip
    values = _eval_all([o for o, _, _ in cases], model, x, t)
    for (objective, expected, reduce), (each, whole) in zip(cases, values):
        assert_close(each, expected, RTOL, err_msg=str(objective.key))
        whole_expected = expected.mean() if reduce == "mean" else expected.sum() if reduce == "sum" else reduce
        assert_close(whole, whole_expected, RTOL, err_msg=str(objective.key))
    # evaluate on its own (compiled at the top level) gives the same
    assert_close(_eval(O.neuron("conv2", y=1, x=5), model, x, t), pre[idx, 1, 5, t], RTOL)


def test_input_objectives_equal_their_definitions(fixed):
    """l1, l2, total_variation, blur_input_each_step, input_diff on "input": the [0, 1] image."""
    model, x, images01, _ = fixed
    ref = np.random.default_rng(5).random((67, 67, 3))
    cases = [
        (O.l1(), np.abs(images01).sum(axis=(1, 2, 3)), "sum"),
        (O.l2(constant=0.5, epsilon=1e-3), np.sqrt(1e-3 + ((images01 - 0.5) ** 2).sum(axis=(1, 2, 3))),
         np.sqrt(1e-3 + ((images01 - 0.5) ** 2).sum())),
        (O.total_variation(), np.array([np_tv(a) for a in images01]), "sum"),
        (O.blur_input_each_step(), np.array([0.5 * ((a - np_lucid_blur(a)) ** 2).sum() for a in images01]), "sum"),
        (O.input_diff(ref), np.sqrt(((images01 - ref) ** 2).mean(axis=(1, 2, 3))),
         np.sqrt(((images01 - ref) ** 2).mean())),
    ]
    for (objective, expected, whole), (each, value) in zip(cases, _eval_all([c[0] for c in cases], model, x, None)):
        assert_close(each, expected, RTOL, err_msg=str(objective.key))
        assert_close(value, expected.sum() if isinstance(whole, str) else whole, RTOL, err_msg=str(objective.key))
    # blur_input_each_step's gradient is (image - blur(image)): the blurred copy is a constant (stop_gradient)
    with jax.enable_x64(True):
        g = jax.grad(lambda im: O.blur_input_each_step()(model, dv.normalize(im), 0, image=im))(jnp.asarray(ref))
    assert_close(g, ref - np_lucid_blur(ref), RTOL)


def test_batch_objectives_equal_their_definitions(fixed):
    """diversity (normalized Gram matrices), alignment (decayed differences), channel_interpolate (the weights
    n / (N - 1)): one value for the batch, Lucid's."""
    model, x, _, acts = fixed
    pre, post1 = acts[("conv2", True)], acts[("conv1", False)]
    assert_close(_eval(O.diversity("conv2"), model, x), np_diversity(pre), RTOL)
    assert_close(_eval(O.diversity("conv1", pre_relu=False), model, x), np_diversity(post1), RTOL)
    assert_close(_eval(O.alignment("conv2"), model, x), np_alignment(pre, 2.0), RTOL)
    assert_close(_eval(O.alignment("conv2", decay_ratio=3), model, x[:3]), np_alignment(pre[:3], 3.0), RTOL)
    n = x.shape[0]
    wts = np.arange(n) / (n - 1)
    m1, m2 = acts[("conv1", True)][..., 7].mean(axis=(1, 2)), pre[..., 40].mean(axis=(1, 2))
    assert_close(_eval(O.channel_interpolate("conv1", 7, "conv2", 40), model, x), ((1 - wts) * m1 + wts * m2).sum(),
                 RTOL)  # fmt: skip
    # a per-image term in a sum with a batch objective counts as Lucid counts it on the batch (channel: the mean)
    t = np.array([3, 3, 3, 3, 3])
    mixed = O.channel("conv2") - 1e2 * O.diversity("conv2")
    assert mixed.is_batch and mixed.targets(model) == 192
    assert_close(_eval(mixed, model, x, t), pre[..., 3].mean() - 1e2 * np_diversity(pre), RTOL)


def test_a_batch_objectives_terms_share_the_network(fixed):
    """``channel(l) - 1e2 * diversity(l)`` runs the network once (as many convolutions as `diversity` alone; it
    ran twice, once per term, and Lucid's diversity recipe took twice a plain step), and its value and gradient
    equal the terms computed apart (float64, 1e-12). A per-image term that applies the network to something
    other than the batch's own image (here: the image flipped) is not served from the batch's activations."""
    model, x, _, _ = fixed
    t = jnp.asarray([3, 3, 3, 1, 0], jnp.int32)
    mixed = O.channel("conv2") - 1e2 * O.diversity("conv2")

    def convs(objective):
        program = jax.make_jaxpr(jax.grad(lambda v: objective.batch_value(model, v, v, t)))(x)
        return str(program).count("conv_general_dilated") + str(program).count("dot_general")

    with jax.enable_x64(True):
        assert convs(mixed) == convs(O.diversity("conv2"))
        apart = lambda v: (O.channel("conv2").batch_value(model, v, v, t)  # noqa: E731
                           - 1e2 * O.diversity("conv2").batch_value(model, v, v, t))  # fmt: skip
        assert_close(mixed.batch_value(model, x, x, t), apart(x), RTOL)
        assert_close(jax.grad(lambda v: mixed.batch_value(model, v, v, t))(x), jax.grad(apart)(x), RTOL)
        flip = O.channel("conv2")  # read through a per-image term on the flipped image, not the batch's own
        flipped = O.Objective(lambda m, v, k: flip.value(m, v[:, ::-1], v, k), O.channel("conv2").targets, "flipped")
        got = (flipped - O.diversity("conv2")).batch_value(model, x, x, jnp.full((5,), 3, jnp.int32))
        ref = (jnp.mean(model.apply(x[:, :, ::-1], upto="conv2", pre_relu=True)[..., 3])
               - O.diversity("conv2").batch_value(model, x, x, t))  # fmt: skip
        assert_close(got, ref, RTOL)


# ------------------------------------------------------------------------------------------ the algebra


def test_algebra_and_equality(fixed):
    """sum([a, b]), a + 1.0, 1.0 - a, a / 2, a * b, a / b, Objective.sum: the expected values; equal factories
    compare equal and do not recompile `evaluate`."""
    model, x, _, acts = fixed
    pre = acts[("conv2", True)]
    t = np.array([1, 2, 3, 4, 5])
    a, b = O.channel("conv2"), O.neuron("conv2", y=1, x=1)
    va, vb = pre[np.arange(5), :, :, t].mean(axis=(1, 2)), pre[np.arange(5), 1, 1, t]
    cases = [(sum([a, b]), va + vb), (a + 1.0, va + 1.0), (2 + a, va + 2), (1.0 - a, 1.0 - va), (a - 0.5, va - 0.5),
             (a / 2, va / 2), (a * b, va * vb), (a / b, va / vb), (O.Objective.sum([a, b, a]), 2 * va + vb),
             (-a + 3 * b, -va + 3 * vb)]  # fmt: skip
    for (objective, expected), (each, _) in zip(cases, _eval_all([c[0] for c in cases], model, x, t)):
        assert_close(each, expected, RTOL, err_msg=str(objective.key))
    assert sum([a, b]) == sum([O.channel("conv2"), O.neuron("conv2", y=1, x=1)]) and (a * b) != (b * a)
    assert hash(a / 2) == hash(O.channel("conv2") / 2) and (a + 1.0) == (a + 1.0) != (a + 2.0)
    assert O.direction("conv2", [1.0, 2.0]) == O.direction("conv2", np.array([1.0, 2.0]))
    _eval(sum([a, b]), model, x, t)
    cached = _evaluate._cache_size()
    _eval(sum([O.channel("conv2"), O.neuron("conv2", y=1, x=1)]), model, x, t)  # rebuilt, equal: same program
    assert _evaluate._cache_size() == cached
    with pytest.raises(TypeError):
        a * "2"
    with pytest.raises(ValueError, match="divide an objective by 0"):
        a / 0


# ------------------------------------------------------------------------------------------ defects, errors


def test_neuron_position_outside_the_map_raises(fixed):
    """Issue 32, defect 1: a position outside the feature map used to read the edge unit."""
    model, x, _, _ = fixed
    for objective in (O.neuron("conv2", y=100, x=3), O.neuron("conv2", y=3, x=7), O.neuron("conv2", y=-1),
                      O.direction_neuron("conv2", np.ones(192), y=7), O.neuron_weight("conv2", x=9),
                      O.localgroup_weight("conv2", y=5, x=5, wy=3)):  # fmt: skip
        with pytest.raises(ValueError, match="outside the 7x7 feature map"):
            _eval(objective, model, x, np.zeros(5, int) if objective.targets(model) else None)


def test_bad_arguments(fixed):
    model, x, _, _ = fixed
    with pytest.raises(TypeError, match=r"makes an Objective .* dv\.objectives\.tv_penalty\(image\)"):
        O.total_variation(np.zeros((8, 8, 3)))  # the old function, the mean penalty, is now tv_penalty
    with pytest.raises(TypeError, match="batch objective has no value on one image"):
        O.diversity("conv2")(model, x[0], 0)
    with pytest.raises(ValueError, match="pass targets="):
        O.evaluate(O.channel("conv2"), model, x)
    with pytest.raises(ValueError, match="valid targets are 0..191"):
        O.evaluate(O.channel("conv2"), model, x, [0, 1, 2, 3, 192])
    with pytest.raises(ValueError, match=r"images must be \(N, H, W, 3\)"):
        O.evaluate(O.deepdream("conv2"), model, x[0])
    with pytest.raises(ValueError, match="has 3 values but conv2 has 192 channels"):
        _eval(O.direction("conv2", [1.0, 2.0, 3.0]), model, x)
    with pytest.raises(ValueError, match="1-D vector"):
        O.channel_weight("conv2", np.ones((2, 2)))
    with pytest.raises(ValueError, match="input_diff takes one"):
        O.input_diff(np.zeros((8, 8)))


def test_penalties_keep_their_meaning_beside_lucids():
    """Issue 32, defect 3: construct(tv=, l2=) keep their means (tv_penalty, l2_penalty), Lucid's sums are the
    objectives total_variation and l2 (checked above)."""
    img = np.random.default_rng(1).random((6, 7, 3))
    tv = np.abs(img[1:] - img[:-1]).mean() + np.abs(img[:, 1:] - img[:, :-1]).mean()
    assert_close(O.tv_penalty(jnp.asarray(img)), tv, 1e-6)
    assert_close(O.l2_penalty(jnp.asarray(img)), ((img - 0.5) ** 2).mean(), 1e-6)


def test_jitter_draws_both_ends():
    """Issue 32, defect 4: Lucid's random crop draws offsets 0..d (d included); deepvis_jax drew 0..d-1."""
    d = 3
    yy, xx = np.meshgrid(np.arange(10.0), np.arange(10.0), indexing="ij")
    img = jnp.asarray(np.stack([yy, xx, 0 * yy], -1), jnp.float32)
    out = jax.vmap(lambda k: dv.transforms.jitter(d)(k, img))(jax.random.split(jax.random.key(0), 200))
    assert out.shape == (200, 7, 7, 3)
    assert set(np.asarray(out[:, 0, 0, 0]).astype(int)) == set(range(d + 1))
    assert set(np.asarray(out[:, 0, 0, 1]).astype(int)) == set(range(d + 1))


def test_blur_every_blurs_the_parameters(alexnet):
    """Issue 32, defect 5, as documented: `blur_every` blurs the parameterization (the pixel parameterization's
    pre-sigmoid array), periodically (wrapping around the edges), not the image. With a zero learning rate one step
    leaves sigmoid(C @ periodic_blur(p0)), the blur being the periodized Gaussian written out here."""
    s, sigma, seed = 64, 1.5, 2
    out = dv.construct(alexnet, 1, [4, 9], steps=1, image_size=s, seed=seed, param="pixel", transforms="none",
                       optimizer=optax.sgd(0.0), blur_every=1, blur_sigma=sigma, verbose=False)  # fmt: skip
    d = np.arange(s)[:, None] - np.arange(s)[None, :]
    g1 = sum(np.exp(-((d + k * s) ** 2) / (2 * sigma**2)) for k in (-1, 0, 1)) / np.sqrt(2 * np.pi * sigma**2)
    param = dv.param.pixel(decorrelate=True)
    for i, f in enumerate([4, 9]):
        p0 = np.asarray(param.init(jax.random.split(dv.filter_key(seed, f))[0], s), np.float64)
        blurred = np.einsum("yi,xj,ijc->yxc", g1, g1, p0)
        assert_close(out[i], 1 / (1 + np.exp(-(blurred @ COLOR_CORRELATION.T))), 1e-5)
        assert np.abs(out[i] - 1 / (1 + np.exp(-(p0 @ COLOR_CORRELATION.T)))).max() > 1e-4  # it did blur


# ------------------------------------------------------------------------------------------ construct


def _gram_similarity(model, imgs, layer):
    """Mean pairwise cosine similarity of the images' normalized Gram matrices at `layer` (after the ReLU)."""
    a = np.asarray(model.apply(dv.normalize(jnp.asarray(imgs)), upto=dv.layer_name(model, layer)), np.float64)
    n = a.shape[0]
    return np_diversity(a) / (n - 1)


def test_diversity_makes_images_of_one_channel_differ(alexnet):
    """Four images of conv3 filter 5 (random AlexNet, the setup of test_optimized_images_win_their_channel): with
    ``- 0.3 * diversity`` their feature correlation drops (measured 0.94 -> 0.54) and filter 5 stays the strongest
    channel of every image."""
    f, kw = 5, dict(steps=32, lr=0.05, image_size=64, transforms="none", chunk=2, verbose=False)
    plain = dv.construct(alexnet, 3, [f] * 4, objective=O.channel(3), **kw)
    diverse = dv.construct(alexnet, 3, [f] * 4, objective=O.channel(3) - 0.3 * O.diversity(3), **kw)
    before, after = _gram_similarity(alexnet, plain, 3), _gram_similarity(alexnet, diverse, 3)
    assert after < before - 0.2, (before, after)
    means = np.asarray(jnp.mean(alexnet.apply(dv.normalize(jnp.asarray(diverse)), upto="conv3", pre_relu=True),
                                axis=(1, 2)))  # fmt: skip
    assert np.all(np.argmax(means, axis=1) == f)
    assert np.abs(plain[0] - plain[1]).max() > 1e-2  # repeated filters start from different noise (image_key)


def test_thresholds_equal_separate_runs_bitwise(alexnet):
    """Snapshots at (2, 3, 4) steps are the images of runs of 2, 3 and 4 steps, bitwise (chunk 2; the snapshot at 3
    lies inside a chunk), for a per-image objective and for a batch objective."""
    kw = dict(image_size=64, chunk=2, seed=7, transforms=(dv.transforms.jitter(4),), verbose=False)
    snaps = dv.construct(alexnet, 3, [0, 5], thresholds=(2, 3, 4), **kw)
    assert snaps.shape == (3, 2, 64, 64, 3)
    for i, t in enumerate((2, 3, 4)):
        np.testing.assert_array_equal(snaps[i], dv.construct(alexnet, 3, [0, 5], steps=t, **kw))
    assert np.abs(snaps[2] - snaps[1]).max() > 1e-3  # the snapshots differ
    obj = O.channel(3) - 0.3 * O.diversity(3)
    traces = dict(_TRACES)
    snaps = dv.construct(alexnet, 3, [5, 5, 5], thresholds=(3, 4), objective=obj, **kw)
    for i, t in enumerate((3, 4)):
        np.testing.assert_array_equal(snaps[i], dv.construct(alexnet, 3, [5, 5, 5], steps=t, objective=obj, **kw))
    assert _TRACES["chunk"] == traces["chunk"] + 1  # one joint program for all of them
    with pytest.raises(ValueError, match="differs from max"):
        dv.construct(alexnet, 3, [0], thresholds=(2, 4), steps=3, **kw)
    with pytest.raises(ValueError, match="increasing"):
        dv.construct(alexnet, 3, [0], thresholds=(4, 2), **kw)
    with pytest.raises(ValueError, match="would split them"):
        dv.construct(alexnet, 3, [5, 5, 5], steps=2, objective=obj, batch_size=2, **kw)


# ------------------------------------------------------------------------------------------ parameterizations


def test_cppn_equals_numpy_reference(alexnet):
    """dv.param.cppn: Lucid's CPPN forward (coordinates in +-sqrt(3), 1x1 layers, atan composite activation,
    sigmoid) written out in numpy with the same weights, float64 to 1e-12; it starts grey and runs in construct."""
    cppn = dv.param.cppn(hidden=5, layers=3)
    with jax.enable_x64(True):
        params = cppn.init(jax.random.key(0), 9, jnp.float64)
        rng = np.random.default_rng(0)
        params["layers"][-1] = (jnp.asarray(rng.normal(size=(10, 3))), jnp.asarray(rng.normal(size=3)))
        params["layers"][0] = (params["layers"][0][0], jnp.asarray(rng.normal(size=5)))
        out = np.asarray(cppn.to_image(params))
    r = np.linspace(-np.sqrt(3), np.sqrt(3), 9)
    y, x = np.meshgrid(r, r, indexing="ij")
    net = np.stack([x, y], -1)
    layers = [(np.asarray(w, np.float64), np.asarray(b, np.float64)) for w, b in params["layers"]]
    for w, b in layers[:-1]:
        a = np.arctan(net @ w + b)
        net = np.concatenate([a / 0.67, a * a / 0.6], -1)
    expected = 1 / (1 + np.exp(-(net @ layers[-1][0] + layers[-1][1])))
    assert out.shape == (9, 9, 3)
    assert_close(out, expected, RTOL)
    # Glorot-uniform hidden weights, zero last layer: the first image is grey
    fresh = cppn.init(jax.random.key(1), 9)
    assert [w.shape for w, _ in fresh["layers"]] == [(2, 5), (10, 5), (10, 5), (10, 3)]
    assert np.abs(fresh["layers"][1][0]).max() <= np.sqrt(6 / 15) and np.all(fresh["layers"][-1][0] == 0)
    np.testing.assert_array_equal(cppn.to_image(fresh), np.full((9, 9, 3), 0.5, np.float32))
    # in construct, with a small image resized for conv3 (one compiled program for this and the resize test)
    imgs = dv.construct(alexnet, 3, [3, 4], param=cppn, steps=1, lr=0.05, image_size=24, verbose=False,
                        transforms=(dv.transforms.jitter(2), dv.transforms.resize(67)))  # fmt: skip
    assert imgs.shape == (2, 24, 24, 3) and np.abs(imgs - 0.5).max() > 1e-3
    with pytest.raises(ValueError, match="no blur"):
        dv.construct(alexnet, 1, [3], param=cppn, transforms="none", steps=1, image_size=48, blur_every=1,
                     verbose=False)  # fmt: skip


def test_resize_is_lucents_fixed_image_size(alexnet):
    """dv.transforms.resize: torch's bilinear interpolate with align_corners=True (Lucent's fixed_image_size),
    float64 to 1e-12, up and down; it lets construct grow a small image for a layer that needs a larger input
    (construct runs with it in test_cppn_equals_numpy_reference)."""
    import torch

    img = np.random.default_rng(4).random((13, 9, 3))
    for size in ((32, 24), (5, 7), 13):
        hw = (size, size) if isinstance(size, int) else size
        with jax.enable_x64(True):
            out = np.asarray(dv.transforms.resize(size)(jax.random.key(0), jnp.asarray(img)))
        ref = torch.nn.functional.interpolate(torch.tensor(img.transpose(2, 0, 1))[None], size=hw, mode="bilinear",
                                              align_corners=True)[0].numpy().transpose(1, 2, 0)  # fmt: skip
        assert_close(out, ref, RTOL)
    assert dv.transforms.resize([32, 24]) is dv.transforms.resize((32, 24))  # equal: no recompilation
    with pytest.raises(ValueError, match="too small"):  # without resize (with it: test_cppn_equals_numpy_reference)
        dv.construct(alexnet, 3, [1], steps=1, image_size=24, transforms="none", verbose=False)
