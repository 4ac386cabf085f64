"""The comparison helpers of tests/reference.py (and the op comparison of test_graph_ops) on hand-made cases: each
compares every item it is given, reports the errors it bounds, and fails what it must fail."""

from __future__ import annotations

import numpy as np
import pytest

import deepvis_jax as dv
from reference import assert_decisions_agree
from test_graph_ops import _compare


def _switches(n_relus: int) -> dv.Switches:
    pool = dv.PoolSwitches(index=np.zeros((1, 2, 2, 1), np.int32), in_hw=(4, 4), window=2, stride=2)
    return dv.Switches(pools=(pool,), input_hw=(4, 4), relus=tuple(np.ones((1, 4, 4, 1), bool) for _ in range(n_relus)))


def test_paired_comparisons_check_lengths():
    """A comparison of two lists of different lengths fails instead of comparing the shorter one's items only."""
    torch = pytest.importorskip("torch")
    ok = (np.ones((1, 2, 2, 1), bool),)
    margins = (ok, (np.ones((1, 4, 4, 1), bool),) * 2)
    assert_decisions_agree(_switches(2), _switches(2), margins)
    with pytest.raises((AssertionError, ValueError)):
        assert_decisions_agree(_switches(2), _switches(1), margins)  # one ReLU mask missing
    with pytest.raises((AssertionError, ValueError)):
        assert_decisions_agree(_switches(1), _switches(1), margins)  # a margin with no mask
    t = torch.arange(4.0, dtype=torch.float64).reshape(1, 1, 2, 2)
    _compare([np.asarray(t)], [t], "pair")
    with pytest.raises((AssertionError, ValueError)):
        _compare([np.asarray(t)], [t, t], "pair")  # an output missing
