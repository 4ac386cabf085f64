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


def test_assert_close_bounds_peak_relative_and_elementwise_errors():
    """Hand-made errors: the peak-relative error is bounded by rtol, the elementwise relative one (above the
    floor) by `elementwise`; a failure names both numbers."""
    from reference import assert_close, errors

    e = np.array([1000.0, 1.0, 1e-5, -2.0])
    a = e + np.array([1e-7, 1e-8, 1.0, 0.0])  # the 1e-5 element is off by 1 but lies below the floor
    assert errors(a, e, floor=1e-3) == pytest.approx((1.0 / 1000, 1e-8))
    assert_close(a, e, 1e-3, elementwise=1e-7)
    with pytest.raises(AssertionError, match=r"peak-relative error 0\.001 \(bound 0\.0001\)"):
        assert_close(a, e, 1e-4)
    b = e + np.array([0.0, 1e-4, 0.0, 0.0])  # 1e-7 of the peak, but 1e-4 of its own element
    assert_close(b, e, 1e-6)  # peak-relative only: passes
    with pytest.raises(AssertionError, match=r"elementwise relative error 0\.0001 where \|expected\| >= 0\.001"):
        assert_close(b, e, 1e-6, elementwise=1e-6)
    with pytest.raises(AssertionError):
        assert_close(np.array([np.nan, 1.0]), np.array([1.0, 1.0]), 1.0)
