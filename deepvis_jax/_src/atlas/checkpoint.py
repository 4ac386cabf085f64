"""The atlas's checkpoint: the running top-k, how many images it has counted, and what the run is made of.

Written atomically (``.npz``, a temporary file then `os.replace`). Its record -- the architecture, a digest of the
weights, the layer, k, the image size and, for a folder, the number of files and a digest of their paths and sizes -- must equal the resuming run's, or `load_state` refuses in one line naming what differs: a resume
never merges two runs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..digest import files_digest
from .topk import TopK

STATE_VERSION = 2


def run_record(model_name: str, weights: str, layer: str, k: int, image_shape, folder=None) -> dict:
    """What a checkpoint must agree on to be resumed (`folder`: the `sources.Folder` a folder run reads)."""
    record = {"model": model_name, "weights": weights, "layer": layer, "top_k": int(k),
              "image_shape": [int(s) for s in image_shape]}  # fmt: skip
    if folder is not None:
        record["files"] = f"{len(folder.files)} files, digest {files_digest(folder.files, folder.root)}"
    return record


def save_state(path: str | os.PathLike, state: TopK, consumed: int, meta: dict) -> None:
    """Write the running top-k atomically (a temporary file in the same folder, then `os.replace`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.savez(f, values=np.asarray(state.values), index=np.asarray(state.index),
                 position=np.asarray(state.position), consumed=np.int64(consumed),
                 meta=np.asarray(json.dumps({**meta, "version": STATE_VERSION})))  # fmt: skip
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def saved_record(path: str | os.PathLike) -> dict:
    """The record a checkpoint was written with (without its version)."""
    with np.load(path, allow_pickle=False) as z:
        saved = json.loads(str(z["meta"]))
    saved.pop("version", None)
    return saved


def load_state(path: str | os.PathLike, meta: dict) -> tuple[TopK, int]:
    """Read a checkpoint written by `save_state`; ValueError if it belongs to another run (model, weights, layer,
    k, image size, files)."""
    with np.load(path, allow_pickle=False) as z:
        saved = json.loads(str(z["meta"]))
        version = saved.pop("version", None)
        if version != STATE_VERSION:
            raise ValueError(f"checkpoint {path} was written by another version of deepvis_jax (format {version}, "
                             f"this one reads {STATE_VERSION}); delete it or start without resume")  # fmt: skip
        if saved != meta:
            keys = [k for k in meta if saved.get(k) != meta[k]] + [k for k in saved if k not in meta]
            diff = ", ".join(f"{k}: {saved.get(k)!r} there, {meta.get(k)!r} here" for k in keys)
            raise ValueError(f"checkpoint {path} is from another atlas run ({diff}); delete it or start without resume")
        return TopK(z["values"], z["index"], z["position"]), int(z["consumed"])
