"""The explorer: the static site of `deepvis atlas` and the live app of `deepvis serve`, driven in headless Chromium
(tests/browser.py: the DevTools protocol over a pipe), plus the per-channel feature cache.

Small on purpose (AlexNet with random weights, 64 px images, 32 px feature visualizations of one step): these
check the wiring -- every link and picture, the clicks, compile-once, the caches, errors, concurrency -- not the
pictures' meaning (tests/test_trained.py does that for the pieces the explorer shows).
"""

from __future__ import annotations

import concurrent.futures
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np
import pytest
from PIL import Image

import deepvis_jax as dv
from deepvis_jax import cli
from deepvis_jax._src.explorer import build, features, live, server
from deepvis_jax._src.optvis import construct as construct_mod
from deepvis_jax._src.rules import METHODS

from browser import CHROMIUM, Browser

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ROOT / "tests" / "data" / "photos"
SAMPLE = ROOT / "deepvis_jax" / "data" / "astronaut.jpg"
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")


@pytest.fixture(scope="module")
def model():
    return dv.load_model("alexnet", weights=None, seed=0)


def _count_constructs(monkeypatch) -> list[list[int]]:
    """Record the filters of every `construct` call that `features` makes (and still run it)."""
    calls: list[list[int]] = []
    real = features.construct

    def counting(model, layer, filters, **kw):
        calls.append([int(f) for f in filters])
        return real(model, layer, filters, **kw)

    monkeypatch.setattr(features, "construct", counting)
    return calls


# --------------------------------------------------------------------------------------------------------------
# Feature visualizations: batched, cached per channel, keyed
# --------------------------------------------------------------------------------------------------------------


def test_parse_channels():
    assert build.parse_channels(None, 5, "conv1") == [0, 1, 2, 3, 4]
    assert build.parse_channels(["3-5", "1", "4,0"], 64, "conv1") == [0, 1, 3, 4, 5]
    for bad, match in ((["5-3"], "out of range"), (["64"], "out of range for conv1: use 0..63"),
                       (["x"], "not a channel or a range")):  # fmt: skip
        with pytest.raises(ValueError, match=match):
            build.parse_channels(bad, 64, "conv1")


def test_feature_cache_batches_skips_and_checks_its_key(model, tmp_path, monkeypatch):
    calls = _count_constructs(monkeypatch)
    folder = tmp_path / "features"
    kw = dict(batch=3, image_size=32, steps=1, progress=False, digest=features.weights_digest(model))
    paths = features.construct_features(model, "conv2", [0, 1, 2, 3, 4], folder, **kw)
    assert calls == [[0, 1, 2], [3, 4, 4]]  # fixed-size batches: the last one padded with its last channel
    traces = dict(construct_mod._TRACES)
    # a channel's picture does not depend on its batch: channel 3 alone (padded the same way) gives the same PNG
    alone = np.asarray(dv.construct(model, "conv2", [3, 3, 3], image_size=32, steps=1, verbose=False))[0]
    png = np.asarray(Image.open(paths[3]))
    assert png.shape == (32, 32, 3)
    assert np.abs(png.astype(int) - np.rint(alone * 255)).max() <= 1
    # an interrupted or repeated run computes only what is missing, with the same compiled program
    mtime = paths[0].stat().st_mtime_ns
    for c in (1, 2, 4):
        paths[c].unlink()
    calls.clear()
    again = features.construct_features(model, "conv2", [0, 1, 2, 3, 4], folder, **kw)
    assert calls == [[1, 2, 4]] and again == paths and all(p.is_file() for p in paths.values())
    assert paths[0].stat().st_mtime_ns == mtime and construct_mod._TRACES == traces
    calls.clear()
    features.construct_features(model, "conv2", [0, 1, 2, 3, 4], folder, **kw)
    assert calls == []
    # pictures made with other settings are never mixed in
    with pytest.raises(ValueError, match="made with other settings .*seed 0.*pass --overwrite"):
        features.construct_features(model, "conv2", [0, 1], folder, **{**kw, "seed": 1})
    with pytest.raises(ValueError, match="other settings .*weights 00000000"):  # other weights
        features.construct_features(model, "conv2", [0], folder, **{**kw, "digest": "0" * 32})
    features.construct_features(model, "conv2", [0, 1], folder, **{**kw, "seed": 1}, replace=True)
    assert sorted(p.name for p in folder.glob("*.png")) == ["channel_0000.png", "channel_0001.png"]
    assert json.loads((folder / features.KEY_FILE).read_text())["seed"] == 1


