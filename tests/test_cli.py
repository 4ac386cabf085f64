"""The `deepvis` command: every bad input gives one line and exit status 2 (in-process via main(argv), and a few
through a real subprocess to prove no traceback escapes); layers / convert / check end to end; the same bad inputs
raise typed exceptions through the API."""

import os
import re
import subprocess
import sys
import urllib.error
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

import converters
import deepvis_jax as dv
from deepvis_jax import cli

REPO = Path(__file__).resolve().parents[1]
needs_construct = pytest.mark.skipif(not hasattr(dv, "construct"), reason="needs dv.construct (issue 4)")


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """Run in a fresh folder, with no persistent compilation cache (it would be process-global) and no torch cache."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(cli.CACHE_ENV, "off")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))


@pytest.fixture(scope="module")
def alexnet_files(tmp_path_factory):
    """A seeded random torchvision AlexNet saved as a state-dict .pth, and its conversion as .msgpack."""
    d = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    module = torchvision.models.alexnet().eval()
    pth = d / "alexnet.pth"
    torch.save(module.state_dict(), pth)
    msgpack = converters.save(converters.from_torchvision(module), d / "alexnet.msgpack")
    return {"module": module, "pth": pth, "msgpack": msgpack, "dir": d}


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, *fragments):
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.splitlines()
    errors = [ln for ln in lines if ln.startswith("deepvis: error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], err  # warnings may precede; the error is one final line
    for f in fragments:
        assert f in errors[0], (f, errors[0])


def _png(path, size):
    a = np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(a).save(path)
    return path


# -------------------------------------------------------------------------------------------------------------- bad input through the CLI


def test_unknown_model(capsys):
    assert_one_line_error(*run(capsys, "layers", "--model", "vgg17")[::2], "unknown model 'vgg17'", "vgg16_bn")
    assert_one_line_error(*run(capsys, "visualize", "--model", "resnet", "--weights", "random", "--layer", "1")[::2],
                          "unknown model 'resnet'")  # fmt: skip


def test_layer_out_of_range(capsys):
    code, out, err = run(capsys, "visualize", "--weights", "random", "--layer", "6")
    assert_one_line_error(code, err, "unknown layer '6' for alexnet", "1..5", "conv5")
    code, _, err = run(capsys, "construct", "--model", "vgg16", "--weights", "random", "--layer", "conv6_1",
                       "--filter", "1")  # fmt: skip
    assert_one_line_error(code, err, "1..13")


def test_filter_and_top_k_out_of_range(capsys):
    code, _, err = run(capsys, "construct", "--weights", "random", "--layer", "3", "--filter", "88", "384")
    assert_one_line_error(code, err, "filter 384 is out of range for conv3 of alexnet: use 0..383")
    code, _, err = run(capsys, "construct", "--weights", "random", "--layer", "3", "--filter", "-1")
    assert_one_line_error(code, err, "use 0..383")
    code, _, err = run(capsys, "construct", "--weights", "random", "--layer", "3", "--filter", "1", "--batch-size", "0")
    assert_one_line_error(code, err, "--batch-size must be at least 1, got 0")
    code, _, err = run(capsys, "visualize", "--weights", "random", "--layer", "1", "--top-k", "65")
    assert_one_line_error(code, err, "--top-k 65", "use 1..64")


def test_bad_image_files(capsys, tmp_path):
    code, _, err = run(capsys, "visualize", "--weights", "random", "--layer", "1", "--image", "nope.jpg")
    assert_one_line_error(code, err, "image file 'nope.jpg' does not exist")
    Path("notes.png").write_text("not a picture")
    code, _, err = run(capsys, "visualize", "--weights", "random", "--layer", "1", "--image", "notes.png")
    assert_one_line_error(code, err, "notes.png is not an image file")
    data = _png(tmp_path / "full.png", (64, 64)).read_bytes()
    Path("cut.png").write_bytes(data[: len(data) // 2])
    code, _, err = run(capsys, "check", "--weights", "random", "--image", "cut.png")
    assert_one_line_error(code, err, "cut.png is truncated or corrupt")


def test_image_too_small(capsys):
    _png("small.png", (40, 30))
    code, _, err = run(capsys, "visualize", "--weights", "random", "--layer", "3", "--image", "small.png")
    assert_one_line_error(code, err, "40x30 pixels, too small for conv3 of alexnet: it needs at least 31x31 pixels")
    code, _, err = run(capsys, "construct", "--weights", "random", "--layer", "3", "--filter", "1", "--size", "30")
    assert_one_line_error(code, err, "--size 30 is too small for conv3 of alexnet: it needs at least 31 pixels")


def test_odd_image_modes_are_accepted(capsys):
    """A 16-bit grayscale and a palette image pass the loader and the size check (the run stops at the weights)."""
    Image.fromarray(np.full((40, 50), 40000, np.uint16)).save("gray16.png")
    Image.fromarray(np.zeros((40, 50, 3), np.uint8)).convert("P").save("pal.gif")
    for name in ("gray16.png", "pal.gif"):
        code, _, err = run(capsys, "visualize", "--weights", "missing.msgpack", "--layer", "3", "--image", name)
        assert_one_line_error(code, err, "weights file 'missing.msgpack' does not exist")


def test_bad_weights_files(capsys, alexnet_files):
    d = alexnet_files["dir"]
    Path("junk.msgpack").write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    Path("cut.msgpack").write_bytes(alexnet_files["msgpack"].read_bytes()[:100_000])
    Path("cut.pth").write_bytes(alexnet_files["pth"].read_bytes()[:100_000])
    cases = [
        (["--weights", "junk.msgpack"], "junk.msgpack is not a"),
        (["--weights", "cut.msgpack"], "it may be truncated or corrupt"),
        (["--weights", "cut.pth"], "cut.pth is not a readable PyTorch weights file"),
        (["--weights", "nothere.pth"], "weights file 'nothere.pth' does not exist"),
        (["--model", "vgg11", "--weights", alexnet_files["msgpack"]], "holds alexnet weights, not vgg11"),
        (["--model", "vgg11", "--weights", alexnet_files["pth"]], "holds alexnet weights, not vgg11; pick --model alexnet"),
    ]  # fmt: skip
    for extra, fragment in cases:
        code, _, err = run(capsys, "visualize", "--layer", "1", *extra)
        assert_one_line_error(code, err, fragment)
    assert d.exists()


class _Payload:
    """Unpickling this would create a file: the proof that code ran."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (Path.touch, (self.target,))


