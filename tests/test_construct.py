"""`construct` and its pieces: known answers, a torch.optim.Adam reference, activation checks, no recompilation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import converters
import deepvis_jax as dv
from deepvis_jax._src.optvis.construct import _TRACES, CONTRAST, batches, box_blur, seed_sizes
from deepvis_jax._src.optvis.param import COLOR_CORRELATION
from reference import as_float64, assert_close, torch_model

C = COLOR_CORRELATION


@pytest.fixture(scope="module")
def alexnet():
    return dv.load_model("alexnet", seed=0)


def _channel_means(model, images01, layer, pre_relu):
    """(N, C) spatial mean of every channel of `layer` for [0, 1] images, all channels computed."""
    act = model.apply(dv.normalize(jnp.asarray(images01)), upto=dv.layer_name(model, layer), pre_relu=pre_relu)
    return np.asarray(jnp.mean(act, axis=(1, 2)))


# ------------------------------------------------------------------------------------------ parameterizations


def test_fft_dc_coefficient_known_answer():
    """One DC coefficient c in decorrelated channel k: every pixel is sigmoid(C[:, k] * c * S / sqrt(S*S) / 4)."""
    s, k, c = 8, 1, 2.0
    p = np.zeros((2, 3, s, s // 2 + 1), np.float32)
    p[0, k, 0, 0] = c
    img = np.asarray(dv.param.fft(decorrelate=True).to_image(jnp.asarray(p)))
    # scale at f = 0 is 1 / (1 / S) = S; the orthonormal inverse DFT divides by sqrt(S * S); Lucid divides by 4
    value = c * s / np.sqrt(s * s) / 4.0
    expected = 1.0 / (1.0 + np.exp(-C[:, k] * value))
    np.testing.assert_allclose(img, np.broadcast_to(expected, (s, s, 3)), rtol=1e-6, atol=1e-7)


def test_fft_single_frequencies_known_answer():
    """A real coefficient at (ky=0, kx=1) is a cosine along x; an imaginary one at (ky=1, kx=0) a -sine along y."""
    s, a, b = 8, 0.3, -0.2
    p = np.zeros((2, 3, s, s // 2 + 1), np.float32)
    p[0, 0, 0, 1] = a  # red channel (no decorrelation)
    p[1, 2, 1, 0] = b  # blue channel: only the real part of the resulting column survives irfft
    img = np.asarray(dv.param.fft(decorrelate=False).to_image(jnp.asarray(p)))
    y, x = np.meshgrid(np.arange(s), np.arange(s), indexing="ij")
    scale = s  # frequency 1/S cycles per pixel -> 1 / max(1/S, 1/S)
    red = 2 * a * scale * np.cos(2 * np.pi * x / s) / s / 4.0
    blue = -b * scale * np.sin(2 * np.pi * y / s) / s / 4.0
    sig = lambda v: 1.0 / (1.0 + np.exp(-v))  # noqa: E731
    np.testing.assert_allclose(img[..., 0], sig(red), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(img[..., 1], np.full((s, s), 0.5), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(img[..., 2], sig(blue), rtol=1e-6, atol=1e-7)


def test_blur_is_periodic_gaussian_and_matches_between_parameterizations():
    """Blurring the FFT spectrum equals blurring the pre-sigmoid image: a periodic Gaussian (sampled answer)."""
    s, sigma = 16, 1.5
    p = 0.3 * jax.random.normal(jax.random.key(1), (2, 3, s, s // 2 + 1))
    fft = dv.param.fft(decorrelate=False)
    logit = lambda img: np.log(img / (1 - img))  # noqa: E731
    blurred = logit(np.asarray(fft.to_image(fft.blur(p, sigma)), np.float64))
    plain = logit(np.asarray(fft.to_image(p), np.float64))
    # hand answer: circular convolution with the periodized continuous Gaussian, summed over 3 periods
    d = np.arange(s)[:, None] - np.arange(s)[None, :]
    g1 = sum(np.exp(-((d + k * s) ** 2) / (2 * sigma**2)) for k in (-1, 0, 1)) / np.sqrt(2 * np.pi * sigma**2)
    expected = np.einsum("yi,xj,ijc->yxc", g1, g1, plain)
    assert_close(blurred, expected, rtol=1e-4)
    # the pixel parameterization's blur is the same operation on its pre-sigmoid array
    assert_close(np.asarray(dv.param.pixel().blur(jnp.asarray(plain, jnp.float32), sigma)), expected, rtol=1e-4)


def test_pixel_decorrelated_is_sigmoid_of_color_matrix():
    p = np.random.default_rng(0).normal(size=(4, 5, 3)).astype(np.float32)
    img = np.asarray(dv.param.pixel(decorrelate=True).to_image(jnp.asarray(p)))
    np.testing.assert_allclose(img, 1 / (1 + np.exp(-(p @ C.T))), rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------------------ transforms


def test_transforms_known_answers():
    img = jnp.asarray(np.random.default_rng(0).random((9, 9, 3)), jnp.float32)
    key = jax.random.key(3)
    # rotation by 90 degrees is np.rot90 (counterclockwise as displayed)
    np.testing.assert_allclose(dv.transforms.random_rotate([90])(key, img), np.rot90(np.asarray(img), 1), atol=1e-5)
    np.testing.assert_allclose(dv.transforms.random_scale([1.0])(key, img), img, atol=1e-6)
    # zoom x2 about the centre of a horizontal ramp: out(x) = in(c + (x - c) / 2), c = (W - 1) / 2 (pixel centres)
    ramp = jnp.broadcast_to(jnp.arange(16.0)[None, :, None], (16, 16, 3))
    out = np.asarray(dv.transforms.random_scale([2.0])(key, ramp))
    x = np.arange(16.0)
    np.testing.assert_allclose(out[:, 4:12, 0], np.broadcast_to(7.5 + (x[4:12] - 7.5) / 2, (16, 8)), atol=1e-5)
    # jitter crops (H - d, W - d) at the offset drawn from the key; pad adds grey
    dy, dx = np.asarray(jax.random.randint(key, (2,), 0, 5))
    np.testing.assert_array_equal(dv.transforms.jitter(4)(key, img), np.asarray(img)[dy:dy + 5, dx:dx + 5])
    padded = np.asarray(dv.transforms.pad(2)(key, img))
    assert padded.shape == (13, 13, 3) and np.all(padded[:2] == 0.5) and np.all(padded[2:11, 2:11] == img)
    # the standard list keeps sizes static: 224 -> 224 + 24 - 8 - 4
    out = dv.transforms.apply_transforms(dv.transforms.standard_transforms(), key, jnp.zeros((224, 224, 3)))
    assert out.shape == (236, 236, 3)


def test_box_blur_known_answer():
    img = np.zeros((7, 7, 1), np.float32)
    img[3, 3] = img[0, 0] = 9.0
    out = np.asarray(box_blur(jnp.asarray(img), 3))
    expected = np.zeros((7, 7))
    expected[2:5, 2:5] = 1.0
    expected[:2, :2] += 1.0  # reflect-101 border: the corner pixel is seen once by each window reaching it
    np.testing.assert_allclose(out[..., 0], expected, atol=1e-6)


# ------------------------------------------------------------------------------------------ objectives


def test_objectives_against_full_forward(alexnet):
    """Objectives (which compute only the target channel) equal values read off the full forward pass."""
    img = jnp.asarray(np.random.default_rng(1).random((67, 67, 3)), jnp.float32)
    x = dv.normalize(img)
    pre = np.asarray(alexnet.apply(x[None], upto="conv3", pre_relu=True))[0]
    post = np.asarray(alexnet.apply(x[None], upto="conv3"))[0]
    logits = np.asarray(dv.classify(alexnet, x[None]))[0]
    t = jnp.asarray(17)
    obj = 2.0 * dv.objectives.channel(3) - dv.objectives.neuron("conv3", pre_relu=False) + dv.objectives.combine([0.5], [dv.objectives.class_logit()])
    expected = 2 * pre[..., 17].mean() - post[pre.shape[0] // 2, pre.shape[1] // 2, 17] + 0.5 * logits[17]
    assert_close(obj(alexnet, x, t), expected, rtol=1e-5)
    assert_close(dv.objectives.neuron(3, y=1, x=2)(alexnet, x, t), pre[1, 2, 17], rtol=1e-5)
    assert dv.objectives.channel(3) == dv.objectives.channel(3) and hash(2 * dv.objectives.channel(3)) == hash(2 * dv.objectives.channel(3))
    assert obj.targets(alexnet) == 384


def test_channel_contrast_against_full_forward(alexnet):
    """channel(contrast=c): the target's mean minus c times the largest mean of the other channels."""
    img = jnp.asarray(np.random.default_rng(2).random((67, 67, 3)), jnp.float32)
    x = dv.normalize(img)
    means = np.asarray(alexnet.apply(x[None], upto="conv3", pre_relu=True))[0].mean(axis=(0, 1))
    for t in (int(np.argmax(means)), 17):
        expected = means[t] - 0.5 * np.delete(means, t).max()
        assert_close(dv.objectives.channel(3, contrast=0.5)(alexnet, x, jnp.asarray(t)), expected, rtol=1e-5)
    assert dv.objectives.channel(3, contrast=0.5) == dv.objectives.channel(3, contrast=0.5) != dv.objectives.channel(3)


