"""Image loading: every Pillow mode converted to RGB uint8 with hand-computed values, typed errors, a seeded fuzz."""

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import deepvis_jax as dv
from deepvis_jax._src.images import check_image_size, resize_shorter
from deepvis_jax._src.nets import get_architecture, layer_hw


def _saved(im: Image.Image, tmp_path: Path, fmt: str = "PNG", **kw) -> Path:
    path = tmp_path / f"img_{im.mode.replace(';', '_')}.{fmt.lower()}"
    im.save(path, format=fmt, **kw)
    return path


def _both(im: Image.Image, tmp_path: Path, fmt: str = "PNG") -> list[np.ndarray]:
    """The loader's result for the PIL image itself and for the file it saves to."""
    return [dv.load_image(im), dv.load_image(_saved(im, tmp_path, fmt))]


def _rgb(*values) -> np.ndarray:
    return np.array(values, dtype=np.uint8).reshape(1, len(values) // 3, 3)


# -------------------------------------------------------------------------------------------------------------- modes


def test_rgb_file_roundtrip(tmp_path):
    a = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    out = dv.load_image(_saved(Image.fromarray(a), tmp_path))
    assert out.dtype == np.uint8 and out.shape == (5, 7, 3)
    np.testing.assert_array_equal(out, a)


def test_grayscale_and_bilevel(tmp_path):
    for out in _both(Image.fromarray(np.array([[0, 100, 255]], np.uint8), "L"), tmp_path):
        np.testing.assert_array_equal(out, _rgb(0, 0, 0, 100, 100, 100, 255, 255, 255))
    bits = Image.fromarray(np.array([[0, 255]], np.uint8)).convert("1")
    for out in _both(bits, tmp_path):
        np.testing.assert_array_equal(out, _rgb(0, 0, 0, 255, 255, 255))


def test_alpha_is_composited_on_white(tmp_path):
    # out = c * a + 255 * (1 - a), a = alpha / 255
    rgba = np.array([[[200, 100, 0, 255], [200, 100, 0, 0], [200, 100, 0, 102]]], np.uint8)
    want = np.array([[[200, 100, 0], [255, 255, 255], [200 * 0.4 + 153, 100 * 0.4 + 153, 153]]])
    for out in _both(Image.fromarray(rgba, "RGBA"), tmp_path):
        np.testing.assert_allclose(out.astype(float), want, atol=1)
    la = Image.fromarray(rgba[..., [0, 3]], "LA")
    for out in _both(la, tmp_path):
        np.testing.assert_allclose(out[..., 0].astype(float), [[200, 255, 200 * 0.4 + 153]], atol=1)
    np.testing.assert_allclose(dv.load_image(rgba).astype(float), want, atol=1)  # arrays agree with files


def test_palette_with_and_without_transparency(tmp_path):
    p = Image.new("P", (3, 1))
    p.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (253 * 3))
    p.putdata([0, 1, 2])
    for out in _both(p, tmp_path):
        np.testing.assert_array_equal(out, _rgb(255, 0, 0, 0, 255, 0, 0, 0, 255))
    p.info["transparency"] = 1
    for out in _both(p, tmp_path):
        np.testing.assert_array_equal(out, _rgb(255, 0, 0, 255, 255, 255, 0, 0, 255))


def test_sixteen_bit_is_scaled_not_clipped(tmp_path):
    a = np.array([[0, 257 * 100, 32768, 65535]], np.uint16)  # 257 * 100 / 65535 * 255 = 100 exactly
    im = Image.fromarray(a)
    assert im.mode.startswith("I;16")
    for out in _both(im, tmp_path):
        np.testing.assert_array_equal(out[..., 0], [[0, 100, 128, 255]])
        np.testing.assert_array_equal(out[..., 0], out[..., 2])
    np.testing.assert_array_equal(dv.load_image(a)[..., 1], [[0, 100, 128, 255]])


def test_int32_and_float_modes(tmp_path):
    i32 = Image.fromarray(np.array([[0, 257 * 10, 65535]], np.int32), "I")  # in 16-bit range: / 65535
    for out in _both(i32, tmp_path, "TIFF"):
        np.testing.assert_array_equal(out[..., 0], [[0, 10, 255]])
    wide = Image.fromarray(np.array([[-100, 0, 100]], np.int32), "I")  # unknown scale: stretched min..max
    np.testing.assert_array_equal(dv.load_image(wide)[..., 0], [[0, 128, 255]])
    f = Image.fromarray(np.array([[0.0, 0.5, 1.0]], np.float32), "F")  # in [0, 1]: * 255
    for out in _both(f, tmp_path, "TIFF"):
        np.testing.assert_array_equal(out[..., 0], [[0, 128, 255]])
    fwide = Image.fromarray(np.array([[2.0, 4.0, 6.0]], np.float32), "F")
    np.testing.assert_array_equal(dv.load_image(fwide)[..., 1], [[0, 128, 255]])


def test_cmyk(tmp_path):
    c = Image.new("CMYK", (2, 1))
    c.putdata([(0, 0, 0, 0), (255, 0, 0, 0)])  # white, pure cyan
    for out in _both(c, tmp_path, "TIFF"):
        np.testing.assert_array_equal(out, _rgb(255, 255, 255, 0, 255, 255))


