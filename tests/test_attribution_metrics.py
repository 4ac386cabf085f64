"""dv.attribution's metrics in float64 on a tiny graph network (converters.from_torch): the deletion and insertion
curves and their areas against a numpy loop of RISE's definition (Petsiuk et al. 2018) scored by the torch model,
and infidelity and sensitivity_max against Captum's own `captum.metrics` functions fed the same perturbations (the
noise drawn from the same JAX keys on both sides)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn as nn
from captum.attr import Saliency
from captum.metrics import infidelity as captum_infidelity
from captum.metrics import sensitivity_max as captum_sensitivity_max

import converters
import deepvis_jax as dv
from reference import as_float64, assert_close, nchw

A = dv.attribution
HW = (12, 12)
TARGET = [3, 1, 4]


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1),
                                      nn.Tanh())  # fmt: skip
        self.head = nn.Linear(8, 5)

    def forward(self, x):
        return self.head(self.features(x).mean((2, 3)))


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    tm = Tiny().eval()
    model = converters.from_torch(tm, torch.randn(2, 3, *HW))
    with jax.enable_x64(True):
        model = as_float64(model)
    return tm.double(), model


def _images(n=3, seed=0):
    return np.random.default_rng(seed).standard_normal((n, *HW, 3))


def _maps(n=3, seed=1):
    """Maps with many ties (4 levels): the order among equal pixels is part of the definition."""
    return np.round(np.random.default_rng(seed).uniform(0, 3, (n, *HW)))


# ----------------------------------------------------------------------------------------------------------------
# Deletion and insertion: the paper's loop in numpy
# ----------------------------------------------------------------------------------------------------------------


def _np_blur(x):
    """An 11 x 11 Gaussian (sigma 5, normalized) over each colour, zero padding, as a direct 2-D sum."""
    k = np.arange(11) - 5
    g = np.exp(-(k * k) / 50.0)
    kern = np.outer(g, g) / np.outer(g, g).sum()
    n, h, w, c = x.shape
    p = np.zeros((n, h + 10, w + 10, c))
    p[:, 5:-5, 5:-5] = x
    out = np.zeros_like(x)
    for i in range(11):
        for j in range(11):
            out += kern[i, j] * p[:, i : i + h, j : j + w]
    return out


def _np_curve(tm, x, maps, target, steps, substrate, insert):
    """RISE's causal metric for one image at a time: start from the input (deletion) or the substrate (insertion),
    move the first (i * HW) // steps pixels of the map's descending order (ties: lower index first) to the other
    image, score the softmax probability with torch at each of the steps + 1 points; the area by np.trapezoid."""
    hw = HW[0] * HW[1]
    curves = []
    for n in range(len(x)):
        order = np.argsort(-maps[n].ravel(), kind="stable")
        start, finish = (substrate[n], x[n]) if insert else (x[n], substrate[n])
        img, src = start.reshape(hw, 3).copy(), finish.reshape(hw, 3)
        row = []
        for i in range(steps + 1):
            idx = order[: (i * hw) // steps]
            img[idx] = src[idx]
            with torch.no_grad():
                p = torch.softmax(tm(nchw(img.reshape(1, *HW, 3))), -1)[0, target[n]]
            row.append(float(p))
        curves.append(row)
    curves = np.array(curves)
    return curves, np.trapezoid(curves, dx=1.0 / steps, axis=1)


@pytest.mark.parametrize("steps", [16, 10])
def test_deletion_and_insertion_equal_the_papers_loop(tiny, steps):
    tm, model = tiny
    x, maps = _images(), _maps()
    t = dv.targets.softmax(TARGET)
    for insert, substrate, ref_substrate in [(False, "zeros", np.zeros_like(x)), (True, "blur", _np_blur(x)),
                                             (False, "blur", _np_blur(x))]:  # fmt: skip
        fn = A.insertion if insert else A.deletion
        curve, area = fn(model, jnp.asarray(x), t, maps, steps=steps, substrate=substrate, chunk=5)
        ref_curve, ref_area = _np_curve(tm, x, maps, TARGET, steps, ref_substrate, insert)
        what = f"{fn.__name__} steps={steps} substrate={substrate}"
        assert curve.shape == (3, steps + 1) and area.shape == (3,)
        assert_close(curve, ref_curve, 1e-10, what, elementwise=1e-10)
        assert_close(area, ref_area, 1e-10, what + " area", elementwise=1e-10)
    # the two ends: the whole image and the whole substrate
    assert_close(curve[:, 0], ref_curve[:, 0], 1e-10)
    np.testing.assert_allclose(np.asarray(A.blur(jnp.asarray(x))), _np_blur(x), rtol=0, atol=1e-12)


def test_metrics_batch_jit_and_errors(tiny):
    _, model = tiny
    x, maps = jnp.asarray(_images()), jnp.asarray(_maps())
    curve, area = A.deletion(model, x, TARGET, maps, steps=8)
    one = A.deletion(model, x[1:2], TARGET[1], maps[1:2], steps=8)
    np.testing.assert_allclose(np.asarray(one[0][0]), np.asarray(curve[1]), rtol=1e-12, atol=0)
    jitted = jax.jit(lambda v, m: A.deletion(model, v, TARGET, m, steps=8))(x, maps)
    np.testing.assert_allclose(np.asarray(jitted[1]), np.asarray(area), rtol=1e-12, atol=0)
    key = jax.random.key(0)
    with pytest.raises(ValueError, match=r"maps are shaped \(3, 6, 6\).*to_map"):
        A.deletion(model, x, TARGET, maps[:, :6, :6])
    with pytest.raises(ValueError, match="substrate"):
        A.insertion(model, x, TARGET, maps, substrate="noise")
    with pytest.raises(ValueError, match="steps must be an int in 1..144"):
        A.deletion(model, x, TARGET, maps, steps=145)
    with pytest.raises(ValueError, match="target holds 2 values for a batch of 3"):
        A.infidelity(model, x, TARGET[:2], maps, key)
    with pytest.raises(ValueError, match=r"attributions are shaped \(3, 12, 12, 1\)"):
        A.infidelity(model, x, TARGET, maps[..., None], key)


# ----------------------------------------------------------------------------------------------------------------
# Infidelity and sensitivity: Captum's functions on the same noise
# ----------------------------------------------------------------------------------------------------------------


def _interleaved(per_sample):
    """(S, N, H, W, 3) numpy -> Captum's repeat_interleave order, NCHW: row n * S + s is sample s of image n."""
    s, n = per_sample.shape[:2]
    return nchw(np.swapaxes(per_sample, 0, 1).reshape(s * n, *per_sample.shape[2:]))


