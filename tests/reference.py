"""PyTorch references shared by the tests (torch lives only in tests, converters and benchmarks)."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import torch
import torchvision

import converters
import deepvis_jax as dv

# .ci/run repeats the parity tests with code generation capped (XLA_FLAGS=--xla_cpu_max_isa=AVX2) for their
# float32 assertions, whose rounding depends on the instruction set; their float64 comparisons, at 1e-9 to 1e-10,
# do not, and run once, uncapped
ISA_CAPPED = "--xla_cpu_max_isa" in os.environ.get("XLA_FLAGS", "")


def torch_model(arch: str, seed: int = 0, dtype=torch.float32) -> torch.nn.Module:
    """A torchvision model with seeded random weights and non-trivial BatchNorm statistics, in eval mode."""
    torch.manual_seed(seed)
    m = torchvision.models.get_model(arch, weights=None)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.copy_(torch.rand(mod.num_features, generator=g) - 0.5)
                mod.running_var.copy_(torch.rand(mod.num_features, generator=g) * 1.5 + 0.5)
                mod.weight.copy_(torch.rand(mod.num_features, generator=g) + 0.5)
                mod.bias.copy_(torch.rand(mod.num_features, generator=g) - 0.5)
    return m.to(dtype).eval()


def _one(o):
    """A hook's output as one tensor: (tensor, None, ...) (MultiheadAttention without weights) is its tensor."""
    return o[0] if isinstance(o, tuple) and all(e is None for e in o[1:]) else o


def torch_hooks(tm: torch.nn.Module, x, names) -> dict:
    """Every named submodule's forward-hook output (cloned when the hook runs: a later in-place op cannot change
    it) and the logits, for NHWC input `x`."""
    out, handles = {}, []
    mods = dict(tm.named_modules())
    for n in names:
        handles.append(mods[n].register_forward_hook(lambda m, i, o, n=n: out.__setitem__(n, _one(o).detach().clone())))
    try:
        with torch.no_grad():
            out["logits"] = tm(nchw(x).to(next(tm.parameters()).dtype))
    finally:
        for h in handles:
            h.remove()
    return out


def nchw(x) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(np.asarray(x).transpose(0, 3, 1, 2)))


def nhwc(t: torch.Tensor) -> np.ndarray:
    return t.detach().numpy().transpose(0, 2, 3, 1)


FLOOR = 1e-3
"""Elementwise relative errors are taken where |expected| >= FLOOR * max|expected|: below it an element's relative
error measures the cancellation in summing it, not the result (a projection's tiny entries are sums of terms up to
the peak's size)."""


def errors(actual, expected, floor: float = FLOOR) -> tuple[float, float]:
    """(peak-relative error, elementwise relative error) of `actual` against `expected`:
    ``max|a - e| / max|e|`` and ``max |a - e| / |e|`` over the elements with ``|e| >= floor * max|e|``."""
    a, e = np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    if a.ndim and e.ndim:  # a scalar is compared with every element (as np.testing does)
        assert a.shape == e.shape, f"shapes differ: {a.shape} and {e.shape}"
    a, e = np.broadcast_arrays(a, e)
    diff, mag = np.abs(a - e), np.abs(e)
    scale = float(mag.max()) if mag.size else 0.0
    if scale == 0.0:
        return float(diff.max()) if diff.size else 0.0, float(diff.max()) if diff.size else 0.0
    kept = mag >= floor * scale
    return float(diff.max()) / scale, float((diff[kept] / mag[kept]).max())


def assert_close(actual, expected, rtol: float, err_msg: str = "", *, elementwise: float | None = None,
                 floor: float = FLOOR) -> None:  # fmt: skip
    """The peak-relative error ``max|a - e| / max|e|`` is at most `rtol` ("to 1e-10" in the docs means this: every
    element within 1e-10 of the tensor's largest magnitude); with `elementwise`, also the elementwise relative
    error over the elements with ``|e| >= floor * max|e|`` (`errors`). A failure reports both errors, and
    ``DEEPVIS_TEST_ERRORS=FILE`` appends every comparison's (tab-separated: message, dtype, rtol, peak-relative
    error, elementwise relative error at `floor`) to FILE, to measure what the bounds leave."""
    a, e = np.asarray(actual), np.asarray(expected)
    peak, elem = errors(a, e, floor)
    log = os.environ.get("DEEPVIS_TEST_ERRORS")
    if log:
        with open(log, "a") as f:
            f.write(f"{err_msg or '-'}\t{a.dtype}\t{rtol:g}\t{peak:.3g}\t{elem:.3g}\n")
    what = (f"{err_msg}: peak-relative error {peak:.3g} (bound {rtol:g}), elementwise relative error {elem:.3g} "
            f"where |expected| >= {floor:g} of its peak" + (f" (bound {elementwise:g})" if elementwise else ""))
    assert peak <= rtol, what
    assert elementwise is None or elem <= elementwise, what