# ------------------------------------------------------------------------------------------ construct


def _torch_adam_images(tm, inits, filters, steps, lr, dtype, top):
    """torch.optim.Adam on the decorrelated pixel parameterization: image = sigmoid(p @ C.T), the pre-ReLU mean of
    `tm.features[top]` (a conv)."""
    mean = torch.tensor([0.485, 0.456, 0.406], dtype=dtype).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225], dtype=dtype).view(1, 3, 1, 1)
    cm = torch.tensor(C.T, dtype=dtype)
    out = []
    for init, f in zip(inits, filters):
        p = torch.tensor(init, requires_grad=True)
        opt = torch.optim.Adam([p], lr=lr)
        for _ in range(steps):
            opt.zero_grad()
            x = (torch.sigmoid(p @ cm).permute(2, 0, 1)[None] - mean) / std
            loss = -tm.features[: top + 1](x)[0, f].mean()
            loss.backward()
            opt.step()
        with torch.no_grad():
            out.append(torch.sigmoid(p @ cm).numpy())
    return np.stack(out)


@pytest.mark.parity
@pytest.mark.parametrize("dtype, layer, steps, rtol", [(torch.float64, 3, 24, 1e-9), (torch.float32, 1, 8, 1e-5)])
def test_matches_torch_adam_reference(dtype, layer, steps, rtol):
    """Pixel parameterization (decorrelated), no transforms, no blur: `steps` Adam updates equal torch.optim.Adam's.

    Elementwise tolerance `rtol` of the image scale. float64 through conv3 (two max-pools and three ReLUs below
    it: their switches and masks are unambiguous in float64). float32 through conv1 before its ReLU, a path with
    no switch or mask: a float32 gradient through a max-pool or ReLU near a tie differs between CPUs (and Adam's
    normalized step turns that into a visible difference), so those paths are checked in float64.
    """
    filters, size, lr, seed = [3, 37], 67, 0.05, 4
    with jax.enable_x64(dtype == torch.float64):
        tm = torch_model("alexnet", seed=0, dtype=dtype)
        model = converters.from_torchvision(tm)
        out = dv.construct(model, layer, filters, steps=steps, lr=lr, image_size=size, seed=seed, param="pixel",
                           decorrelate=True, transforms="none", objective=dv.objectives.channel(layer), verbose=False)  # fmt: skip
        param = dv.param.pixel(decorrelate=True)
        # the documented key derivation: the init key of filter f is split(fold_in(key(seed), f))[0]
        inits = [np.asarray(param.init(jax.random.split(dv.filter_key(seed, f))[0], size, model.dtype))
                 for f in filters]  # fmt: skip
        start = np.stack([np.asarray(param.to_image(jnp.asarray(p))) for p in inits])
    assert out.dtype == np.dtype(str(dtype).split(".")[1])
    top = model.arch.conv_op_index(dv.layer_name(model, layer))
    expected = _torch_adam_images(tm, inits, filters, steps, lr, dtype, top)
    assert_close(out, expected, rtol=rtol)
    assert np.abs(out - start).max() > 0.01  # the images really moved


