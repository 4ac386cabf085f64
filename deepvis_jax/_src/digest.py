"""Digests that say what a saved result was made from: a model's weights, a folder's files."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Sequence

import jax
import numpy as np


def weights_digest(model) -> str:
    """A digest of every parameter's bytes, shape and dtype (a result is valid only for these weights)."""
    h = hashlib.blake2b(digest_size=16)
    for path, leaf in jax.tree_util.tree_leaves_with_path(model.variables):
        a = np.ascontiguousarray(np.asarray(leaf))
        h.update(f"{jax.tree_util.keystr(path)}:{a.dtype}:{a.shape};".encode())
        h.update(memoryview(a).cast("B"))
    return h.hexdigest()


def files_digest(files: Sequence[str | os.PathLike], root: str | os.PathLike) -> str:
    """A digest of the files' paths (relative to `root`) and sizes, in order: it changes when a file is added,
    removed, renamed or changes size (not when a folder is copied, which changes modification times)."""
    h = hashlib.blake2b(digest_size=16)
    for f in files:
        h.update(f"{Path(os.path.relpath(f, root)).as_posix()}:{os.stat(f).st_size};".encode())
    return h.hexdigest()
