"""A headless Chromium driven through the Chrome DevTools Protocol over a pipe (``--remote-debugging-pipe``).

What Puppeteer does with ``pipe: true``, in a few dozen lines: JSON messages ending in NUL, written to the
browser's fd 3 and read from its fd 4. No driver binary, no port, nothing downloaded; only Debian's chromium.
Used by the explorer's browser tests and by ``docs/explorer_pictures.py`` (screenshots).

    with Browser(tmp_path) as b:
        page = b.new_page(width=1280, height=800)
        page.goto("file:///.../index.html")
        page.click("a#next")
        page.wait("document.body.dataset.ready === '1'")
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class BrowserError(RuntimeError):
    pass


class Browser:
    """One headless Chromium process with a throw-away profile in `workdir`; a context manager."""

    def __init__(self, workdir: str | os.PathLike, timeout: float = 60.0):
        if CHROMIUM is None:
            raise BrowserError("chromium is not installed")
        self.timeout = timeout
        self._id = 0
        self._buf = b""
        self.events: list[dict] = []
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        profile = Path(workdir) / "chromium-profile"
        args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-quic",
                "--disable-extensions", "--mute-audio", f"--user-data-dir={profile}", "about:blank"]  # fmt: skip
        # the browser reads commands on fd 3 and writes answers on fd 4: a small Python moves the pipe's ends there
        # and execs it (a preexec_fn would make subprocess fork this process, whose JAX threads warn about it)
        move = ("import os, sys; r, w = int(sys.argv[1]), int(sys.argv[2]); os.dup2(r, 3); os.dup2(w, 4); "
                "[os.close(fd) for fd in (r, w) if fd > 4]; os.execv(sys.argv[3], sys.argv[3:])")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", move, str(to_browser_r), str(from_browser_w), *args],
            pass_fds=(to_browser_r, from_browser_w), start_new_session=True,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        os.close(to_browser_r)
        os.close(from_browser_w)

    # -- protocol --------------------------------------------------------------------------------------------

    def send(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float | None = None) -> dict:  # fmt: skip
        """Send one command and wait for its answer (events that arrive meanwhile are kept in `events`)."""
        self._id += 1
        msg: dict[str, Any] = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._to_browser, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            while b"\0" in self._buf:
                raw, self._buf = self._buf.split(b"\0", 1)
                m = json.loads(raw)
                if m.get("id") == self._id:
                    if "error" in m:
                        raise BrowserError(f"{method}: {m['error'].get('message')}")
                    return m.get("result", {})
                if "method" in m:
                    self.events.append(m)
                    del self.events[:-200]
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError(f"{method}: no answer in {timeout or self.timeout:.0f} s")
            ready, _, _ = select.select([self._from_browser], [], [], left)
            if ready:
                chunk = os.read(self._from_browser, 1 << 20)
                if not chunk:
                    raise BrowserError(f"{method}: the browser closed the pipe (exit status {self.proc.poll()})")
                self._buf += chunk

    def new_page(self, width: int = 1280, height: int = 900) -> "Page":
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        page = Page(self, session)
        page.send("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})  # fmt: skip
        return page

    def close(self) -> None:
        try:
            if self.proc.poll() is None:
                self.send("Browser.close", timeout=10)
                self.proc.wait(timeout=10)
        except (BrowserError, OSError, subprocess.TimeoutExpired):
            pass
        finally:
            if self.proc.poll() is None:  # our own process group (start_new_session): the browser and its helpers
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
            for fd in (self._to_browser, self._from_browser):
                try:
                    os.close(fd)
                except OSError:
                    pass

    def __enter__(self) -> "Browser":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Page:
    def __init__(self, browser: Browser, session: str):
        self.browser, self.session = browser, session

    def send(self, method: str, params: dict | None = None, timeout: float | None = None) -> dict:
        return self.browser.send(method, params, self.session, timeout)

    def eval(self, expression: str, timeout: float | None = None) -> Any:
        """The value of a JavaScript expression (promises are awaited); a thrown error raises BrowserError."""
        r = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True},
                      timeout)  # fmt: skip
        if "exceptionDetails" in r:
            d = r["exceptionDetails"]
            raise BrowserError(f"{expression[:80]!r}: {d.get('exception', {}).get('description') or d.get('text')}")
        return r.get("result", {}).get("value")

    def wait(self, expression: str, timeout: float = 60.0, interval: float = 0.05) -> Any:
        """Poll until `expression` is truthy; returns its value."""
        deadline = time.monotonic() + timeout
        while True:
            v = self.eval(expression)
            if v:
                return v
            if time.monotonic() > deadline:
                raise BrowserError(f"timed out after {timeout:.0f} s waiting for {expression!r}")
            time.sleep(interval)

    def goto(self, url: str, timeout: float = 60.0) -> None:
        """Navigate and wait until the page and its images have loaded."""
        r = self.send("Page.navigate", {"url": url})
        if r.get("errorText"):
            raise BrowserError(f"{url}: {r['errorText']}")
        self.wait_loaded(f"location.href === {json.dumps(url)}", timeout)

    def wait_loaded(self, where: str, timeout: float = 60.0) -> None:
        """Wait until the current document's location satisfies the JavaScript condition `where` and the document
        has finished loading (a navigation commits its new location before the document is parsed)."""
        self.wait(f"({where}) && document.readyState === 'complete'", timeout)

    def click(self, selector: str) -> None:
        """A real mouse click (pressed and released) at the centre of the first element matching `selector`."""
        box = self.eval(f"""(() => {{
            const e = document.querySelector({json.dumps(selector)});
            if (!e) return null;
            e.scrollIntoView({{block: "center", inline: "center"}});
            const r = e.getBoundingClientRect();
            return [r.left + r.width / 2, r.top + r.height / 2, r.width, r.height];
        }})()""")  # fmt: skip
        if not box or box[2] <= 0 or box[3] <= 0:
            raise BrowserError(f"nothing visible to click at {selector!r}")
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", {"type": kind, "x": box[0], "y": box[1], "button": "left",
                                                   "buttons": 1 if kind == "mousePressed" else 0,
                                                   "clickCount": 0 if kind == "mouseMoved" else 1})  # fmt: skip

    def set_files(self, selector: str, paths: list[str | os.PathLike]) -> None:
        """Choose files in an ``<input type=file>``, as a person does in the file dialog (fires its change event)."""
        root = self.send("DOM.getDocument", {"depth": 0})["root"]["nodeId"]
        node = self.send("DOM.querySelector", {"nodeId": root, "selector": selector})["nodeId"]
        if not node:
            raise BrowserError(f"no element matches {selector!r}")
        self.send("DOM.setFileInputFiles", {"nodeId": node, "files": [str(Path(p).resolve()) for p in paths]})

    def screenshot(self, path: str | os.PathLike, full_page: bool = False) -> Path:
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            params["captureBeyondViewport"] = True
        data = self.send("Page.captureScreenshot", params)["data"]
        Path(path).write_bytes(base64.b64decode(data))
        return Path(path)