def test_feature_key_is_the_recipe_construct_runs(model, monkeypatch):
    """Smell 5: the feature cache's key describes the recipe `construct` actually resolves and runs (not literals),
    so a change of construct's defaults -- the learning rate, the objective's contrast, the transforms -- gives
    another key and the cached pictures are not reused."""
    from deepvis_jax._src.optvis import recipe as recipe_mod

    class Ran(Exception):
        pass

    def key():
        return features.feature_key(model, "conv2", image_size=32, steps=3, seed=0, digest="0" * 32)["recipe"]

    def ran():  # what construct_features' call runs: the recipe construct resolves, and what it optimizes
        recipes, specs = [], []
        resolve = construct_mod.resolve_recipe

        def stop(spec, *a, **k):
            specs.append(spec)
            raise Ran

        with monkeypatch.context() as m:
            m.setattr(construct_mod, "resolve_recipe", lambda *a, **k: recipes.append(resolve(*a, **k)) or recipes[-1])
            m.setattr(construct_mod, "_optimize", stop)
            with pytest.raises(Ran):
                dv.construct(model, "conv2", [0, 1], image_size=32, steps=3, seed=0, verbose=False)
        (r,), spec = recipes, specs[0]
        assert (spec.objective, spec.param, spec.transforms, spec.optimizer) == r[:4]  # it runs what it resolved
        return recipe_mod.describe_recipe(r)

    base = key()
    assert base == ran() and base["lr"] == 0.02 and len(base["transforms"]) == 5
    seen = [base]
    for name, value in (("LR", 0.05), ("CONTRAST", 0.25), ("standard_transforms", lambda: ())):
        monkeypatch.setattr(recipe_mod, name, value)
        changed = key()
        assert changed not in seen, name
        assert changed == ran(), name
        seen.append(changed)  # the next default changes on top of this one


def test_weights_digest_sees_every_value():
    params = {n: {"kernel": np.ones((3, 3, 3, 2), np.float32), "bias": np.zeros(2, np.float32)} for n in ("a", "b")}
    arch = dv.ARCHITECTURES["alexnet"]
    digest = features.weights_digest(dv.Model(variables={"params": params}, arch=arch))
    assert features.weights_digest(dv.Model(variables={"params": {k: dict(v) for k, v in params.items()}},
                                            arch=arch)) == digest  # fmt: skip
    changed = {k: dict(v) for k, v in params.items()}
    changed["b"]["bias"] = np.array([0.0, 1e-7], np.float32)
    assert features.weights_digest(dv.Model(variables={"params": changed}, arch=arch)) != digest


# --------------------------------------------------------------------------------------------------------------
# The static site
# --------------------------------------------------------------------------------------------------------------


def _crawl(page, start: Path) -> dict[str, dict]:
    """Visit every page reachable from `start` by links; check each link's target exists and every image loaded."""
    seen: dict[str, dict] = {}
    todo = [start.as_uri()]
    while todo:
        url = todo.pop()
        if url in seen:
            continue
        page.goto(url)
        status = page.wait("(() => { const s = document.getElementById('status');"
                           " return s.dataset.loaded !== '' && [s.dataset.loaded, s.dataset.broken]; })()")  # fmt: skip
        info = page.eval("""({
            links: [...document.querySelectorAll('a[href]')].map(a => a.href),
            images: [...document.images].map(i => [i.src, i.complete && i.naturalWidth > 0]),
            title: document.querySelector('h1').textContent,
            text: document.body.innerText,
            rows: [...document.querySelectorAll('tr[id^="rank-"]')].map(tr => [...tr.cells].map(td => td.innerText)),
        })""")
        assert status == [str(len(info["images"])), "0"], (url, status)
        assert info["images"] and all(ok for _, ok in info["images"]), (url, info["images"])
        for link in info["links"]:
            target = Path(unquote(urlsplit(link).path))
            assert urlsplit(link).scheme == "file" and target.is_file(), (url, link)  # nothing leaves the site
            if target.suffix == ".html":
                todo.append(link.split("#")[0])
        seen[url] = info
    return seen