def test_pickled_code_is_refused(capsys, tmp_path):
    target = tmp_path / "pwned"
    torch.save({"features.0.weight": torch.zeros(1), "x": _Payload(target)}, "evil.pth")
    code, _, err = run(capsys, "visualize", "--layer", "1", "--weights", "evil.pth")
    assert_one_line_error(code, err, "evil.pth contains pickled objects other than tensors; refusing")
    code, _, err = run(capsys, "convert", "--from", "evil.pth", "--out", "x.msgpack")
    assert_one_line_error(code, err, "refusing")
    assert not target.exists() and not Path("x.msgpack").exists()


def test_offline_imagenet(capsys, monkeypatch):
    def offline(self, *args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "urlopen", offline)  # what torch.hub.download_url_to_file connects with
    code, _, err = run(capsys, "visualize", "--layer", "1")  # --weights imagenet is the default
    assert_one_line_error(code, err, "cannot download pretrained alexnet weights", "or use random weights")
    with pytest.raises(dv.WeightsUnavailableError, match="cannot download pretrained alexnet weights"):
        dv.load_model("alexnet", weights="imagenet")


def test_existing_outputs_are_not_clobbered(capsys):
    Path("out").mkdir()
    Path("out/alexnet_conv3_filter88.png").write_bytes(b"keep me")
    code, _, err = run(capsys, "construct", "--weights", "random", "--layer", "3", "--filter", "88", "--out", "out")
    assert_one_line_error(code, err, "out/alexnet_conv3_filter88.png already exists; pass --overwrite")
    assert Path("out/alexnet_conv3_filter88.png").read_bytes() == b"keep me"
    Path("a.msgpack").write_bytes(b"keep me too")
    code, _, err = run(capsys, "convert", "--from", "random", "--out", "a.msgpack")
    assert_one_line_error(code, err, "a.msgpack already exists; pass --overwrite")
    assert Path("a.msgpack").read_bytes() == b"keep me too"


