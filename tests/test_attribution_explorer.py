"""The live explorer's Grad-CAM panel (issue 31), in headless Chromium as tests/test_explorer.py drives the app:
a click on one of the image's top classes shows that class's Grad-CAM at the layer on screen, and the picture the
page loads equals `overlay` of the library's Grad-CAM of that class, upsampled, pixel for pixel. Another class
compiles nothing; a bad class is a one-line 400."""

from __future__ import annotations

import io
import json
import threading

import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

import deepvis_jax as dv
from deepvis_jax._src.attribution import methods as attribution_methods
from deepvis_jax._src.explorer import live, server

from browser import CHROMIUM, Browser
from test_explorer import _request

A = dv.attribution


@pytest.fixture(scope="module")
def model():
    return dv.load_model("alexnet", weights=None, seed=0)


@pytest.fixture
def live_server(model, tmp_path):
    ex = live.Explorer(model, size=64, construct_size=32, construct_steps=1, tmpdir=tmp_path)
    httpd = server.make_server(ex, "127.0.0.1", 0, max_upload=100_000, weights="random")
    thread = threading.Thread(target=server.serve, args=(httpd,), daemon=True)
    thread.start()
    yield ex, httpd.server_address[1]
    httpd.shutdown()
    thread.join(timeout=30)


def _expected(model, image, layer, c):
    x = dv.normalize(jnp.asarray(image[None], model.dtype) / 255)
    cam = A.grad_cam(model, x, jnp.asarray([c], jnp.int32), layer=layer)
    return A.overlay(image, np.asarray(A.upsample(cam, image.shape[:2]))[0])


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_live_click_on_a_class_shows_its_grad_cam(live_server, model, tmp_path):
    ex, port = live_server
    with Browser(tmp_path) as b:
        page = b.new_page(1280, 900)
        page.goto(f"http://127.0.0.1:{port}/")
        page.wait("document.body.dataset.ready === '1' && document.querySelectorAll('#classes button').length === 5")
        layer = page.eval("document.body.dataset.layer")
        shown = page.eval("[...document.querySelectorAll('#classes button')].map(b => +b.dataset.class)")
        image = ex.image(ex.sample_id)
        logits = np.asarray(dv.classify(model, dv.normalize(jnp.asarray(image[None], model.dtype) / 255)))[0]
        assert shown == np.argsort(-logits, kind="stable")[:5].tolist()  # the top classes, best first
        for c in shown[2:4]:  # click the third, then the fourth class
            page.click(f'#classes button[data-class="{c}"]')
            src = page.wait("(() => { const i = document.getElementById('gradcam');"
                            f" return i.complete && i.naturalWidth > 0 && i.src.includes('class={c}') && i.src; }})()")
            assert f"layer={layer}" in src
            assert page.eval("document.getElementById('gradcam-caption').textContent") == (
                f"Grad-CAM of class {c} at {layer}")
            if c == shown[2]:
                compiled = attribution_methods._layer_gradients._cache_size()
            # the picture the page loaded: the library's Grad-CAM of class c over the image
            status, ctype, body = _request(port, "GET", src[src.index("/api/"):])
            assert (status, ctype) == (200, "image/png")
            np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(body))), _expected(model, image, layer, c))
        assert attribution_methods._layer_gradients._cache_size() == compiled  # another class compiled nothing
    status, _, body = _request(port, "GET", f"/api/gradcam.png?image={ex.sample_id}&layer=conv3&class=1000")
    assert (status, json.loads(body)) == (400, {"error": "class 1000 is out of range: alexnet has classes 0..999"})