@needs_chromium
def test_static_site_in_headless_chromium(model, tmp_path, monkeypatch, capsys):
    """`deepvis atlas` over two layers with feature visualizations for one: every page is reachable, every link
    resolves, every image loads, and a channel page is reached from the index by clicks."""
    monkeypatch.setattr(cli._common, "resolve_weights", lambda arch, weights: (model, False))  # = --weights random
    calls = _count_constructs(monkeypatch)
    out = tmp_path / "site out"  # a space in the path: links must still resolve
    argv = ["atlas", "--images", str(PHOTOS), "--layer", "conv1", "conv2", "--out", str(out), "--size", "64",
            "--channels", "0-3", "9", "--construct", "conv2", "--construct-size", "32", "--construct-steps", "1",
            "--construct-batch", "3", "--weights", "random", "--cache-dir", "off", "--quiet"]  # fmt: skip
    assert cli.main(argv) == 0
    stdout = capsys.readouterr().out
    assert "alexnet conv1: 5 of 64 channels, 32 images" in stdout and "alexnet conv2: 5 of 192 channels" in stdout
    assert calls == [[0, 1, 2], [3, 9, 9]]  # conv2 only
    assert (out / build.STATE_FILE).is_file() and not (out / "conv1" / "features").exists()

    with Browser(tmp_path) as b:
        page = b.new_page(1100, 800)
        pages = _crawl(page, out / "index.html")
        names = sorted(Path(unquote(urlsplit(u).path)).relative_to(out).as_posix() for u in pages)
        assert names == ["conv1/channel_0000.html", "conv1/channel_0001.html", "conv1/channel_0002.html",
                         "conv1/channel_0003.html", "conv1/channel_0009.html", "conv1/index.html",
                         "conv2/channel_0000.html", "conv2/channel_0001.html", "conv2/channel_0002.html",
                         "conv2/channel_0003.html", "conv2/channel_0009.html", "conv2/index.html",
                         "index.html"]  # fmt: skip
        ch = pages[(out / "conv2" / "channel_0009.html").as_uri()]
        assert ch["title"] == "alexnet conv2 channel 9"
        assert any(src.endswith("features/channel_0009.png") for src, _ in ch["images"])
        assert sum("/tiles/0009_" in src for src, _ in ch["images"]) == 9  # top 9: patch | DeconvNet | guided
        ranks, values, sources = zip(*((r[0], float(r[1]), r[2].split("\n")[0]) for r in ch["rows"]))
        assert ranks == tuple(str(j) for j in range(1, 10)) and list(values) == sorted(values, reverse=True)
        assert all((PHOTOS / f).is_file() for f in sources), sources  # the source file names
        assert sorted(Path(unquote(urlsplit(link).path)).name for link in ch["links"]) == [
            "channel_0003.html", "index.html", "index.html"]  # previous, the layer, all layers; 9 is the last
        conv1 = pages[(out / "conv1" / "channel_0000.html").as_uri()]
        assert "not computed" in conv1["text"] and not any("features/" in s for s, _ in conv1["images"])

        # reachable by clicking: index -> layer conv2 -> channel 9 -> previous (channel 3)
        page.goto((out / "index.html").as_uri())
        page.click("#layer-conv2 h2 a")
        page.wait_loaded("location.pathname.endsWith('/conv2/index.html')")
        page.click('figure[data-channel="9"] a')
        page.wait_loaded("location.pathname.endsWith('/conv2/channel_0009.html')")
        page.click("a#prev")
        page.wait_loaded("location.pathname.endsWith('/conv2/channel_0003.html')")
        assert page.eval("document.querySelector('h1').textContent") == "alexnet conv2 channel 3"

    # a repeated run: refused without --resume / --overwrite; with --resume the feature pictures are reused
    assert cli.main(argv) == 2
    assert "--resume" in capsys.readouterr().err
    calls.clear()
    assert cli.main(argv + ["--resume"]) == 0 and calls == []
    capsys.readouterr()
    argv[argv.index("--construct") + 1] = "conv3"
    assert cli.main(argv) == 2
    assert "error: --construct conv3: not one of the atlas's layers (conv1, conv2)" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------------------------
# The live mode
# --------------------------------------------------------------------------------------------------------------


