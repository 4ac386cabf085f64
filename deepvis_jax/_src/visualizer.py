"""The original's stateful convenience class, for notebook users: a thin layer over the functions."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from deepvis_jax._src import render
from deepvis_jax._src.optvis.construct import construct
from deepvis_jax._src.visualize import Visualization, visualize
from deepvis_jax._src.nets import Layer, Model


class Visualizer:
    """``v = Visualizer(model); v.visualize(image, 3); v.save("out/"); v.construct(3, 88)``.

    Keeps the last result (``.result``, ``.image``) and the last constructed images (``.constructed``) so they
    can be shown or saved; every computation is one of the library's functions.
    """

    def __init__(self, model: Model):
        self.model = model
        self.result: Visualization | None = None
        self.image: Any = None
        self.constructed: Any = None

    def visualize(
        self, image: Any, layer: Layer, top_k: int = 9, mode: str = "max", rank: str = "max", method: str = "deconv"
    ):
        """`dv.visualize` on one RGB image; the result is returned and kept."""
        self.result = visualize(self.model, image, layer, top_k=top_k, mode=mode, rank=rank, method=method)
        self.image = image
        return self.result

    def figures(self) -> dict:
        """PIL images of the last result: ``{"activations": grid, "projections": sheet}``."""
        r = self._last()
        return {
            "activations": render.activation_grid(r.activations),
            "projections": render.projection_sheet(r.projections, r.channels, self.image),
        }

    def show(self) -> None:
        """Display the last result's figures (inline in a notebook when IPython is there, else PIL's viewer)."""
        try:
            from IPython.display import display
        except ImportError:
            display = None
        for fig in self.figures().values():
            display(fig) if display is not None else fig.show()

    def save(self, out_dir: str | os.PathLike, overwrite: bool = False) -> list[Path]:
        """`dv.save_result` of the last result (with its input image) into `out_dir`."""
        return render.save_result(self._last(), out_dir, self.image, overwrite=overwrite)

    def construct(self, layer: Layer, filter: int | Sequence[int], **kwargs):
        """`dv.construct` for one filter (-> (S, S, 3)) or several (-> (K, S, S, 3)); images in [0, 1], kept."""
        single = isinstance(filter, int)
        images = construct(self.model, layer, [filter] if single else list(filter), **kwargs)
        self.constructed = images
        return images[0] if single else images

    def _last(self) -> Visualization:
        if self.result is None:
            raise RuntimeError("nothing to show yet: call .visualize(image, layer) first")
        return self.result
