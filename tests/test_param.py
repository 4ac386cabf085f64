"""`dv.param`'s low-resolution tensors (Lucid's `lowres_tensor`), the aligned batch that shares them, and FFT images
of any height and width, each against Lucid's (or Lucent's) formula written out in numpy, float64, to 1e-12."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import deepvis_jax as dv
from deepvis_jax._src.optvis.construct import _images, _init, _run_chunk, _Spec
from deepvis_jax._src.optvis.param import COLOR_CORRELATION
from deepvis_jax._src.optvis.recipe import _adam
from reference import assert_close

RTOL = 1e-12


# ---- numpy references, written the way Lucid writes them --------------------------------------------------------


def _tf1_resize_bilinear(x: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """TF1 ``tf.image.resize_bilinear`` (align_corners=False, half_pixel_centers=False) of an NHWC array: the
    kernel's loop, with its float32 source coordinates and its lerp order (top row, bottom row, then between)."""
    n, h, w, c = x.shape
    oh, ow = out_hw

    def weights(n_in, n_out):
        scale = np.float32(n_in) / np.float32(n_out)
        src = np.arange(n_out, dtype=np.float32) * scale
        lo = np.floor(src).astype(int)
        hi = np.minimum(np.ceil(src).astype(int), n_in - 1)
        return lo, hi, (src - np.floor(src)).astype(np.float64)

    y0, y1, ly = weights(h, oh)
    x0, x1, lx = weights(w, ow)
    out = np.empty((n, oh, ow, c))
    for i in range(oh):
        for j in range(ow):
            tl, tr = x[:, y0[i], x0[j]], x[:, y0[i], x1[j]]
            bl, br = x[:, y1[i], x0[j]], x[:, y1[i], x1[j]]
            top, bottom = tl + (tr - tl) * lx[j], bl + (br - bl) * lx[j]
            out[:, i, j] = top + (bottom - top) * ly[i]
    return out


def _collapse(shape, a, b):
    shape = list(shape)
    if b > len(shape):
        shape = shape + [1] * (b - len(shape))
    return [int(np.prod(shape[:a]))] + shape[a:b] + [int(np.prod(shape[b:]))]


def _lucid_resize_bilinear_nd(t: np.ndarray, target) -> np.ndarray:
    """Lucid's ``resize_bilinear_nd``: two axes at a time, through the 4-D resize, as Lucid's loop does."""
    shape, target = list(t.shape), list(target)
    d = 0
    while d < len(shape):
        if shape[d] == target[d]:
            d += 1
            continue
        new = shape[:]
        new[d : d + 2] = target[d : d + 2]
        t = _tf1_resize_bilinear(t.reshape(_collapse(shape, d, d + 2)), _collapse(new, d, d + 2)[1:3]).reshape(new)
        shape = new
        d += 2
    return t


def _lucid_lowres(u: np.ndarray, shape, offset=None) -> np.ndarray:
    """Lucid's ``lowres_tensor`` on the underlying values `u`: resize, then the offset by a symmetric pad and slice."""
    t = _lucid_resize_bilinear_nd(u, shape)
    if offset is not None:
        offset = list(offset) if isinstance(offset, list) else len(shape) * [offset]
        for n in range(len(offset)):
            if offset[n] is True:
                offset[n] = shape[n] / u.shape[n] / 2
            if offset[n] is False:
                offset[n] = 0
            offset[n] = int(offset[n])
        t = np.pad(t, [(p, 0) for p in offset], mode="symmetric")[tuple(slice(0, s) for s in shape)]
    return t