def _request(port: int, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, r.getheader("Content-Type"), r.read()
    finally:
        conn.close()


@pytest.fixture
def live_server(model, tmp_path):
    (tmp_path / "tmp").mkdir()
    ex = live.Explorer(model, size=64, construct_size=32, construct_steps=1, tmpdir=tmp_path / "tmp")
    httpd = server.make_server(ex, "127.0.0.1", 0, max_upload=100_000, weights="random")
    thread = threading.Thread(target=server.serve, args=(httpd,), daemon=True)
    thread.start()
    yield ex, httpd.server_address[1]
    httpd.shutdown()
    thread.join(timeout=30)
    assert not thread.is_alive() and not ex.tmp.exists() and not any((tmp_path / "tmp").iterdir())


def test_live_click_projects_the_strongest_unit_without_compiling(model, tmp_path):
    """A click: the channel's strongest unit projected by every method, equal to `project` of that one-hot signal;
    neither another channel nor another image compiles anything (no browser needed)."""
    ex = live.Explorer(model, size=64, construct_size=32, construct_steps=1, tmpdir=tmp_path)
    try:
        sample = ex.sample_id
        ex.channel(sample, "conv3", 0)  # compiles the layer's two programs
        sizes = (live._layer_state._cache_size(), live._channel_projections._cache_size())
        other = ex.add_image(np.asarray(Image.open(PHOTOS / "astronaut_1.jpg").convert("RGB")), "astronaut_1.jpg")
        for image, c in ((sample, 7), (other, 7), (other, 100)):
            v = ex.channel(image, "conv3", c)
            assert (v.layer, v.channel, sorted(v.projections)) == ("conv3", c, sorted(METHODS))
            assert all(p[:8] == b"\x89PNG\r\n\x1a\n" for p in v.projections.values())
        assert (live._layer_state._cache_size(), live._channel_projections._cache_size()) == sizes
        # what the click shows: the unit is the map's maximum, each projection that of its one-hot signal
        act, switches = live._layer_state(model, ex.image(other), "conv3")
        proj, value, row, col = live._channel_projections(model, switches, act, np.int32(100), "conv3")
        a = np.asarray(act)
        assert (int(row), int(col)) == np.unravel_index(np.argmax(a[:, :, 100]), a.shape[:2]) and value > 0
        assert float(value) == a[:, :, 100].max() and value == v.value
        signal = np.zeros((1, *a.shape), np.float32)
        signal[0, int(row), int(col), 100] = float(value)
        for method, p in zip(METHODS, np.asarray(proj), strict=True):
            ref = np.asarray(dv.project(model, switches, signal, "conv3", method))[0]
            np.testing.assert_allclose(p, ref, rtol=1e-4, atol=1e-5 * np.abs(ref).max(), err_msg=method)
    finally:
        ex.close()
    assert not ex.tmp.exists()


def test_live_images_smaller_than_size_are_enlarged_and_compile_nothing(model, tmp_path):
    """Smell 7: an image smaller than --size is enlarged to it (shorter side to S, center-cropped, as the atlas
    reads files), so it runs the layer's compiled program; the grid's clickable cells are where
    `activation_grid` draws each channel's map."""
    import io

    from deepvis_jax._src.images import square

    ex = live.Explorer(model, size=64, construct_size=32, construct_steps=1, tmpdir=tmp_path)
    try:
        before = ex.layer(ex.sample_id, "conv2")
        compiled = live._layer_state._cache_size()
        small = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
        image = ex.add_image(small, "small.png")
        np.testing.assert_array_equal(ex.image(image), square(small, 64))
        assert ex.image(image).shape == (64, 64, 3)
        view = ex.layer(image, "conv2")
        assert view.map_hw == before.map_hw and live._layer_state._cache_size() == compiled
        grid = np.asarray(Image.open(io.BytesIO(view.grid_png)))
        assert grid.shape[:2] == view.grid_hw and len(view.cells) == view.channels == 192
        a = np.asarray(live._layer_state(model, ex.image(image), "conv2")[0])
        for c in (0, 5, 191):
            left, top, w, h = view.cells[c]
            f = w // a.shape[1]
            assert (w, h) == (f * a.shape[1], f * a.shape[0])
            want = dv.to_uint8(a[:, :, c] / a[:, :, c].max()) if a[:, :, c].max() > 0 else 0
            np.testing.assert_array_equal(grid[top : top + h : f, left : left + w : f, 0], want)
    finally:
        ex.close()


PROJECTIONS_SHOWN = """['proj-deconv', 'proj-guided', 'proj-gradient'].every(id => {
    const i = document.getElementById(id);
    return i.complete && i.naturalWidth > 0 && i.src.includes('channel=CH&'); })"""
FEATURE_SHOWN = """(() => { const i = document.getElementById('feature');
    return i.complete && i.naturalWidth > 0 && i.src.includes('channel=CH'); })()"""


@needs_chromium
def test_live_mode_in_headless_chromium(live_server, tmp_path):
    ex, port = live_server
    with Browser(tmp_path) as b:
        page = b.new_page(1280, 900)
        page.goto(f"http://127.0.0.1:{port}/")
        page.wait("document.body.dataset.ready === '1'")
        # upload the sample photo as a person would: the file input, then its change event
        page.set_files("#upload", [SAMPLE])
        page.wait("document.getElementById('input-name').textContent === 'astronaut.jpg'"
                  " && document.body.dataset.busy === ''")  # fmt: skip
        page.eval("(() => { const s = document.getElementById('layer'); s.value = 'conv2';"
                  " s.dispatchEvent(new Event('change')); })()")  # fmt: skip
        page.wait("document.body.dataset.layer === 'conv2' && document.body.dataset.busy === ''"
                  " && document.getElementById('grid').naturalWidth > 0")  # fmt: skip
        assert page.eval("document.querySelectorAll('.cell').length") == 192
        # a click on a channel's map: its three projections, then its feature visualization
        page.click('.cell[data-channel="5"]')
        page.wait(PROJECTIONS_SHOWN.replace("CH", "5"))
        page.wait(FEATURE_SHOWN.replace("CH", "5"))
        sizes = (live._layer_state._cache_size(), live._channel_projections._cache_size())
        traces = dict(construct_mod._TRACES)
        # another channel: computed on demand, and no compiling
        t0 = time.perf_counter()
        page.click('.cell[data-channel="17"]')
        page.wait(PROJECTIONS_SHOWN.replace("CH", "17"))
        warm = time.perf_counter() - t0
        page.wait(FEATURE_SHOWN.replace("CH", "17"))
        assert (live._layer_state._cache_size(), live._channel_projections._cache_size()) == sizes
        assert construct_mod._TRACES == traces
        assert warm < 10, warm
        # a corrupt upload: a clear message in the page, and the server goes on answering
        broken = tmp_path / "broken.jpg"
        broken.write_bytes(SAMPLE.read_bytes()[:600])
        page.set_files("#upload", [broken])
        msg = page.wait("document.getElementById('message').dataset.kind === 'error'"
                        " && document.getElementById('message').textContent")  # fmt: skip
        assert msg.startswith("broken.jpg is truncated or corrupt"), msg
        assert str(ex.tmp) not in msg
        page.click('#top button')
        top = page.eval("+document.querySelector('#top button').dataset.channel")
        page.wait(PROJECTIONS_SHOWN.replace("CH", str(top)))
        assert page.eval("document.getElementById('input-name').textContent") == "astronaut.jpg"


def test_live_server_answers_concurrent_requests_and_errors(live_server):
    ex, port = live_server
    image = ex.sample_id
    paths = [f"/api/channel?image={image}&layer=conv3&channel={c}" for c in range(14)]
    paths += ["/", "/api/info", f"/api/layer?image={image}&layer=conv3", f"/api/grid.png?image={image}&layer=conv3",
              f"/api/image.png?image={image}", f"/api/projection.png?image={image}&layer=conv3&channel=3&method=guided"]
    assert len(paths) == 20
    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(lambda p: _request(port, "GET", p), paths))
    assert [a[0] for a in answers] == [200] * 20, [a[2][:200] for a in answers]
    for p, (_, ctype, body) in zip(paths, answers):
        if p.startswith("/api/channel"):
            v = json.loads(body)
            assert set(v["projections"]) == {"deconv", "guided", "gradient"} and v["value"] >= 0
        elif p.endswith(".png") or ".png?" in p:
            assert ctype == "image/png" and body[:8] == b"\x89PNG\r\n\x1a\n"
    assert live._channel_projections._cache_size() >= 1

    def error(method, path, body=None, headers=None):
        status, ctype, raw = _request(port, method, path, body, headers)
        assert ctype == "application/json", raw
        return status, json.loads(raw)["error"]

    assert error("GET", "/api/layer?image=nope&layer=conv3") == (404, "unknown image 'nope'; the server keeps the "
                                                                 "last 16 images: upload it again")  # fmt: skip
    assert error("GET", f"/api/channel?image={image}&layer=conv3&channel=384") == (
        400, "channel 384 is out of range for conv3: use 0..383")
    assert error("GET", f"/api/layer?image={image}&layer=conv9")[0] == 400
    assert error("GET", "/api/channel?layer=conv3") == (400, "missing parameter: image, channel")
    assert error("GET", "/etc/passwd") == (404, "no such page: /etc/passwd")
    status, msg = error("POST", "/api/images?name=big.png", b"x" * 100_001)
    assert status == 413 and "at most 0.1 MB" in msg
    status, msg = error("POST", "/api/images?name=notes.txt", b"hello")
    assert (status, msg) == (400, "notes.txt is not an image file Pillow can read")
    assert error("GET", "/api/info", headers={"Host": "example.com"})[0] == 403  # DNS rebinding
    status, _, body = _request(port, "POST", "/api/images?name=sample.jpg", SAMPLE.read_bytes())
    assert status == 200 and json.loads(body) == {"image": image, "name": "sample.jpg"}  # same pixels, same id