def test_exif_orientation_is_applied(tmp_path):
    a = np.zeros((16, 32, 3), np.uint8)
    a[:, :16] = (255, 0, 0)  # left half red, right half blue
    a[:, 16:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = tmp_path / "rot.jpg"
    Image.fromarray(a).save(path, exif=exif, quality=95)
    out = dv.load_image(path).astype(int)
    assert out.shape == (32, 16, 3)  # width and height swapped
    np.testing.assert_allclose(out[4, 8], (255, 0, 0), atol=12)  # the left half is now on top
    np.testing.assert_allclose(out[28, 8], (0, 0, 255), atol=12)


def test_arrays():
    np.testing.assert_array_equal(dv.load_image(np.array([[0.0, 0.5, 1.0]]))[..., 2], [[0, 128, 255]])
    np.testing.assert_array_equal(dv.load_image(np.array([[True, False]]))[..., 0], [[255, 0]])
    np.testing.assert_array_equal(dv.load_image(np.full((2, 2, 1), 7, np.uint8)), np.full((2, 2, 3), 7))
    with pytest.raises(dv.ImageError, match="shape"):
        dv.load_image(np.zeros((2, 2, 2)))
    with pytest.raises(dv.ImageError, match=r"\[0, 1\]"):
        dv.load_image(np.full((2, 2, 3), 2.0))
    with pytest.raises(dv.ImageError, match=r"\[0, 1\]"):
        dv.load_image(np.full((2, 2, 3), np.nan))
    with pytest.raises(dv.ImageError, match="dtype"):
        dv.load_image(np.zeros((2, 2, 3), np.int64))
    with pytest.raises(dv.ImageError, match="empty"):
        dv.load_image(np.zeros((0, 4, 3), np.uint8))


# -------------------------------------------------------------------------------------------------------------- errors


def test_missing_file_not_an_image_truncated(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        dv.load_image(tmp_path / "nope.png")
    with pytest.raises(dv.ImageError, match="not a file"):
        dv.load_image(tmp_path)
    (tmp_path / "notes.png").write_text("hello, not a picture")
    with pytest.raises(dv.ImageError, match="not an image"):
        dv.load_image(tmp_path / "notes.png")
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(dv.ImageError, match="not an image"):
        dv.load_image(tmp_path / "empty.jpg")
    a = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    for fmt in ("PNG", "JPEG"):
        buf = io.BytesIO()
        Image.fromarray(a).save(buf, format=fmt)
        cut = tmp_path / f"cut.{fmt.lower()}"
        cut.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
        with pytest.raises(dv.ImageError, match="truncated or corrupt"):
            dv.load_image(cut)
    assert issubclass(dv.ImageError, ValueError)


def _valid_files() -> list[bytes]:
    a = np.random.default_rng(2).integers(0, 256, (24, 20, 3), dtype=np.uint8)
    out = []
    for fmt, mode in [("PNG", "RGB"), ("JPEG", "RGB"), ("GIF", "P"), ("BMP", "RGB"), ("TIFF", "RGB"),
                      ("PNG", "I;16"), ("WEBP", "RGB")]:  # fmt: skip
        im = Image.fromarray(a).convert("P") if mode == "P" else Image.fromarray(a)
        if mode == "I;16":
            im = Image.fromarray((a[..., 0].astype(np.uint16) * 257))
        buf = io.BytesIO()
        im.save(buf, format=fmt)
        out.append(buf.getvalue())
    return out


def test_fuzz_random_and_mutated_bytes(tmp_path):
    """Random bytes, valid headers with garbage, and byte-flipped real files: an image or an ImageError, nothing else."""
    rng = np.random.default_rng(1234)
    valid = _valid_files()
    headers = [b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"GIF89a", b"BM", b"II*\x00", b"RIFF\x00\x00\x00\x00WEBP"]
    outcomes = {"image": 0, "error": 0}
    path = tmp_path / "fuzz.img"
    for i in range(240):
        kind = i % 3
        if kind == 0:
            data = rng.integers(0, 256, int(rng.integers(0, 400)), dtype=np.uint8).tobytes()
        elif kind == 1:
            data = headers[i % len(headers)] + rng.integers(0, 256, int(rng.integers(0, 300)), dtype=np.uint8).tobytes()
        else:
            b = bytearray(valid[i % len(valid)])
            for j in rng.integers(0, len(b), int(rng.integers(1, 12))):
                b[j] = int(rng.integers(0, 256))
            if rng.random() < 0.3:
                b = b[: int(rng.integers(1, len(b)))]
            data = bytes(b)
        path.write_bytes(data)
        try:
            out = dv.load_image(path)
        except dv.ImageError as e:
            assert "\n" not in str(e)
            outcomes["error"] += 1
            continue
        assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3 and min(out.shape[:2]) >= 1
        outcomes["image"] += 1
    assert outcomes["error"] >= 80 and outcomes["image"] >= 5, outcomes  # both paths really exercised


# -------------------------------------------------------------------------------------------------------------- sample, labels, sizes


def test_sample_image_and_labels():
    img = dv.sample_image()
    assert img.shape == (256, 256, 3) and img.dtype == np.uint8
    assert img.std() > 30  # a photograph, not a blank
    data = Path(dv.__file__).parent / "data"
    assert (data / "astronaut.jpg").stat().st_size <= 100_000
    assert "public domain" in (data / "README.md").read_text()
    labels = dv.imagenet_labels()
    assert len(labels) == 1000
    assert (labels[0], labels[1], labels[999]) == ("tench", "goldfish", "toilet tissue")


def test_min_image_size_alexnet_by_hand():
    # conv1 (k11 s4 p2): (n - 7) // 4 + 1 >= 1 -> n >= 7; each 3/2 max-pool needs a 3-wide input:
    # conv2 needs conv1's map >= 3 -> n >= 15; conv3..5 need pool2's input >= 3 -> conv1's map >= 7 -> n >= 31;
    # the classifier needs pool5's input >= 3 -> conv1's map >= 15 -> n >= 63.
    assert [dv.min_image_size("alexnet", i) for i in range(1, 6)] == [7, 15, 31, 31, 31]
    assert dv.min_image_size("alexnet") == 63
    assert dv.min_image_size("vgg16", "conv5_3") == 16 and dv.min_image_size("vgg16") == 32
    arch = get_architecture("alexnet")
    assert layer_hw(arch, "conv3", (31, 31)) == (1, 1)
    with pytest.raises(ValueError, match="30x31 pixels is too small for layer conv3 of alexnet.*at least 31x31"):
        layer_hw(arch, "conv3", (30, 31))
    check_image_size(arch, (31, 500), 3)
    with pytest.raises(ValueError, match=r"500x30 pixels, too small for conv3 of alexnet: it needs at least 31x31"):
        check_image_size(arch, (30, 500), "conv3")
    with pytest.raises(ValueError, match="unknown layer"):
        dv.min_image_size("alexnet", 6)


def test_resize_shorter():
    a = np.zeros((300, 600, 3), np.uint8)
    assert resize_shorter(a, 224).shape == (224, 448, 3)
    assert resize_shorter(a, 400) is a  # never enlarged
    assert resize_shorter(a, 0) is a


def test_public_names():
    for name in ("load_image", "sample_image", "ImageError", "min_image_size", "imagenet_labels"):
        assert hasattr(dv, name), name


def test_one_reader_for_the_atlas_and_visualize_files(tmp_path):
    """Smell 3: the atlas and `deepvis visualize --image DIR` (`dv.visualize_files`) read the same pixels from the
    same file, as `dv.load_image` does: EXIF orientation applied, transparency composited on white."""
    from PIL import Image

    from deepvis_jax._src.atlas.sources import Folder
    from deepvis_jax._src.images import load_square

    rng = np.random.default_rng(0)
    folder = tmp_path / "images"
    folder.mkdir()
    wide = np.kron(rng.integers(0, 256, (6, 10, 3)), np.ones((8, 8, 1))).astype(np.uint8)  # 48x80, smooth
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: the camera was turned, the picture must be rotated 90 degrees clockwise
    Image.fromarray(wide).save(folder / "a_rotated.jpg", exif=exif.tobytes(), quality=95)
    ramp = np.tile(np.linspace(0, 255, 40), (40, 1))[..., None]  # transparent on the left, opaque on the right
    rgba = np.concatenate([wide[:40, :40], ramp], -1).astype(np.uint8)
    Image.fromarray(rgba, "RGBA").save(folder / "b_alpha.png")
    with Image.open(folder / "a_rotated.jpg") as im:
        stored = np.asarray(im.convert("RGB"))  # the pixels as stored, EXIF ignored
    rotated = dv.load_image(folder / "a_rotated.jpg")
    assert stored.shape == (48, 80, 3) and rotated.shape == (80, 48, 3)
    np.testing.assert_array_equal(rotated, np.rot90(stored, k=-1))  # shown upright
    alpha = rgba[..., 3:] / 255.0
    on_white = rgba[..., :3] * alpha + 255.0 * (1 - alpha)
    assert np.abs(dv.load_image(folder / "b_alpha.png").astype(float) - on_white).max() <= 1.0
    # the atlas's folder source and visualize_files give exactly load_image's pixels, squared
    atlas_source = Folder(folder, 32, workers=1)
    model = dv.load_model("alexnet", weights=None, seed=0)
    files = list(dv.visualize_files(model, folder, 1, size=32, top_k=1))
    for i, item in enumerate(files):
        want = load_square(item.path, 32)
        np.testing.assert_array_equal(item.image, want)
        np.testing.assert_array_equal(atlas_source.fetch(i), want)
    # and the atlas over the folder equals the atlas over those arrays
    a = dv.atlas(model, folder, "conv1", top_k=2, batch_size=2, size=32, project=False, progress=False)
    b = dv.atlas(model, [it.image for it in files], "conv1", top_k=2, batch_size=2, project=False, progress=False)
    np.testing.assert_array_equal(a.values, b.values)
    np.testing.assert_array_equal(a.image_index, b.image_index)