def _lucid_fft_image(spec: np.ndarray, h: int, w: int, decay_power: float = 1.0) -> np.ndarray:
    """Lucid's ``fft_image`` for one image (even w): (2, 3, h, w // 2 + 1) -> (h, w, 3); its rfft2d_freqs, its
    scale with the sqrt(w h) factor, TF's unnormalized inverse (numpy's default), divided by 4."""
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.fftfreq(w)[: w // 2 + 1]
    freqs = np.sqrt(fx * fx + fy * fy)
    scale = 1.0 / np.maximum(freqs, 1.0 / max(w, h)) ** decay_power * np.sqrt(w * h)
    img = np.fft.irfft2(scale * (spec[0] + 1j * spec[1]), s=(h, w))
    return np.transpose(img, (1, 2, 0)) / 4.0


def _lucent_fft_image(spec: np.ndarray, h: int, w: int) -> np.ndarray:
    """Lucent's ``fft_image`` for one image: its spectrum (2, 3, h, w // 2 + 1 + w % 2) (odd widths keep one more
    column), ``irfftn(s=(h, w), norm="ortho")`` over the last two axes (which reads only the first w // 2 + 1
    columns), divided by 4."""
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.fftfreq(w)[: w // 2 + 2] if w % 2 == 1 else np.fft.fftfreq(w)[: w // 2 + 1]
    freqs = np.sqrt(fx * fx + fy * fy)
    scale = 1.0 / np.maximum(freqs, 1.0 / max(w, h))
    img = np.fft.irfftn(scale * (spec[0] + 1j * spec[1]), s=(h, w), axes=(-2, -1), norm="ortho")
    return np.transpose(img, (1, 2, 0)) / 4.0


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


# ---- lowres ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape, under, offset", [
    ((6, 16, 16, 3), (1, 8, 8, 3), None),            # Lucid's notebook: one tensor for every frame
    ((6, 16, 16, 3), (2, 2, 2, 3), None),            # and one interpolated along the batch
    ((5, 12, 20, 3), (2, 3, 7, 3), True),            # non-square, a ratio that is not an integer, offset True
    ((4, 9, 9, 2), (3, 4, 2, 2), [1, 2, False, 0]),  # per-axis offsets, odd sizes
    ((7, 5), (3, 5), 1),                             # rank 2: an odd number of axes to resize
])  # fmt: skip
def test_lowres_equals_lucids_lowres_tensor(shape, under, offset):
    with jax.enable_x64(True):
        t = dv.param.lowres(shape, under, offset=offset)
        u = np.asarray(t.init(jax.random.key(1), jnp.float64))
        assert u.shape == under and abs(u.std() - 0.01) < 0.005  # Lucid's sd
        got = np.asarray(jax.jit(lambda v: t(v))(jnp.asarray(u)))
        want = _lucid_lowres(u, shape, offset)
        assert got.shape == tuple(shape)
        assert_close(got, want, RTOL, f"lowres {shape} <- {under}, offset {offset}", elementwise=RTOL)


def test_lowres_rejects_bad_shapes():
    with pytest.raises(ValueError, match="same number of axes"):
        dv.param.lowres((4, 8, 8, 3), (8, 8, 3))
    with pytest.raises(ValueError, match="offset has 2 entries"):
        dv.param.lowres((4, 8, 8, 3), (1, 4, 4, 3), offset=[1, 2])
    with pytest.raises(TypeError, match="sequences of ints"):
        dv.param.lowres(8, (4,))


# ---- FFT images of any height and width ---------------------------------------------------------------------------


