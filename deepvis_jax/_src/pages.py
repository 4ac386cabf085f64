"""Static HTML pages that open from the file system: the one page writer of `render_atlas` and the explorer's site.

Every page is written atomically (a temporary file, then `os.replace`) with relative links only, and carries a
status line that a small script fills once the page has loaded: how many of its images decoded, and which did not
(``<p id="status" data-loaded=N data-broken=M>``; the browser tests read it). No other script, no server.
"""

from __future__ import annotations

import html
import os
from pathlib import Path

STATUS_SCRIPT = """window.addEventListener("load", function () {
  var imgs = document.querySelectorAll("img"), ok = 0, broken = [];
  for (var i = 0; i < imgs.length; i++) {
    if (imgs[i].complete && imgs[i].naturalWidth > 0) ok++; else broken.push(imgs[i].getAttribute("src"));
  }
  var s = document.getElementById("status");
  s.setAttribute("data-loaded", ok); s.setAttribute("data-broken", broken.length);
  s.textContent = ok + " of " + imgs.length + " images loaded" +
    (broken.length ? "; missing: " + broken.join(", ") : "");
});"""


def write_page(path: str | os.PathLike, title: str, body: str, style: str) -> Path:
    """Write ``path``: an HTML page titled `title` (escaped here) with `body` (HTML), `style` (CSS) and the status
    line; atomically. Returns the path."""
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title><style>{style}</style></head>
<body>
{body}
<p id="status" class="muted" data-loaded="" data-broken="">loading</p>
<script>{STATUS_SCRIPT}</script>
</body></html>
"""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, path)
    return path
