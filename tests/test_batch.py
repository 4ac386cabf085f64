"""Batch visualization (issue 16): `dv.visualize` on (N, H, W, 3) equals `visualize` of each image alone, chunked
by `batch_size` with a ragged last chunk that reuses the compiled program; `save_result` per image; the folder
command line with a corrupt file that is skipped."""

import copy

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

import converters
import deepvis_jax as dv
from deepvis_jax import cli
from deepvis_jax._src.images import load_square
from deepvis_jax._src.visualize import _visualize_batch
from reference import (as_float64, assert_choice, assert_close, assert_close_up_to_near_ties, count_flips, torch_model,
                       visualize_decisions)  # fmt: skip


@pytest.fixture(scope="module")
def alexnet():
    return converters.from_torchvision(torch_model("alexnet"))


@pytest.fixture(scope="module")
def vgg():
    return converters.from_torchvision(torch_model("vgg11_bn"))  # non-trivial BatchNorm statistics


def _images(n, hw, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, *hw, 3), dtype=np.uint8)


@pytest.mark.parametrize("mode,rank,method", [("max", "max", "deconv"), ("all", "mean", "deconv"),
                                              ("max", "max", "guided")])  # fmt: skip
def test_batch_equals_each_image_alone_float64(vgg, mode, rank, method):
    """float64 (every decision unambiguous): 5 images in chunks of 2 (ragged last chunk of 1, padded) give each
    image exactly what `visualize` gives it alone; the ragged chunk compiles nothing new."""
    images = _images(5, (40, 56))
    with jax.enable_x64(True):
        vgg64 = as_float64(vgg)
        size = _visualize_batch._cache_size()
        r = dv.visualize(vgg64, images, "conv3_2", top_k=3, mode=mode, rank=rank, method=method, batch_size=2)
        assert _visualize_batch._cache_size() == size + 1  # one program for the full and the ragged chunk
        assert r.activations.shape == (5, 10, 14, 256) and r.channels.shape == (5, 3) and r.scores.shape == (5, 3)
        assert r.projections.shape == (5, 3, 40, 56, 3) and r.projections.dtype == jnp.float64
        assert (r.layer, r.mode, r.rank, r.method) == ("conv3_2", mode, rank, method) and len(r) == 5
        for i in range(5):
            one = dv.visualize(vgg64, images[i], "conv3_2", top_k=3, mode=mode, rank=rank, method=method)
            np.testing.assert_array_equal(r.channels[i], one.channels)
            assert_close(r.activations[i], one.activations, 1e-12, err_msg=f"image {i}")
            assert_close(r.scores[i], one.scores, 1e-12, err_msg=f"image {i}")
            assert np.abs(np.asarray(one.projections)).max() > 0
            assert_close(r.projections[i], one.projections, 1e-10, err_msg=f"image {i} {mode} {method}")
            same = r[i]  # indexing gives the one-image result
            assert same.channels.shape == (3,) and same.projections.shape == (3, 40, 56, 3)


def test_batch_float32_within_portable_criteria(alexnet):
    """float32: the batch's convolutions may round differently from one image's, so the criteria of
    tests/reference.py: activations and scores (continuous) elementwise, channels up to near-ties of the
    one-image scores, projections of the same channels within `assert_close_up_to_near_ties`."""
    images = _images(3, (67, 80), seed=1)
    r = dv.visualize(alexnet, images, "conv5", top_k=4, batch_size=2)
    assert r.projections.dtype == jnp.float32 and r.projections.shape == (3, 4, 67, 80, 3)
    batch_decisions = visualize_decisions(alexnet, images, "conv5", batch_size=2)
    for i in range(3):
        flips = count_flips(jax.tree_util.tree_map(lambda l: l[i : i + 1], batch_decisions),
                            visualize_decisions(alexnet, images[i], "conv5"))  # fmt: skip
        one = dv.visualize(alexnet, images[i], "conv5", top_k=4)
        a = np.asarray(one.activations)
        assert_close(r.activations[i], a, 1e-5, err_msg=f"image {i} activations")
        assert_close(r.scores[i], one.scores, 1e-5, err_msg=f"image {i} scores")
        assert_choice(r.channels[i], one.channels, a.max(axis=(0, 1)), err_msg=f"image {i} channels")
        same = np.asarray(r.channels[i]) == np.asarray(one.channels)
        assert same.any()
        assert_close_up_to_near_ties(np.asarray(r.projections[i])[same], np.asarray(one.projections)[same], flips,
                                     err_msg=f"image {i}")  # fmt: skip