# ----------------------------------------------------------------------------------------------------------------
# Backward methods by torch autograd: DeconvNet, guided backprop, gradient
# ----------------------------------------------------------------------------------------------------------------


def layer_module(tm: torch.nn.Module, layer) -> str:
    """The path of the torch module whose output is deepvis_jax's `layer`, read off the torch module alone (never
    from deepvis_jax's tables, so an off-by-one there cannot be copied into the reference). AlexNet and VGG (a
    ``features`` Sequential): the ReLU right after a convolution, the convolutions counted in module order, "convK"
    (or the int K) the K-th, "convA_B" the B-th of block A (blocks end at max-pools). ResNets: a block's path as
    given ("layer2.0", its output after the final ReLU); "conv1", the stem, is the output of its ReLU ("relu")."""
    if not hasattr(tm, "features"):
        return "relu" if layer == "conv1" else str(layer)
    convs, block, k = [], 1, 0
    children = list(tm.features.named_children())
    for i, (name, m) in enumerate(children):
        if isinstance(m, torch.nn.MaxPool2d):
            block, k = block + 1, 0
        elif isinstance(m, torch.nn.Conv2d):
            k += 1
            relu = next(n for n, r in children[i + 1 :] if isinstance(r, torch.nn.ReLU))
            convs.append((f"conv{block}_{k}", f"features.{relu}"))
    if isinstance(layer, int) or str(layer).removeprefix("conv").isdigit():
        return convs[int(str(layer).removeprefix("conv")) - 1][1]
    return dict(convs)[layer]


class _Stop(Exception):
    """Raised by the hook at the layer's module: nothing above the layer runs."""


def run_to(tm: torch.nn.Module, layer, xt: torch.Tensor, hooks=()) -> torch.Tensor:
    """`tm`'s forward pass on NCHW `xt`, stopped at the output of `layer`'s module (`layer_module`), which it
    returns; `hooks`: (module, forward pre-hook) pairs registered for the run."""
    mods, out = dict(tm.named_modules()), {}

    def stop(module, inputs, output):
        out["o"] = output
        raise _Stop

    handles = [mods[layer_module(tm, layer)].register_forward_hook(stop)]
    handles += [m.register_forward_pre_hook(h) for m, h in hooks]
    try:
        tm(xt)
    except _Stop:
        pass
    finally:
        for h in handles:
            h.remove()
    return out["o"]


def torch_backward(tm, arch, x_nhwc, layer, signals_nhwc, method: str = "deconv"):
    """Projections by torch autograd of `tm` up to `layer` (after its ReLU; cut at its module, `layer_module`), one
    backward per signal, with every rectifier's backward as `method` says (`converters.projection_rules`). Returns
    (activation NHWC, stacked input grads NHWC or None). `arch` is not used (the cut comes from `tm` alone)."""
    xt = nchw(x_nhwc).to(next(tm.parameters()).dtype).requires_grad_(True)
    with converters.projection_rules(method):
        out = run_to(tm, layer, xt)
    grads = []
    for s in signals_nhwc:
        (g,) = torch.autograd.grad(out, xt, nchw(s).to(out.dtype), retain_graph=True)
        grads.append(nhwc(g))
    return nhwc(out), (np.stack(grads) if grads else None)


def torch_deconv(tm, arch, x_nhwc, layer, signals_nhwc):
    """DeconvNet projections by torch autograd with ReLU's backward replaced by relu(grad)."""
    return torch_backward(tm, arch, x_nhwc, layer, signals_nhwc, "deconv")