SMALL = dict(image_size=64, chunk=3, verbose=False)  # shared, so these tests reuse one compiled program


def test_deterministic_and_keys_per_filter(alexnet):
    a = dv.construct(alexnet, 3, [0, 5], steps=6, seed=7, **SMALL)
    b = dv.construct(alexnet, 3, [0, 5], steps=6, seed=7, **SMALL)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (2, 64, 64, 3) and a.dtype == np.float32 and 0 <= a.min() and a.max() <= 1
    # filter f uses fold_in(key(seed), f): its image does not depend on the other filters in the call
    swapped = dv.construct(alexnet, 3, [5, 0], steps=6, seed=7, **SMALL)
    np.testing.assert_allclose(swapped[::-1], a, rtol=0, atol=1e-5)
    assert np.abs(dv.construct(alexnet, 3, [0, 5], steps=6, seed=8, **SMALL) - a).max() > 1e-2
    np.testing.assert_array_equal(jax.random.key_data(dv.filter_key(7, 5)),
                                  jax.random.key_data(jax.random.fold_in(jax.random.key(7), 5)))  # fmt: skip
    # the starting images: a vanishing step leaves each filter at param.init(split(filter_key(seed, f))[0])
    start = dv.construct(alexnet, 3, [0, 1], seed=7, steps=1, lr=1e-30, image_size=64, param="pixel",
                         transforms="none", verbose=False)  # fmt: skip
    param = dv.param.pixel(decorrelate=True)
    for i, f in enumerate([0, 1]):
        want = param.to_image(param.init(jax.random.split(dv.filter_key(7, f))[0], 64))
        np.testing.assert_allclose(start[i], want, rtol=0, atol=1e-5)  # jit vs eager rounding
    assert np.abs(start[0] - start[1]).max() > 1e-3  # different filters, different keys, different noise