def test_atlas_construct_options(capsys, tmp_path, monkeypatch):
    """`--construct` alone means every layer, `--construct L` only those; every option is checked before any work:
    no model is loaded, nothing is written, the error is one line."""

    def no_model(arch, weights):
        raise AssertionError("a bad option must be refused before the model is loaded")

    monkeypatch.setattr(cli._common, "resolve_weights", no_model)
    out = tmp_path / "o"

    def argv(layers, *extra):
        return ["atlas", "--images", str(PHOTOS), "--layer", *layers, "--out", str(out), "--weights", "random",
                "--cache-dir", "off", *extra]  # fmt: skip

    both = ["conv2", "conv5"]  # alexnet: conv2 needs 15 px, conv5 31 px; 192 and 256 channels
    cases = [(argv(both, "--construct", "--construct-size", "20"), "--construct-size 20 is too small for conv5"),
             (argv(both, "--construct-batch", "0"), "--construct-batch must be at least 1"),
             (argv(both, "--construct-steps", "0"), "--construct-steps must be at least 1"),
             (argv(both, "--channels", "0-255"), "--channels 0-255 is out of range for conv2: use 0..191"),
             (argv(["conv2"], "--construct", "conv5"), "--construct conv5: not one of the atlas's layers (conv2)")]
    for args, msg in cases:
        assert cli.main(args) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("deepvis: error: ") and msg in err[0], (args, err)
        assert not out.exists()
    # --construct conv2 alone is fine at 20 px: the next check, the existing folder, speaks
    out.mkdir()
    (out / "x").write_text("")
    assert cli.main(argv(both, "--construct", "conv2", "--construct-size", "20")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not empty; pass --overwrite" in err[0], err


def test_serve_command(tmp_path, capsys):
    """The real command in a subprocess: binds 127.0.0.1 on a free port, answers, stops on Ctrl-C and removes its
    temporary folder; bad options are one-line errors."""
    for argv, msg in ((["--port", "70000"], "--port must be in 0..65535"),
                      (["--max-upload", "0"], "--max-upload must be a positive number"),
                      (["--size", "0"], "--size must be at least 1")):  # fmt: skip
        assert cli.main(["serve", "--weights", "random", *argv]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("deepvis: error: " + msg), err
    assert cli.build_parser().parse_args(["serve"]).host == "127.0.0.1"
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp), "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "deepvis_jax", "serve", "--weights", "random", "--port", "0",
                             "--size", "64", "--cache-dir", "off"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, cwd=tmp_path)  # fmt: skip
    try:
        line = proc.stdout.readline()
        m = re.match(r"serving alexnet on http://127\.0\.0\.1:(\d+)/ \(Ctrl-C stops\)$", line.strip())
        assert m, (line, proc.stderr.read() if proc.poll() is not None else "")
        status, _, body = _request(int(m.group(1)), "GET", "/api/info")
        assert status == 200 and json.loads(body)["layers"][-1] == {"name": "conv5", "channels": 256}
        assert any(tmp.iterdir())  # the explorer's temporary folder
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130 and err.strip().splitlines()[-1] == "deepvis: interrupted"
    assert not any(tmp.iterdir())
