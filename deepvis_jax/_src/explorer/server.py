"""`deepvis serve`'s HTTP front end: the standard library's threading HTTP server over an `Explorer`.

The standard library suffices here: the app is one page (a packaged HTML file with its script) and a small
JSON/PNG API; uploads are the raw bytes of one file (the page POSTs the file itself, so no multipart parsing is
needed); each request gets a thread (`ThreadingHTTPServer`) while the `Explorer` runs one network computation at a
time. It listens on 127.0.0.1 unless told otherwise, and then also refuses requests whose Host header names
another machine (a web page elsewhere cannot reach it through DNS rebinding).

    GET  /                                        the page
    GET  /api/info                                model, layers, image size, upload limit, the sample image's id
    POST /api/images?name=FILE                    body: the file's bytes -> {"image": id, "name": FILE}
    GET  /api/image.png?image=ID                  the image as the network sees it
    GET  /api/layer?image=ID&layer=L              the activation grid's picture, cells and strongest channels
    GET  /api/grid.png?image=ID&layer=L
    GET  /api/channel?image=ID&layer=L&channel=C  the channel's strongest unit and its three projections
    GET  /api/projection.png?image=ID&layer=L&channel=C&method=M
    GET  /api/feature?layer=L&channel=C           computes the feature visualization (slow the first time)
    GET  /api/feature.png?layer=L&channel=C

Errors answer JSON ``{"error": "one line"}`` with status 400 (bad input, not an image), 404 (unknown image or
path), 411/413 (upload without a length / too large) or 500 (a bug; the traceback goes to stderr), and the
server keeps serving.
"""

from __future__ import annotations

import json
import select
import socket
import sys
import time
import traceback
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from urllib.parse import parse_qs, quote, urlsplit

from ..rules import METHODS
from .live import Cancelled, Explorer, UnknownImageError

LOOPBACK = ("127.0.0.1", "localhost", "::1")


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64  # many simultaneous connections wait in the backlog instead of being dropped

    def __init__(self, address, explorer: Explorer, *, max_upload: int, weights: str, page: bytes):
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.explorer, self.max_upload, self.weights, self.page = explorer, int(max_upload), weights, page
        self.local_only = address[0] in LOOPBACK
        super().__init__(address, Handler)


class HTTPError(Exception):
    def __init__(self, status: HTTPStatus, message: str):
        super().__init__(message)
        self.status = status


def _q(**params) -> str:
    return "&".join(f"{k}={quote(str(v), safe='')}" for k, v in params.items())