def test_no_recompilation_when_filters_seed_or_steps_change(alexnet):
    dv.construct(alexnet, 3, [0, 1], steps=3, seed=0, **SMALL)
    traces = dict(_TRACES)
    dv.construct(alexnet, 3, [7, 300], steps=3, seed=5, **SMALL)
    default = dv.objectives.channel("conv3", contrast=CONTRAST)  # equal to the default objective: no new program
    dv.construct(alexnet, "conv3", [9, 2], steps=7, seed=1, objective=default, **SMALL)  # 3 chunks
    assert _TRACES == traces
    dv.construct(alexnet, 3, [0, 1, 2], steps=3, **SMALL)  # a different number of filters is a new shape
    assert _TRACES["chunk"] == traces["chunk"] + 1


def test_image_does_not_depend_on_its_batch(alexnet):
    """Filters [3, 7, 11]: one batch of 3, batches of 2 (the last padded), and each alone give the same images.

    Batches of 2 or more filters agree to float32 rounding: bitwise on the AVX-512 machines this was written on,
    within one ulp of the [0, 1] image (6e-8, 2% of the pixels) on an AVX2 AMD EPYC, where XLA vectorizes a batch
    of 2 and one of 3 differently. A batch of one filter is a differently compiled XLA program (vmap over one
    image) whose float32 convolutions round differently; a ReLU or max-pool near-tie can then flip and Adam carries
    the change on (XLA:CPU's Eigen convolutions, `dv.COMPILER_OPTIONS`: up to 8e-3 of the [0, 1] image after 6
    steps; YNNPACK's: 2e-7). So that one is compared in float64, where no decision is near a tie."""
    kw = dict(steps=6, seed=7, **SMALL)
    one = dv.construct(alexnet, 3, [3, 7, 11], **kw)
    pairs = dv.construct(alexnet, 3, [3, 7, 11], batch_size=2, **kw)  # [3, 7], then [11, 11] (padded)
    ulps = dict(rtol=0, atol=4 * np.finfo(np.float32).eps)  # a few ulps of a [0, 1] image
    np.testing.assert_allclose(pairs, one, **ulps)
    np.testing.assert_allclose(dv.construct(alexnet, 3, [11, 3], **kw), one[[2, 0]], **ulps)
    with jax.enable_x64(True):
        model = as_float64(alexnet)
        singles = dv.construct(model, 3, [3, 7, 11], batch_size=1, **kw)
        together = dv.construct(model, 3, [3, 7, 11], **kw)
    np.testing.assert_allclose(singles, together, rtol=0, atol=1e-10)
    assert np.abs(one[0] - one[1]).max() > 1e-2 and np.abs(one[1] - one[2]).max() > 1e-2  # three different images
    # more batches than one do not retrace either: 5 filters in batches of 2 reuse the width-2 program
    traces = dict(_TRACES)
    five = dv.construct(alexnet, 3, [3, 7, 11, 20, 21], batch_size=2, **kw)  # k=3 batches of 2
    assert _TRACES == traces
    np.testing.assert_allclose(five[:3], one, **ulps)