def test_one_image_shapes_unchanged_and_batch_of_one(alexnet):
    image = _images(1, (67, 67), seed=2)
    one = dv.visualize(alexnet, image[0], "conv3", top_k=2)
    assert one.activations.shape == (3, 3, 384) and one.channels.shape == (2,) and one.scores.shape == (2,)
    assert one.projections.shape == (2, 67, 67, 3) and not one.batched
    with pytest.raises(TypeError, match="no length"):
        len(one)
    r = dv.visualize(alexnet, image, "conv3", top_k=2)
    assert r.batched and len(r) == 1 and r.projections.shape == (1, 2, 67, 67, 3)
    np.testing.assert_array_equal(r.activations[0], one.activations)  # same program up to the batch axis
    np.testing.assert_array_equal(r.channels[0], one.channels)
    flips = count_flips(visualize_decisions(alexnet, image, "conv3"), visualize_decisions(alexnet, image[0], "conv3"))
    assert_close_up_to_near_ties(r.projections[0], one.projections, flips)
    # a jax array batch and float images work too; chunks larger than the batch are not padded
    r = dv.visualize(alexnet, jnp.asarray(np.concatenate([image, image]) / 255.0), "conv3", top_k=2, batch_size=64)
    assert r.projections.shape == (2, 2, 67, 67, 3)
    np.testing.assert_array_equal(r.channels[0], r.channels[1])


def test_batch_bad_inputs(alexnet):
    img = np.zeros((2, 67, 67, 3), np.uint8)
    for shape in [(2, 67, 67, 4), (67, 67), (1, 2, 67, 67, 3)]:
        with pytest.raises(ValueError, match=r"\(H, W, 3\) or a batch shaped \(N, H, W, 3\)"):
            dv.visualize(alexnet, np.zeros(shape, np.uint8), 1)
    with pytest.raises(ValueError, match="empty batch"):
        dv.visualize(alexnet, np.zeros((0, 67, 67, 3), np.uint8), 1)
    for b in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match="batch_size must be a positive int"):
            dv.visualize(alexnet, img, 1, batch_size=b)
    with pytest.raises(ValueError, match="too small for layer conv5"):
        dv.visualize(alexnet, np.zeros((2, 30, 30, 3), np.float32), "conv5")


def test_save_result_one_pair_per_image(alexnet, tmp_path):
    images = _images(3, (67, 67), seed=3)
    r = dv.visualize(alexnet, images, "conv2", top_k=2, batch_size=2)
    paths = dv.save_result(r, tmp_path, image=images, names=["x/cat.jpg", "dog.png", "cat"])
    assert [p.name for p in paths] == ["x_cat_conv2_activations.png", "x_cat_conv2_projections.png",
                                       "dog_conv2_activations.png", "dog_conv2_projections.png",
                                       "cat_conv2_activations.png", "cat_conv2_projections.png"]  # fmt: skip
    # each image's pair is what saving its own one-image result writes
    one = tmp_path / "one"
    dv.save_result(r[1], one, image=images[1])
    for kind in ("activations", "projections"):
        np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / f"dog_conv2_{kind}.png")),
                                      np.asarray(Image.open(one / f"conv2_{kind}.png")))  # fmt: skip
    with pytest.raises(FileExistsError):
        dv.save_result(r, tmp_path, names=["x/cat.jpg", "dog.png", "cat"])
    default = dv.save_result(r, tmp_path / "d")
    assert [p.name for p in default[::2]] == [f"image00{i}_conv2_activations.png" for i in range(3)]
    assert [p.name for p in dv.save_result(r, tmp_path / "e", names=["a.png", "a.jpg", "a"])[::2]] == [
        "a_conv2_activations.png", "a_2_conv2_activations.png", "a_3_conv2_activations.png"]  # fmt: skip
    with pytest.raises(ValueError, match="3 names"):
        dv.save_result(r, tmp_path / "f", names=["a"])
    with pytest.raises(ValueError, match=r"N = 3"):
        dv.save_result(r, tmp_path / "g", image=images[:2])
    sheet = dv.batch_sheet(images, r.projections, r.channels, names=["a", "b", "c"], cell=32)
    assert sheet.size[0] > 3 * 32 and sheet.size[1] > 3 * 32