class Handler(BaseHTTPRequestHandler):
    server: Server
    protocol_version = "HTTP/1.1"
    server_version = "deepvis"
    timeout = 60  # seconds a client may stall while sending

    # -- plumbing --------------------------------------------------------------------------------------------

    def log_request(self, code="-", size="-") -> None:  # only failures are worth a line
        if isinstance(code, int) and code >= 400:
            super().log_request(code, size)

    def _send(self, status: int, body: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, obj, status: int = 200) -> None:
        self._send(status, json.dumps(obj).encode(), "application/json")

    def _params(self) -> dict[str, str]:
        return {k: v[-1] for k, v in parse_qs(urlsplit(self.path).query).items()}

    @staticmethod
    def _need(params: dict, *names: str) -> list[str]:
        missing = [n for n in names if n not in params]
        if missing:
            raise HTTPError(HTTPStatus.BAD_REQUEST, f"missing parameter: {', '.join(missing)}")
        return [params[n] for n in names]

    def _host_ok(self) -> bool:
        if not self.server.local_only:
            return True
        host = (self.headers.get("Host") or "").strip().lower()
        name = host.rsplit(":", 1)[0] if not host.startswith("[") else host[1:].split("]", 1)[0]
        return name in LOOPBACK

    def _dispatch(self, routes: dict) -> None:
        try:
            if not self._host_ok():
                raise HTTPError(HTTPStatus.FORBIDDEN, "this server answers requests to 127.0.0.1 / localhost only")
            route = routes.get(urlsplit(self.path).path)
            if route is None:
                raise HTTPError(HTTPStatus.NOT_FOUND, f"no such page: {urlsplit(self.path).path}")
            route()
        except HTTPError as e:
            self._json({"error": str(e)}, e.status)
        except UnknownImageError as e:  # an image id the server does not hold (any more)
            self._json({"error": str(e)}, HTTPStatus.NOT_FOUND)
        except ValueError as e:  # bad input: layer, channel, method, an upload that is not an image (ImageError)
            self._json({"error": " ".join(str(e).split())}, HTTPStatus.BAD_REQUEST)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as e:  # a bug: say so in one line, keep serving
            traceback.print_exc(file=sys.stderr)
            self._json({"error": f"internal error ({type(e).__name__}: {' '.join(str(e).split())[:200]})"},
                       HTTPStatus.INTERNAL_SERVER_ERROR)  # fmt: skip

    def do_GET(self) -> None:
        self._dispatch({
            "/": self.page, "/index.html": self.page, "/api/info": self.info, "/api/image.png": self.image_png,
            "/api/layer": self.layer, "/api/grid.png": self.grid_png, "/api/channel": self.channel,
            "/api/projection.png": self.projection_png, "/api/feature": self.feature,
            "/api/feature.png": self.feature_png, "/api/classes": self.classes, "/api/gradcam.png": self.gradcam_png,
        })  # fmt: skip

    def do_POST(self) -> None:
        self._dispatch({"/api/images": self.upload})

    # -- routes ----------------------------------------------------------------------------------------------

    def page(self) -> None:
        self._send(200, self.server.page, "text/html; charset=utf-8")

    def info(self) -> None:
        ex = self.server.explorer
        from ..nets import layer_channels

        self._json({
            "model": ex.model.arch.name, "weights": self.server.weights, "size": ex.size,
            "layers": [{"name": n, "channels": layer_channels(ex.model, n)} for n in ex.layers],
            "max_upload": self.server.max_upload, "sample": ex.sample_id, "sample_name": ex.names[ex.sample_id],
            "construct": {"size": ex.construct_size, "steps": ex.construct_steps}, "methods": list(METHODS),
        })  # fmt: skip

    def upload(self) -> None:
        length = self.headers.get("Content-Length")
        if length is None or not length.strip().isdigit():
            self.close_connection = True
            raise HTTPError(HTTPStatus.LENGTH_REQUIRED, "an upload needs a Content-Length")
        n = int(length)
        limit = self.server.max_upload
        if n > limit:
            self.close_connection = True  # the body is not read
            raise HTTPError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                            f"the file is {n / 1e6:.1f} MB; this server takes uploads of at most {limit / 1e6:g} MB "
                            "(deepvis serve --max-upload)")  # fmt: skip
        if n == 0:
            raise ValueError("the upload is empty")
        data = self.rfile.read(n)
        if len(data) != n:
            self.close_connection = True
            raise HTTPError(HTTPStatus.BAD_REQUEST, f"the upload ended after {len(data)} of {n} bytes")
        name = self._params().get("name", "upload")
        ex = self.server.explorer
        image_id = ex.add_upload(data, name)
        self._json({"image": image_id, "name": ex.names[image_id]})

    def image_png(self) -> None:
        (image_id,) = self._need(self._params(), "image")
        self._send(200, self.server.explorer.image_png(image_id), "image/png")

    def layer(self) -> None:
        image_id, layer = self._need(self._params(), "image", "layer")
        v = self.server.explorer.layer(image_id, layer)
        self._json({
            "image": image_id, "layer": v.layer, "channels": v.channels, "map": list(v.map_hw),
            "grid": {"url": f"/api/grid.png?{_q(image=image_id, layer=v.layer)}", "height": v.grid_hw[0],
                     "width": v.grid_hw[1]},
            "cells": [list(c) for c in v.cells], "top": [[c, round(a, 4)] for c, a in v.top],
        })  # fmt: skip

    def grid_png(self) -> None:
        image_id, layer = self._need(self._params(), "image", "layer")
        self._send(200, self.server.explorer.layer(image_id, layer).grid_png, "image/png")

    def channel(self) -> None:
        image_id, layer, channel = self._need(self._params(), "image", "layer", "channel")
        ex = self.server.explorer
        t0 = time.perf_counter()
        v = ex.channel(image_id, layer, channel)
        ms = (time.perf_counter() - t0) * 1e3
        q = _q(image=image_id, layer=v.layer, channel=v.channel)
        self._json({
            "layer": v.layer, "channel": v.channel, "value": v.value, "position": list(v.position),
            "projections": {m: f"/api/projection.png?{q}&method={m}" for m in v.projections}, "ms": round(ms, 1),
            "feature": {"url": f"/api/feature.png?{_q(layer=v.layer, channel=v.channel)}",
                        "ready": ex.feature_ready(v.layer, v.channel)},
        })  # fmt: skip

    def projection_png(self) -> None:
        image_id, layer, channel, method = self._need(self._params(), "image", "layer", "channel", "method")
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; use one of: {', '.join(METHODS)}")
        self._send(200, self.server.explorer.channel(image_id, layer, channel).projections[method], "image/png")

    def _client_gone(self) -> bool:
        """Whether the client closed its connection (it sends nothing else while it waits for this answer)."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def feature(self) -> None:
        layer, channel = self._need(self._params(), "layer", "channel")
        ex = self.server.explorer
        try:
            ex.feature(layer, channel, cancelled=self._client_gone)
        except Cancelled:
            self.close_connection = True
            return
        name = ex.layer_name(layer)
        c = ex.channel_index(name, channel)
        self._json({"url": f"/api/feature.png?{_q(layer=name, channel=c)}",
                    "ms": round(ex.feature_seconds.get((name, c), 0.0) * 1e3, 1)})  # fmt: skip

    def feature_png(self) -> None:
        layer, channel = self._need(self._params(), "layer", "channel")
        self._send(200, self.server.explorer.feature(layer, channel), "image/png")


    # Grad-CAM of a chosen class beside the projections (gradcam.py)

    def classes(self) -> None:
        from . import gradcam

        (image_id,) = self._need(self._params(), "image")
        self._json({"classes": [{"class": c, "p": round(p, 4), "name": n}
                                for c, p, n in gradcam.classes(self.server.explorer, image_id)]})  # fmt: skip

    def gradcam_png(self) -> None:
        from . import gradcam

        image_id, layer, cls = self._need(self._params(), "image", "layer", "class")
        self._send(200, gradcam.grad_cam_png(self.server.explorer, image_id, layer, cls), "image/png")


def page_html() -> bytes:
    return (resources.files("deepvis_jax") / "data" / "explorer.html").read_bytes()


def make_server(explorer: Explorer, host: str = "127.0.0.1", port: int = 8000, *, max_upload: int = 20_000_000,
                weights: str = "") -> Server:  # fmt: skip
    """A server bound to (host, port) (port 0: a free one, see ``server.server_address``); not yet serving."""
    return Server((host, port), explorer, max_upload=max_upload, weights=weights, page=page_html())


def serve(httpd: Server) -> None:
    """Serve until interrupted; then close the socket and remove the explorer's temporary folder."""
    try:
        httpd.serve_forever(poll_interval=0.25)
    finally:
        httpd.server_close()
        httpd.explorer.close()
