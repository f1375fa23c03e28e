"""Trials adjusted for the difficulty of their splits (tuner/adjustment.py)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from tests.objectives import bowl_loss
from tuner.config.schema import load_config
from tuner.optimize.optimizer import observed
from tuner.outputs.progress import QuietReporter
from tuner.search.api import search
from tuner.search.racing import _appended
from tuner.study.adjustment import SOUND_RATIO, Adjustment, Group, comparable, fit
from tuner.study.records import TrialRecord, TrialState
from tuner.study.store import Storage, sqlite_url
from tuner.study.winner import ranked, winner
from tuner.training.data import load_dataset
from tuner.training.difficulty import baseline_losses
from tuner.training.evaluate import evaluate_point


def trial(number: int, losses, baselines=(), state=TrialState.COMPLETE) -> TrialRecord:
    return TrialRecord(
        number=number,
        id=number + 1,
        state=state,
        point={"x": float(number)},
        params={"x": float(number)},
        seed=number,
        loss=float(np.mean(losses)) if len(losses) else None,
        loss_std=float(np.std(losses, ddof=1)) if len(losses) > 1 else 0.0,
        split_losses=tuple(float(x) for x in losses),
        baselines=tuple(float(x) for x in baselines),
    )


def test_no_adjustment_without_baselines_or_below_eight_degrees_of_freedom():
    assert fit([trial(i, (0.6, 0.7 + i / 100)) for i in range(10)]) is None, "no baselines"
    seven = [trial(i, (0.6 + i / 100, 0.7 + i / 100), (0.65, 0.75)) for i in range(7)]
    single = [trial(7 + i, (0.6,), (0.65,)) for i in range(3)]
    assert fit(seven + single) is None and comparable(seven) == seven, "7 dof: plain means"
    eight = [*seven, trial(7, (0.6, 0.7), (0.65, 0.75))]
    found = fit(eight)
    assert found is not None and found.pairs == 16 and found.slope == pytest.approx(1.0)


def test_each_split_loss_moves_by_its_baselines_distance_from_the_reference():
    trials = [trial(i, (0.60 + i / 100, 0.64 + i / 100), (0.68, 0.70)) for i in range(6)]
    trials += [trial(6, (0.50, 0.58), (0.70, 0.74)), trial(7, (0.70, 0.72), (0.66, 0.68))]
    found = fit(trials)
    # Within each trial the loss moves 2x the baseline (0.04 per 0.02) and 2x (0.08 per 0.04)
    # and 1x (0.02 per 0.02): pooled slope (6*0.02*0.04+0.04*0.08+0.02*0.02)/(6*4e-4+16e-4+4e-4)
    assert found.slope == pytest.approx((6 * 8e-4 + 32e-4 + 4e-4) / (24e-4 + 16e-4 + 4e-4))
    reference = np.mean([b for t in trials for b in t.baselines])
    assert found.reference == pytest.approx(reference)
    adjusted = comparable(trials)
    last = adjusted[7]
    pairs = zip((0.70, 0.72), (0.66, 0.68), strict=True)
    expected = [x - found.slope * (b - reference) for x, b in pairs]
    assert last.split_losses == pytest.approx(expected)
    assert last.loss == pytest.approx(np.mean(expected)) and last.raw_loss == pytest.approx(0.71)
    assert last.loss_std == pytest.approx(np.std(expected, ddof=1))
    assert comparable(adjusted) == adjusted, "adjusting twice changes nothing"


def test_broken_trials_do_not_bend_the_slope_and_others_stay_plain():
    sound = [trial(i, (0.60 + i / 100, 0.64 + i / 100), (0.68, 0.72)) for i in range(8)]
    broken = trial(8, (4.0, 1.0), (0.68, 0.72))  # diverged: far over SOUND_RATIO x baseline
    assert broken.loss > SOUND_RATIO * 0.70
    failed = trial(9, (), (), state=TrialState.FAILED)
    one_missing = trial(10, (0.6, 0.7), (0.68,))
    found = fit([*sound, broken, failed, one_missing])
    assert found is not None and found.slope == pytest.approx(1.0) and found.pairs == 16
    adjusted = comparable([*sound, broken, failed, one_missing])
    assert adjusted[9] == failed, "not scored: as it is"
    assert adjusted[10].split_losses == one_missing.split_losses, "nothing to adjust it by"
    assert adjusted[8].raw_loss == broken.loss, "the broken trial is adjusted all the same"


def test_adjusted_losses_rank_points_closer_to_their_truth():
    """Synthetic studies shaped like the course's data: each split's difficulty (sd 0.045) is
    shared by the networks and, less exactly, by the baseline (correlation 0.9 with one
    network's split loss). Adjusted means are far closer to each point's true loss, and the
    best-ranked point is a truly better one more often."""
    rng = np.random.default_rng(0)
    raw_error, adjusted_error, raw_pick, adjusted_pick = [], [], [], []
    for _ in range(300):
        truth = rng.uniform(0.64, 0.70, 30)
        difficulty = rng.normal(0, 0.045, (30, 2))
        losses = truth[:, None] + difficulty + rng.normal(0, 0.015, (30, 2))
        baselines = 0.70 + difficulty + rng.normal(0, 0.012, (30, 2))
        trials = [trial(i, losses[i], baselines[i]) for i in range(30)]
        adjusted = comparable(trials)
        raw = np.array([t.loss for t in trials])
        new = np.array([t.loss for t in adjusted])
        raw_error.append(np.std((raw - raw.mean()) - (truth - truth.mean())))
        adjusted_error.append(np.std((new - new.mean()) - (truth - truth.mean())))
        raw_pick.append(truth[np.argmin(raw)])
        adjusted_pick.append(truth[ranked(trials)[0].number])
    assert np.mean(adjusted_error) < 0.5 * np.mean(raw_error)
    assert np.mean(adjusted_pick) < np.mean(raw_pick) - 0.005


def test_the_optimiser_is_told_the_adjusted_values_and_their_noise():
    trials = [trial(i, (0.60 + i / 100, 0.64 + i / 100), (0.68, 0.72)) for i in range(8)]
    hard = trial(8, (0.70, 0.74), (0.78, 0.82))  # its splits are hard, not its point
    told = {o.point["x"]: o for o in observed([*trials, hard])}
    adjusted = comparable([*trials, hard])[8]
    assert told[8.0].target == pytest.approx(-adjusted.loss)
    assert adjusted.loss < hard.loss - 0.05 and -told[8.0].target < trials[2].loss
    # Slope 1 and the same distance on both splits: nothing is left of the split spread.
    assert adjusted.loss_std == pytest.approx(0.0, abs=1e-12)
    assert told[8.0].noise == pytest.approx(told[0.0].noise)


def test_a_raced_score_keeps_a_baseline_per_split():
    first = evaluate_like((0.6, 0.7), (0.68, 0.72))
    more = evaluate_like((0.65, 0.66), (0.70, 0.71))
    joined = _appended(first, more, 99)
    assert joined.split_losses == (0.6, 0.7, 0.65, 0.66)
    assert joined.baselines == (0.68, 0.72, 0.70, 0.71)
    assert _appended(first, replace(more, baselines=()), 99).baselines == ()


def evaluate_like(losses, baselines):
    from tuner.training.evaluate import Score

    return Score(float(np.mean(losses)), 0.0, tuple(losses), (1, 1), 0.0, baselines=baselines)


def test_the_evaluator_measures_the_baseline_on_the_splits_it_trains_on(write_config):
    off = load_config(write_config())
    assert off.search.comparison == "plain", "the default"
    dataset = load_dataset(off.data)
    params = {"dropout": 0.1, "learning_rate": 0.01, "neuron_pct": 0.01, "neuron_shrink": 0.5}
    assert evaluate_point(off, dataset, params, 17).baselines == ()
    config = load_config(write_config(search={"comparison": "adjusted"}))
    score = evaluate_point(config, dataset, params, 17)
    expected = baseline_losses(dataset, 17, 2, config.evaluation.test_size)
    assert score.baselines == pytest.approx(expected, rel=1e-6)


def test_a_search_compares_trials_adjusted_and_keeps_the_measured_losses(write_config, tmp_path):
    """Split losses that are a point's bowl plus the baseline's loss on each split: adjusted,
    every trial's loss is its bowl plus one common reference, exactly, whatever its splits;
    the study keeps the plain losses and the baselines, raced rounds included."""
    path = write_config(
        search={"init_points": 5, "n_iter": 5, "race_top": 2, "race_splits": 4},
        evaluation={"splits": 2},
    )
    url = sqlite_url(tmp_path / "study.db")
    search(
        load_config(path),
        storage_url=url,
        study_name="s",
        resume=False,
        reporter=QuietReporter(),
        factory="tests.objectives:follows_measured_baseline",
    )
    storage = Storage(url)
    stored = storage.trials(storage.get_study("s"))
    storage.close()
    done = [t for t in stored if t.state == TrialState.COMPLETE]
    assert all(len(t.baselines) == len(t.split_losses) for t in done)
    assert any(len(t.split_losses) == 4 for t in done), "a raced trial"
    for t in done:
        assert t.raw_loss is None and t.loss == pytest.approx(np.mean(t.split_losses))
    adjusted = comparable(stored)
    reference = np.mean([b for t in done for b in t.baselines])
    for t in adjusted:
        if t.state == TrialState.COMPLETE:
            assert t.loss == pytest.approx(bowl_loss(t.params) + reference, abs=1e-9)
    order = ranked(stored)
    assert [bowl_loss(t.params) for t in order] == sorted(bowl_loss(t.params) for t in order)


def test_adjustment_record_is_what_comparable_applies():
    found = Adjustment(slope=0.5, reference=0.7, pairs=10)
    assert found.split_losses((0.6, 0.8), (0.8, 0.6), 1) == pytest.approx((0.55, 0.85))
    assert found.loss((0.6, 0.8), (0.8, 0.6), 1) == pytest.approx(0.7)
    # Seed 1's first 2 splits are shared by trials 5, 6 and 7, whose losses there sum to
    # (1.8, 2.1): effects (-0.05, +0.05), or, leaving trial 5's own (0.6, 0.8) out, (-0.025,
    # +0.025). Its rounds are moved by the group's offset, everything by its shift.
    group = Group(2, (1.8, 2.1), frozenset({5, 6, 7}), offset=0.01, shift=0.002)
    common = Adjustment(slope=0.5, reference=0.7, pairs=10, groups={1: group})
    losses, baselines = (0.6, 0.8, 0.7, 0.7), (0.8, 0.6, 0.9, 0.5)
    expected = np.array((0.65, 0.75, 0.61, 0.81)) - 0.002
    assert common.split_losses(losses, baselines, 1) == pytest.approx(expected)
    loo = np.array((0.625, 0.775, 0.61, 0.81)) - 0.002
    assert common.split_losses(losses, baselines, 1, trial_id=5) == pytest.approx(loo)
    assert common.split_losses(losses, baselines, 2) == pytest.approx((0.55, 0.85, 0.6, 0.8))


def test_splits_that_trials_share_are_centred_by_their_mean_over_those_trials():
    """Trials on one seed's splits (`comparison: common`): each shared split's effect comes from
    the trials themselves (no baseline needed), which leaves their plain means and takes the
    splits' shared spread out of each trial's; a raced trial's own rounds are put on the shared
    splits' scale by the baseline's slope, fitted on own splits only."""
    levels = [0.60, 0.62, 0.64, 0.66]
    shared = [trial(i, (x + 0.05, x - 0.05), (0.75, 0.65)) for i, x in enumerate(levels)]
    shared = [replace(t, seed=7) for t in shared]
    found = fit(shared)
    assert found.groups[7].count == 2 and found.slope == 0.0
    assert found.groups[7].sums == pytest.approx((sum(levels) + 0.2, sum(levels) - 0.2))
    assert found.reference == pytest.approx(0.70), "the shared splits' baseline mean"
    for before, after in zip(shared, comparable(shared), strict=True):
        assert after.loss == pytest.approx(before.loss) and after.loss_std == pytest.approx(0)
    # Raced trials at 0.60 on the shared splits: rounds of their own, each on splits 0.1 harder
    # for the baseline and them, and 0.03 harder for them than the baseline says.
    rounds = [(0.1 * (i % 2), 0.1 * (i % 2) + 0.02) for i in range(8)]
    raced = [
        replace(
            trial(10 + i, (0.65, 0.55, 0.73 + a, 0.73 + b), (0.75, 0.65, 0.80 + a, 0.80 + b)),
            seed=7,
            race_seeds=(100 + i,),
        )
        for i, (a, b) in enumerate(rounds)
    ]
    found = fit(shared + raced)
    assert found.slope == pytest.approx(1.0) and found.pairs == 16
    assert found.groups[7].offset == pytest.approx(-0.03)
    adjusted = comparable(shared + raced)[4:]
    # The rounds on the shared splits' scale: the trial's level there, 0.60.
    assert all(t.loss == pytest.approx(0.60) for t in adjusted)
    assert all(t.raw_split_losses == r.split_losses for t, r in zip(adjusted, raced, strict=True))


def test_a_search_time_winner_on_shared_splits_counts_their_difficulty_in_its_se():
    """On shared splits 0.1 apart the adjusted split losses agree exactly, but the winner's
    level is still that of two splits' difficulty: its se is the effects' spread over two,
    not 0; without shared splits nothing is added."""
    levels = [0.60, 0.62, 0.64, 0.66]
    shared = [replace(trial(i, (x + 0.05, x - 0.05)), seed=7) for i, x in enumerate(levels)]
    found = fit(shared)
    assert found.main == 7
    assert found.level_variance == pytest.approx(np.var([0.05, -0.05], ddof=1) / 2)
    best = winner(shared)
    assert best.trial.number == 0 and best.trial.loss_std == pytest.approx(0, abs=1e-12)
    assert best.loss_se == pytest.approx(0.05)
    own = [trial(i, (0.6 + i / 100, 0.7 + i / 100), (0.65, 0.75)) for i in range(8)]
    assert fit(own).main is None and fit(own).level_variance == 0.0
    best = winner(own)
    assert best.loss_se == pytest.approx(best.loss_std / np.sqrt(2))


def test_raced_trials_on_common_splits_are_not_shifted_against_unraced_ones():
    """Common splits that are hard (+0.05 for the networks, only +0.02 for the baseline): a
    raced trial's rounds on typical splits would make it look 0.02 better than an unraced twin
    of the same level, were they only adjusted by the baseline. The offset takes that out."""
    rng = np.random.default_rng(3)
    trials = []
    for i in range(40):
        level = rng.uniform(0.60, 0.70)
        base = level + 0.05 + rng.normal(0, 0.01, 2)
        record = trial(i, base, (0.72, 0.72))
        if i % 2:
            hard = rng.normal(0, 0.05, 4)
            rounds = level + hard + rng.normal(0, 0.01, 4)
            losses, baselines = (*base, *rounds), (0.72, 0.72, *(0.70 + hard))
            record = replace(trial(i, losses, baselines), race_seeds=(1000 + i, 2000 + i))
        trials.append(replace(record, seed=9, params={"level": level}))
    adjusted = comparable(trials)
    gaps = [t.loss - t.params["level"] for t in adjusted]
    raced, unraced = np.mean(gaps[1::2]), np.mean(gaps[::2])
    assert raced == pytest.approx(unraced, abs=0.004)
    plain = [np.mean(t.split_losses) - t.params["level"] for t in trials]
    assert np.mean(plain[::2]) - np.mean(plain[1::2]) > 0.02, "the bias taken out"


def test_common_comparison_scores_every_trial_on_the_same_splits(write_config, tmp_path):
    """`comparison: common`: every trial's own splits (and weight seeds) are the same, so its
    baselines there are too; racing rounds stay each trial's own, adjusted like any split."""
    path = write_config(
        search={
            "init_points": 5,
            "n_iter": 7,
            "race_top": 2,
            "race_splits": 6,
            "comparison": "common",
        },
    )
    url = sqlite_url(tmp_path / "study.db")
    search(
        load_config(path),
        storage_url=url,
        study_name="s",
        resume=False,
        reporter=QuietReporter(),
        factory="tests.objectives:follows_measured_baseline",
    )
    storage = Storage(url)
    stored = storage.trials(storage.get_study("s"))
    storage.close()
    done = [t for t in stored if t.state == TrialState.COMPLETE]
    assert len({t.seed for t in stored}) == 1 and len(done) == 12
    assert len({t.baselines[:2] for t in done}) == 1, "the same two splits for every trial"
    raced = [t for t in done if t.race_seeds]
    rounds = [seed for t in raced for seed in t.race_seeds]
    assert raced and len(set(rounds)) == len(rounds), "each raced trial on rounds of its own"
    assert all(t.baselines[2:4] != done[0].baselines[:2] for t in raced)
    found = fit(stored)
    assert found.slope == pytest.approx(1.0) and found.pairs >= 12, "fitted on the rounds"
    reference = np.mean(done[0].baselines[:2])
    for t in comparable(stored):
        if t.state == TrialState.COMPLETE:
            assert t.loss == pytest.approx(bowl_loss(t.params) + reference, abs=1e-9)


def test_a_study_is_resumed_with_the_comparison_it_was_made_with(write_config, tmp_path):
    from tuner.errors import StudyError

    path = write_config(search={"init_points": 2, "n_iter": 0, "comparison": "common"})
    url = sqlite_url(tmp_path / "study.db")
    run = dict(storage_url=url, study_name="s", reporter=QuietReporter())
    factory = "tests.objectives:follows_measured_baseline"
    search(load_config(path), resume=False, factory=factory, **run)
    with pytest.raises(StudyError, match=r"search\.comparison=common, not plain"):
        search(load_config(path, ["search.comparison=plain"]), resume=True, factory=factory, **run)
    search(load_config(path, ["search.n_iter=1"]), resume=True, factory=factory, **run)


def test_racing_ranks_a_new_score_by_its_adjusted_loss(tmp_path):
    """Ten trials whose adjusted losses are 0.60 to 0.69; a new score of plain 0.705 on splits
    0.1 harder than usual (its baseline says so) is 0.605 adjusted: second, so it is raced."""
    from tuner.config.schema import validate_config
    from tuner.search.racing import Racer
    from tuner.training.evaluate import Score

    from .conftest import BOWL_SPACE, NO_DATA

    config = validate_config(
        {"data": NO_DATA, "space": BOWL_SPACE, "search": {"race_top": 2, "race_splits": 4}}
    )
    storage = Storage(sqlite_url(tmp_path / "study.db"))
    study = storage.create_study("s", {})
    for i in range(10):
        level = 0.60 + i / 100
        started = storage.start_trial(study, {"x": i}, {"x": i}, seed=i)
        storage.finish_trial(
            started,
            state=TrialState.COMPLETE,
            loss=level,
            split_losses=[level + 0.02, level - 0.02],
            baselines=[0.72, 0.68],
        )
    calls = []

    def objective(params, seed):
        calls.append(seed)
        losses = (0.725, 0.685)
        return Score(0.705, 0.03, losses, (1, 1), 0.0, baselines=(0.82, 0.78))

    score = Racer(objective, config, storage, study)({"x": 99}, 12345)
    storage.close()
    assert len(calls) == 2 and len(score.split_losses) == 4, "raced: one round"
