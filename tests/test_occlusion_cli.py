"""`deepvis occlusion`: writes the figure, prints the maps' summary, one-line errors, refuses to clobber."""

import sys

import numpy as np
import pytest
from PIL import Image

from deepvis_jax._src import occlusion_cli
from deepvis_jax._src.render import LABEL_H, PAD


@pytest.fixture(scope="module")
def image_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("img") / "in.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (80, 64, 3), dtype=np.uint8)).save(path)
    return path


def test_occlusion_subcommand_writes_the_figure(image_file, tmp_path, capsys):
    argv = ["occlusion", "--weights", "random", "--image", str(image_file), "--layer", "2", "--patch", "24",
            "--stride", "20", "--channel", "5", "--class", "7", "--out", str(tmp_path)]  # fmt: skip
    assert occlusion_cli.main(argv) == 0
    out, err = capsys.readouterr()
    path = tmp_path / "alexnet_conv2_occlusion.png"
    assert f"wrote {path}" in out and "3x3 positions" in out and "conv2 feature map 5" in out
    assert "class 7" in out and "--weights random" in err
    fig = Image.open(path)
    # 64 px wide image -> 4 panels upscaled x4 (>= 224 px), with the legend below
    assert fig.size[0] == 4 * (256 + PAD) + PAD and fig.size[1] > 320 + LABEL_H + 2 * PAD
    assert np.asarray(fig).std() > 10
    # refuses to clobber (before any work), replaces with --overwrite
    assert occlusion_cli.main(argv) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert occlusion_cli.main([*argv, "--overwrite"]) == 0


@pytest.mark.parametrize("extra,msg", [
    (["--layer", "conv9"], "unknown layer 'conv9'"),
    (["--channel", "192"], r"--channel 192 is out of range for conv2 of alexnet: use 0..191"),
    (["--class", "1000"], r"--class 1000 is out of range"),
    (["--patch", "100"], "does not fit"),
    (["--model", "resnet"], "unknown model 'resnet'"),
])  # fmt: skip
def test_occlusion_subcommand_errors_are_one_line(image_file, tmp_path, capsys, extra, msg):
    argv = ["occlusion", "--weights", "random", "--image", str(image_file), "--layer", "2", "--out", str(tmp_path)]
    assert occlusion_cli.main([*argv, *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("deepvis: error: ") and __import__("re").search(msg, err[-1]), err
    assert not list(tmp_path.iterdir())


def test_missing_image_file(tmp_path, capsys):
    argv = ["occlusion", "--weights", "random", "--image", str(tmp_path / "nope.png"), "--out", str(tmp_path)]
    assert occlusion_cli.main(argv) == 2
    assert "nope.png" in capsys.readouterr().err


def test_runs_as_a_module(image_file, tmp_path):
    import subprocess

    argv = [sys.executable, "-m", "deepvis_jax._src.occlusion_cli", "occlusion", "--help"]
    r = subprocess.run(argv, capture_output=True, text=True, check=True)
    assert "--patch" in r.stdout and "--class" in r.stdout