def check_projections(tm, model, x, layer, method: str, rtol: float, elementwise: float | None = None):
    """`dv.forward` + `dv.project` against torch autograd with `method`'s ReLU rule, each framework with its own
    decisions (float64: they are unambiguous); three probe signals; `rtol` bounds the peak-relative error of the
    activation and the projections, `elementwise` (when given) the projections' elementwise relative error
    (`assert_close`). Returns (projections, torch's)."""
    act, sw = dv.forward(model, jnp.asarray(x), layer)
    signals = probe_signals(act, np.random.default_rng(1))
    ref_act, ref = torch_backward(tm, None, x, layer, signals, method)
    assert_close(act, ref_act, rtol, err_msg=f"{layer} activation")
    assert_close(act, model.apply(jnp.asarray(x), upto=layer), rtol, err_msg=f"{layer} forward vs apply")
    proj = jax.vmap(dv.project, in_axes=(None, None, 0, None, None))(model, sw, jnp.asarray(signals), layer, method)
    assert proj.shape == (len(signals), *np.shape(x))
    for k, what in enumerate(["max", "all", "random"]):
        assert np.abs(ref[k]).max() > 0
        assert_close(proj[k], ref[k], rtol, elementwise=elementwise, err_msg=f"{method} {layer} {what}")
    return proj, ref


def probe_signals(act, rng):
    """Three signals for the strongest channel's view: "max" mode, "all" mode, and a random signed one."""
    a = np.asarray(act)
    c = int(np.argmax(a.max(axis=(0, 1, 2))))
    one = np.zeros_like(a)
    i, j = np.unravel_index(np.argmax(a[0, :, :, c]), a.shape[1:3])
    one[0, i, j, c] = a[0, i, j, c]
    whole = np.zeros_like(a)
    whole[..., c] = a[..., c]
    return np.stack([one, whole, rng.standard_normal(a.shape).astype(a.dtype)])


# ----------------------------------------------------------------------------------------------------------------
# Float32 checks that hold on any CPU
#
# In float32, XLA's and oneDNN's convolutions round differently on different instruction sets (AVX, AVX2,
# AVX-512). A forward ReLU mask or a max-pool switch that sits on a near-tie can then flip, and a projection or a
# gradient that passes through it changes locally: an elementwise float32 comparison of two frameworks (or of two
# JAX programs) through such a decision fails on some CPUs and passes on others. The checks below keep
# elementwise exactness where it is meaningful:
#
# - continuous quantities (activations, max-pooled values, top-k *values*, logits) are compared elementwise;
# - projections are compared elementwise in float32 with the DECISIONS (switches, ReLU masks, signals) taken from
#   the float64 run, whose decisions are unambiguous; the float32 run's own decisions are then checked against
#   float64's wherever float64 puts them clear of a tie (`DECISION_MARGIN` of the tensor's scale);
# - discrete choices (channels, classes, winners) must equal the reference's, or be a near-tie in its scores.
# ----------------------------------------------------------------------------------------------------------------

DECISION_MARGIN = 1e-4  # relative to the tensor's scale; float32 rounding differences are ~1e-6 of it


def _windows(x: np.ndarray, window: int, stride: int) -> np.ndarray:
    """(window * window, N, h, w, C) of an NHWC array: the pool's window entries in row-major order."""
    n, H, W, c = x.shape
    h, w = (H - window) // stride + 1, (W - window) // stride + 1
    return np.stack([x[:, di : di + stride * (h - 1) + 1 : stride, dj : dj + stride * (w - 1) + 1 : stride]
                     for di in range(window) for dj in range(window)])  # fmt: skip


def decision_margins(tm64: torch.nn.Module, x64, layer, margin: float = DECISION_MARGIN):
    """Where the float64 torch forward pass puts its decisions clear of a tie, up to `layer`.

    Returns ``(pools, relus)``, bottom to top, shaped like `dv.Switches`' leaves: for each max-pool a bool array
    (N, h, w, C), True where the window's largest value beats the runner-up by more than `margin` of the pool
    input's scale; for each ReLU a bool array, True where |input| exceeds `margin` of its scale."""
    pools, relus, last_relu_input = [], [], [None]

    def hook(module, inputs):  # before the op: its input (copied: an in-place ReLU overwrites it)
        x = nhwc(inputs[0]).copy()
        scale = float(np.abs(x).max()) or 1.0
        if isinstance(module, torch.nn.MaxPool2d):
            p = _pair(module.padding)
            xp = np.pad(x, ((0, 0), (p, p), (p, p), (0, 0)), constant_values=-np.inf) if p else x
            win = _windows(xp, _pair(module.kernel_size), _pair(module.stride))
            top2 = -np.partition(-win, 1, axis=0)[:2]
            ok = top2[0] - top2[1] > margin * scale
            pre = last_relu_input[0]
            if pre is not None and pre.shape == x.shape:  # the pool right after a ReLU: an all-zero window is an
                # exact tie that both break alike (first entry) when every entry's ReLU input is clearly negative
                pre_scale = float(np.abs(pre).max()) or 1.0
                pre = np.pad(pre, ((0, 0), (p, p), (p, p), (0, 0)), constant_values=-np.inf) if p else pre
                pre_win = _windows(pre, _pair(module.kernel_size), _pair(module.stride))
                ok |= (top2[0] == 0) & np.all(pre_win < -margin * pre_scale, axis=0)
            pools.append(ok)
        else:
            relus.append(np.abs(x) > margin * scale)
            last_relu_input[0] = x

    hooks = [(m, hook) for m in tm64.modules() if isinstance(m, (torch.nn.MaxPool2d, torch.nn.ReLU))]
    with torch.no_grad():
        run_to(tm64, layer, nchw(x64).double(), hooks)
    return pools, relus


