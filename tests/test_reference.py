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


def test_the_reference_cuts_torch_by_its_own_module_paths():
    """The torch reference is cut at module paths read off the torch network (hand-checked here against
    torchvision's layouts), not at deepvis_jax's layer tables; and what it returns is that module's output."""
    torch = pytest.importorskip("torch")
    import torchvision

    from reference import layer_module, run_to

    alexnet = torchvision.models.alexnet()
    with torch.device("meta"):  # the layouts only: no weights
        vgg16, vgg11_bn, resnet18 = (torchvision.models.get_model(n) for n in ("vgg16", "vgg11_bn", "resnet18"))
    assert [layer_module(alexnet, f"conv{k}") for k in range(1, 6)] == [f"features.{i}" for i in (1, 4, 7, 9, 11)]
    assert layer_module(alexnet, 3) == "features.7"
    assert [layer_module(vgg16, n) for n in ("conv1_1", "conv3_1", "conv4_3", "conv5_3")] == [
        "features.1", "features.11", "features.22", "features.29"]  # fmt: skip
    assert [layer_module(vgg11_bn, n) for n in ("conv1_1", "conv2_1", "conv3_2")] == [
        "features.2", "features.6", "features.13"]  # BatchNorm between each conv and its ReLU  # fmt: skip
    assert [layer_module(resnet18, n) for n in ("conv1", "layer2.0")] == ["relu", "layer2.0"]
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        full = alexnet.features[:8](x)  # conv1 .. conv3's ReLU by hand
        np.testing.assert_array_equal(run_to(alexnet, "conv3", x).numpy(), full.numpy())