def test_torch_missing_is_one_line(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now raises ImportError
    for argv in (["convert", "--out", "a.msgpack"], ["check", "--weights", "random"]):
        code, _, err = run(capsys, *argv)
        assert_one_line_error(code, err, f"`deepvis {argv[0]}` needs torch and torchvision", "[torch]")


def test_usage_errors_and_interrupts(capsys, monkeypatch):
    code, _, err = run(capsys, "visualize", "--weights", "random")  # --layer is required
    assert code == 2 and "the following arguments are required: --layer" in err and "Traceback" not in err
    code, _, err = run(capsys, "frobnicate")
    assert code == 2 and "invalid choice" in err
    code, _, err = run(capsys, "construct", "--layer", "3", "--filter", "eighty")
    assert code == 2 and "invalid int value" in err
    assert run(capsys, "--help")[0] == 0

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli.layers, "run", interrupted)
    code, _, err = run(capsys, "layers")
    assert code == 130 and err == "deepvis: interrupted\n"


def test_subprocess_error_has_no_traceback(tmp_path):
    """Through a real interpreter: exit status 2 and exactly one stderr line."""
    env = {**os.environ, "PYTHONPATH": str(REPO), cli.CACHE_ENV: "off"}
    p = subprocess.run([sys.executable, "-m", "deepvis_jax", "visualize", "--weights", "random", "--layer", "9",
                        "--image", "missing.png"], capture_output=True, text=True, cwd=tmp_path, env=env)  # fmt: skip
    assert p.returncode == 2
    assert p.stderr == "deepvis: error: unknown layer '9' for alexnet; use a conv index 1..5 or a name: conv1, " \
                       "conv2, conv3, conv4, conv5\n"  # fmt: skip
    p = subprocess.run([sys.executable, "-m", "deepvis_jax.cli", "layers", "--model", "vgg11"], capture_output=True,
                       text=True, cwd=tmp_path, env=env)  # fmt: skip
    assert p.returncode == 0 and p.stderr == "" and re.search(r"^\s+8\s+conv5_2\s+512\s+16x16$", p.stdout, re.M)


# -------------------------------------------------------------------------------------------------------------- the same bad inputs through the API


def test_api_raises_the_same_typed_errors(alexnet_files, tmp_path):
    with pytest.raises(ValueError, match="unknown model 'vgg17'"):
        dv.load_model("vgg17")
    with pytest.raises(ValueError, match=r"1\.\.5"):
        dv.layer_name("alexnet", 6)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        dv.load_model("alexnet", weights=tmp_path / "none.msgpack")
    (tmp_path / "cut.msgpack").write_bytes(alexnet_files["msgpack"].read_bytes()[:100_000])
    with pytest.raises(dv.WeightsError, match="truncated or corrupt"):
        dv.load_model("alexnet", weights=tmp_path / "cut.msgpack")
    with pytest.raises(dv.WeightsError, match="holds alexnet weights, not vgg11"):
        dv.load_model("vgg11", weights=alexnet_files["pth"])
    with pytest.raises(dv.ImageError, match="not an image"):
        (tmp_path / "t.jpg").write_text("text")
        dv.load_image(tmp_path / "t.jpg")
    assert issubclass(dv.WeightsError, ValueError) and issubclass(dv.ImageError, ValueError)
    model = dv.load_model("alexnet")
    with pytest.raises(ValueError, match=r"at least 31x31 pixels"):
        dv.visualize(model, np.zeros((30, 40, 3), np.uint8), 3)
    with pytest.raises(ValueError, match=r"1\.\.5"):
        dv.visualize(model, np.zeros((64, 64, 3), np.uint8), 6)
    with pytest.raises(FileExistsError, match="exists"):
        (tmp_path / "conv1_activations.png").write_bytes(b"x")
        dv.save_result(dv.visualize(model, np.zeros((64, 64, 3), np.uint8), 1, top_k=1), tmp_path)
    assert (tmp_path / "conv1_activations.png").read_bytes() == b"x"