def _pair(v) -> int:
    return v[0] if isinstance(v, (tuple, list)) else v


def assert_decisions_agree(switches, switches64, margins, err_msg: str = "") -> None:
    """The float32 run's switches and ReLU masks equal float64's wherever float64 has a clear margin (and that is
    nearly everywhere, so the check is not vacuous)."""
    pools, relus = margins
    assert len(switches.pools) == len(switches64.pools) == len(pools), err_msg
    for i, (a, b, ok) in enumerate(zip(switches.pools, switches64.pools, pools, strict=True)):
        assert ok.mean() > 0.9, f"{err_msg} pool {i}: only {ok.mean():.0%} of the windows are clear of a tie"
        np.testing.assert_array_equal(np.asarray(a.index)[ok], np.asarray(b.index)[ok], err_msg=f"{err_msg} pool {i}")
    for i, (a, b, ok) in enumerate(zip(switches.relus, switches64.relus, relus, strict=True)):
        assert ok.mean() > 0.9, f"{err_msg} relu {i}: only {ok.mean():.0%} of the inputs are clear of zero"
        np.testing.assert_array_equal(np.asarray(a)[ok], np.asarray(b)[ok], err_msg=f"{err_msg} relu {i}")


def assert_choice(chosen, expected, scores, rtol: float = DECISION_MARGIN, err_msg: str = "") -> None:
    """Discrete choices (argmax, top-k indices along the last axis of `scores`) equal the reference's, except
    where the reference's scores of the two choices are within `rtol` of the scores' scale (a near-tie)."""
    chosen, expected = np.asarray(chosen), np.asarray(expected)
    scores = np.asarray(scores, np.float64)
    assert chosen.shape == expected.shape, err_msg
    s = scores.reshape(-1, scores.shape[-1])
    c, e = chosen.reshape(len(s), -1), expected.reshape(len(s), -1)
    scale = float(np.abs(scores).max()) or 1.0
    picked = np.take_along_axis(s, c, axis=1)
    wanted = np.take_along_axis(s, e, axis=1)
    bad = (c != e) & (np.abs(picked - wanted) > rtol * scale)
    assert not bad.any(), (f"{err_msg}: {int(bad.sum())} choices differ from the reference by more than a "
                           f"near-tie: chosen {c[bad][:5]}, expected {e[bad][:5]}")  # fmt: skip


NO_FLIP_BOUND = 1e-5
"""Relative L2 error per item of two float32 runs (or float32 against float64) whose decisions all agree: measured
<= 3e-7 (AlexNet conv5 at 224 px, visualize in float32 against float64; a batch against one image)."""
FLIP_BOUND = 5e-2
"""The same where decisions flipped on near-ties: one flip measured up to 8e-3 (AlexNet conv5 at 224 px, AVX-512
and AVX2); a broken rule (guided or gradient for deconv, every switch moved) gives 0.85 to 1.4
(tests/test_portability.py)."""


def count_flips(switches, switches_ref) -> np.ndarray:
    """Per image (the leading axis), how many decisions differ between two runs' `dv.Switches`: max-pool switches
    and ReLU masks."""
    n = np.asarray(switches.pools[0].index if switches.pools else switches.relus[0]).shape[0]
    flips = np.zeros(n, np.int64)
    for a, b in zip(switches.pools, switches_ref.pools, strict=True):
        flips += (np.asarray(a.index) != np.asarray(b.index)).reshape(n, -1).sum(axis=1)
    for a, b in zip(switches.relus, switches_ref.relus, strict=True):
        flips += (np.asarray(a) != np.asarray(b)).reshape(n, -1).sum(axis=1)
    return flips


