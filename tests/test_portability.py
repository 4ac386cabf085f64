"""The float32 checks that hold on any CPU (tests/reference.py) still catch real bugs: each relaxed criterion
passes a rounding-level near-tie flip and fails a deliberately broken rule, by a wide margin."""

import copy

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import converters
import deepvis_jax as dv
from reference import (
    assert_choice,
    assert_close_up_to_near_ties,
    assert_decisions_agree,
    assert_topk_winners,
    count_flips,
    decision_margins,
    probe_signals,
    torch_model,
)

pytestmark = pytest.mark.parity


@pytest.fixture(scope="module")
def setup():
    """AlexNet (random weights) in float64, an input, conv5's switches and three signals."""
    tm64 = torch_model("alexnet").double()
    x = np.random.default_rng(0).standard_normal((1, 67, 80, 3))
    with jax.enable_x64(True):
        model = converters.from_torchvision(tm64)
        act, sw = dv.forward(model, jnp.asarray(x), "conv5")
        signals = jnp.asarray(probe_signals(act, np.random.default_rng(1)))
    return tm64, model, x, act, sw, signals


def _project(model, sw, signals, method="deconv"):
    with jax.enable_x64(True):
        return np.asarray(jax.vmap(dv.project, in_axes=(None, None, 0, None, None))(model, sw, signals, "conv5",
                                                                                     method))  # fmt: skip


def _relative_l2(a, b):
    return np.linalg.norm((a - b).reshape(len(b), -1), axis=1) / np.linalg.norm(b.reshape(len(b), -1), axis=1)


def _flip(sw, pool: int, where, value):
    """Switches with one pool's index replaced at `where` by `value`."""
    index = np.asarray(sw.pools[pool].index).copy()
    index[where] = value
    pools = list(sw.pools)
    pools[pool] = pools[pool].replace(index=jnp.asarray(index))
    return sw.replace(pools=tuple(pools))


def test_near_tie_bound_passes_one_flip_and_fails_broken_rules(setup):
    _, model, _, _, sw, signals = setup
    good = _project(model, sw, signals)
    # one switch moved, as a float32 near-tie does (the first window, in row-major order, whose move changes the
    # projections: many windows pass a rectified, zero signal): within the bound
    index = np.asarray(sw.pools[1].index)
    for where in np.argwhere(index != 0):
        one = _project(model, _flip(sw, 1, tuple(int(v) for v in where), 0), signals)
        if _relative_l2(one, good).max() > 0:
            break
    assert 0 < _relative_l2(one, good).max() < 5e-2
    flipped = _flip(sw, 1, tuple(int(v) for v in where), 0)
    assert count_flips(flipped, sw).tolist() == [1]
    assert_close_up_to_near_ties(one, good, count_flips(flipped, sw))
    # a float32-sized error on every item, 1e-3 (far under the 5e-2 a flip may cause), fails without a flip
    with pytest.raises(AssertionError, match="exceed 1e-05"):
        assert_close_up_to_near_ties(good * (1 + 1e-3), good, 0)
    # broken rules: guided instead of deconv; every switch moved to another entry of its window; reversed ties
    broken = {
        "guided rule": _project(model, sw, signals, "guided"),
        "shifted switches": _project(model, sw.replace(pools=tuple(
            p.replace(index=(p.index + 1) % (p.window * p.window)) for p in sw.pools)), signals),  # fmt: skip
        "no rectification (gradient rule)": _project(model, sw, signals, "gradient"),
    }
    for what, b in broken.items():
        err = _relative_l2(b, good)
        assert err.max() > 10 * 5e-2, (what, err)  # an order of magnitude above the bound
        with pytest.raises(AssertionError, match="relative L2"):
            assert_close_up_to_near_ties(b, good, 1, err_msg=what)  # fails even with flips counted


def test_decision_check_fails_wrong_switches_and_masks(setup):
    tm64, model, x, _, sw, _ = setup
    margins = decision_margins(tm64, x, "conv5")
    assert_decisions_agree(sw, sw, margins)  # the check itself is consistent
    ok = margins[0][0]
    where = tuple(int(v) for v in np.argwhere(ok)[0])
    with pytest.raises(AssertionError, match="pool 0"):
        assert_decisions_agree(_flip(sw, 0, where, (int(np.asarray(sw.pools[0].index)[where]) + 1) % 9), sw,
                               margins)  # fmt: skip
    relus = list(sw.relus)
    relus[2] = ~relus[2]
    with pytest.raises(AssertionError, match="relu 2"):
        assert_decisions_agree(sw.replace(relus=tuple(relus)), sw, margins)


def test_choice_check_passes_near_ties_only():
    scores = np.array([[1.0, 0.99999999, 0.5], [0.2, 0.9, 0.8]])
    assert_choice([1, 1], [0, 1], scores)  # 1.0 vs 0.99999999: a near-tie
    with pytest.raises(AssertionError, match="near-tie"):
        assert_choice([0, 2], [0, 1], scores)  # 0.9 vs 0.8: a real difference


def test_winner_check_fails_a_wrong_winner():
    rng = np.random.default_rng(0)
    act = rng.random((3, 4, 4, 2))
    flat = act.transpose(3, 0, 1, 2).reshape(2, -1)
    order = np.argsort(-flat, axis=1)[:, :3]
    values = np.take_along_axis(flat, order, 1)
    index, position = order // 16, np.stack([(order % 16) // 4, order % 4], -1)
    assert_topk_winners(act, values, index, position, values, index, position)
    wrong = index.copy()
    wrong[0, 1] = (wrong[0, 1] + 1) % 3
    with pytest.raises(AssertionError, match="activations at the winners"):
        assert_topk_winners(act, values, wrong, position, values, index, position)


def test_float32_decisions_fail_without_the_float64_ones(setup):
    """What check_float32_projections guards against: the float32 model's projections with float64's decisions
    equal torch's float64 ones elementwise, and a broken rule does not."""
    tm64, model64, x, _, sw, signals = setup
    from reference import assert_close, torch_backward

    _, ref = torch_backward(tm64, None, x, "conv5", np.asarray(signals), "deconv")
    model32 = converters.from_torchvision(copy.deepcopy(tm64).float())
    proj = jax.vmap(dv.project, in_axes=(None, None, 0, None))(model32, sw, jnp.asarray(signals, jnp.float32),
                                                                 "conv5")  # fmt: skip
    for k in range(3):
        assert_close(proj[k], ref[k], 1e-5)
    bad = jax.vmap(dv.project, in_axes=(None, None, 0, None, None))(model32, sw, jnp.asarray(signals, jnp.float32),
                                                                     "conv5", "guided")  # fmt: skip
    with pytest.raises(AssertionError):
        assert_close(bad[0], ref[0], 1e-5)
