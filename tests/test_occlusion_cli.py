"""`deepvis occlusion` (and `deepvis visualize --method`): writes the figure, prints the maps' summary, one-line
errors with exit status 2, refuses to clobber files."""

import numpy as np
import pytest
from PIL import Image

from deepvis_jax import cli
from deepvis_jax._src.render import LABEL_H, PAD


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(cli.CACHE_ENV, "off")


@pytest.fixture(scope="module")
def image_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("img") / "in.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (80, 64, 3), dtype=np.uint8)).save(path)
    return path


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_occlusion_subcommand_writes_the_figure(image_file, tmp_path, capsys):
    argv = ["occlusion", "--weights", "random", "--image", image_file, "--layer", "2", "--patch", "24",
            "--stride", "20", "--channel", "5", "--class", "281", "--out", tmp_path / "out"]  # fmt: skip
    code, out, err = run(capsys, *argv)
    assert code == 0, err
    path = tmp_path / "out" / "alexnet_conv2_occlusion.png"
    assert f"wrote {path}" in out and "3x3 positions" in out and "conv2 feature map 5" in out
    assert "class tabby (281)" in out and "--weights random" in err
    fig = Image.open(path)
    # a 64 px wide image -> 4 panels upscaled x4 (>= 224 px), the legend below
    assert fig.size[0] == 4 * (256 + PAD) + PAD and fig.size[1] > 320 + LABEL_H + 2 * PAD
    assert np.asarray(fig).std() > 10
    # refuses to clobber, before any work; replaces with --overwrite
    code, _, err = run(capsys, *argv)
    assert code == 2 and err.strip().splitlines()[-1].startswith("deepvis: error: ") and "--overwrite" in err
    assert run(capsys, *argv, "--overwrite")[0] == 0


@pytest.mark.parametrize("extra,msg", [
    (["--layer", "conv9"], "unknown layer 'conv9'"),
    (["--channel", "192"], "--channel 192 is out of range for conv2 of alexnet: use 0..191"),
    (["--class", "1000"], "--class 1000 is out of range: use 0..999"),
    (["--patch", "100"], "does not fit"),
    (["--stride", "0"], "stride must be a positive integer"),
    (["--model", "resnet"], "unknown model 'resnet'"),
    (["--size", "40"], "too small for alexnet's classifier"),
])  # fmt: skip
def test_occlusion_errors_are_one_line(image_file, tmp_path, capsys, extra, msg):
    code, out, err = run(capsys, "occlusion", "--weights", "random", "--image", image_file, "--layer", "2",
                         "--out", tmp_path / "out", *extra)  # fmt: skip
    lines = err.strip().splitlines()
    assert code == 2 and "Traceback" not in err
    assert lines[-1].startswith("deepvis: error: ") and msg in lines[-1], err
    assert not (tmp_path / "out").exists()


def test_visualize_method_flag(image_file, tmp_path, capsys):
    code, out, err = run(capsys, "visualize", "--weights", "random", "--image", image_file, "--layer", "2",
                         "--top-k", "2", "--method", "guided", "--out", tmp_path)  # fmt: skip
    assert code == 0, err
    assert (tmp_path / "conv2_projections.png").exists()
    code, _, err = run(capsys, "visualize", "--weights", "random", "--layer", "2", "--method", "smooth")
    assert code == 2 and "invalid choice: 'smooth'" in err