def visualize_decisions(model, images, layer, batch_size: int | None = None):
    """The switches and masks `dv.visualize` decides for `images` (uint8 (H, W, 3) or (N, H, W, 3)), computed as
    it computes them: the same input conversion in a jitted program, chunks of `batch_size` padded as it pads them
    (so a batch's float32 rounding is the batch's, not one image's)."""
    from deepvis_jax._src.batching import pad_batch
    from deepvis_jax._src.visualize import _as_input

    images = np.asarray(images)
    run = jax.jit(lambda m, im: dv.forward(m, _as_input(m, im), layer)[1])
    if images.ndim == 3:
        return run(model, images[None])
    size = min(batch_size or len(images), len(images))
    parts = [run(model, pad_batch(images[s : s + size], size)) for s in range(0, len(images), size)]
    parts = [jax.tree_util.tree_map(lambda l: l[: min(size, len(images) - s)], p)
             for s, p in zip(range(0, len(images), size), parts, strict=True)]  # fmt: skip
    return jax.tree_util.tree_map(lambda *a: jnp.concatenate(a), *parts)


def assert_close_up_to_near_ties(actual, expected, flips, bound: float = NO_FLIP_BOUND,
                                 flip_bound: float = FLIP_BOUND, err_msg: str = "") -> None:  # fmt: skip
    """For float32 results whose own decisions (switches, ReLU masks) may flip on near-ties, each item (leading
    axis) against the reference by its relative L2 error: within `bound` (`NO_FLIP_BOUND`, what is measured) when
    `flips`, the number of decisions that differ between the two runs (`count_flips`; one number, or one per
    item), is 0; within `flip_bound` (`FLIP_BOUND`) only where decisions did flip. A failure reports the errors
    and the flips."""
    a, e = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert a.shape == e.shape, err_msg
    flips = np.broadcast_to(np.asarray(flips), (len(e),))
    err = np.linalg.norm((a - e).reshape(len(e), -1), axis=1) / np.maximum(
        np.linalg.norm(e.reshape(len(e), -1), axis=1), 1e-300)
    limit = np.where(flips > 0, flip_bound, bound)
    assert np.all(err <= limit), (f"{err_msg}: relative L2 errors {[float(f'{v:.3g}') for v in err]} exceed "
                                  f"{bound:g} (no flipped decision) or {flip_bound:g} (flipped); flipped decisions "
                                  f"per item: {flips.tolist()}")  # fmt: skip


def check_float32_projections(tm, model, tm64, model64, x64, layer, method: str = "deconv", rtol: float = 1e-5):
    """`dv.forward` and `dv.project` in float32 against torch, portably (see above).

    The activation (continuous) is compared elementwise with torch's float32 one; the float32 switches and ReLU
    masks with float64's where float64 has a margin; the projections are computed in float32 from float64's
    switches, masks and signals (the decisions) and compared elementwise with torch's float64 projections. The
    float32 projection is checked to be the production program (XLA's convolutions; float64 runs `matmul_conv`
    on CPU), so this is the path users run, per layer, at a float32 tolerance."""
    x32 = np.asarray(x64, np.float32)
    with jax.enable_x64(True):
        act64, sw64 = dv.forward(model64, jnp.asarray(x64), layer)
        signals = probe_signals(act64, np.random.default_rng(1))
    _, ref = torch_backward(tm64, None, x64, layer, signals, method)
    act, sw = dv.forward(model, jnp.asarray(x32), layer)
    assert act.dtype == jnp.float32
    assert_close(act, torch_backward(tm, None, x32, layer, [], method)[0], rtol, err_msg=f"{layer} activation")
    assert_close(act, model.apply(jnp.asarray(x32), upto=layer), rtol, err_msg=f"{layer} forward vs apply")
    assert_decisions_agree(sw, sw64, decision_margins(tm64, x64, layer), err_msg=f"{layer} float32 decisions")
    project = jax.vmap(lambda m, s, g: dv.project(m, s, g, layer, method), in_axes=(None, None, 0))
    # the program users run in float32: XLA's convolutions, not the float64 path's `matmul_conv` (chosen per
    # platform through `platform_index`), which float32 uses only where a kernel exceeds its map: not while the
    # layer's own map (the smallest on the way) is at least 3 x 3
    program = str(jax.make_jaxpr(project)(model, sw64, jnp.asarray(signals, jnp.float32)))
    assert "conv_general_dilated" in program, f"{layer}: the float32 program has no XLA convolution"
    if min(act.shape[1:3]) >= 3:
        assert "platform_index" not in program, f"{layer}: the float32 program runs matmul_conv"
    proj = project(model, sw64, jnp.asarray(signals, jnp.float32))
    assert proj.dtype == jnp.float32 and proj.shape == (len(signals), *x32.shape)
    for k, what in enumerate(["max", "all", "random"]):
        assert np.abs(ref[k]).max() > 0
        assert_close(proj[k], ref[k], rtol, err_msg=f"float32 {method} {layer} {what}")


