"""Fixed-width batches: work cut into batches of one width, the last one padded, so one compiled program serves all.

`batches` picks the width (the one that pads the fewest slots, at most the caller's bound) and `pad_batch` pads a
batch to it by repeating its last entry. `construct` (filters), `visualize` (images), `occlusion` (occluder
positions), the atlas (images and winners) and the explorer's feature pictures (channels) all batch this way.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def batches(n: int, batch_size: int) -> tuple[int, int]:
    """(number of batches, width) for `n` items at most `batch_size` at a time.

    The width is the one among ``ceil(3/4 batch_size) .. batch_size`` (at least 2 when n >= 2, at most n) that
    pads the fewest slots in the last batch, the widest on a tie: 32 items at batch_size 5 run as 8 batches of
    4, not 7 of 5 with 3 padded slots."""
    hi = max(1, min(int(batch_size), n))
    lo = min(max(2, -(-3 * hi // 4)), hi)
    width = min(range(lo, hi + 1), key=lambda w: (-(-n // w) * w, -w))
    return -(-n // width), width


def pad_batch(items: Any, width: int) -> Any:
    """`items` (a list, a numpy or a jax array; 1 to `width` of them along the first axis) padded to `width` by
    repeating the last one. What a padded slot computes is dropped by the caller."""
    n = len(items)
    if not 1 <= n <= width:
        raise ValueError(f"a batch holds 1..{width} items, got {n}")
    if n == width:
        return items
    if isinstance(items, list):
        return items + [items[-1]] * (width - n)
    xp = np if isinstance(items, np.ndarray) else _jnp()
    return xp.concatenate([items, xp.repeat(items[-1:], width - n, axis=0)])


def _jnp():
    import jax.numpy as jnp

    return jnp