@needs_construct
def test_api_construct_filter_out_of_range():
    with pytest.raises(ValueError, match=r"0\.\.383"):
        dv.construct(dv.load_model("alexnet"), 3, [88, 384], steps=1, image_size=64, verbose=False)


# -------------------------------------------------------------------------------------------------------------- layers, convert, check end to end


def test_layers(capsys):
    code, out, err = run(capsys, "layers")
    assert code == 0 and err == ""
    rows = re.findall(r"^\s+(\d+)\s+(conv\d)\s+(\d+)\s+(\d+)x\d+$", out, re.M)
    assert rows == [("1", "conv1", "64", "7"), ("2", "conv2", "192", "15"), ("3", "conv3", "384", "31"),
                    ("4", "conv4", "256", "31"), ("5", "conv5", "256", "31")]  # fmt: skip
    assert "needs at least 63x63 pixels" in out


def test_convert_pth_to_msgpack(capsys, alexnet_files):
    code, out, err = run(capsys, "convert", "--model", "alexnet", "--from", alexnet_files["pth"],
                         "--out", "sub/dir/a.msgpack")  # fmt: skip
    assert code == 0 and err == "" and "wrote sub/dir/a.msgpack" in out
    model = dv.load_model("alexnet", weights="sub/dir/a.msgpack")  # the output folders were created
    sd = alexnet_files["module"].state_dict()
    np.testing.assert_array_equal(model.params["conv1"]["kernel"], sd["features.0.weight"].numpy().transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(model.params["fc8"]["bias"], sd["classifier.6.bias"].numpy())


def test_check_prints_the_compare_table(capsys, alexnet_files):
    _png("in.png", (80, 70))
    code, out, err = run(capsys, "check", "--weights", alexnet_files["pth"], "--image", "in.png")
    assert code == 0 and err == "", err
    rows = dict(re.findall(r"^(conv\d|logits)\s+\S+\s+(\S+)$", out, re.M))
    assert list(rows) == ["conv1", "conv2", "conv3", "conv4", "conv5", "logits"]
    assert all(float(v) < 1e-4 for v in rows.values()), rows
    assert "80x70 pixels" in out and "OK:" in out
    code, out, _ = run(capsys, "check", "--weights", alexnet_files["pth"], "--image", "in.png", "--rtol", "0")
    assert code == 1 and "MISMATCH" in out  # float32 torch and XLA never agree to the last bit on AlexNet


# -------------------------------------------------------------------------------------------------------------- visualize and construct end to end



def _written(out: str) -> list[Path]:
    return [Path(p) for p in re.findall(r"^wrote (.+)$", out, re.M)]


def _assert_picture(path: Path, min_side: int) -> np.ndarray:
    with Image.open(path) as im:
        assert im.format == "PNG" and min(im.size) >= min_side, (path, im.size)
        a = np.asarray(im.convert("RGB")).astype(float)
    assert a.std() > 2.0, f"{path} is blank"
    return a


def test_visualize_random_end_to_end_subprocess(tmp_path):
    """`deepvis visualize --weights random --layer 3` as a user runs it: PNGs written, warning, compilation cache."""
    env = {**os.environ, "PYTHONPATH": str(REPO), cli.CACHE_ENV: str(tmp_path / "jax-cache")}
    p = subprocess.run([sys.executable, "-m", "deepvis_jax", "visualize", "--weights", "random", "--layer", "3"],
                       capture_output=True, text=True, cwd=tmp_path, env=env)  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert "Traceback" not in p.stderr
    assert [ln for ln in p.stderr.splitlines() if ln.startswith("deepvis:")] == [
        "deepvis: warning: --weights random: an untrained network; its pictures are not meaningful "
        "(use --weights imagenet or a weights file)"]  # fmt: skip
    assert "layer: conv3 of alexnet, 384 channels" in p.stdout
    assert len(re.findall(r"^  channel +\d+  score", p.stdout, re.M)) == 9
    assert "ImageNet classes" not in p.stdout  # random weights: no class names
    files = _written(p.stdout)
    assert len(files) >= 2 and all(f.parent == Path("deepvis_out") for f in files)
    for f in files:
        _assert_picture(tmp_path / f, 64)
    assert any((tmp_path / "jax-cache").iterdir())  # the persistent compilation cache was written


def test_visualize_file_weights_prints_top5(capsys, alexnet_files):
    """Weights from a file count as trained: the top-5 classes are printed with their labels, as dv.classify ranks."""
    _png("in.png", (72, 64))
    code, out, err = run(capsys, "visualize", "--weights", alexnet_files["msgpack"], "--layer", "conv2",
                         "--top-k", "3", "--image", "in.png", "--out", "o")  # fmt: skip
    assert code == 0 and err == "", err
    assert "layer: conv2 of alexnet, 192 channels" in out and "image: in.png (72x64 pixels)" in out
    model = dv.load_model("alexnet", weights=alexnet_files["msgpack"])
    image = dv.load_image("in.png")
    r = dv.visualize(model, image, "conv2", top_k=3)
    shown = [int(c) for c in re.findall(r"^  channel +(\d+)  score", out, re.M)]
    assert shown == np.asarray(r.channels).tolist()
    logits = np.asarray(dv.classify(model, dv.normalize(image[None].astype(np.float32) / 255)))[0]
    labels = dv.imagenet_labels()
    want = [f"{labels[i]} ({i})" for i in np.argsort(-logits)[:5]]
    got = re.findall(r"^ +[\d.]+%  (.+)$", out.split("top-5 ImageNet classes:")[1], re.M)[:5]
    assert got == want
    files = _written(out)
    for f in files:
        _assert_picture(f, 8)
    code, _, err = run(capsys, "visualize", "--weights", alexnet_files["msgpack"], "--layer", "conv2",
                       "--top-k", "3", "--image", "in.png", "--out", "o")  # fmt: skip
    assert_one_line_error(code, err, "exists")  # never clobbered silently
    assert any(str(f) in err for f in files), err
    code, _, err = run(capsys, "visualize", "--weights", alexnet_files["msgpack"], "--layer", "conv2",
                       "--top-k", "3", "--image", "in.png", "--out", "o", "--overwrite")  # fmt: skip
    assert code == 0


@needs_construct
def test_construct_random_end_to_end(capsys):
    argv = ["construct", "--weights", "random", "--layer", "3", "--filter", "88", "--steps", "8", "--size", "64",
            "--out", "o"]  # fmt: skip
    code, out, err = run(capsys, *argv)
    assert code == 0, err
    files = _written(out)
    assert files == [Path("o/alexnet_conv3_filter88.png"), Path("o/alexnet_conv3_filters.png")]
    png = _assert_picture(files[0], 64)
    assert png.shape == (64, 64, 3)
    _assert_picture(files[1], 64)
    want = np.asarray(dv.construct(dv.load_model("alexnet"), 3, [88], steps=8, image_size=64, seed=0,
                                   verbose=False))[0] * 255  # fmt: skip
    np.testing.assert_allclose(png, want, atol=1.0)  # the PNG is the API's image, rounded to 8 bits


# -------------------------------------------------------------------------------------------------------------- ResNets through every command


def test_resnet_layers_and_check(capsys):
    code, out, err = run(capsys, "layers", "--model", "resnet50")
    assert code == 0 and err == ""
    assert "resnet50: 17 layers (the stem, then each residual block)" in out
    rows = re.findall(r"^\s+(\d+)\s+(conv1|layer[\d.]+)\s+(\d+)\s+\d+x\d+$", out, re.M)
    assert rows[:3] == [("1", "conv1", "64"), ("2", "layer1.0", "256"), ("3", "layer1.1", "256")]
    assert rows[-1] == ("17", "layer4.2", "2048") and len(rows) == 17
    _png("in.png", (72, 64))
    code, out, err = run(capsys, "check", "--model", "resnet18", "--weights", "random", "--image", "in.png")
    assert code == 0, out + err
    rows = dict(re.findall(r"^(conv1|layer\d\.\d|logits)\s+\S+\s+(\S+)$", out, re.M))
    assert list(rows) == dv.layers("resnet18") + ["logits"] and all(float(v) < 1e-4 for v in rows.values()), rows


def test_resnet_visualize_construct_occlusion_convert_atlas(capsys, tmp_path):
    _png("in.png", (64, 64))
    code, out, err = run(capsys, "visualize", "--model", "resnet18", "--weights", "random", "--layer", "layer2.0",
                         "--image", "in.png", "--top-k", "3", "--method", "guided", "--out", "v")  # fmt: skip
    assert code == 0, err
    assert "layer: layer2.0 of resnet18, 128 channels, feature map 8x8" in out
    for p in _written(out):
        _assert_picture(p, 8)
    code, out, err = run(capsys, "construct", "--model", "resnet18", "--weights", "random", "--layer", "layer1.1",
                         "--filter", "3", "--steps", "2", "--size", "64", "--out", "c")  # fmt: skip
    assert code == 0, err
    assert [p.name for p in _written(out)] == ["resnet18_layer1.1_filter3.png", "resnet18_layer1.1_filters.png"]
    code, out, err = run(capsys, "occlusion", "--model", "resnet18", "--weights", "random", "--image", "in.png",
                         "--patch", "32", "--stride", "16", "--out", "o")  # fmt: skip
    assert code == 0, err
    assert "(a) layer4.1 feature map" in out and _written(out) == [Path("o/resnet18_layer4.1_occlusion.png")]
    code, out, err = run(capsys, "convert", "--model", "resnet18", "--from", "random", "--out", "r18.msgpack")
    assert code == 0 and dv.load_model("resnet18", weights="r18.msgpack").arch.name == "resnet18"
    (tmp_path / "imgs").mkdir()
    for i in range(3):
        _png(tmp_path / "imgs" / f"{i}.png", (40, 48))
    code, out, err = run(capsys, "atlas", "--model", "resnet18", "--weights", "r18.msgpack", "--images", "imgs",
                         "--layer", "layer1.0", "--size", "40", "--top-k", "2", "--out", "a", "--quiet")  # fmt: skip
    assert code == 0, err
    assert "64 channels, 3 images" in out and (tmp_path / "a" / "index.html").is_file()
    code, _, err = run(capsys, "visualize", "--model", "resnet18", "--weights", "random", "--layer", "layer9.0")
    assert_one_line_error(code, err, "unknown layer 'layer9.0' for resnet18", "layer index 1..9")


def test_the_model_comes_from_a_converted_weights_file_alone(capsys, tmp_path):
    """Without --model, a converted --weights file decides the architecture (it records it), for every command
    through one place; with --model, the two must agree."""
    path = dv.save_model(dv.load_model("vgg11", seed=1), tmp_path / "v.msgpack")
    code, out, _ = run(capsys, "layers", "--weights", path)
    assert code == 0 and out.splitlines()[0] == "vgg11: 8 conv layers (--layer takes the index or the name)"
    assert "conv4_2" in out and "conv5" not in out.split()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(tmp_path / "x.png")
    code, out, err = run(capsys, "visualize", "--weights", path, "--layer", "conv1_1", "--image", tmp_path / "x.png",
                         "--top-k", "2", "--out", tmp_path / "o")  # fmt: skip
    assert code == 0, err
    assert "layer: conv1_1 of vgg11, 64 channels, feature map 40x40" in out
    # the channels printed are those of the file's weights (seed 1), not of a random vgg11
    want = np.asarray(dv.visualize(dv.load_model(path), dv.load_image(tmp_path / "x.png"), "conv1_1", top_k=2).channels)
    assert re.findall(r"channel +(\d+)", out) == [str(c) for c in want]
    code, _, err = run(capsys, "visualize", "--weights", path, "--model", "alexnet", "--layer", "1")
    assert_one_line_error(code, err, "holds vgg11 weights, not alexnet; pick --model vgg11")
    code, _, err = run(capsys, "layers", "--weights", tmp_path / "missing.msgpack")
    assert_one_line_error(code, err, "missing.msgpack", "does not exist")
    assert dv.load_model(str(path)).arch.name == "vgg11"
    with pytest.raises(ValueError, match="records its architecture"):
        dv.load_model(path, weights="imagenet")


# -------------------------------------------------------------------------------------------------------------- issue 33: rough edges


def test_random_weights_are_recorded_in_the_file_and_print_no_classes(capsys, tmp_path, monkeypatch):
    """A file converted from random weights records it: loading it says so in one warning and prints no classes
    (the README: classes are printed for pretrained weights only); a file of trained weights still prints them.
    And `convert --torchvision` says what it is doing while it works (GoogLeNet: ~15 s) and lets no FutureWarning
    of torchvision's through (GoogLeNet's and Inception's default-init warning, imitated here on AlexNet: pytest
    turns a warning that escapes into an error)."""
    real = torchvision.models.get_model

    def get_model(*args, **kwargs):
        warnings.warn("The default weight initialization of GoogleNet will be changed in future releases of "
                      "torchvision.", FutureWarning)  # fmt: skip
        return real(*args, **kwargs)

    _png("in.png", (64, 64))
    code, _, err = run(capsys, "convert", "--from", "random", "--out", "r.msgpack")
    assert code == 0, err
    with monkeypatch.context() as m:
        m.setattr(torchvision.models, "get_model", get_model)
        code, out, err = run(capsys, "convert", "--torchvision", "alexnet", "--weights", "random", "--size", "64",
                             "--out", "tv.msgpack")  # fmt: skip
    assert code == 0, err
    lines = [ln for ln in err.splitlines() if "warning: --weights random" not in ln]
    assert len(lines) == 2 and "FutureWarning" not in err and "GoogleNet" not in err, err
    assert lines[0].startswith("deepvis: alexnet built with random weights (") and "importing it" in lines[0]
    assert lines[1].startswith("deepvis: imported (") and lines[1].endswith("writing tv.msgpack")
    assert "wrote tv.msgpack" in out
    assert dv.load_model("alexnet", weights="tv.msgpack").random_weights
    code, out, err = run(capsys, "visualize", "--weights", "r.msgpack", "--layer", "1", "--top-k", "2",
                         "--image", "in.png", "--out", "o")  # fmt: skip
    assert code == 0, err
    assert err.splitlines() == ["deepvis: warning: r.msgpack holds random (untrained) weights: its pictures are "
                                "not meaningful and no classes are printed"], err  # fmt: skip
    assert "ImageNet classes" not in out
    assert dv.load_model("alexnet").random_weights  # the seeded init is random (save_model records the field)
    trained = converters.from_torchvision(torchvision.models.alexnet().eval())  # weights of unknown origin
    assert not trained.random_weights
    assert not dv.load_model(dv.save_model(trained, tmp_path / "t.msgpack")).random_weights


def test_small_scores_print_with_significant_digits(capsys, tmp_path):
    """Scores of ~1e-5 (GoogLeNet's top channels) printed as 0.0000 said nothing: they keep 5 significant digits."""
    m = dv.load_model("alexnet", seed=2)
    params = dict(m.params, conv1={"kernel": m.params["conv1"]["kernel"] * 1e-6, "bias": m.params["conv1"]["bias"] * 0})
    path = dv.save_model(m.replace(variables={"params": params}), tmp_path / "tiny.msgpack")
    _png("in.png", (40, 40))
    code, out, err = run(capsys, "visualize", "--weights", path, "--layer", "1", "--top-k", "3", "--image", "in.png",
                         "--out", "o")  # fmt: skip
    assert code == 0, err
    shown = [float(s) for s in re.findall(r"^  channel +\d+  score +(\S+)$", out, re.M)]
    want = np.asarray(dv.visualize(dv.load_model(path), dv.load_image("in.png"), 1, top_k=3).scores)
    assert 1e-9 < want.max() < 1e-3, want  # the case: scores far below 1e-4
    np.testing.assert_allclose(shown, want, rtol=1e-4)


def test_offline_error_is_one_line_with_nothing_before(capsys, monkeypatch):
    """Offline, with nothing cached: every command that fetches torchvision's weights prints one error line and
    nothing else (torch's 'Downloading: ...' line came first), its advice said once."""

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "urlopen", offline)  # what torch.hub.download_url_to_file connects with
    for argv in (["visualize", "--layer", "1"], ["check"], ["convert", "--out", "a.msgpack"],
                 ["convert", "--torchvision", "alexnet", "--out", "b.msgpack"]):  # fmt: skip
        code, out, err = run(capsys, *argv)
        assert out == "", (argv, out)
        assert len(err.splitlines()) == 1, (argv, err)
        assert_one_line_error(code, err, "pretrained alexnet weights", "offline")
        assert err.count("random") == 1, (argv, err)  # the advice once, not again in other words
    assert not Path("a.msgpack").exists() and not Path("b.msgpack").exists()