def as_float64(model):
    """The same weights in float64 (call inside ``jax.enable_x64(True)``): for comparing two JAX programs whose
    float32 decisions could flip on rounding-level near-ties."""
    return jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), model)


def with_xla_flags(env: dict, *flags: str) -> dict:
    """`env` with `flags` added to XLA_FLAGS (keeping the caller's, e.g. an instruction-set cap)."""
    return {**env, "XLA_FLAGS": " ".join([env.get("XLA_FLAGS", ""), *flags]).strip()}


def assert_topk_winners(act, values, index, position, ref_values, ref_index, ref_position, rtol: float = 1e-5,
                        err_msg: str = "") -> None:  # fmt: skip
    """A per-channel top-k (values, image index, (row, col) position; each (C, k)) against a brute-force one over
    the reference activations `act` (N, h, w, C), robustly to float32 near-ties:

    - each winner's reference activation equals the reference's k-th value at its slot (order statistics are
      continuous, so this holds on any CPU, and a wrong winner fails it unless it is a near-tie);
    - the values equal the reference values; a channel's winners are distinct;
    - where a reference value is clear of its neighbours (`DECISION_MARGIN`; the last slot's other neighbour is the
      first activation left out), image index and position are equal.
    """
    act, values = np.asarray(act), np.asarray(values)
    index, position = np.asarray(index), np.asarray(position)
    c = np.arange(act.shape[-1])[:, None]
    picked = act[index, position[..., 0], position[..., 1], c]
    assert_close(picked, ref_values, rtol, err_msg=f"{err_msg} activations at the winners")
    assert_close(values, ref_values, rtol, err_msg=f"{err_msg} values")
    flat = index.astype(np.int64) * act.shape[1] * act.shape[2] + position[..., 0] * act.shape[2] + position[..., 1]
    assert all(len(set(row)) == len(row) for row in flat.tolist()), f"{err_msg}: a winner appears twice"
    tol = DECISION_MARGIN * (float(np.abs(ref_values).max()) or 1.0)
    d = np.abs(np.diff(ref_values, axis=1))
    inf = np.full((len(ref_values), 1), np.inf)
    # the last slot's other neighbour is the first activation left out (from `act`): a near-tie with it can go
    # either way too
    k, every = ref_values.shape[1], act.reshape(-1, act.shape[-1]).T  # (C, N * h * w)
    out = -np.partition(-every, k, axis=1)[:, k : k + 1] if every.shape[1] > k else inf
    gap = np.minimum(np.concatenate([inf, d], 1), np.concatenate([d, np.abs(ref_values[:, -1:] - out)], 1))
    clear = gap > tol
    assert clear.mean() > 0.5, f"{err_msg}: only {clear.mean():.0%} of the slots are clear of a tie"
    np.testing.assert_array_equal(index[clear], np.asarray(ref_index)[clear], err_msg=f"{err_msg} image index")
    np.testing.assert_array_equal(position[clear], np.asarray(ref_position)[clear], err_msg=f"{err_msg} position")


def channel_signal(a: np.ndarray, c: int, mode: str) -> np.ndarray:
    """The signal `visualize` projects for channel `c` of one image's activation `a` (h, w, C): "max" its strongest
    unit alone (first in row-major order), "all" its whole map; zero in every other channel."""
    signal = np.zeros_like(a)
    if mode == "max":
        i, j = np.unravel_index(np.argmax(a[:, :, c]), a.shape[:2])
        signal[i, j, c] = a[i, j, c]
    else:
        signal[:, :, c] = a[:, :, c]
    return signal
