"""The search loop with a cheap known objective instead of training (real SQLite study)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from tuner.config.schema import validate_config
from tuner.engine.loop import open_study, run_search
from tuner.errors import SearchFailed, SearchInterrupted, StudyError, TrialFailed
from tuner.optimize.optimizer import observations
from tuner.outputs.progress import QuietReporter
from tuner.study.store import Storage, TrialRecord, TrialState, sqlite_url
from tuner.training.evaluate import Score

from .conftest import BOWL_SPACE, NO_DATA

RAW = {
    "data": NO_DATA,
    "space": BOWL_SPACE,
    "search": {"init_points": 3, "n_iter": 3, "seed": 5},
}


def config(**search):
    return validate_config({**RAW, "search": {**RAW["search"], **search}})


class Bowl:
    """A smooth loss with its minimum at dropout 0.2, learning rate 1e-3; counts its calls."""

    def __init__(self, fail_if=None):
        self.calls: list[dict] = []
        self.fail_if = fail_if

    def __call__(self, params, seed):
        self.calls.append(dict(params))
        if self.fail_if and self.fail_if(params):
            raise TrialFailed("diverged", "training loss became nan at epoch 2")
        loss = (params["dropout"] - 0.2) ** 2 + (math.log10(params["learning_rate"]) + 3) ** 2 / 10
        return Score(
            loss=loss, loss_std=0.01, split_losses=(loss, loss), epochs=(3, 4), seconds=0.0
        )


@pytest.fixture
def storage(tmp_path: Path):
    store = Storage(sqlite_url(tmp_path / "study.db"))
    yield store
    store.close()


def search(storage, cfg, objective, name="s", resume=False):
    study = open_study(storage, name, cfg, resume)
    return run_search(cfg, storage, study, objective, QuietReporter())


def test_runs_the_budget_and_reports_the_best(storage):
    bowl = Bowl()
    result = search(storage, config(), bowl)
    assert len(result.trials) == 6 and len(bowl.calls) == 6, "one objective call per trial"
    assert all(t.state == TrialState.COMPLETE for t in result.trials)
    assert result.best.loss == min(t.loss for t in result.trials)
    assert result.to_dict()["trial"] == result.best.number
    assert set(result.to_dict()) == {
        "trial",
        "loss",
        "loss_std",
        "loss_se",
        "loss_splits",
        "search_loss",
        "final_loss",
        "final_splits",
        "final_candidates",
        "confirm_splits",
        "members",
        "params",
        "study",
        "storage",
        "run_seconds",
        "end_seconds",
    }
    assert result.to_dict()["final_splits"] == 0, "run_search alone does not re-score"
    assert result.to_dict()["confirm_splits"] == 0 and result.to_dict()["final_loss"] is None
    assert result.to_dict()["loss_splits"] == 2


def test_a_reporter_implements_only_the_hooks_it_needs(storage):
    from tuner.engine.reporter import Reporter

    class Finished(Reporter):
        def __init__(self):
            self.numbers: list[int] = []

        def trial_finished(self, trial, best):
            self.numbers.append(trial.number)

    reporter = Finished()
    cfg = config()
    run_search(cfg, storage, open_study(storage, "s", cfg, False), Bowl(), reporter)
    assert reporter.numbers == [0, 1, 2, 3, 4, 5]


def test_same_config_and_seed_propose_the_same_points(tmp_path):
    runs = []
    for name in ("a", "b"):
        store = Storage(sqlite_url(tmp_path / f"{name}.db"))
        runs.append([t.params for t in search(store, config(), Bowl()).trials])
        store.close()
    assert runs[0] == runs[1]
    store = Storage(sqlite_url(tmp_path / "c.db"))
    other = [t.params for t in search(store, config(seed=6), Bowl()).trials]
    assert other[0] != runs[0][0]


def test_guided_points_stay_in_bounds_and_use_log_space(storage):
    result = search(storage, config(init_points=4, n_iter=8), Bowl())
    for trial in result.trials:
        assert 0.0 <= trial.params["dropout"] <= 0.5
        assert 1e-4 <= trial.params["learning_rate"] <= 0.1
        assert trial.point["learning_rate"] == pytest.approx(
            (math.log(trial.params["learning_rate"]) - math.log(1e-4))
            / (math.log(0.1) - math.log(1e-4))
        )
    guided = result.trials[4:]
    assert min(t.loss for t in guided) <= min(t.loss for t in result.trials[:4])


def test_failed_trials_are_kept_and_the_search_goes_on(storage):
    bowl = Bowl(fail_if=lambda p: p["learning_rate"] > 0.01)
    result = search(storage, config(init_points=4, n_iter=4), bowl)
    failed = [t for t in result.trials if t.state == TrialState.FAILED]
    assert failed, "this seed samples a learning rate above 0.01"
    assert all(t.error_kind == "diverged" and "nan" in t.error for t in failed)
    assert len(result.trials) == 8, "failed trials spend budget"
    assert result.best.state == TrialState.COMPLETE


def test_optimiser_is_told_the_worst_loss_for_a_failure():
    def trial(n, state, loss=None, kind=None, point=0.1):
        return TrialRecord(n, state, {"x": point}, {}, 0, loss=loss, error_kind=kind)

    history = [
        trial(0, TrialState.COMPLETE, 0.5, point=0.1),
        trial(1, TrialState.COMPLETE, 0.9, point=0.2),
        trial(2, TrialState.FAILED, kind="diverged", point=0.3),
        trial(3, TrialState.FAILED, kind="interrupted", point=0.4),
        trial(4, TrialState.COMPLETE, 0.7, point=0.1),
        trial(5, TrialState.RUNNING, point=0.5),
    ]
    told = dict((p["x"], target) for p, target in observations(history))
    # The running trial (another worker's) is told the constant liar: the mean by default.
    assert told == {0.1: pytest.approx(-0.6), 0.2: -0.9, 0.3: -0.9, 0.5: pytest.approx(-0.7)}
    worst = dict((p["x"], target) for p, target in observations(history, liar="worst"))
    assert worst[0.5] == -0.9
    assert all(math.isfinite(v) for v in told.values())
    assert observations(history[2:4]) == [], "nothing to compare a failure with yet"


def test_crash_in_one_trial_is_recorded(storage):
    calls = []

    def objective(params, seed):
        calls.append(seed)
        if len(calls) == 2:
            raise RuntimeError("out of tensors")
        return Bowl()(params, seed)

    result = search(storage, config(), objective)
    crashed = [t for t in result.trials if t.error_kind == "crashed"]
    assert len(crashed) == 1 and crashed[0].error == "RuntimeError: out of tensors"


def test_all_failed_is_an_error(storage):
    with pytest.raises(SearchFailed, match="no trial of study 's' completed"):
        search(storage, config(init_points=2, n_iter=0), Bowl(fail_if=lambda p: True))


def test_resume_adds_only_the_new_budget(storage):
    first = Bowl()
    search(storage, config(), first)
    again = Bowl()
    result = search(storage, config(n_iter=5), again, resume=True)
    assert len(again.calls) == 2
    assert len(result.trials) == 8
    assert len({tuple(sorted(t.point.items())) for t in result.trials}) == 8
    finished = Bowl()
    search(storage, config(n_iter=5), finished, resume=True)
    assert finished.calls == [], "a finished study runs nothing more"


def test_resume_reruns_the_trial_a_dead_process_left_running(storage):
    cfg = config()
    study = open_study(storage, "s", cfg, resume=False)
    search_first = Bowl()
    # Play a process that finished two trials and died during the third.
    run_search(
        validate_config({**RAW, "search": {**RAW["search"], "init_points": 2, "n_iter": 0}}),
        storage,
        study,
        search_first,
        QuietReporter(),
    )
    orphan = storage.start_trial(
        study,
        {"dropout": 0.5, "learning_rate": 0.5, "neuron_pct": 0.5, "neuron_shrink": 0.5},
        {
            "dropout": 0.25,
            "learning_rate": 0.003,
            "neuron_pct": 0.5,
            "neuron_shrink": 0.5,
            "batch_norm": False,
            "batch_size": 32,
        },
        seed=99,
    )
    bowl = Bowl()
    result = search(storage, cfg, bowl, resume=True)
    by_number = {t.number: t for t in result.trials}
    assert by_number[orphan.number].error_kind == "interrupted"
    rerun = [t for t in result.trials if t.retry_of == orphan.number]
    assert len(rerun) == 1 and rerun[0].params == orphan.params and rerun[0].seed == 99
    assert bowl.calls[0] == orphan.params, "the interrupted point runs first"
    assert sum(t.counts for t in result.trials) == cfg.search.budget
    assert sum(t.state == TrialState.COMPLETE for t in result.trials) == 6


class Starts(QuietReporter):
    """Records what `search_started` was told."""

    def __init__(self):
        self.started: list[tuple] = []

    def search_started(self, study, budget, done, rerun, end):
        self.started.append((study, budget, done, rerun))


@pytest.mark.parametrize("slots", [0, 2])  # 0: run_search; 2: two slots in threads
def test_a_resumed_search_says_how_many_interrupted_trials_run_again(storage, slots):
    from tuner.engine.loop import run_trials

    cfg = config()
    first = config(init_points=2, n_iter=0)
    run_search(first, storage, open_study(storage, "s", first, False), Bowl(), QuietReporter())
    params = {"dropout": 0.25, "learning_rate": 0.003, "neuron_pct": 0.5, "neuron_shrink": 0.5}
    unit = {k: 0.5 for k in params}
    study = open_study(storage, "s", cfg, resume=True)
    storage.start_trial(study, unit, params | {"batch_norm": False, "batch_size": 32}, seed=9)
    study = open_study(storage, "s", cfg, resume=True)  # marks the orphan interrupted
    reporter = Starts()
    if slots:
        pairs = [(f"w{i}", Bowl()) for i in range(slots)]
        run_trials(cfg, storage, study, pairs, reporter)
    else:
        run_search(cfg, storage, study, Bowl(), reporter)
    assert reporter.started == [("s", cfg.search.budget, 2, 1)]


def test_ctrl_c_marks_the_running_trial_interrupted(storage):
    calls = []

    def objective(params, seed):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return Bowl()(params, seed)

    with pytest.raises(SearchInterrupted) as info:
        search(storage, config(), objective)
    assert info.value.exit_code == 130
    trials = storage.trials(storage.get_study("s"))
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2 + [TrialState.FAILED]
    assert trials[2].error_kind == "interrupted"
    result = search(storage, config(), Bowl(), resume=True)
    assert sum(t.state == TrialState.COMPLETE for t in result.trials) == 6


def test_existing_study_needs_resume_and_the_same_space(storage):
    search(storage, config(init_points=1, n_iter=0), Bowl())
    with pytest.raises(StudyError, match=r"^--study: study 's' already exists in .*add --resume"):
        search(storage, config(), Bowl())
    changed = validate_config(
        {
            **RAW,
            "space": {
                **RAW["space"],
                "dropout": {"low": 0.0, "high": 0.3},
                "batch_norm": {"values": [False, True]},
            },
        }
    )
    with pytest.raises(StudyError) as info:
        search(storage, changed, Bowl(), resume=True)
    assert str(info.value) == (
        "--resume: the search space differs from study 's' in space.batch_norm, space.dropout; "
        "resume with the study's space or start another --study"
    )


def test_choice_and_integer_dimensions(storage):
    raw = {
        **RAW,
        "space": {
            **RAW["space"],
            "batch_norm": {"values": [False, True]},
            "batch_size": {"low": 8, "high": 64, "log": True, "int": True},
        },
    }
    cfg = validate_config(raw)
    result = search(storage, cfg, Bowl())
    for trial in result.trials:
        assert trial.params["batch_norm"] in (False, True)
        assert isinstance(trial.params["batch_size"], int) and 8 <= trial.params["batch_size"] <= 64


def test_resume_treats_a_written_out_default_as_the_same_space(storage):
    search(storage, config(init_points=1, n_iter=0), Bowl())
    explicit = validate_config(
        {
            **RAW,
            "space": {**RAW["space"], "batch_size": 32, "batch_norm": False},
            "search": {**RAW["search"], "init_points": 2, "n_iter": 0},
        }
    )
    result = search(storage, explicit, Bowl(), resume=True)
    assert len(result.trials) == 2


def test_a_broken_setup_ends_the_search_after_max_consecutive_failures(storage):
    calls = []

    def broken(params, seed):
        calls.append(seed)
        raise RuntimeError("CUDA driver missing")

    with pytest.raises(SearchFailed) as info:
        search(storage, config(init_points=10, max_consecutive_failures=3), broken)
    assert len(calls) == 3
    assert str(info.value) == (
        "3 trials failed in a row (search.max_consecutive_failures), last: "
        "#0 crashed: RuntimeError: CUDA driver missing; #1 crashed: RuntimeError: CUDA driver "
        "missing; #2 crashed: RuntimeError: CUDA driver missing; fix the cause, then continue "
        "with --resume"
    )
    assert all(t.state == TrialState.FAILED for t in storage.trials(storage.get_study("s")))


def test_too_large_points_do_not_end_the_search(storage):
    calls = []

    def picky(params, seed):
        calls.append(seed)
        if len(calls) <= 6:
            raise TrialFailed("too_large", "2,000,000 parameters is over evaluation.max_params")
        return Bowl()(params, seed)

    result = search(storage, config(init_points=8, n_iter=0, max_consecutive_failures=2), picky)
    assert [t.error_kind for t in result.trials] == ["too_large"] * 6 + [None] * 2


def test_an_error_in_the_loop_leaves_no_trial_running(storage):
    def broken_storage_objective(params, seed):
        raise SystemExit(3)  # anything that is not a trial failure ends the search

    with pytest.raises(SystemExit):
        search(storage, config(), broken_storage_objective)
    (trial,) = storage.trials(storage.get_study("s"))
    assert trial.state == TrialState.FAILED and trial.error_kind == "interrupted"


def test_a_point_that_kills_its_worker_is_retried_then_given_up(storage):
    calls = []

    def deadly(params, seed):
        calls.append((params["dropout"], seed))
        if params["dropout"] < 0.2:
            raise TrialFailed("died", "the worker process was killed (SIGKILL; out of memory?)")
        return Bowl()(params, seed)

    cfg = config(init_points=6, n_iter=0, max_retries=1, max_consecutive_failures=50)
    result = search(storage, cfg, deadly)
    died = [t for t in result.trials if t.error_kind == "died"]
    assert died, "this seed samples dropout under 0.2"
    first = [t for t in died if t.retry_of is None]
    assert len(died) == 2 * len(first), "each deadly point runs once more, then is given up"
    assert sum(t.counts for t in result.trials) == 6
    assert sum(t.state == TrialState.COMPLETE for t in result.trials) == 6
    # The optimiser hears the worst value told of a completed point for a point given up,
    # nothing twice for a retried one.
    told = observations(result.trials)
    completed = [t.point for t in result.trials if t.state == TrialState.COMPLETE]
    worst = min(v for p, v in told if p in completed)
    assert worst < -max(t.loss for t in result.trials if t.loss is not None) / 2
    for trial in first:
        assert [v for p, v in told if p == trial.point] == [worst]


def test_workers_that_always_die_end_the_search(storage):
    def deadly(params, seed):
        raise TrialFailed("died", "the worker process died (exit code -11)")

    with pytest.raises(SearchFailed, match="4 trials failed in a row"):
        search(storage, config(init_points=10, max_consecutive_failures=4), deadly)
    assert all(t.state == TrialState.FAILED for t in storage.trials(storage.get_study("s")))