# -------------------------------------------------------------------------------------------------------------- CLI


def _folder(root):
    rng = np.random.default_rng(0)
    (root / "sub").mkdir(parents=True)
    for name, (w, h) in [("a.png", (60, 50)), ("sub/b.jpg", (80, 64)), ("c.png", (48, 48)), ("d.bmp", (50, 70))]:
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / name)
    (root / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")  # corrupt, sorted between a and c
    (root / "notes.txt").write_text("not an image")  # not an image extension: not listed
    return root


@pytest.fixture(autouse=True)
def _no_compilation_cache(monkeypatch):
    monkeypatch.setenv(cli.CACHE_ENV, "off")


def test_cli_folder_skips_a_corrupt_file(tmp_path, capsys):
    src = _folder(tmp_path / "images")
    out = tmp_path / "out"
    code = cli.main(["visualize", "--weights", "random", "--image", str(src), "--layer", "2", "--top-k", "2",
                     "--batch-size", "3", "--size", "48", "--out", str(out), "--quiet"])  # fmt: skip
    o, err = capsys.readouterr()
    assert code == 0, err
    skipped = [ln for ln in err.splitlines() if "skipped" in ln]
    assert len(skipped) == 1 and skipped[0].startswith("deepvis: warning: skipped") and "bad.png" in skipped[0]
    assert "Traceback" not in err
    names = ["a", "c", "d", "sub_b"]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{n}_conv2_{k}.png" for n in names for k in ("activations", "projections")] + ["conv2_summary.png"])
    assert "skipped 1 of 5 files" in o
    # each image's printed channels and written projections are `visualize` of that image alone (resized and
    # center-cropped to 48x48, as the command reads it)
    model = dv.load_model("alexnet", weights=None, seed=0)
    for name, file in zip(names, ["a.png", "c.png", "d.bmp", "sub/b.jpg"], strict=True):
        image = load_square(src / file, 48)
        assert image.shape == (48, 48, 3)
        r = dv.visualize(model, image, "conv2", top_k=2)
        line = next(ln for ln in o.splitlines() if ln.startswith(f"{name}: "))
        chosen = [int(t.split()[1]) for t in line.split(": ", 1)[1].split(", ")]
        act = np.asarray(r.activations)
        assert_choice(np.asarray(chosen), r.channels, act.max(axis=(0, 1)), err_msg=name)
        one = tmp_path / "one" / name
        dv.save_result(r, one, image=image)
        a = np.asarray(Image.open(out / f"{name}_conv2_activations.png"), np.float64)
        b = np.asarray(Image.open(one / "conv2_activations.png"), np.float64)
        assert a.shape == b.shape and np.abs(a - b).max() <= 2  # a rounding step of the grey levels at most


def test_cli_several_files_and_errors(tmp_path, capsys):
    src = _folder(tmp_path / "images")
    out = tmp_path / "out"
    code = cli.main(["visualize", "--weights", "random", "--image", str(src / "c.png"), str(src / "missing.png"),
                     str(src / "a.png"), "--layer", "1", "--top-k", "1", "--size", "40", "--out", str(out),
                     "--quiet"])  # fmt: skip
    o, err = capsys.readouterr()
    assert code == 0, err
    assert sum("skipped" in ln and "missing.png" in ln for ln in err.splitlines()) == 1
    assert sorted(p.name for p in out.iterdir()) == ["a_conv1_activations.png", "a_conv1_projections.png",
                                                     "c_conv1_activations.png", "c_conv1_projections.png",
                                                     "conv1_summary.png"]  # fmt: skip
    # outputs are never replaced without --overwrite: refused before any work
    code = cli.main(["visualize", "--weights", "random", "--image", str(src / "c.png"), str(src / "a.png"),
                     "--layer", "1", "--top-k", "1", "--size", "40", "--out", str(out), "--quiet"])  # fmt: skip
    _, err = capsys.readouterr()
    assert code == 2 and err.strip().splitlines()[-1].startswith("deepvis: error: ") and "--overwrite" in err
    cases = [
        (["--image", str(tmp_path / "nothing"), str(src / "a.png")], None),  # a missing file: skipped, not fatal
        (["--image", str(src / "bad.png"), str(src / "notes.txt")], "none of the 2 images could be read"),
        (["--image", str(src), "--size", "0"], "--size 0"),
        (["--image", str(src), "--size", "30", "--layer", "5"], "too small for conv5"),
        (["--image", str(src), "--batch-size", "0"], "--batch-size must be at least 1"),
        (["--image", str(tmp_path / "empty_dir_made_below")], "no images"),
    ]
    (tmp_path / "empty_dir_made_below").mkdir()
    for extra, message in cases:
        argv = ["visualize", "--weights", "random", "--layer", "1", "--top-k", "1", "--size", "40", "--quiet",
                "--out", str(tmp_path / "o2"), "--overwrite", *extra]  # fmt: skip
        code = cli.main(argv)
        _, err = capsys.readouterr()
        if message is None:
            assert code == 0, err
            continue
        lines = err.strip().splitlines()
        assert code == 2 and "Traceback" not in err, err
        assert lines[-1].startswith("deepvis: error: ") and message in lines[-1], err


def test_visualize_files_yields_every_file_in_order_and_reports_bad_ones(alexnet, tmp_path):
    """`dv.visualize_files`: one result per file in the folder's order; a corrupt file gives its error and the
    others go on; each result is `visualize` of that file read and cropped alone (a ragged last batch of 1)."""
    src = _folder(tmp_path / "images")
    items = list(dv.visualize_files(alexnet, src, "conv1", size=32, top_k=2, batch_size=2))
    assert [it.path.relative_to(src).as_posix() for it in items] == ["a.png", "bad.png", "c.png", "d.bmp", "sub/b.jpg"]
    assert [it.index for it in items] == list(range(5))
    bad = items[1]
    assert isinstance(bad.error, dv.ImageError) and "bad.png" in str(bad.error) and bad.result is bad.image is None
    for it in items[:1] + items[2:]:
        assert it.error is None and it.image.shape == (32, 32, 3)
        np.testing.assert_array_equal(it.image, load_square(it.path, 32))
        one = dv.visualize(alexnet, it.image, "conv1", top_k=2)
        assert_choice(np.asarray(it.result.channels), one.channels, np.asarray(one.activations).max(axis=(0, 1)))
        np.testing.assert_allclose(it.result.activations, one.activations, rtol=1e-5, atol=1e-5)
    files = list(dv.visualize_files(alexnet, [src / "c.png", tmp_path / "gone.png"], 1, size=32, top_k=1))
    assert isinstance(files[1].error, FileNotFoundError) and files[0].result.layer == "conv1"
    for kwargs, match in ((dict(batch_size=0), "batch_size must be a positive integer"),
                          (dict(top_k=65), r"top_k must be an int in 1\.\.64"), (dict(mode="some"), "unknown mode"),
                          (dict(size=5), "too small for conv1")):  # fmt: skip
        with pytest.raises(ValueError, match=match):
            dv.visualize_files(alexnet, src, "conv1", **kwargs)  # raised at the call, before any file is read