@pytest.mark.parametrize("hw", [(6, 10), (7, 12), (12, 8), (9, 9)])
def test_fft_image_equals_lucids_formula(hw):
    """Lucid's fft_image (even widths; any height) with the same spectrum, decorrelated colour and sigmoid."""
    h, w = hw
    with jax.enable_x64(True):
        param = dv.param.fft(decorrelate=True)
        p = param.init(jax.random.key(2), hw if h != w else h, jnp.float64)
        spec = np.asarray(p["spectrum"] if isinstance(p, dict) else p)
        assert spec.shape == (2, 3, h, w // 2 + 1)
        got = np.asarray(jax.jit(param.to_image)(p))
    if w % 2 == 0:
        want = _sigmoid(_lucid_fft_image(spec, h, w) @ COLOR_CORRELATION.T)
    else:  # 9x9: Lucid computes odd widths at w + 1 and crops; this is Lucent's (see the odd-width test)
        lucent_spec = np.concatenate([spec, np.zeros((2, 3, h, 1))], axis=-1)  # its unread extra column
        want = _sigmoid(_lucent_fft_image(lucent_spec, h, w) @ COLOR_CORRELATION.T)
    assert_close(got, want, RTOL, f"fft {hw}", elementwise=RTOL)


@pytest.mark.parametrize("hw", [(8, 11), (11, 7)])
def test_fft_image_odd_width_equals_lucents(hw):
    """Odd widths: Lucent's spectrum has one more column, which its irfftn(s=(h, w)) never reads."""
    h, w = hw
    lucent_spec = np.random.default_rng(0).normal(size=(2, 3, h, w // 2 + 2)) * 0.01
    with jax.enable_x64(True):
        got = np.asarray(dv.param.fft_tensor(jnp.asarray(lucent_spec[..., : w // 2 + 1]), w))
    assert_close(got, _lucent_fft_image(lucent_spec, h, w), RTOL, f"fft odd {hw}", elementwise=RTOL)


def test_fft_blur_non_square_matches_periodic_blur():
    """The parameters' blur of an H x W FFT image is the periodic Gaussian blur of the pre-sigmoid image."""
    with jax.enable_x64(True):
        param = dv.param.fft(decorrelate=False)
        p = param.init(jax.random.key(3), (10, 14), jnp.float64)
        blurred = param.blur(p, 1.0)
        got = dv.param.fft_tensor(blurred["spectrum"], 14)
        from deepvis_jax._src.optvis.param import periodic_blur

        want = periodic_blur(dv.param.fft_tensor(p["spectrum"], 14), 1.0)
        assert_close(np.asarray(got), np.asarray(want), RTOL, "fft blur (10, 14)")


# ---- the aligned batch --------------------------------------------------------------------------------------------


def _aligned_reference(params, shared, decorrelate=True) -> np.ndarray:
    own = np.asarray(params["own"], np.float64)
    h = own.shape[3]
    w = params["grid"].shape[1]
    x = np.stack([_lucid_fft_image(o, h, w) for o in own])
    for t, u in zip(shared, params["shared"]):
        x = x + _lucid_lowres(np.asarray(u, np.float64), t.shape, None)
    return _sigmoid(x @ COLOR_CORRELATION.T) if decorrelate else _sigmoid(x)


def test_aligned_images_equal_lucids_notebook_formula():
    """Lucid's aligned-interpolation parameterization: fft_image + sum of lowres_tensors, to_valid_rgb."""
    n, size = 3, 16
    shared = dv.param.interpolation_lowres(n, size)
    assert [t.underlying_shape for t in shared] == [(1, 8, 8, 3), (1, 4, 4, 3), (1, 2, 2, 3), (2, 2, 2, 3),
                                                   (1, 1, 1, 3), (2, 1, 1, 3)]  # fmt: skip
    with jax.enable_x64(True):
        param = dv.param.aligned()
        keys = jax.random.split(jax.random.key(4), n)
        params = param.init(keys, size, jnp.float64)
        # larger shared values than the 0.01 start, so the test sees them
        params["shared"] = [u * 100 for u in params["shared"]]
        got = np.asarray(jax.jit(param.to_images)(params))
    assert got.shape == (n, size, size, 3)
    assert_close(got, _aligned_reference(params, shared), RTOL, "aligned", elementwise=RTOL)


def test_aligned_checks_shapes():
    bad = (dv.param.lowres((3, 16, 16, 3), (1, 4, 4, 3)),)
    with pytest.raises(ValueError, match="does not fit a batch of 4"):
        dv.param.aligned(bad).init(jax.random.split(jax.random.key(0), 4), 16)
    with pytest.raises(TypeError, match="lowres"):
        dv.param.aligned([(1, 4, 4, 3)])
    assert dv.param.aligned(list(bad)) is dv.param.aligned(bad)  # equal arguments: the same object, no recompile


@pytest.fixture(scope="module")
def alexnet():
    return dv.load_model("alexnet", seed=0)


def test_construct_with_aligned_shares_one_lowres_tensor(alexnet):
    """construct optimizes the aligned batch jointly: after some steps each shared tensor is still ONE underlying
    tensor for the whole batch (its batch axis 1 or 2, not N), it moved, every image is the formula of the state's
    parameters, and the frames differ (each keeps its own FFT part)."""
    O = dv.objectives
    n, size = 3, 64
    param = dv.param.aligned()
    spec = _Spec(O.channel_interpolate("conv3", 1, "conv3", 2), param, tuple(dv.transforms.standard_transforms()),
                 _adam(0.05), size, 0.0, 0.0, 0, 0.5, False, 2, False)  # fmt: skip
    filters, repeats = jnp.zeros(n, jnp.int32), jnp.arange(n, dtype=jnp.int32)
    state0 = _init(spec, np.dtype(np.float32), jnp.asarray(0, jnp.int32), filters, repeats)
    state = _run_chunk(spec, alexnet, state0, filters, jnp.asarray(0, jnp.int32), jnp.asarray(2, jnp.int32))
    shared = dv.param.interpolation_lowres(n, size)
    for t, u0, u in zip(shared, state0.params["shared"], state.params["shared"]):
        assert u.shape == t.underlying_shape and u.shape[0] in (1, 2)
        assert float(jnp.max(jnp.abs(u - u0))) > 1e-3  # optimized
    imgs = np.asarray(_images(spec, state), np.float64)
    params64 = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), state.params)
    assert_close(imgs, _aligned_reference(params64, shared), 1e-5, "aligned after construct steps")
    assert np.abs(imgs[0] - imgs[1]).max() > 1e-3
    # the public call runs the same joint program
    out = dv.construct(alexnet, "conv3", [0] * n, image_size=size, steps=2, chunk=2, param=param, lr=0.05,
                       objective=O.channel_interpolate("conv3", 1, "conv3", 2), verbose=False)  # fmt: skip
    np.testing.assert_array_equal(out, imgs)


def test_construct_non_square(alexnet):
    out = dv.construct(alexnet, "conv3", [0, 1], image_size=(48, 80), steps=2, chunk=2, verbose=False)
    assert out.shape == (2, 48, 80, 3) and np.all((out >= 0) & (out <= 1))
    with pytest.raises(ValueError, match="square"):
        dv.construct(alexnet, "conv3", [0], image_size=(48, 80), steps=2, param=dv.param.cppn(), verbose=False)
    with pytest.raises(ValueError, match="image_size must be an int or"):
        dv.construct(alexnet, "conv3", [0], image_size=(48, 80, 3), steps=2, verbose=False)
