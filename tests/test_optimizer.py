"""What the Gaussian process is told: each point's noise and unit-scaled coordinates."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from tuner.config.schema import validate_config
from tuner.config.space import SearchSpace
from tuner.optimize.acquisition import MIN_ALPHA
from tuner.optimize.optimizer import Proposer, loss_fence, observed
from tuner.study.noise import NOISE_FLOOR, PRIOR_DOF, mean_noise, pooled_variance
from tuner.study.store import TrialRecord, TrialState

from .conftest import BOWL_SPACE, NO_DATA

RAW = {
    "data": NO_DATA,
    "space": BOWL_SPACE,
    "search": {"init_points": 2, "n_iter": 10, "seed": 5},
}


def config(space=None, **search):
    return validate_config(
        {**RAW, "space": space or RAW["space"], "search": {**RAW["search"], **search}}
    )


def trial(number, point, splits=(), state=TrialState.COMPLETE, kind=None, seconds=1.0):
    loss = float(np.mean(splits)) if splits and state == TrialState.COMPLETE else None
    # A seed of its own: trials on one seed share their splits (tuner/adjustment.py).
    return TrialRecord(
        number, state, dict(point), {}, number, loss=loss, split_losses=tuple(splits),
        seconds=seconds, error_kind=kind,
    )  # fmt: skip


def var(values):
    return float(np.var(values, ddof=1))


# --- noise ---------------------------------------------------------------------------------


def test_each_point_gets_the_variance_of_its_mean_in_registration_order():
    history = [
        trial(0, {"x": 0.1}, (0.60, 0.70)),
        trial(1, {"x": 0.2}, (0.80, 0.82)),
        trial(2, {"x": 0.3}, (0.70,)),  # one split: the pooled variance
        trial(3, {"x": 0.4}, state=TrialState.FAILED, kind="diverged"),
        trial(4, {"x": 0.5}, state=TrialState.RUNNING),
        trial(5, {"x": 0.6}, state=TrialState.FAILED, kind="interrupted"),
    ]
    pooled = (var([0.60, 0.70]) + var([0.80, 0.82])) / 2
    assert pooled_variance(history) == pytest.approx(pooled)

    def moderated(own):
        return (PRIOR_DOF * pooled + own) / (PRIOR_DOF + 1) / 2

    found = observed(history)
    assert [o.point["x"] for o in found] == [0.1, 0.2, 0.3, 0.4, 0.5], "interrupted says nothing"
    assert [o.noise for o in found] == pytest.approx(
        [moderated(var([0.6, 0.7])), moderated(var([0.8, 0.82])), pooled, pooled / 2, pooled / 2]
    )
    assert found[0].noise > found[1].noise, "a point whose splits disagree is noisier"
    assert [o.target for o in found] == pytest.approx([-0.65, -0.81, -0.70, -0.81, -0.72])


def test_merged_duplicates_and_raced_trials_are_known_better():
    two = (0.60, 0.70)
    raced = (0.60, 0.70, 0.60, 0.70, 0.60, 0.70)  # same spread, three times the splits
    history = [
        trial(0, {"x": 0.1}, two),
        trial(1, {"x": 0.1}, (0.62, 0.72)),  # the same point again
        trial(2, {"x": 0.2}, two),
        trial(3, {"x": 0.3}, raced),
    ]
    pooled = pooled_variance(history)
    found = {o.point["x"]: o for o in observed(history)}
    single = mean_noise(history[0], pooled)
    assert found[0.1].noise == pytest.approx((single + mean_noise(history[1], pooled)) / 4)
    assert found[0.1].target == pytest.approx(-0.66)
    assert found[0.2].noise == pytest.approx(single)
    own = var(raced)
    expected = (PRIOR_DOF * pooled + 5 * own) / (PRIOR_DOF + 5) / 6
    assert found[0.3].noise == pytest.approx(expected)
    assert found[0.3].noise < found[0.2].noise / 2, "6 splits: much less noise than 2"


def test_a_diverged_loss_is_told_as_the_fence_of_the_losses():
    good = [0.64, 0.66, 0.68, 0.70, 0.72, 0.74, 0.80]
    history = [trial(i, {"x": i / 10}, (loss - 0.01, loss + 0.01)) for i, loss in enumerate(good)]
    history.append(trial(7, {"x": 0.7}, (29.0, 31.0)))  # diverged: a loss of 30
    history.append(trial(8, {"x": 0.8}, state=TrialState.FAILED, kind="diverged"))
    q1, q3 = np.percentile([*good, 30.0], [25, 75])
    fence = q3 + 1.5 * (q3 - q1)
    assert loss_fence(history) == pytest.approx(fence)
    assert 0.80 < fence < 1.0
    targets = [o.target for o in observed(history)]
    assert targets[:7] == pytest.approx([-v for v in good]), "the others are told as they are"
    assert targets[7:] == pytest.approx([-fence, -fence]), "the diverged one, and the failed one"
    assert loss_fence(history[:3]) == math.inf, "too few trials to tell an outlier"


def test_losses_apart_by_no_more_than_noise_are_not_fenced():
    # Q3 + 1.5 IQR alone would be 0.6625 here: the split spread (0.05) is the least spread.
    history = [trial(i, {"x": i / 10}, (v - 0.05, v + 0.05)) for i, v in
               enumerate([0.65, 0.65, 0.65, 0.67])]  # fmt: skip
    assert [o.target for o in observed(history)] == pytest.approx([-0.65, -0.65, -0.65, -0.67])


def test_one_diverged_trial_does_not_hide_the_valley_from_the_gp():
    space_cfg = {"dropout": 0.2, "learning_rate": {"low": 1e-4, "high": 0.1, "log": True},
                 "neuron_pct": 0.2, "neuron_shrink": 0.5}  # fmt: skip
    cfg = config(space_cfg, init_points=0, n_iter=20)
    space = SearchSpace(cfg.space)
    grid = np.linspace(0.0, 1.0, 201)[:, None]
    for spots in (np.linspace(0.05, 0.95, 7), np.linspace(0, 1, 9), [0.1, 0.2, 0.45, 0.6, 0.9]):
        # A valley at 0.3 of the log range; past 0.8 the network diverges (a loss of 30).
        history = []
        for i, u in enumerate(spots):
            loss = 30.0 if u > 0.8 else 0.65 + 0.3 * (u - 0.3) ** 2
            history.append(trial(i, {"learning_rate": float(u)}, (loss - 0.03, loss + 0.03)))
        optimizer = Proposer(space, cfg.search).optimizer(len(spots), history)
        acquisition = optimizer.acquisition_function
        acquisition.fit(optimizer._gp, optimizer.space)
        best = float(grid[np.argmax(acquisition.posterior(grid)[0]), 0])
        # Told 30 as is, the GP put its best mean at 0.66 to 0.79, next to the diverged region.
        assert abs(best - 0.3) < 0.1, f"spots {list(spots)}: the GP's best mean at {best}"


def test_a_point_repeated_on_the_same_splits_is_not_known_better():
    """A retried point keeps its seed: the repeat is scored on the same splits, so its error
    is the first one's again, not an independent one."""
    same = [trial(0, {"x": 0.1}, (0.60, 0.70)), trial(1, {"x": 0.1}, (0.62, 0.72))]
    same[1] = replace(same[1], seed=same[0].seed)
    other = [trial(2, {"x": 0.2}, (0.50, 0.55))]  # so that the pooled variance is shared
    pooled = pooled_variance(same + other)
    found = {o.point["x"]: o for o in observed(same + other)}
    a, b = (mean_noise(t, pooled) for t in same)
    assert found[0.1].noise == pytest.approx(((math.sqrt(a) + math.sqrt(b)) / 2) ** 2)
    assert found[0.1].noise > (a + b) / 4, "more than two independent tellings would have"
    assert found[0.1].noise >= min(a, b), "no better known than by one of them"
    assert found[0.1].target == pytest.approx(-0.66)
    # A running trial of that point on that seed measured nothing yet: its stand-in's noise
    # adds as an independent one.
    running = replace(trial(3, {"x": 0.1}, state=TrialState.RUNNING), seed=same[0].seed)
    history = [same[0], *other, running]
    pooled = pooled_variance(history)
    typical = pooled / 2
    found = {o.point["x"]: o for o in observed(history)}
    assert found[0.1].noise == pytest.approx((mean_noise(same[0], pooled) + typical) / 4)


