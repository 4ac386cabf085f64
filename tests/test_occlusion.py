"""Occlusion sensitivity: a hand-computed answer, a naive loop, and independence from the chunk size."""

import numpy as np
import pytest

import deepvis_jax as dv
from deepvis_jax._src.nets import IMAGENET_MEAN, IMAGENET_STD, init_model
from deepvis_jax._src.nets.alexnet_vgg import Architecture, Conv, ReLU
from deepvis_jax._src.occlusion import occlusion
from reference import assert_choice


def _tiny_model(a: float = 3.0):
    """conv1 = sum of the RGB values of a pixel (1x1 conv undoing the normalization); two classes +-a * mean."""
    arch = Architecture("tiny", (Conv("conv1", 1, 1, 1, 0), ReLU()), (1, 1), (("fc6", 1, 2, 0),), num_classes=2)
    m = init_model(arch)
    std, mean = np.array(IMAGENET_STD, np.float32), np.array(IMAGENET_MEAN, np.float32)
    params = {
        "conv1": {"kernel": std.reshape(1, 1, 3, 1), "bias": np.array([mean.sum()], np.float32)},
        "fc6": {"kernel": np.array([[a, -a]], np.float32), "bias": np.zeros(2, np.float32)},
    }
    return m.replace(variables={"params": params})


def test_known_answer_on_a_hand_built_network():
    rng = np.random.default_rng(0)
    img = rng.uniform(0, 1, (10, 12, 3)).astype(np.float32)
    fill = np.array([0.2, 0.4, 0.6])
    a = 3.0
    r = occlusion(_tiny_model(a), img, patch=4, stride=3, fill=fill, chunk=4)
    np.testing.assert_array_equal(r.rows, [0, 3, 6])
    np.testing.assert_array_equal(r.cols, [0, 3, 6])
    pixel = img.sum(-1).astype(np.float64)
    for i, y in enumerate(r.rows):
        for j, x in enumerate(r.cols):
            occluded = pixel.copy()
            occluded[y : y + 4, x : x + 4] = fill.sum()
            feature = occluded.sum()
            p0 = 1 / (1 + np.exp(-2 * a * occluded.mean()))  # softmax of (a m, -a m)
            assert r.feature[i, j] == pytest.approx(feature, rel=1e-5)
            assert r.probability[i, j] == pytest.approx(p0 if r.target == 0 else 1 - p0, rel=1e-5)
            assert r.top_class[i, j] == 0  # a * mean > 0 always here
    assert r.layer == "conv1" and r.channel == 0 and r.target == 0
    assert r.baseline_feature == pytest.approx(pixel.sum(), rel=1e-5)


def test_chunks_pad_the_fewest_images_and_carry_the_baseline(monkeypatch):
    """9 positions + the unoccluded image at chunk 6: 2 chunks of 6 would evaluate 12 images; the plan is 2 of 5
    (nothing wasted), and the answers stay the hand-computed ones."""
    from deepvis_jax._src import occlusion as occ

    widths, real = [], occ._occlusion_chunk
    monkeypatch.setattr(occ, "_occlusion_chunk", lambda *a, **k: widths.append(len(a[3])) or real(*a, **k))
    img = np.random.default_rng(1).uniform(0, 1, (10, 12, 3)).astype(np.float32)
    r = occlusion(_tiny_model(), img, patch=4, stride=3, fill=0.5, chunk=6)
    assert widths == [5, 5]
    pixel = img.sum(-1).astype(np.float64)
    assert r.baseline_feature == pytest.approx(pixel.sum(), rel=1e-5)
    occluded = pixel.copy()
    occluded[6:10, 6:10] = 1.5
    assert r.feature[2, 2] == pytest.approx(occluded.sum(), rel=1e-5)  # the last position, in the last chunk


@pytest.fixture(scope="module")
def alexnet():
    return dv.load_model("alexnet", seed=0)


@pytest.mark.parity
def test_equals_a_naive_loop_and_chunking_does_not_matter(alexnet):
    """Maps (continuous) elementwise; the choices (top class, default channel and class) equal the naive loop's up
    to near-ties in its scores: the chunks are other float32 programs than the loop's single images."""
    rng = np.random.default_rng(1)
    img = (rng.uniform(0, 1, (80, 72, 3)) * 255).astype(np.uint8)
    r = occlusion(alexnet, img, patch=24, stride=16, layer="conv2", chunk=3)
    assert r.feature.shape == (4, 4) and r.layer == "conv2"
    x01 = img.astype(np.float32) / 255
    all_probs = np.zeros((*r.feature.shape, 1000))
    for i, y in enumerate(r.rows):
        for j, x in enumerate(r.cols):
            occ = x01.copy()
            occ[y : y + 24, x : x + 24] = IMAGENET_MEAN
            xn = dv.normalize(occ)[None]
            logits = np.asarray(dv.classify(alexnet, xn), np.float64)[0]
            act = np.asarray(alexnet.apply(xn, upto="conv2"))[0, :, :, r.channel]
            probs = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
            all_probs[i, j] = probs
            assert r.feature[i, j] == pytest.approx(act.sum(), rel=1e-5)
            assert r.probability[i, j] == pytest.approx(probs[r.target], rel=1e-4)
    assert_choice(r.top_class, all_probs.argmax(-1), all_probs, err_msg="top class")
    # defaults: the strongest feature map of the layer and the predicted class of the clean image
    xn = dv.normalize(x01)[None]
    peaks = np.asarray(alexnet.apply(xn, upto="conv2"))[0].max(axis=(0, 1))
    assert_choice(r.channel, np.argmax(peaks), peaks, err_msg="default channel")
    logits = np.asarray(dv.classify(alexnet, xn))[0]
    assert_choice(r.target, np.argmax(logits), logits, err_msg="default class")
    for chunk in (1, 16):
        other = occlusion(alexnet, img, patch=24, stride=16, layer="conv2", chunk=chunk)
        np.testing.assert_allclose(other.feature, r.feature, rtol=1e-5)
        np.testing.assert_allclose(other.probability, r.probability, rtol=1e-5)
        assert_choice(other.top_class, r.top_class, all_probs, err_msg=f"top class, chunk {chunk}")


def test_bad_arguments(alexnet):
    img = np.zeros((64, 64, 3), np.uint8)
    with pytest.raises(ValueError, match="does not fit"):
        occlusion(alexnet, img, patch=65)
    with pytest.raises(ValueError, match="stride must be a positive integer"):
        occlusion(alexnet, img, stride=0)
    with pytest.raises(ValueError, match=r"channel 999 is out of range for conv5: use 0\.\.255"):
        occlusion(alexnet, img, patch=16, channel=999)
    with pytest.raises(ValueError, match=r"use 0\.\.999"):
        occlusion(alexnet, img, patch=16, target=1000)
    with pytest.raises(ValueError, match="fill"):
        occlusion(alexnet, img, patch=16, fill=(2, 0, 0))
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        occlusion(alexnet, np.zeros((64, 64)), patch=16)
