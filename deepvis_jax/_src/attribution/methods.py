"""Attribution methods: the gradient family in input space and the CAM family at a layer (`dv.attribution`).

Every function takes a `Model`, normalized NHWC images ``x`` (N, H, W, 3) like `dv.forward`, and a ``target``: an
int class index (one for the batch, or one per image) or a ``dv.targets.*`` target (a class's softmax probability,
a layer's channel or unit, a masked region, any function of the outputs). Input-space methods return (N, H, W, 3)
(`to_map` sums over colour); the CAMs return (N, h, w) at the layer's resolution (`upsample` brings them to the
image). Each is jit-compiled at its entry (static: the layer, step counts, rules); all are pure, so ``jax.jit``,
``jax.vmap`` and ``jax.grad`` compose with them. The formulas, and the peer each one equals, are in
docs/attribution.md.
"""

from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ..checks import check_choice, check_int, check_number
from ..compile import jit
from ..nets import Layer, Model
from ..rules import Record, Replay
from .core import check_images, input_gradients, layer_gradients, resolve_layer, scores
from .targets import Target, as_target

Array = jax.Array

RULES = ("gauss_legendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid")
SMOOTH_KINDS = ("mean", "square", "var")


def _prepare(model: Model, x, target) -> tuple[Array, Target]:
    x = check_images(x)
    return x, as_target(target, model, x.shape[0])


# ----------------------------------------------------------------------------------------------------------------
# Input space: the gradient family
# ----------------------------------------------------------------------------------------------------------------


@jit
def _input_gradients(model, x, target):
    return input_gradients(model, x, target)[1]


def saliency(model: Model, x: Array, target, abs: bool = True) -> Array:
    """The gradient of the target's score with respect to the input (Simonyan et al. 2014), (N, H, W, 3); its
    absolute value with ``abs=True`` (the default, as Captum's `Saliency`)."""
    x, t = _prepare(model, x, target)
    g = _input_gradients(model, x, t)
    return jnp.abs(g) if abs else g


def input_x_gradient(model: Model, x: Array, target) -> Array:
    """The input times the gradient of the score (Captum's `InputXGradient`), (N, H, W, 3)."""
    x, t = _prepare(model, x, target)
    return x * _input_gradients(model, x, t)


@jit
def _guided_backprop(model, x, target):
    record = Record()
    out = model.apply(x, upto=target.layer, ops=record)
    switches = record.switches(x.shape[1:3])
    s, score_vjp = jax.vjp(target.score, out)
    (g_out,) = score_vjp(jnp.ones_like(s))
    _, vjp = jax.vjp(lambda v: model.apply(v, upto=target.layer, ops=Replay(switches, "guided")), x)
    return vjp(g_out)[0]


def guided_backprop(model: Model, x: Array, target) -> Array:
    """Guided backpropagation (Springenberg et al. 2015) of the target's score, (N, H, W, 3): the gradient with
    every ReLU's backward ``relu(g) * (input > 0)`` and the library's guided rule for other rectifiers
    (docs/projection-rules.md); max-pools route through their switches (Captum's `GuidedBackprop` on ReLU
    networks)."""
    x, t = _prepare(model, x, target)
    return _guided_backprop(model, x, t)