def test_odd_split_losses_fall_back_to_the_pooled_variance_and_the_floor():
    history = [
        trial(0, {"x": 0.1}, (0.5, 0.5)),  # zero spread: the floor, not zero
        trial(1, {"x": 0.2}, (0.7, math.nan)),  # one finite split: pooled
    ]
    found = observed(history)
    assert pooled_variance(history) == 0.0
    assert [o.noise for o in found] == [NOISE_FLOOR, NOISE_FLOOR]
    assert all(o.noise > 0 for o in found)
    no_splits = [trial(0, {"x": 0.1}, (0.5,)), trial(1, {"x": 0.2}, (0.6,))]
    assert [o.noise for o in observed(no_splits)] == [None, None], "nothing tells the noise"


def _history(space, n, seed=0, seconds=lambda u: 1.0):
    rng = np.random.default_rng(seed)
    trials = []
    for number in range(n):
        point = {name: float(rng.uniform()) for name in space.names}
        u = np.array(list(point.values()))
        loss = 0.7 + 0.3 * float(np.sum((u - 0.4) ** 2))
        splits = tuple(float(v) for v in loss + rng.normal(0, 0.03, 2))
        trials.append(trial(number, point, splits, seconds=seconds(u)))
    return trials


def test_the_gp_gets_each_noise_as_its_alpha_scaled_like_its_targets():
    cfg = config()
    space = SearchSpace(cfg.space)
    history = _history(space, 12)
    history[3] = trial(3, history[3].point, state=TrialState.FAILED, kind="diverged")
    history.append(trial(12, history[5].point, (0.9, 0.95)))  # merged with trial 5
    found = observed(history)
    optimizer = Proposer(space, cfg.search).optimizer(20, history)
    acquisition = optimizer.acquisition_function
    optimizer.suggest()
    gp = acquisition.gp
    expected_rows = [[o.point[n] for n in space.names] for o in found]
    assert gp.X_train_ == pytest.approx(np.array(expected_rows)), "registration order"
    targets = np.array([o.target for o in found])
    noise = np.array([o.noise for o in found])
    assert gp.alpha == pytest.approx(np.maximum(noise / np.var(targets), MIN_ALPHA))
    assert gp.normalize_y


