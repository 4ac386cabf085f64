"""dv.atlas: brute-force top-k, bounded state, sharded == single device, resume, receptive fields, projections,
and the rendered page in a real headless browser."""

from __future__ import annotations

import gc
import os
import re
import shutil
import subprocess
import sys
import weakref
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import deepvis_jax as dv
from deepvis_jax._src.images import load_square
from deepvis_jax.explorer import STATE_FILE

from reference import as_float64, assert_close, assert_topk_winners, with_xla_flags

ROOT = Path(__file__).resolve().parents[1]
N_IMAGES, HW = 22, 67


def _images(n=N_IMAGES, hw=HW, seed=0):
    """Smooth random images, with exact duplicates (ties broken by image index) and a black one."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (n, hw // 4 + 1, hw // 4 + 1, 3)).astype(np.uint8)
    imgs = [np.kron(s, np.ones((4, 4, 1), np.uint8))[:hw, :hw] for s in small]
    if n > 13:
        imgs[5] = imgs[2].copy()
        imgs[13] = imgs[2].copy()
        imgs[7] = np.zeros_like(imgs[7])
    return imgs


@pytest.fixture(scope="module")
def model():
    return dv.load_model("alexnet", weights=None, seed=0)


@pytest.fixture(scope="module")
def conv_params(model, tmp_path_factory):
    """The conv weights in a file, for subprocesses (skips initializing the 58M classifier weights again)."""
    path = tmp_path_factory.mktemp("params") / "alexnet_conv.npz"
    layers = dv.conv_layers(model)
    np.savez(path, **{f"{n}/{p}": np.asarray(model.params[n][p]) for n in layers for p in ("kernel", "bias")})
    return path


def conv_model(path):
    """An AlexNet holding only its conv weights: enough for everything up to conv5."""
    with np.load(path) as z:
        params = {n: {p: jnp.asarray(z[f"{n}/{p}"]) for p in ("kernel", "bias")} for n in dv.conv_layers("alexnet")}
    return dv.Model(variables={"params": params}, arch=dv.ARCHITECTURES["alexnet"])


@pytest.fixture(scope="module")
def images():
    return _images()


def _activations(model, images, layer):
    x = dv.normalize(np.stack(images).astype(np.float32) / 255.0)
    return np.asarray(model.apply(x, upto=layer))


def brute_force(model, images, layer, k):
    """Top-k over every activation of every image, in the order (-value, image index, row-major position)."""
    act = _activations(model, images, layer)
    n, h, w, c = act.shape
    img = np.repeat(np.arange(n), h * w)
    pos = np.tile(np.arange(h * w), n)
    values, index, position = [], [], []
    for ch in range(c):
        v = act[..., ch].reshape(-1)
        order = np.lexsort((pos, img, -v))[:k]
        values.append(v[order])
        index.append(img[order])
        position.append(np.stack([pos[order] // w, pos[order] % w], -1))
    return np.array(values), np.array(index), np.array(position)


def brute_force_per_image(act, k):
    """Top-k over every image's strongest unit (its first row-major argmax), in the order (-value, image index)."""
    n, h, w, c = act.shape
    flat = act.reshape(n, h * w, c)
    best, arg = flat.max(axis=1), flat.argmax(axis=1)  # (n, c)
    values, index, position = [], [], []
    for ch in range(c):
        order = np.lexsort((np.arange(n), -best[:, ch]))[:k]
        values.append(best[order, ch])
        index.append(order)
        position.append(np.stack([arg[order, ch] // w, arg[order, ch] % w], -1))
    return np.array(values), np.array(index), np.array(position)


@pytest.mark.parity
@pytest.mark.parametrize("per_image", [False, True], ids=["all_positions", "per_image"])
def test_topk_equals_brute_force(model, images, per_image):
    """One pass over two layers against a brute force over every activation of every image, per layer."""
    k, layers = 9, ["conv2", "conv5"]
    rs = dv.atlas(model, images, layers=layers, top_k=k, batch_size=6, per_image=per_image, project=False,
                  progress=False)  # fmt: skip
    assert list(rs) == layers
    for layer in layers:
        r = rs[layer]
        assert r.layer == layer and r.per_image is per_image and r.num_images == N_IMAGES
        assert r.values.shape == (dv.layer_channels(model, layer), k)
        # the brute force runs all images in one batch, the atlas in micro-batches: two float32 programs, so
        # winners are compared where they are clear of a near-tie (reference.assert_topk_winners)
        act = _activations(model, images, layer)
        if per_image:
            values, index, position = brute_force_per_image(act, k)
            best = act.reshape(len(act), -1, act.shape[-1]).max(axis=1)[:, None, None, :]  # (n, 1, 1, C)
            zero = np.zeros_like(position)
            assert_topk_winners(best, r.values, r.image_index, zero, values, index, zero, err_msg=layer)
            # each winner sits at its image's strongest unit (where that is clear of the image's second best)
            c = np.arange(act.shape[-1])[:, None]
            assert_close(act[r.image_index, r.position[..., 0], r.position[..., 1], c], values, 1e-5)
            flat = np.sort(act.reshape(len(act), -1, act.shape[-1]), axis=1)
            second = flat[:, -2][r.image_index, c]
            clear = best[r.image_index, 0, 0, c] - second > 1e-4 * np.abs(best).max()
            same = r.image_index == index
            np.testing.assert_array_equal(r.position[clear & same], position[clear & same], err_msg=layer)
            assert all(len(set(row)) == len(row) for row in r.image_index.tolist()), "an image appears twice"
        else:
            values, index, position = brute_force(model, images, layer, k)
            assert_topk_winners(act, r.values, r.image_index, r.position, values, index, position, err_msg=layer)
        # exact ties (duplicate images, dead channels) are broken by image index, then position, within the atlas
        assert np.isin(r.image_index, [2, 5, 13]).any()
        _assert_ties_ordered(r)
        # dead channels (all zero) tie everywhere: image 0 first, at position (0, 0)
        dead = np.all(values == 0, axis=1)
        if dead.any():
            assert np.all(r.image_index[dead, 0] == 0) and np.all(r.position[dead, 0] == 0)
            if per_image:
                np.testing.assert_array_equal(r.image_index[dead], np.broadcast_to(np.arange(k), (dead.sum(), k)))


@pytest.mark.parametrize("per_image", [True, False], ids=["per_image", "all_positions"])
def test_layers_in_one_pass_equal_one_layer_runs(model, per_image):
    """`layers=[...]` runs the network once up to the deepest layer; every layer's top-k is bitwise the one-layer
    run's (float32: the same activations, the same merges), in any order of the layers."""
    imgs = _images(n=10, hw=67, seed=2)
    kw = dict(top_k=3, batch_size=4, micro_batch=2, per_image=per_image, project=False, progress=False)
    layers = ["conv3", 1, "conv5", "conv3"]  # unordered, an index, a repeat
    rs = dv.atlas(model, imgs, layers=layers, **kw)
    assert list(rs) == ["conv3", "conv1", "conv5"]
    for name, r in rs.items():
        one = dv.atlas(model, imgs, name, **kw)
        for f in ("values", "image_index", "position", "boxes"):
            np.testing.assert_array_equal(getattr(r, f), getattr(one, f), err_msg=f"{name} {f}")
        assert (r.layer, r.num_images, r.per_image, r.receptive_field) == (one.layer, 10, per_image,
                                                                           one.receptive_field)  # fmt: skip


def _hand_model():
    """AlexNet whose conv1 channel 0 is the red pixel under its 11x11 window's centre: unit (i, j) of conv1 is
    relu((R[4i + 3, 4j + 3] / 255 - 0.485) / 0.229) (stride 4, padding 2, centre tap 5); the other channels 0."""
    kernel = np.zeros((11, 11, 3, 64), np.float32)
    kernel[5, 5, 0, 0] = 1.0
    params = {"conv1": {"kernel": jnp.asarray(kernel), "bias": jnp.zeros((64,), jnp.float32)}}
    return dv.Model(variables={"params": params}, arch=dv.ARCHITECTURES["alexnet"])


def test_per_image_hand_computed():
    """Four 23x23 images (a 5x5 conv1 map), red spots at chosen units: image 0 wins two of the four strongest
    units, image 2 two more (a tie with image 0, and a tie between its own two units); per image, each image once,
    at its strongest unit, the black image last."""
    spots = {0: {(1, 1): 250, (2, 3): 255, (4, 0): 240}, 1: {(0, 2): 245}, 2: {(3, 3): 255, (0, 0): 255}, 3: {}}
    imgs = []
    for n in range(4):
        a = np.zeros((23, 23, 3), np.uint8)
        for (i, j), v in spots[n].items():
            a[4 * i + 3, 4 * j + 3, 0] = v
        imgs.append(a)
    model = _hand_model()
    act = lambda p: max((p / 255 - 0.485) / 0.229, 0.0)  # noqa: E731
    kw = dict(top_k=4, batch_size=2, micro_batch=1, project=False, progress=False)  # two batches
    r = dv.atlas(model, imgs, "conv1", **kw)
    assert r.per_image
    np.testing.assert_array_equal(r.image_index[0], [0, 2, 1, 3])
    np.testing.assert_array_equal(r.position[0], [[2, 3], [0, 0], [0, 2], [0, 0]])
    assert_close(r.values[0], [act(255), act(255), act(245), 0.0], 1e-6)
    np.testing.assert_array_equal(r.image_index[1:], np.broadcast_to([0, 1, 2, 3], (63, 4)))  # dead: all tie
    r = dv.atlas(model, imgs, "conv1", per_image=False, **kw)
    assert not r.per_image
    np.testing.assert_array_equal(r.image_index[0], [0, 2, 2, 0])
    np.testing.assert_array_equal(r.position[0], [[2, 3], [0, 0], [3, 3], [1, 1]])
    assert_close(r.values[0], [act(255), act(255), act(255), act(250)], 1e-6)
    np.testing.assert_array_equal(r.image_index[1:], 0)  # dead: image 0's first four units
    np.testing.assert_array_equal(r.position[1:], np.broadcast_to([[0, 0], [0, 1], [0, 2], [0, 3]], (63, 4, 2)))


def _assert_ties_ordered(r):
    """Within each channel, slots with equal values come in increasing (image index, position) order."""
    for c in range(len(r.values)):
        for j in range(r.values.shape[1] - 1):
            if r.values[c, j] == r.values[c, j + 1] and np.isfinite(r.values[c, j]):
                a = (r.image_index[c, j], *r.position[c, j])
                b = (r.image_index[c, j + 1], *r.position[c, j + 1])
                assert a < b, (c, j, a, b)


def test_fewer_candidates_than_k(model):
    imgs = _images(n=1, hw=67)
    r = dv.atlas(model, imgs, "conv5", top_k=12, batch_size=4, per_image=False, project=False,
                 progress=False)  # 3x3 map: 9 units  # fmt: skip
    assert np.all(r.image_index[:, :9] == 0) and np.all(r.image_index[:, 9:] == -1)
    assert np.all(np.isneginf(r.values[:, 9:])) and np.all(r.position[:, 9:] == -1)
    assert np.all(r.boxes[:, 9:] == -1)
    r = dv.atlas(model, imgs, "conv5", top_k=3, batch_size=4, project=False, progress=False)  # one image: 1 of 3
    assert np.all(r.image_index[:, 0] == 0) and np.all(r.image_index[:, 1:] == -1)
    assert np.all(np.isneginf(r.values[:, 1:])) and np.all(r.position[:, 1:] == -1)


def test_state_bounded(model, tmp_path):
    """The state is (C, k) whatever the stream's length, and a one-shot stream keeps only possible winners."""
    alive = []
    peak = [0]

    def stream(n):
        rng = np.random.default_rng(1)
        for _ in range(n):
            a = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)
            alive.append(weakref.ref(a))
            peak[0] = max(peak[0], sum(r() is not None for r in alive[-400:]))
            yield a

    sizes = {}
    for n in (10, 300):
        ck = tmp_path / f"s{n}.npz"
        r = dv.atlas(model, stream(n), "conv1", top_k=1, batch_size=8, checkpoint=ck, progress=False)
        gc.collect()
        with np.load(ck) as z:
            sizes[n] = {k: z[f"{k}_0"].shape for k in ("values", "index", "position")}
            assert int(z["consumed"]) == n
        assert r.projections.shape == (64, 1, 11, 11, 3)
    assert sizes[10] == sizes[300] == {k: (64, 1) for k in ("values", "index", "position")}
    assert peak[0] <= 64 * 1 + 5 * 8 + 2, peak[0]  # C*k winners + the pruning slack, not 300


SHARDED = r"""
import sys, numpy as np, jax
sys.path[:0] = [sys.argv[1], sys.argv[1] + "/tests"]
import deepvis_jax as dv
from test_atlas import _images, conv_model
assert jax.device_count() == 4, jax.devices()
model = conv_model(sys.argv[3])
imgs = _images()
CONFIGS = ((8, jax.devices()[:1], True), (5, None, True), (12, None, True),  # batch 5 -> 8 (4 devices x 2)
           (8, jax.devices()[:1], False), (5, None, False))
runs = [dv.atlas(model, imgs, layers=["conv2", "conv5"], top_k=5, batch_size=b, micro_batch=2, devices=d,
                 per_image=per_image, project=False, progress=False)
        for b, d, per_image in CONFIGS]
np.savez(sys.argv[2], **{f"{i}_{layer}_{f}": getattr(r[layer], f) for i, r in enumerate(runs) for layer in r
                         for f in ("values", "image_index", "position")})
"""


@pytest.mark.parity
def test_sharded_equals_single_device(model, conv_params, images, tmp_path):
    """4 forced CPU devices (batch sharded, candidates all-gathered) == 1 device, exactly, for any batch size, for
    every layer of a one-pass atlas, per image or over all positions."""
    env = with_xla_flags({**os.environ, "JAX_PLATFORMS": "cpu"}, "--xla_force_host_platform_device_count=4")
    out = tmp_path / "runs.npz"
    subprocess.run([sys.executable, "-c", SHARDED, str(ROOT), str(out), str(conv_params)], check=True, env=env,
                   cwd=ROOT)  # fmt: skip
    with np.load(out) as z:
        for one, others, per_image in ((0, (1, 2), True), (3, (4,), False)):  # run `one`: 1 device, batch 8
            for layer in ("conv2", "conv5"):
                for run in others:  # 4 devices, batch 5 (-> 8); 12 (-> 16)
                    for f in ("values", "image_index", "position"):
                        np.testing.assert_array_equal(z[f"{run}_{layer}_{f}"], z[f"{one}_{layer}_{f}"],
                                                      err_msg=f"{layer} {run} {f}")  # fmt: skip
            # and the same top-k as this process (another thread set-up and micro-batch: up to float32 near-ties)
            layer = "conv2"
            here = dv.atlas(model, images, layer, top_k=5, batch_size=8, per_image=per_image, project=False,
                            progress=False)  # fmt: skip
            act = _activations(model, images, layer)
            got = [z[f"{one}_{layer}_{f}"] for f in ("values", "image_index", "position")]
            if per_image:  # over each image's strongest unit (positions: the test against the brute force)
                best, zero = act.reshape(len(act), -1, act.shape[-1]).max(axis=1)[:, None, None, :], np.zeros_like(got[2])
                assert_topk_winners(best, got[0], got[1], zero, here.values, here.image_index, zero, err_msg=layer)
            else:
                assert_topk_winners(act, *got, here.values, here.image_index, here.position, err_msg=layer)


TWO_PROCESS_IMAGES = {"n": 12, "hw": 32}  # test_two_processes_equal_one: small, and not a multiple of the step
MULTI_PROCESS = r"""
import sys
sys.path[:0] = [sys.argv[3], sys.argv[3] + "/tests"]
import jax
jax.config.update("jax_cpu_collectives_implementation", "gloo")
jax.distributed.initialize(coordinator_address=f"127.0.0.1:{sys.argv[2]}", num_processes=2,
                           process_id=int(sys.argv[1]))
import numpy as np
import deepvis_jax as dv
from test_atlas import TWO_PROCESS_IMAGES, _images, conv_model
assert jax.device_count() == 4 and jax.local_device_count() == 2
model = conv_model(sys.argv[5])
rs = dv.atlas(model, _images(**TWO_PROCESS_IMAGES), layers=["conv1"], top_k=3, batch_size=8, micro_batch=2,
              channels=[0, 3], progress=False)
np.savez(sys.argv[4] + ".npz", **{f"{n}_{f}": getattr(r, f) for n, r in rs.items()
                                  for f in ("values", "image_index", "position", "projections", "patches")})
"""


def test_two_processes_equal_one(conv_params, tmp_path):
    """jax.distributed over 2 local processes x 2 CPU devices == 1 process x 4 devices: the same winners and
    patches exactly, values and projections within float32 rounding (XLA:CPU rounds the two process layouts'
    programs differently: 1-2 ulp measured). What the README claims for hosts, at the smallest size that still
    shards: one layer, 12 small images (two steps of 8 over 4 devices, the second padded), so that it fits CI."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    env = with_xla_flags({**os.environ, "JAX_PLATFORMS": "cpu"}, "--xla_force_host_platform_device_count=2")
    procs = [subprocess.Popen([sys.executable, "-c", MULTI_PROCESS, str(i), port, str(ROOT), str(tmp_path / f"{i}"),
                               str(conv_params)],
                              env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
             for i in range(2)]  # fmt: skip
    logs = [p.communicate(timeout=240)[0].decode(errors="replace") for p in procs]
    assert all(p.returncode == 0 for p in procs), logs
    env = with_xla_flags({**os.environ, "JAX_PLATFORMS": "cpu"}, "--xla_force_host_platform_device_count=4")
    one = SHARDED.split("runs = ")[0] + (
        "from test_atlas import TWO_PROCESS_IMAGES\n"
        "rs = dv.atlas(model, _images(**TWO_PROCESS_IMAGES), layers=['conv1'], top_k=3, batch_size=8, micro_batch=2,"
        " channels=[0, 3], progress=False)\n"
        "np.savez(sys.argv[2], **{f'{n}_{f}': getattr(r, f) for n, r in rs.items()"
        " for f in ('values', 'image_index', 'position', 'projections', 'patches')})\n"
    )
    subprocess.run([sys.executable, "-c", one, str(ROOT), str(tmp_path / "one.npz"), str(conv_params)], check=True,
                   env=env, cwd=ROOT)  # fmt: skip
    with np.load(tmp_path / "one.npz") as want, np.load(tmp_path / "0.npz") as a, np.load(tmp_path / "1.npz") as b:
        assert sorted(want.files) == sorted(a.files) == sorted(b.files) and len(want.files) == 5
        for f in want.files:
            np.testing.assert_array_equal(a[f], b[f], err_msg=f)  # the two processes gather the same result
            if f.endswith(("image_index", "position", "patches")):
                np.testing.assert_array_equal(a[f], want[f], err_msg=f)
            else:  # float32 rounding differs between the process layouts (measured: 4.8e-7 relative, 1-2 ulp)
                assert_close(a[f], want[f], 1e-5, elementwise=1e-5, err_msg=f)


class Interrupted(Exception):
    pass


def test_interrupted_and_resumed_equals_uninterrupted(model, images, tmp_path):
    """A one-pass atlas of two layers, interrupted and resumed from its checkpoint (every layer's state in one
    file), equals the uninterrupted run, projections included."""
    ck = tmp_path / "state.npz"
    kw = dict(layers=["conv2", "conv1"], top_k=4, batch_size=4, micro_batch=2, channels={"conv2": [0, 5]},
              progress=False)  # fmt: skip
    full = dv.atlas(model, images, **kw)

    def failing():
        for i, a in enumerate(images):
            if i == 11:  # in the middle of the third batch
                raise Interrupted
            yield a

    with pytest.raises(Interrupted):
        dv.atlas(model, failing(), checkpoint=ck, checkpoint_every=1, **kw)
    with np.load(ck) as z:
        assert int(z["consumed"]) == 8  # two whole batches were counted, the broken one was not
    # a one-shot generator replaying the stream: the first 8 images are skipped but their winners are kept
    resumed = dv.atlas(model, iter(images), checkpoint=ck, resume=True, **kw)
    assert list(resumed) == ["conv2", "conv1"]
    assert resumed["conv2"].projections.shape[0] == 2 and resumed["conv1"].projections.shape[0] == 64
    for layer in resumed:
        assert resumed[layer].num_images == N_IMAGES
        for f in ("values", "image_index", "position", "boxes", "channels", "projections", "patches"):
            np.testing.assert_array_equal(getattr(resumed[layer], f), getattr(full[layer], f), err_msg=f"{layer} {f}")
    # resuming a finished run adds nothing
    again = dv.atlas(model, images, checkpoint=ck, resume=True, **{**kw, "channels": None, "project": False})
    np.testing.assert_array_equal(again["conv2"].image_index, full["conv2"].image_index)
    assert again["conv1"].num_images == N_IMAGES
    # a checkpoint of another run is refused: other layers, or all positions instead of images
    with pytest.raises(ValueError, match=r"another atlas run \(layers: \['conv2', 'conv1'\] there, \['conv2'\]"):
        dv.atlas(model, images, "conv2", top_k=4, checkpoint=ck, resume=True, progress=False)
    with pytest.raises(ValueError, match=r"another atlas run \(per_image: True there, False here\)"):
        dv.atlas(model, images, **{**kw, "per_image": False}, checkpoint=ck, resume=True)


def test_receptive_field_known_answers(model):
    rf = dv.receptive_field(model, "conv1")
    assert rf == (11, 4, -2)
    assert rf.box(0, 0, (67, 67)) == (0, 9, 0, 9)  # rows -2..8, clipped to 0..8
    assert rf.box(15, 15, (67, 67)) == (58, 67, 58, 67)  # rows 58..68, clipped to 58..66
    # conv2: 5x5 pad 2 over a 3/2 pool over conv1 -> 11 + 2*4 + 4*8 = 51 pixels, offset -2 - 2*8 = -18
    assert dv.receptive_field(model, "conv2") == (51, 8, -18)
    assert dv.receptive_field(model, "conv5") == (163, 16, -66)
    assert dv.receptive_field("vgg16", "conv5_3") == (196, 16, -90)
    assert dv.receptive_field("vgg16", "conv1_1") == (3, 1, -1)


@pytest.mark.parametrize("layer", ["conv1", "conv2", "conv3"])
def test_receptive_field_contains_gradient_support(model, layer):
    """Input pixels a unit depends on (nonzero gradient of its pre-ReLU value) lie inside its box; conv1: exactly."""
    rf = dv.receptive_field(model, layer)
    x = dv.normalize(jnp.asarray(_images(n=1, hw=HW)[0][None], jnp.float32) / 255.0)
    h, w = dv.layer_hw(model, layer, (HW, HW))
    grad = jax.jit(jax.grad(lambda x, row, col: model.apply(x, upto=layer, pre_relu=True)[0, row, col].sum()))
    for row, col in ((0, 0), (h // 2, w // 2), (h - 1, w - 1)):
        g = grad(x, row, col)
        ys, xs = np.nonzero(np.abs(np.asarray(g[0])).sum(-1))
        t, b, l, r = rf.box(row, col, (HW, HW))
        assert t <= ys.min() and ys.max() < b and l <= xs.min() and xs.max() < r
        if layer == "conv1":
            assert (ys.min(), ys.max() + 1, xs.min(), xs.max() + 1) == (t, b, l, r)


def test_projections_equal_deconv_of_one_hot(model, images):
    """The atlas re-runs its winners in one batch; here each runs alone: two programs with their own switches, so
    float64 (no rounding-level near-ties on any CPU)."""
    layer, k = "conv2", 3
    with jax.enable_x64(True):
        model = as_float64(model)
        r = dv.atlas(model, images, layer, top_k=k, batch_size=8, channels=[0, 5, 77], progress=False)
        rf = r.receptive_field
        assert r.projections.shape == (3, k, rf.size, rf.size, 3) and r.patches.dtype == np.uint8
        for i, c in enumerate(r.channels):
            for j in range(k):
                n, (row, col) = r.image_index[c, j], r.position[c, j]
                x = dv.normalize(images[n][None].astype(np.float64) / 255.0)
                act, switches = dv.forward(model, x, layer)
                assert_close(np.asarray(act)[0, row, col, c], r.values[c, j], 1e-7)  # values are kept in float32
                signal = np.zeros(act.shape)
                signal[0, row, col, c] = r.values[c, j]
                recon = np.asarray(dv.project(model, switches, signal, layer))[0]
                t, b, l, rr = r.boxes[c, j]
                top, left = rf.offset + rf.stride * row, rf.offset + rf.stride * col
                want = np.zeros((rf.size, rf.size, 3))
                want[t - top : b - top, l - left : rr - left] = recon[t:b, l:rr]
                assert np.count_nonzero(recon) == np.count_nonzero(recon[t:b, l:rr])  # nothing outside the field
                assert_close(r.projections[i, j], want, 1e-6)  # projections are kept in float32
                patch = np.zeros((rf.size, rf.size, 3), np.uint8)
                patch[t - top : b - top, l - left : rr - left] = images[n][t:b, l:rr]
                np.testing.assert_array_equal(r.patches[i, j], patch)


def test_folder_source_matches_arrays(model, tmp_path):
    """A folder (read, resized, center-cropped by the loader) numbers files in sorted order."""
    from PIL import Image

    imgs = _images(n=6, hw=HW, seed=3)
    for i, a in enumerate(imgs):
        Image.fromarray(a).save(tmp_path / f"img_{i:02d}.png")
    a = dv.atlas(model, str(tmp_path), "conv3", top_k=3, batch_size=4, size=HW, project=False, progress=False)
    b = dv.atlas(model, imgs, "conv3", top_k=3, batch_size=4, project=False, progress=False)
    np.testing.assert_array_equal(a.image_index, b.image_index)
    np.testing.assert_array_equal(a.values, b.values)
    assert a.files == tuple(str(tmp_path / f"img_{i:02d}.png") for i in range(6))
    big = load_square(_save(tmp_path / "wide.png", np.zeros((40, 100, 3), np.uint8)), 20)
    assert big.shape == (20, 20, 3)


def _save(path, a):
    from PIL import Image

    Image.fromarray(a).save(path)
    return path


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _cli(argv):
    from deepvis_jax.cli import main

    return main(argv)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_cli_atlas_page_in_headless_chromium(tmp_path, capsys):
    from PIL import Image

    rng = np.random.default_rng(5)
    src = tmp_path / "images" / "sub"
    src.mkdir(parents=True)
    for i in range(30):  # different sizes and aspect ratios: the loader resizes and center-crops
        h, w = 60 + 3 * i, 90 - i
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(src / f"{i:03d}.png")
    out = tmp_path / "atlas out"  # a space in the path: links must still resolve
    argv = ["atlas", "--images", str(tmp_path / "images"), "--layer", "1", "--out", str(out), "--weights", "random",
            "--size", "48", "--batch-size", "16", "--quiet"]  # fmt: skip
    assert _cli(argv + ["--cache-dir", "off"]) == 0
    assert "64 of 64 channels, 30 images" in capsys.readouterr().out
    assert (out / STATE_FILE).exists() and not (out / "conv1" / STATE_FILE).exists()
    assert _cli(argv + ["--cache-dir", "off"]) == 2  # the real CLI: one line, no clobbering
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("deepvis: error:") and "--overwrite" in err[0]

    dom = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", (out / "conv1" / "index.html").as_uri()],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    channels = re.findall(r'<figure id="channel-(\d+)"', dom)
    assert channels == [str(c) for c in range(64)]
    srcs = re.findall(r'<img src="([^"]+)"', dom)
    assert len(srcs) == 64 and all((out / "conv1" / s).is_file() for s in srcs)
    status = re.search(r'<p id="status"[^>]* data-loaded="(\d+)" data-broken="(\d+)"', dom)
    assert status is not None, "the page's load script did not run"
    assert status.groups() == ("64", "0")  # every image decoded with a non-zero naturalWidth


def test_bad_input_raises_typed_errors(model, images, tmp_path, capsys):
    from deepvis_jax.cli.atlas import run as cmd_atlas
    from deepvis_jax.cli import build_parser

    def both(argv, error, match):  # the library raises the typed error; the CLI prints it as one line, exit 2
        with pytest.raises(error, match=match):
            cmd_atlas(build_parser().parse_args(argv))
        assert _cli(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("deepvis: error:") and "Traceback" not in err[0]

    common = ["--layer", "1", "--out", str(tmp_path / "o"), "--weights", "random", "--cache-dir", "off"]
    both(["atlas", "--images", str(tmp_path / "missing"), *common], FileNotFoundError, "no such folder")
    (tmp_path / "empty").mkdir()
    both(["atlas", "--images", str(tmp_path / "empty"), *common], ValueError, "no images")
    with pytest.raises(ValueError, match="unknown layer"):
        dv.atlas(model, images, "conv9", progress=False)
    with pytest.raises(ValueError, match="same size"):
        dv.atlas(model, [images[0], images[1][:60]], "conv1", progress=False)
    with pytest.raises(ValueError, match="channels must be in 0..63"):
        dv.atlas(model, images[:2], "conv1", channels=[64], progress=False)
    never = iter(())  # every argument is checked before the first image is read
    with pytest.raises(ValueError, match="channels must be in 0..191 for conv2"):
        dv.atlas(model, never, layers=["conv1", "conv2"], channels={"conv2": [192]}, progress=False)
    with pytest.raises(ValueError, match=r"channels names conv3, not one of the atlas's layers \(conv1\)"):
        dv.atlas(model, never, layers=["conv1"], channels={3: [0]}, progress=False)
    with pytest.raises(ValueError, match="one layer or layers=, not both"):
        dv.atlas(model, never, "conv1", layers=["conv2"], progress=False)
    with pytest.raises(ValueError, match="needs a layer, or several as layers="):
        dv.atlas(model, never, progress=False)
    with pytest.raises(ValueError, match="pass several as layers="):
        dv.atlas(model, never, ["conv1", "conv2"], progress=False)
    with pytest.raises(ValueError, match="layers must be a non-empty list"):
        dv.atlas(model, never, layers=[], progress=False)
    with pytest.raises(ValueError, match="unknown layer 'conv9'"):
        dv.atlas(model, never, layers=["conv1", "conv9"], progress=False)


def test_resume_refuses_other_weights_or_a_changed_folder(model, tmp_path, capsys):
    """Smell 4: the checkpoint records a digest of the weights and of the folder's files, so a resume with other
    weights or after the folder changed is refused in one line instead of merging two runs."""
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    for i, a in enumerate(_images(n=5, hw=40, seed=4)):
        Image.fromarray(a).save(folder / f"{i}.png")
    ck = tmp_path / "state.npz"
    kw = dict(top_k=2, batch_size=4, micro_batch=2, size=40, project=False, progress=False, checkpoint=ck)
    first = dv.atlas(model, folder, "conv1", **kw)
    again = dv.atlas(model, folder, "conv1", resume=True, **kw)  # the same run: nothing new, the same winners
    np.testing.assert_array_equal(again.image_index, first.image_index)
    assert again.num_images == first.num_images == 5
    other = dv.load_model("alexnet", weights=None, seed=1)
    with pytest.raises(ValueError, match=r"another atlas run \(weights: '[0-9a-f]{32}' there, '[0-9a-f]{32}' here\)"):
        dv.atlas(other, folder, "conv1", resume=True, **kw)
    Image.fromarray(_images(n=1, hw=40, seed=9)[0]).save(folder / "2b.png")  # sorts between 2 and 3: renumbers
    with pytest.raises(ValueError, match=r"another atlas run \(files: '5 files, digest \w+' there, '6 files"):
        dv.atlas(model, folder, "conv1", resume=True, **kw)
    # the command line: one line, exit status 2
    dv.save_model(other, tmp_path / "other.msgpack")
    argv = ["atlas", "--images", str(folder), "--layer", "1", "--out", str(tmp_path / "site"), "--size", "40",
            "--channels", "0", "--top-k", "1", "--batch-size", "4", "--quiet", "--cache-dir", "off"]  # fmt: skip
    assert _cli(argv + ["--weights", "random"]) == 0
    capsys.readouterr()
    assert _cli(argv + ["--weights", str(tmp_path / "other.msgpack"), "--resume"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].endswith("other.msgpack holds random (untrained) weights: its pictures are not meaningful and no "
                           "classes are printed")  # the file records the seeded init's weights as random  # fmt: skip
    err = err[1:]
    assert len(err) == 1 and err[0].startswith("deepvis: error: checkpoint") and "(weights: " in err[0], err
    # --all-positions is another run (the checkpoint says so); with --overwrite it replaces the site's top-k
    page = tmp_path / "site" / "conv1" / "channel_0000.html"
    assert "Top 1 of 6 images, each at its strongest unit" in page.read_text()
    assert _cli(argv + ["--weights", "random", "--resume", "--all-positions"]) == 2
    assert "(per_image: True there, False here)" in capsys.readouterr().err
    assert _cli(argv + ["--weights", "random", "--overwrite", "--all-positions"]) == 0
    assert "Top 1 unit over 6 images (an image may appear more than once)" in page.read_text()
    # the site's top-k is dv.atlas's: K distinct images by default, the K strongest units with --all-positions
    for flags, per_image in (([], True), (["--all-positions"], False)):
        site = tmp_path / f"site_{per_image}"
        assert _cli(["atlas", "--images", str(folder), "--layer", "1", "--out", str(site), "--size", "40",
                     "--channels", "0", "--top-k", "3", "--batch-size", "4", "--quiet", "--cache-dir", "off",
                     "--weights", "random", *flags]) == 0  # fmt: skip
        want = dv.atlas(model, folder, "conv1", top_k=3, size=40, per_image=per_image, project=False, progress=False)
        with np.load(site / STATE_FILE) as z:
            np.testing.assert_array_equal(z["values_0"], want.values)
            np.testing.assert_array_equal(z["index_0"], want.image_index)
            np.testing.assert_array_equal(z["position_0"], want.position[..., 0] * 9 + want.position[..., 1])
        repeats = [len(set(row)) < 3 for row in want.image_index]
        assert not any(repeats) if per_image else any(repeats)  # all positions: some channel's top-3 share an image


def _html_ids(path: Path) -> list[str]:
    """Every id attribute of an HTML page, in order."""
    from html.parser import HTMLParser

    ids: list[str] = []

    class Ids(HTMLParser):
        def handle_starttag(self, tag, attrs):
            ids.extend(v for k, v in attrs if k == "id")

    Ids().feed(path.read_text())
    return ids


def test_site_index_has_no_duplicate_ids(tmp_path):
    """The site's index shows several layers' channels on one page: every HTML id on it is unique (channel 0 of
    conv1 and of conv2 once repeated id="channel-0"), and each layer's thumbnails are told apart by the layer."""
    from deepvis_jax import explorer

    layers = [explorer.LayerSummary(name, 64, (0, 1, 2), 11, False) for name in ("conv1", "conv2", "layer1.0")]
    page = explorer.write_site_index(tmp_path, layers, explorer.SiteInfo("alexnet", 5, None))
    ids = _html_ids(page)
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
    for name in ("conv1", "conv2", "layer1.0"):
        assert [i for i in ids if i.startswith(f"channel-{name}-")] == [f"channel-{name}-{c}" for c in (0, 1, 2)]