def ig_rule(rule: str, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """(alphas, weights) of an integration rule with `steps` points on [0, 1] (Captum's definitions, in float64:
    Captum rounds the Riemann points to float32)."""
    check_choice("rule", rule, RULES)
    n = steps
    if rule == "gauss_legendre":
        points, weights = np.polynomial.legendre.leggauss(n)
        return 0.5 * (1 + points), 0.5 * weights
    if n < 2:
        raise ValueError(f"a Riemann rule needs steps >= 2, got {n}")
    weights = np.full(n, 1.0 / n)
    if rule == "riemann_trapezoid":
        weights[0] /= 2
        weights[-1] /= 2
        return np.linspace(0, 1, n), weights
    start, stop = {"riemann_left": (0, 1 - 1 / n), "riemann_right": (1 / n, 1),
                   "riemann_middle": (1 / (2 * n), 1 - 1 / (2 * n))}[rule]  # fmt: skip
    return np.linspace(start, stop, n), weights


def _chunks(values: np.ndarray, weights: np.ndarray, chunk: int) -> tuple[np.ndarray, np.ndarray]:
    """(values, weights) padded with weight-0 entries to a multiple of `chunk`, shaped (groups, chunk)."""
    pad = -len(values) % chunk
    values = np.concatenate([values, np.zeros(pad)])
    weights = np.concatenate([weights, np.zeros(pad)])
    return values.reshape(-1, chunk), weights.reshape(-1, chunk)


@jit
def _integrated_gradients(model, x, target, baseline, alphas, weights):
    """`alphas`, `weights`: (groups, chunk), traced (one program serves every rule of the same shape)."""
    baseline = jnp.broadcast_to(baseline, x.shape).astype(x.dtype)
    diff = x - baseline

    def grads(point):
        return input_gradients(model, point, target)[1]

    def step(total, aw):
        a, w = aw  # (chunk,) each
        points = baseline[None] + a.astype(x.dtype)[:, None, None, None, None] * diff[None]
        g = jax.vmap(grads)(points)
        return total + jnp.tensordot(w.astype(x.dtype), g, axes=1), None

    total, _ = lax.scan(step, jnp.zeros_like(x), (alphas, weights))
    attributions = diff * total
    ends = scores(model, jnp.concatenate([x, baseline]), _twice(target))
    n = x.shape[0]
    delta = jnp.sum(attributions, axis=(1, 2, 3)) - (ends[:n] - ends[n:])
    return attributions, delta


def _twice(target: Target) -> Target:
    """The target for a batch of the images followed by the same images again."""
    return jax.tree_util.tree_map(lambda a: jnp.concatenate([a, a]) if getattr(a, "ndim", 0) >= 1 else a, target)


def integrated_gradients(model: Model, x: Array, target, baseline=None, steps: int = 50,
                         rule: str = "gauss_legendre", chunk: int | None = None) -> tuple[Array, Array]:  # fmt: skip
    """Integrated gradients (Sundararajan et al. 2017): ``(x - baseline) * sum_i w_i grad(baseline + a_i (x -
    baseline))`` over the `rule`'s `steps` points (Captum's rules and defaults: ``"gauss_legendre"``,
    ``"riemann_left" | "riemann_right" | "riemann_middle" | "riemann_trapezoid"``; baseline 0, a scalar or an array
    broadcast to `x`). Returns ``(attributions (N, H, W, 3), delta (N,))``: delta is the sum of an image's
    attributions minus its score's change from baseline to input (the convergence check, Captum's
    ``return_convergence_delta``). `chunk` points are evaluated at once, vmapped (default: all `steps`); the chunks
    run in a `lax.scan`, so memory is bounded by `chunk`.
    """
    x, t = _prepare(model, x, target)
    steps = check_int("steps", steps)
    chunk = steps if chunk is None else min(check_int("chunk", chunk), steps)
    baseline = jnp.zeros((), x.dtype) if baseline is None else jnp.asarray(baseline, x.dtype)
    try:
        baseline = jnp.broadcast_to(baseline, x.shape)  # one program for every baseline
    except ValueError:
        raise ValueError(f"baseline shaped {baseline.shape} does not broadcast to the images {x.shape}") from None
    alphas, weights = _chunks(*ig_rule(rule, steps), chunk)
    return _integrated_gradients(model, x, t, baseline, jnp.asarray(alphas, x.dtype), jnp.asarray(weights, x.dtype))


def smooth_noise(x: Array, key: Array, samples: int, sigma: float) -> Array:
    """The noise `smooth_grad` adds, (samples, N, H, W, 3): ``sigma * (max(x_n) - min(x_n))`` times standard
    normal draws ``jax.random.normal(key, (samples, *x.shape), x.dtype)``."""
    spread = jnp.max(x, axis=(1, 2, 3)) - jnp.min(x, axis=(1, 2, 3))
    return sigma * spread[None, :, None, None, None] * jax.random.normal(key, (samples, *x.shape), x.dtype)


@functools.partial(jit, static_argnames=("method", "samples", "chunk", "static"))
def _smooth_grad(method, model, x, target, key, dynamic, samples, sigma, chunk, static):
    """(mean, mean square) of `method` over the noisy images (one program for the three kinds)."""
    noise = smooth_noise(x, key, samples, sigma)
    pad = -samples % chunk
    noise = jnp.concatenate([noise, jnp.zeros((pad, *x.shape), x.dtype)]).reshape(-1, chunk, *x.shape)
    valid = (jnp.arange(samples + pad) < samples).reshape(-1, chunk).astype(x.dtype)

    def one(eps):
        a = method(model, x + eps, target, **dynamic, **dict(static))
        return a[0] if isinstance(a, tuple) else a

    def step(carry, nv):
        eps, v = nv
        a = jax.vmap(one)(eps)
        s1, s2 = carry
        return (s1 + jnp.tensordot(v, a, axes=1), s2 + jnp.tensordot(v, a * a, axes=1)), None

    shape = jax.eval_shape(one, noise[0, 0])
    init = (jnp.zeros(shape.shape, shape.dtype), jnp.zeros(shape.shape, shape.dtype))
    (s1, s2), _ = lax.scan(step, init, (noise, valid))
    return s1 / samples, s2 / samples


def smooth_grad(method: Callable, model: Model, x: Array, target, key: Array, samples: int = 50,
                sigma: float = 0.15, kind: str = "mean", chunk: int | None = None, **kwargs) -> Array:  # fmt: skip
    """SmoothGrad (Smilkov et al. 2017): `method` (any ``fn(model, x, target, **kwargs)`` of this module, e.g.
    `saliency`, `guided_backprop`, `integrated_gradients`: its attributions) averaged over `samples` noisy copies
    of the images. The noise is `smooth_noise`: Gaussian with standard deviation `sigma` times each image's range
    (the paper's), drawn from the explicit PRNG `key`. ``kind``: ``"mean"`` (SmoothGrad), ``"square"`` (the mean
    of the squares, SmoothGrad-Squared) or ``"var"`` (their variance, VarGrad), as Captum's `NoiseTunnel`.
    `chunk` samples are computed at once, vmapped (default: all). Array-valued `kwargs` (a baseline) are traced,
    the others (``steps=``, ``abs=``) static.
    """
    x, t = _prepare(model, x, target)
    samples = check_int("samples", samples)
    chunk = samples if chunk is None else min(check_int("chunk", chunk), samples)
    dynamic = {k: v for k, v in kwargs.items() if isinstance(v, (jax.Array, np.ndarray))}
    static = tuple(sorted((k, v) for k, v in kwargs.items() if k not in dynamic))
    check_choice("kind", kind, SMOOTH_KINDS)
    mean, square = _smooth_grad(method, model, x, t, key, dynamic, samples, check_number("sigma", sigma), chunk,
                                static)  # fmt: skip
    return {"mean": mean, "square": square, "var": square - mean * mean}[kind]


# ----------------------------------------------------------------------------------------------------------------
# The CAM family
# ----------------------------------------------------------------------------------------------------------------


def _cam_sum(weights: Array, act: Array) -> Array:
    """sum_c weights[n, c] * act[n, :, :, c] (weights (N, C) or (N, h, w, C))."""
    if weights.ndim == 2:
        return jnp.einsum("nc,nhwc->nhw", weights, act)
    return jnp.sum(weights * act, axis=-1)


def _relu(cam: Array, relu: bool) -> Array:
    return jax.nn.relu(cam) if relu else cam


def _gradcam_formula(kind: str, act: Array, g: Array) -> Array:
    if kind == "grad_cam":
        return _cam_sum(jnp.mean(g, axis=(1, 2)), act)
    if kind == "hires_cam":
        return jnp.sum(g * act, axis=-1)
    if kind == "grad_cam_pp":  # Chattopadhyay et al. eq. 19, as pytorch-grad-cam computes it (eps 1e-6)
        g2 = g * g
        g3 = g2 * g
        total = jnp.sum(act, axis=(1, 2), keepdims=True)
        aij = g2 / (2 * g2 + total * g3 + 1e-6)
        aij = jnp.where(g != 0, aij, jnp.zeros((), aij.dtype))
        return _cam_sum(jnp.sum(jax.nn.relu(g) * aij, axis=(1, 2)), act)
    if kind == "xgrad_cam":
        total = jnp.sum(act, axis=(1, 2), keepdims=True)
        return _cam_sum(jnp.sum(g * act / (total + 1e-7), axis=(1, 2)), act)
    if kind == "layer_cam":
        return jnp.sum(jax.nn.relu(g) * act, axis=-1)
    raise ValueError(f"unknown CAM {kind!r}")


@functools.partial(jit, static_argnames=("layer",))
def _layer_gradients(model, x, target, layer):
    return layer_gradients(model, x, target, layer)[1:]


@functools.partial(jit, static_argnames=("kind", "relu"))
def _cam_formula(kind, act, g, relu):
    return _relu(_gradcam_formula(kind, act, g), relu)


def _gradient_cam(model, x, target, kind, layer, relu):
    """One compiled forward and backward pass per (model, layer, target kind), whichever CAM reads it."""
    act, g = _layer_gradients(model, x, target, layer)
    return _cam_formula(kind, act, g, relu)


def _make_cam(kind: str, doc: str):
    def cam(model: Model, x: Array, target, layer: Layer | None = None, relu: bool = True) -> Array:
        x, t = _prepare(model, x, target)
        return _gradient_cam(model, x, t, kind, resolve_layer(model, layer), bool(relu))

    cam.__name__ = cam.__qualname__ = kind
    cam.__doc__ = doc + _CAM_ARGS
    return cam


_CAM_ARGS = """

    `layer`: a name or 1-based index of ``dv.layers(model)`` (on a hand-written ResNet also a stage, ``"layer4"``:
    its last block); None: the last layer. Returns (N, h, w) at the layer's resolution, through a ReLU unless
    ``relu=False``. A, the layer's activation (after its ReLU, as ``dv.forward``), and G = d score / d A, from one
    forward and one backward pass of the whole network.
    """

grad_cam = _make_cam("grad_cam", """Grad-CAM (Selvaraju et al. 2017): ``relu(sum_c mean_hw(G_c) A_c)``; equals
    pytorch-grad-cam's `GradCAM` map before its scaling and Captum's ``LayerGradCam(relu_attributions=True)``.""")
hires_cam = _make_cam("hires_cam", """HiResCAM (Draelos & Carin 2020): ``relu(sum_c G_c * A_c)``, elementwise
    (pytorch-grad-cam's `HiResCAM`).""")
grad_cam_pp = _make_cam("grad_cam_pp", """Grad-CAM++ (Chattopadhyay et al. 2018, eq. 19 with the exponential's
    derivatives): weights ``sum_hw relu(G) * a`` with ``a = G^2 / (2 G^2 + sum_hw(A) G^3 + 1e-6)`` (0 where
    G = 0), as pytorch-grad-cam's `GradCAMPlusPlus` computes it.""")
xgrad_cam = _make_cam("xgrad_cam", """XGrad-CAM (Fu et al. 2020): weights ``sum_hw G * A / (sum_hw A + 1e-7)``
    (pytorch-grad-cam's `XGradCAM`).""")
layer_cam = _make_cam("layer_cam", """LayerCAM (Jiang et al. 2021): ``relu(sum_c relu(G_c) * A_c)``
    (pytorch-grad-cam's `LayerCAM`).""")


@functools.partial(jit, static_argnames=("layer", "relu"))
def _eigen_cam(model, x, layer, relu):
    act = model.apply(x, upto=layer)

    def one(a):
        m = a.reshape(-1, a.shape[-1])
        m = m - jnp.mean(m, axis=0, keepdims=True)
        _, _, vt = jnp.linalg.svd(m, full_matrices=False)
        p = m @ vt[0]
        p = jnp.where(jnp.abs(jnp.min(p)) > jnp.abs(jnp.max(p)), -p, p)  # the largest magnitude positive
        return p.reshape(a.shape[:2])

    return _relu(jax.vmap(one)(act), relu)


def eigen_cam(model: Model, x: Array, target=None, layer: Layer | None = None, relu: bool = True) -> Array:
    """Eigen-CAM (Muhammad & Yeasin 2020): each image's layer activation (h*w positions by C channels), centered
    over positions, projected on its first right singular vector; (N, h, w). The SVD's sign is arbitrary: it is
    fixed so that the entry of largest magnitude is positive (pytorch-grad-cam's `EigenCAM` leaves it to LAPACK).
    Class-agnostic: `target` is ignored (accepted so every CAM takes the same arguments). `layer` and `relu` as
    in `grad_cam`."""
    x = check_images(x)
    return _eigen_cam(model, x, resolve_layer(model, layer), bool(relu))


def _interp_matrix(n_in: int, n_out: int, mode: str, align_corners: bool = False) -> np.ndarray:
    """(n_out, n_in) weights of torch's 1-D interpolation (``F.interpolate``: nearest, or linear)."""
    rows = np.arange(n_out)
    m = np.zeros((n_out, n_in))
    if mode == "nearest":
        src = np.minimum(np.floor(rows * (n_in / n_out)).astype(int), n_in - 1)
        m[rows, src] = 1.0
        return m
    if align_corners:
        src = rows * ((n_in - 1) / (n_out - 1)) if n_out > 1 else np.zeros(n_out)
    else:
        src = np.maximum((rows + 0.5) * (n_in / n_out) - 0.5, 0.0)
    lo = np.minimum(np.floor(src).astype(int), n_in - 1)
    hi = np.minimum(lo + 1, n_in - 1)
    w = src - lo
    np.add.at(m, (rows, lo), 1 - w)
    np.add.at(m, (rows, hi), w)
    return m


def _resize(maps: Array, size: tuple[int, int], mode: str, align_corners: bool = False) -> Array:
    """(N, h, w, ...) -> (N, H, W, ...), separable."""
    rh = jnp.asarray(_interp_matrix(maps.shape[1], size[0], mode, align_corners), maps.dtype)
    rw = jnp.asarray(_interp_matrix(maps.shape[2], size[1], mode, align_corners), maps.dtype)
    return jnp.einsum("Hh,nhw...,Ww->nHW...", rh, maps, rw)


def upsample(maps: Array, size, mode: str = "bilinear", align_corners: bool = False) -> Array:
    """Maps (N, h, w) (or (N, h, w, C)) resized to `size` (H, W) as torch's ``F.interpolate`` does:
    ``"bilinear"`` (half-pixel centers, ``align_corners=False``, as OpenCV's resize and pytorch-grad-cam) or
    ``"nearest"`` (torch's: source index ``floor(i * h / H)``, as Captum's `GuidedGradCam`)."""
    check_choice("mode", mode, ("bilinear", "nearest"))
    size = tuple(int(s) for s in size)
    if len(size) != 2 or getattr(maps, "ndim", 0) < 3:
        raise ValueError(f"upsample takes maps (N, h, w[, C]) and a size (H, W), got {getattr(maps, 'shape', None)} "
                         f"and {size}")  # fmt: skip
    return _resize(maps, size, mode, align_corners)


@functools.partial(jit, static_argnames=("layer", "chunk", "weights", "relu"))
def _score_cam(model, x, target, layer, chunk, weights, relu):
    act = model.apply(x, upto=layer)
    n, _, _, c = act.shape
    up = _resize(act, x.shape[1:3], "bilinear", align_corners=True)  # torch's UpsamplingBilinear2d
    lo, hi = jnp.min(up, axis=(1, 2), keepdims=True), jnp.max(up, axis=(1, 2), keepdims=True)
    masks = (up - lo) / (hi - lo + 1e-8)  # (N, H, W, C)
    pad = -c % chunk
    masks = jnp.concatenate([masks, jnp.zeros((*masks.shape[:3], pad), masks.dtype)], axis=-1)
    groups = jnp.moveaxis(masks.reshape(*masks.shape[:3], -1, chunk), 3, 0)  # (G, N, H, W, chunk)

    def step(_, m):
        masked = jnp.moveaxis(x[..., None, :] * m[..., None], 3, 0)  # (chunk, N, H, W, 3)
        return None, jax.vmap(lambda v: scores(model, v, target))(masked)  # (chunk, N)

    _, s = lax.scan(step, None, groups)
    s = jnp.moveaxis(s.reshape(-1, n)[:c], 0, 1)  # (N, C)
    if weights == "softmax":
        w = jax.nn.softmax(s, axis=-1)
    else:  # the paper's: the score's increase over the baseline (a zero image)
        w = s - scores(model, jnp.zeros_like(x), target)[:, None]
    return _relu(_cam_sum(w, act), relu)


def score_cam(model: Model, x: Array, target, layer: Layer | None = None, chunk: int = 32,
              weights: str = "softmax", relu: bool = True) -> Array:  # fmt: skip
    """Score-CAM (Wang et al. 2020), (N, h, w): each channel's map, upsampled bilinearly (``align_corners=True``)
    and min-max normalized to [0, 1] (+1e-8), masks the image; the target's scores of the C masked images weight
    the channels: ``weights="softmax"`` takes their softmax over channels (pytorch-grad-cam's `ScoreCAM`),
    ``"increase"`` the score's increase over a zero (mean-colour) image (the paper's eq. 8 and 9; pair it with
    ``dv.targets.softmax(c)`` for the paper's class probability). `chunk` channels run at once, vmapped, in a
    `lax.scan` over the layer's channels (all images together). `layer` and `relu` as in `grad_cam`."""
    x, t = _prepare(model, x, target)
    return _score_cam(model, x, t, resolve_layer(model, layer), check_int("chunk", chunk),
                      check_choice("weights", weights, ("softmax", "increase")), bool(relu))  # fmt: skip


def _guided_grad_cam(model, x, target, layer):
    cam = _gradient_cam(model, x, target, "grad_cam", layer, True)
    return _guided_backprop(model, x, target) * _resize(cam, x.shape[1:3], "nearest")[..., None]


def guided_grad_cam(model: Model, x: Array, target, layer: Layer | None = None) -> Array:
    """Guided Grad-CAM (Selvaraju et al. 2017), (N, H, W, 3): `guided_backprop` times the `grad_cam` map
    nearest-upsampled to the image, as Captum's `GuidedGradCam`."""
    x, t = _prepare(model, x, target)
    return _guided_grad_cam(model, x, t, resolve_layer(model, layer))


# ----------------------------------------------------------------------------------------------------------------
# Occlusion (Captum's definition)
# ----------------------------------------------------------------------------------------------------------------


def _windows(size: int, window: int, stride: int) -> np.ndarray:
    """(positions, size) 0/1: Captum's window positions ``0, s, 2s, ...`` up to ``ceil((size - w) / s) * s``,
    the last ones clipped at the edge."""
    count = int(np.ceil((size - window) / stride)) + 1
    m = np.zeros((count, size))
    for k in range(count):
        m[k, k * stride : k * stride + window] = 1.0
    return m


@functools.partial(jit, static_argnames=("window", "stride", "chunk"))
def _occlusion(model, x, target, baseline, window, stride, chunk):
    rows, cols = _windows(x.shape[1], window[0], stride[0]), _windows(x.shape[2], window[1], stride[1])
    p, q = len(rows), len(cols)
    pos = np.stack(np.meshgrid(np.arange(p), np.arange(q), indexing="ij"), -1).reshape(-1, 2)
    pad = -len(pos) % chunk
    pos = np.concatenate([pos, np.repeat(pos[-1:], pad, 0)]).reshape(-1, chunk, 2)
    r, c = jnp.asarray(rows, x.dtype), jnp.asarray(cols, x.dtype)
    base = jnp.broadcast_to(baseline, x.shape).astype(x.dtype)
    full = scores(model, x, target)

    def step(_, ij):
        m = r[ij[:, 0]][:, :, None] * c[ij[:, 1]][:, None, :]  # (chunk, H, W)
        m = m[:, None, :, :, None]
        occluded = x[None] * (1 - m) + base[None] * m  # (chunk, N, H, W, 3)
        return None, full[None] - jax.vmap(lambda v: scores(model, v, target))(occluded)

    _, diffs = lax.scan(step, None, jnp.asarray(pos))
    diffs = diffs.reshape(-1, x.shape[0])[: p * q].reshape(p, q, x.shape[0])
    total = jnp.einsum("pqn,ph,qw->nhw", diffs, r, c)
    count = jnp.einsum("ph,qw->hw", r, c)
    return jnp.broadcast_to((total / count[None])[..., None], x.shape)


def _pair(name: str, value) -> tuple[int, int]:
    v = (value, value) if np.ndim(value) == 0 else tuple(value)
    if len(v) != 2:
        raise ValueError(f"{name} must be an int or (height, width), got {value!r}")
    return check_int(name, v[0]), check_int(name, v[1])


def occlusion(model: Model, x: Array, target, window=16, stride=8, baseline=0.0, chunk: int = 32) -> Array:
    """Occlusion attribution as Captum's `Occlusion` defines it, (N, H, W, 3): a `window` (int or (h, w), all
    three colours) set to `baseline` slides over the image by `stride` (positions ``0, s, 2s, ...`` until the
    window reaches the far edge, the last one clipped); each pixel's attribution is the mean, over the windows
    covering it, of the score's drop ``f(x) - f(occluded)``. `chunk` occluded images run at once."""
    x, t = _prepare(model, x, target)
    window, stride = _pair("window", window), _pair("stride", stride)
    for d, (w, s) in enumerate(zip(window, stride)):
        if w > x.shape[1 + d]:
            raise ValueError(f"window {window} is larger than the images {x.shape[1:3]}")
        if s > w and w < x.shape[1 + d]:
            raise ValueError(f"stride {stride} must not exceed the window {window}: pixels would be skipped")
    baseline = jnp.asarray(baseline, x.dtype)
    return _occlusion(model, x, t, baseline, window, stride, check_int("chunk", chunk))


# ----------------------------------------------------------------------------------------------------------------
# Maps
# ----------------------------------------------------------------------------------------------------------------


def to_map(attributions: Array, reduce: str = "sum") -> Array:
    """Input-space attributions (N, H, W, 3) as maps (N, H, W): summed over colour (``"sum"``), or their absolute
    values summed (``"abs_sum"``)."""
    check_choice("reduce", reduce, ("sum", "abs_sum"))
    if getattr(attributions, "ndim", None) != 4:
        raise ValueError(f"to_map takes input-space attributions (N, H, W, 3), got shape "
                         f"{getattr(attributions, 'shape', None)}")  # fmt: skip
    a = jnp.asarray(attributions)
    return jnp.sum(jnp.abs(a) if reduce == "abs_sum" else a, axis=-1)