def test_noise_none_leaves_the_gp_as_bayes_opt_has_it():
    cfg = config(noise="none")
    space = SearchSpace(cfg.space)
    optimizer = Proposer(space, cfg.search).optimizer(20, _history(space, 8))
    assert optimizer.acquisition_function.noise is None
    optimizer.suggest()
    assert optimizer.acquisition_function.gp.alpha == MIN_ALPHA


def test_with_one_split_per_trial_the_gp_fits_a_noise_level():
    cfg = config()
    space = SearchSpace(cfg.space)
    history = [trial(t.number, t.point, t.split_losses[:1]) for t in _history(space, 10)]
    optimizer = Proposer(space, cfg.search).optimizer(20, history)
    assert optimizer.acquisition_function.noise is None
    optimizer.suggest()
    kernel = optimizer.acquisition_function.gp.kernel_
    assert "WhiteKernel" in repr(kernel) and kernel.k2.noise_level > 1e-6
    none = Proposer(space, config(noise="none").search).optimizer(20, history)
    none.suggest()
    assert "WhiteKernel" not in repr(none.acquisition_function.gp.kernel_)


def test_the_fast_posterior_equals_sklearns_predict():
    cfg = config()
    space = SearchSpace(cfg.space)
    for n in (8, 130):  # past 100 points the length scale comes from a subset
        optimizer = Proposer(space, cfg.search).optimizer(20, _history(space, n))
        acquisition = optimizer.acquisition_function
        acquisition.fit(optimizer._gp, optimizer.space)
        x = optimizer.space.random_sample(50, random_state=0)
        mean, std = acquisition.posterior(x)
        expected_mean, expected_std = acquisition.gp.predict(x, return_std=True)
        assert mean == pytest.approx(expected_mean, abs=1e-9)
        assert std == pytest.approx(expected_std, abs=1e-9)


# --- what the GP sees --------------------------------------------------------------------