def test_batch_split_and_default_batch_size(alexnet):
    # (filters, batch_size) -> (batches, width): the width in ceil(3/4 b)..b that pads least, widest on a tie
    assert [batches(n, b) for n, b in [(1, 4), (3, 2), (9, 8), (10, 4), (32, 5), (5, 100), (5, 2), (3, 1)]] == [
        (1, 1), (2, 2), (2, 6), (3, 4), (8, 4), (1, 5), (3, 2), (3, 1)]  # fmt: skip
    # the rule: budget // (bytes of one image's forward activations up to the layer, at the transformed size)
    vgg = dv.load_model("vgg16", seed=0)
    assert dv.default_batch_size(vgg, "conv5_3") == 5  # ~178 MB a filter at 224 px (236 px after transforms)
    assert dv.default_batch_size(vgg, "conv5_3", budget=2 * 178 * 2**20) == 2
    assert dv.default_batch_size(alexnet, "conv3", 224) == 195
    assert dv.default_batch_size(vgg, "conv5_3", budget=1) == 1


def test_progress_bar_only_for_long_verbose_runs(alexnet, capsys):
    kw = dict(SMALL, verbose=True)
    dv.construct(alexnet, 3, [0, 1], steps=6, **kw)  # two chunks of 3: a bar
    assert "6/6" in capsys.readouterr().err
    dv.construct(alexnet, 3, [0, 1], steps=3, **kw)  # one chunk: no bar
    dv.construct(alexnet, 3, [0, 1], steps=6, **SMALL)  # verbose=False: silent
    assert capsys.readouterr().err == ""
    dv.construct(alexnet, 3, [0, 1, 2], steps=3, batch_size=2, **kw)  # one chunk in each of two batches: a bar
    assert "6/6" in capsys.readouterr().err


def test_steps_beyond_a_chunk_equal_one_long_chunk(alexnet):
    """Chunking (for the progress bar) does not change the result: 5 steps in chunks of 2 (the last one cut short)
    == one chunk of 5.

    Two compiled programs, each with its own ReLU masks and pool switches: float64, so that none of those sits on
    a rounding-level near-tie on any CPU. (Small: XLA compiles each step of a float64 chunk unrolled.)"""
    kw = dict(steps=5, image_size=48, verbose=False, seed=2, blur_every=2, keep_best=True)
    with jax.enable_x64(True):
        model = as_float64(alexnet)
        np.testing.assert_allclose(dv.construct(model, 2, [4], chunk=2, **kw), dv.construct(model, 2, [4], **kw),
                                   rtol=1e-10, atol=1e-12)  # fmt: skip


