"""The random transforms of `construct`: the resamplings (`random_scale`, `random_rotate`) against
`jax.scipy.ndimage.map_coordinates` at hand-written coordinates, their custom vjp against the transpose of the dense
Jacobian of their forward pass (float64, elementwise), and known answers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from deepvis_jax.transforms import apply_transforms, jitter, random_rotate, random_scale, standard_transforms
from deepvis_jax._src.optvis.transforms import _resample_impl

SHAPE = (9, 11, 3)  # small, not square: the two axes cannot be swapped by mistake


def _image(shape=SHAPE, seed=0):
    return jnp.asarray(np.random.default_rng(seed).random(shape))


def _sampled(img, sy, sx, fill):
    """Bilinear samples of `img` at (sy, sx), taps outside the image reading `fill`: the reference forward pass."""
    sample = lambda ch: jax.scipy.ndimage.map_coordinates(ch, [sy, sx], order=1, mode="constant", cval=fill)  # noqa: E731
    return jax.vmap(sample, in_axes=2, out_axes=2)(img)


def _coordinates(m, shape):
    """Input coordinates ``m (q - c) + c`` of every output pixel q (c the image centre)."""
    h, w = shape[:2]
    cy, cx = (h - 1) / 2, (w - 1) / 2
    yy, xx = np.meshgrid(np.arange(h) - cy, np.arange(w) - cx, indexing="ij")
    return m[0, 0] * yy + m[0, 1] * xx + cy, m[1, 0] * yy + m[1, 1] * xx + cx


def _rotation(deg):
    a = np.deg2rad(deg)
    return np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]])


def _drawn(values, key):
    """The value a transform draws from `key` (uniformly among `values`)."""
    return float(np.asarray(values)[int(jax.random.choice(key, len(values)))])


# (transforms applied together, the map m they should sample at given the key: each draws from its own subkey)
def _cases():
    key = jax.random.key(7)
    k1, k2 = jax.random.split(key)
    angles, scales = [-10.0, 3.0, 10.0], [0.9, 1.1]
    return [
        ("rotate 7", [random_rotate([7.0])], key, _rotation(7.0)),
        ("rotate 33", [random_rotate([33.0], fill=0.2)], key, _rotation(33.0)),
        ("rotate 135", [random_rotate([135.0])], key, _rotation(135.0)),
        ("zoom 0.9", [random_scale([0.9])], key, np.eye(2) / 0.9),
        ("zoom 1.1", [random_scale([1.1], fill=0.0)], key, np.eye(2) / 1.1),
        ("zoom 0.45", [random_scale([0.45])], key, np.eye(2) / 0.45),
        ("zoom 3.3", [random_scale([3.3])], key, np.eye(2) / 3.3),
        # a drawn scale then a drawn rotation: one resampling at the composed map
        ("zoom then rotate (drawn)", [random_scale(scales), random_rotate(angles)], key,
         (np.eye(2) / _drawn(scales, k1)) @ _rotation(_drawn(angles, k2))),
        ("zoom 2 then rotate 45", [random_scale([2.0]), random_rotate([45.0])], key,
         (np.eye(2) / 2.0) @ _rotation(45.0)),
    ]  # fmt: skip


@pytest.mark.parametrize("case", range(9), ids=[c[0] for c in _cases()])
def test_resampling_forward_and_exact_transpose(case):
    """Forward: `map_coordinates` (bilinear, constant fill) at the map drawn from the key. Backward: the custom vjp
    equals the transpose of the dense Jacobian of the forward pass (`jax.jacfwd` of the plain bilinear sampling,
    which autodiff differentiates without the custom rule), elementwise in float64."""
    with jax.enable_x64(True):
        _, transforms, key, m = _cases()[case]
        fill = transforms[0].fill
        img = _image()
        ours = lambda x: apply_transforms(transforms, key, x) if len(transforms) > 1 else transforms[0](key, x)  # noqa: E731
        sy, sx = _coordinates(m, SHAPE)
        np.testing.assert_allclose(ours(img), _sampled(img, sy, sx, fill), rtol=0, atol=1e-12)

        jac = jax.jacfwd(lambda x: _resample_impl(x, jnp.asarray(m), fill))(img).reshape(img.size, img.size)
        ref = jax.jacfwd(lambda x: _sampled(x, sy, sx, fill))(img).reshape(img.size, img.size)
        np.testing.assert_allclose(jac, ref, rtol=0, atol=1e-12)  # the forward pass is bilinear sampling
        vjp_rows = jax.jacrev(ours)(img).reshape(img.size, img.size)  # row i: vjp of the i-th output basis vector
        np.testing.assert_allclose(vjp_rows, jac, rtol=0, atol=1e-12)
        assert np.any((jac > 0.01) & (jac < 0.99))  # it interpolates: not a permutation


def test_rotation_known_answers():
    """90 degrees is np.rot90 (counterclockwise as displayed), 180 flips both axes; 0 and a scale of 1 are the
    identity; in float64 to rounding."""
    with jax.enable_x64(True):
        key = jax.random.key(0)
        square, img = _image((9, 9, 3)), _image()
        np.testing.assert_allclose(random_rotate([90])(key, square), np.rot90(np.asarray(square), 1), atol=1e-12)
        np.testing.assert_allclose(random_rotate([180])(key, img), np.asarray(img)[::-1, ::-1], atol=1e-12)
        np.testing.assert_array_equal(random_rotate([0])(key, img), img)
        np.testing.assert_array_equal(random_scale([1])(key, img), img)


def test_zoom_out_reads_fill_beyond_the_image():
    """Zoom 1/2 of an 8 px image of ones: output pixel q samples at 2 (q - 3.5) + 3.5, inside the image (both
    taps) for q = 2..5, outside (both taps) for q = 0, 1, 6, 7, where it reads the fill."""
    out = np.asarray(random_scale([0.5], fill=0.25)(jax.random.key(0), jnp.ones((8, 8, 3))))
    expected = np.full((8, 8, 3), 0.25, np.float32)
    expected[2:6, 2:6] = 1.0
    np.testing.assert_array_equal(out, expected)


def test_standard_transforms_sample_once():
    """The standard list's scale and rotation are one resampling (each drawn from its own subkey as when applied
    alone); pad and jitter stay exact copies. Checked against map_coordinates on the padded, jittered image."""
    with jax.enable_x64(True):
        pad, j8, scale, rotate, j4 = standard_transforms()
        key = jax.random.key(11)
        keys = jax.random.split(key, 5)
        img = _image((20, 20, 3))
        out = apply_transforms((pad, j8, scale, rotate, j4), key, img)
        x = j8(keys[1], pad(keys[0], img))
        m = (np.eye(2) / _drawn(scale.values, keys[2])) @ _rotation(_drawn(rotate.values, keys[3]))
        expected = j4(keys[4], _sampled(x, *_coordinates(m, x.shape), 0.5))
        assert out.shape == (32, 32, 3)
        np.testing.assert_allclose(out, expected, rtol=0, atol=1e-12)
        # one at a time, the same draws interpolate twice: a different (blurrier) image
        twice = j4(keys[4], rotate(keys[3], scale(keys[2], x)))
        assert np.max(np.abs(np.asarray(twice) - np.asarray(out))) > 1e-3


def test_resamplings_apart_are_applied_one_by_one():
    """A jitter between a zoom and a rotation: two resamplings (each reading a copy of its input, see
    `_materialized`), equal to the three transforms applied one at a time with the keys `apply_transforms` splits."""
    with jax.enable_x64(True):
        transforms = (random_scale([0.9, 1.1]), jitter(2), random_rotate([-10.0, 10.0]))
        key = jax.random.key(5)
        k = jax.random.split(key, 3)
        img = _image()
        expected = transforms[2](k[2], transforms[1](k[1], transforms[0](k[0], img)))
        np.testing.assert_array_equal(apply_transforms(transforms, key, img), expected)
        grad = jax.grad(lambda x: jnp.sum(apply_transforms(transforms, key, x) ** 2))(img)
        ref = jax.grad(lambda x: jnp.sum(transforms[2](k[2], transforms[1](k[1], transforms[0](k[0], x))) ** 2))(img)
        np.testing.assert_array_equal(grad, ref)


def test_bad_arguments():
    with pytest.raises(ValueError, match="scales must be"):
        random_scale([])
    with pytest.raises(ValueError, match="scales must be"):
        random_scale([1.0, 0.0])
    with pytest.raises(ValueError, match="angles must be"):
        random_rotate([])