def test_the_gp_sees_every_range_on_the_unit_interval_log_ones_in_log_space():
    space_cfg = {
        **RAW["space"],
        "batch_size": {"low": 8, "high": 128, "int": True, "log": True},
        "batch_norm": {"values": [False, True]},
    }
    cfg = config(space_cfg)
    space = SearchSpace(cfg.space)
    params = [
        {"dropout": 0.25, "learning_rate": 1e-3, "neuron_pct": 0.01, "neuron_shrink": 1.0,
         "batch_size": 32, "batch_norm": True},
        {"dropout": 0.0, "learning_rate": 1e-2, "neuron_pct": 0.505, "neuron_shrink": 0.01,
         "batch_size": 8, "batch_norm": False},
        {"dropout": 0.5, "learning_rate": 1e-4, "neuron_pct": 1.0, "neuron_shrink": 0.5,
         "batch_size": 128, "batch_norm": False},
    ]  # fmt: skip
    history = [trial(i, space.point(p), (0.6 + i / 10, 0.7)) for i, p in enumerate(params)]
    optimizer = Proposer(space, cfg.search).optimizer(5, history)
    suggestion = optimizer.suggest()
    x = optimizer.acquisition_function.gp.X_train_
    # Columns: dropout, learning_rate, neuron_pct, neuron_shrink, batch_size, batch_norm one-hot.
    names = list(optimizer.space.keys)
    column = {name: names.index(name) for name in names if name != "batch_norm"}
    assert x[0, column["dropout"]] == pytest.approx(0.5)
    assert x[0, column["learning_rate"]] == pytest.approx(1 / 3), "log10: -3 is a third of -4..-1"
    assert x[1, column["learning_rate"]] == pytest.approx(2 / 3)
    assert x[0, column["batch_size"]] == pytest.approx(math.log(32 / 8) / math.log(128 / 8))
    assert x[1, column["neuron_pct"]] == pytest.approx(0.5)
    assert x.min() >= 0.0 and x.max() <= 1.0
    assert sorted(np.unique(x[:, -2:])) == [0.0, 1.0], "a choice is one-hot"
    for name, coordinate in suggestion.items():
        if name != "batch_norm":
            assert 0.0 <= float(coordinate) <= 1.0
    values = space.params({k: v if isinstance(v, str) else float(v) for k, v in suggestion.items()})
    assert 1e-4 <= values["learning_rate"] <= 0.1
    assert isinstance(values["batch_size"], int) and 8 <= values["batch_size"] <= 128


# --- where it looks: allowed points, no repeats ---------------------------------------------


def _small(params):
    """Allows networks whose first layer is under 300 of 5000 neurons (neuron_pct < 0.06)."""
    return params["neuron_pct"] < 0.06


def test_every_proposal_random_or_guided_is_allowed():
    cfg = config(init_points=6, n_iter=10)
    space = SearchSpace(cfg.space)
    proposer = Proposer(space, cfg.search, _small)
    history = []
    for k in range(16):
        point = proposer.propose(k, history)
        assert _small(space.params(point)), f"proposal {k}: {space.params(point)}"
        loss = 0.6 + (point["dropout"] - 0.3) ** 2 + (point["learning_rate"] - 0.5) ** 2
        history.append(trial(k, point, (loss - 0.02, loss + 0.02)))
    plain = Proposer(space, cfg.search)
    drawn = [plain.propose(k, []) for k in range(6)]
    assert not all(_small(space.params(p)) for p in drawn), "the unconstrained draws differ"
    kept = [p for p in drawn if _small(space.params(p))]
    assert [proposer.propose(k, []) for k in range(len(kept))] == kept, "the same seeded draws"


def test_a_point_already_tried_is_not_proposed_again():
    # The best loss is at a corner of the space, where a polish ends on the bounds.
    cfg = config({"dropout": {"low": 0.0, "high": 0.5}, "learning_rate": 1e-3,
                  "neuron_pct": {"low": 0.01, "high": 1.0}, "neuron_shrink": 0.5},
                 init_points=0, n_iter=12, acquisition={"kind": "ucb", "kappa": 0.1})  # fmt: skip
    space = SearchSpace(cfg.space)
    proposer = Proposer(space, cfg.search)
    rng = np.random.default_rng(1)
    history = [
        trial(i, {"dropout": float(a), "neuron_pct": float(b)}, (0.5 + a + b,) * 2)
        for i, (a, b) in enumerate(rng.uniform(0.2, 1.0, size=(6, 2)))
    ]
    history.append(trial(6, {"dropout": 0.0, "neuron_pct": 0.0}, (0.49, 0.51)))
    seen = {tuple(sorted(t.point.items())) for t in history}
    for k in range(7, 12):
        point = proposer.propose(k, history)
        key = tuple(sorted(point.items()))
        assert key not in seen, f"proposal {k} repeats {point}"
        seen.add(key)
        value = 0.5 + point["dropout"] + point["neuron_pct"]
        history.append(trial(k, point, (value - 0.01, value + 0.01)))