def test_infidelity_equals_captum(tiny):
    tm, model = tiny
    x = _images()
    attributions = np.random.default_rng(2).standard_normal(x.shape)
    perturb = A.gaussian_perturbation(0.1)
    key, samples = jax.random.key(7), 6
    noise = np.stack([np.asarray(perturb(k, jnp.asarray(x))[0]) for k in jax.random.split(key, samples)])

    def captum_perturb(inputs):  # the same noise, applied by Captum to its own repeated inputs
        i = _interleaved(noise)
        return i, inputs - i

    for normalize in (False, True):
        ours = A.infidelity(model, jnp.asarray(x), TARGET, attributions, key, perturb=perturb, samples=samples,
                            normalize=normalize, chunk=4)  # fmt: skip
        ref = captum_infidelity(tm, captum_perturb, nchw(x), nchw(attributions), target=TARGET,
                                n_perturb_samples=samples, normalize=normalize)  # fmt: skip
        assert float(np.min(ref.numpy())) > 0
        assert_close(ours, ref.numpy(), 1e-10, f"infidelity normalize={normalize}", elementwise=1e-10)


@pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already require gradients")
def test_sensitivity_max_equals_captum(tiny):
    tm, model = tiny
    x = _images()
    perturb = A.uniform_perturbation(0.2)
    key, samples = jax.random.key(3), 5
    shifted = np.stack([np.asarray(perturb(k, jnp.asarray(x))) for k in jax.random.split(key, samples)])

    def captum_perturb(inputs):
        return _interleaved(shifted)

    ours = A.sensitivity_max(A.saliency, model, jnp.asarray(x), TARGET, key, perturb=perturb, samples=samples,
                             chunk=2)  # fmt: skip
    ref = captum_sensitivity_max(Saliency(tm).attribute, nchw(x), perturb_func=captum_perturb,
                                 n_perturb_samples=samples, target=TARGET)  # fmt: skip
    assert float(np.min(ref.numpy())) > 0.01
    assert_close(ours, ref.numpy(), 1e-10, "sensitivity_max", elementwise=1e-10)