def test_interrupted_atlas_says_resume_continues(capsys, monkeypatch, tmp_path):
    """Ctrl-C in `deepvis atlas` says that --resume continues it (and where the checkpoint is); --resume then
    finishes the site."""
    from deepvis_jax import explorer

    (tmp_path / "imgs").mkdir()
    for i in range(3):
        _png(tmp_path / "imgs" / f"{i}.png", (40, 40))
    argv = ["atlas", "--weights", "random", "--images", "imgs", "--layer", "1", "--channels", "0", "--size", "40",
            "--top-k", "1", "--out", "site", "--quiet"]  # fmt: skip

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(explorer, "build_layer", interrupted)  # after the pass over the images saved its state
        code, _, err = run(capsys, *argv)
    assert code == 130
    assert err.splitlines()[-1] == (f"deepvis: interrupted; run the same command with --resume to continue "
                                    f"(the last checkpoint is {Path('site') / explorer.STATE_FILE})")  # fmt: skip
    code, out, err = run(capsys, *argv, "--resume")
    assert code == 0, err
    assert Path("site/index.html").is_file()
    assert Path("site/conv1/sheets/channel_0000.png").is_file()  # the channel's sheet (issue 33 item 21)


def test_atlas_says_once_that_it_enlarges_small_images(capsys, monkeypatch, tmp_path):
    """Images smaller than --size are enlarged to it: the atlas says so once, up front, with the count and an
    example (before, 96 px images became 224 px without a word); images at least that large draw no warning."""
    (tmp_path / "imgs").mkdir()
    for name, size in (("a.png", (40, 30)), ("b.png", (64, 64)), ("c.png", (30, 44))):
        _png(tmp_path / "imgs" / name, size)

    def interrupted(*args, **kwargs):  # stop before the weights are loaded: the warning comes first
        raise KeyboardInterrupt

    monkeypatch.setattr(cli.atlas, "load_model", interrupted)
    argv = ["atlas", "--weights", "random", "--images", "imgs", "--layer", "1", "--out", "site", "--quiet"]
    code, _, err = run(capsys, *argv, "--size", "48")
    assert code == 130
    warnings = [ln for ln in err.splitlines() if ln.startswith("deepvis: warning: 2 of 3")]
    assert warnings == ["deepvis: warning: 2 of 3 images are smaller than --size 48 (shorter side) and are "
                        "enlarged to 48x48, e.g. a.png (40x30)"], err  # fmt: skip
    code, _, err = run(capsys, *argv, "--size", "30")
    assert code == 130 and "enlarged" not in err, err