def test_optimized_images_win_their_channel(alexnet):
    """Random-weight AlexNet conv3: each image makes its own filter the strongest channel, far above noise.

    FFT + decorrelated colour, without the random transforms: a random-weight net's filters are pixel-exact
    high-frequency detectors that no jitter-robust image can single out (pretrained filters can be).
    """
    filters = [0, 5, 88, 200]
    # lr 0.05 (Lucid's; the default is 0.02, tuned on trained VGG16 with transforms): 48 steps reach far above noise
    imgs = dv.construct(alexnet, 3, filters, steps=48, lr=0.05, image_size=96, seed=0, transforms="none",
                        verbose=False)  # fmt: skip
    noise = np.random.default_rng(0).random((1, 96, 96, 3)).astype(np.float32)
    for pre_relu in (True, False):
        means, base = _channel_means(alexnet, imgs, 3, pre_relu), _channel_means(alexnet, noise, 3, pre_relu)[0]
        for i, f in enumerate(filters):
            assert np.argmax(means[i]) == f, (f, pre_relu)
            assert means[i, f] > 1.3 * np.delete(means[i], f).max(), (f, pre_relu)  # measured: >= 1.6x
            # far above noise: twice the strongest channel mean a uniform-noise image gives (target's own: <= 0.4)
            assert means[i, f] > 2 * np.abs(base).max() and means[i, f] > 5 * max(base[f], 0.1), (f, pre_relu)


def test_seed_preset(alexnet):
    assert seed_sizes(224) == [56, 67, 80, 96, 115, 138, 165, 198, 224]
    imgs = dv.construct(alexnet, 3, [5, 88], preset="seed", steps=5, image_size=80, verbose=False)
    assert imgs.shape == (2, 80, 80, 3) and 0 <= imgs.min() and imgs.max() <= 1
    start = np.full((1, 80, 80, 3), 165 / 255, np.float32)  # the middle of the seed's starting noise
    for i, f in enumerate([5, 88]):
        assert _channel_means(alexnet, imgs[i : i + 1], 3, True)[0, f] > _channel_means(alexnet, start, 3, True)[0, f]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(filters=384), r"valid filters are 0\.\.383"),
        (dict(filters=[0, -1]), r"valid filters are 0\.\.383"),
        (dict(filters=[]), "filters must be"),
        (dict(filters=[1.5]), "filters must be"),
        (dict(layer=9), "unknown layer"),
        (dict(steps=0), "steps must be"),
        (dict(lr=-1.0), "lr must be"),
        (dict(image_size=16), "too small"),
        (dict(param="wavelet"), "unknown param"),
        (dict(transforms="some"), "transforms must be"),
        (dict(preset="lucid"), "unknown preset"),
        (dict(preset="seed", param="fft"), "preset='seed' fixes param"),
        (dict(l2=-1.0), "l2 must be"),
        (dict(blur_every=-2), "blur_every must be"),
        (dict(chunk=0), "chunk must be"),
        (dict(batch_size=0), "batch_size must be"),
        (dict(batch_size=2.0), "batch_size must be"),
        (dict(objective=lambda m, x, t: 0.0), "objective must be"),
        (dict(objective=dv.objectives.class_logit(), filters=1000), r"valid filters are 0\.\.999"),
    ],
)
def test_bad_arguments(alexnet, kwargs, match):
    args = dict(layer=3, filters=0)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        dv.construct(alexnet, args.pop("layer"), args.pop("filters"), steps=args.pop("steps", 2),
                     image_size=args.pop("image_size", 64), verbose=False, **args)  # fmt: skip
