"""The end of a search (the finalists' re-score and the winner's confirmation) on a real SQLite
study, with cheap noisy objectives."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from tests.conftest import BOWL_SPACE, NO_DATA, ROOT
from tests.objectives import noisy_losses
from tuner.cli.commands import cli as cli_group
from tuner.config.schema import validate_config
from tuner.engine.budget import fit_final, pending
from tuner.engine.final import (
    alone,
    candidates,
    confirm_seeds,
    final_seeds,
    fresh_seed,
    rescore,
    rescore_final,
    trial_ranges,
)
from tuner.engine.loop import open_study, run_search, study_result
from tuner.errors import SearchInterrupted, TrialFailed
from tuner.outputs.progress import QuietReporter
from tuner.study.store import FinalScore, Storage, TrialRecord, TrialState, sqlite_url
from tuner.study.winner import winner
from tuner.training.evaluate import Score

RAW = {
    "data": NO_DATA,
    "space": BOWL_SPACE,
    "evaluation": {"splits": 2},
    # The confirmation is off here but in its own tests below.
    "search": {"init_points": 4, "n_iter": 4, "seed": 5, "final_splits": 5, "confirm_splits": 0},
}


def config(**search):
    return validate_config({**RAW, "search": {**RAW["search"], **search}})


class Noisy:
    """The bowl plus seeded noise on `splits` splits; records every call's (seed, params)."""

    def __init__(self, splits: int, sd: float = 0.05, fail_if=None, on_call=None):
        self.splits, self.sd = splits, sd
        self.calls: list[tuple[int, dict]] = []
        self.members: list[int] = []  # each call's ensemble size (1: single networks)
        self.fail_if, self.on_call = fail_if, on_call

    def __call__(self, params, seed, splits=None, members=1):
        self.calls.append((seed, dict(params)))
        self.members.append(members)
        if self.on_call:
            self.on_call(len(self.calls))
        if self.fail_if and self.fail_if(params, seed):
            raise TrialFailed("diverged", "held-out loss is nan")
        n = splits or self.splits
        losses = noisy_losses(params, seed, n, self.sd)
        std = float(np.std(losses, ddof=1)) if n > 1 else 0.0
        return Score(float(np.mean(losses)), std, tuple(losses), (1,) * n, 0.0)


@pytest.fixture
def storage(tmp_path: Path):
    store = Storage(sqlite_url(tmp_path / "study.db"))
    yield store
    store.close()


def searched(storage, cfg, objective=None, resume=False):
    objective = objective or Noisy(cfg.evaluation.splits)
    study = open_study(storage, "s", cfg, resume)
    run_search(cfg, storage, study, objective, QuietReporter())
    return study, objective


def overlaps(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


# --- seeds -------------------------------------------------------------------------------


def test_a_fresh_seed_avoids_every_used_range():
    first = fresh_seed([5, 1], 10, [])
    again = fresh_seed([5, 1], 10, [(first + 3, first + 4)])
    assert again != first and not overlaps((again, again + 10), (first + 3, first + 4))
    assert fresh_seed([5, 1], 10, []) == first, "deterministic"


# --- the final re-score ------------------------------------------------------------------


def test_finalists_are_rescored_on_unused_splits_and_the_best_mean_wins(storage):
    cfg = config(final_candidates=3)
    study, search_objective = searched(storage, cfg)
    final = Noisy(2)
    rescore_final(cfg, storage, study, final, QuietReporter())
    trials = storage.trials(study)
    chosen = candidates(trials, 3)
    # 5 fresh splits in chunks of evaluation.splits (2, 2, 1), the same seeds for every finalist.
    seeds = chosen[0].final.seeds
    assert len(chosen) == 3 and len(seeds) == 3
    assert final.calls == [(s, t.params) for t in chosen for s in seeds]
    used = trial_ranges(trials, 2)
    for seed, size in zip(seeds, (2, 2, 1), strict=True):
        assert not any(overlaps((seed, seed + size), r) for r in used)
        assert seed not in {s for s, _ in search_objective.calls}, "the search never used it"
    for trial in chosen:
        assert trial.final.seeds == seeds
        assert trial.final.splits == 5 and len(trial.final.split_losses) == 5
        assert trial.final.loss == pytest.approx(np.mean(trial.final.split_losses))
    result = study_result(storage, study)
    best = min(chosen, key=lambda t: t.final.loss)
    assert result.best.number == best.number
    data = result.to_dict()
    assert data["loss"] == best.final.loss and data["search_loss"] == best.loss
    assert data["loss_se"] == pytest.approx(np.std(best.final.split_losses, ddof=1) / 5**0.5)
    assert data["final_splits"] == 5 and data["final_candidates"] == 3


class FirstBetter(Noisy):
    """Noisy, with the first point it scores 1.0 better than any other: a sure new top."""

    def __call__(self, params, seed, splits=None):
        score = super().__call__(params, seed, splits)
        if len(self.calls) > 1:
            return score
        lower = tuple(x - 1.0 for x in score.split_losses)
        return replace(score, loss=score.loss - 1.0, split_losses=lower)


def test_a_resumed_search_reuses_rescores_and_rescores_a_new_top(storage):
    cfg = config(final_candidates=2)
    study, _ = searched(storage, cfg)
    rescore_final(cfg, storage, study, Noisy(2), QuietReporter())
    again = Noisy(2)
    rescore_final(cfg, storage, study, again, QuietReporter())
    assert again.calls == [], "finished re-scores are not redone"
    before = {t.number for t in candidates(storage.trials(study), 2)}
    bigger = config(final_candidates=2, n_iter=8)
    searched(storage, bigger, objective=FirstBetter(2), resume=True)
    ranked_after = candidates(storage.trials(study), 2)
    after = {t.number for t in ranked_after}
    assert ranked_after[0].number not in before, "the resumed search's first trial leads"
    more = Noisy(2)
    rescore_final(bigger, storage, study, more, QuietReporter())
    assert len(more.calls) == 3 * len(after - before), "3 chunks per new finalist"
    assert {p["dropout"] for _, p in more.calls} == {
        t.params["dropout"] for t in ranked_after if t.number not in before
    }, "only the new finalists are re-scored"
    assert study_result(storage, study).winner.final_candidates >= 2


def test_a_failed_rescore_drops_its_candidate(storage):
    cfg = config(final_candidates=3)
    study, _ = searched(storage, cfg)
    top = candidates(storage.trials(study), 3)
    doomed = top[0].params
    rescore_final(cfg, storage, study, Noisy(2, fail_if=lambda p, _s: p == doomed), QuietReporter())
    trials = {t.number: t for t in storage.trials(study)}
    assert trials[top[0].number].final.error_kind == "diverged"
    assert trials[top[0].number].final.loss is None
    found = study_result(storage, study).winner
    assert found.trial.number != top[0].number and found.final_candidates == 3
    assert found.loss == min(trials[t.number].final.loss for t in top[1:])


def test_every_rescore_failing_falls_back_to_the_search_time_winner(storage):
    cfg = config(final_candidates=2)
    study, _ = searched(storage, cfg)
    rescore_final(cfg, storage, study, Noisy(2, fail_if=lambda *_: True), QuietReporter())
    found = study_result(storage, study).winner
    assert not found.rescored and found.loss == found.search_loss == found.trial.loss
    assert found.trial.number == candidates(storage.trials(study), 1)[0].number


def test_ctrl_c_during_rescoring_keeps_what_is_done_and_resume_finishes(storage):
    cfg = config(final_candidates=3)
    study, _ = searched(storage, cfg)

    def interrupt(call: int) -> None:
        if call == 5:  # the second finalist's second chunk
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(SearchInterrupted) as stopped:
        rescore(cfg, storage, study, Noisy(2, on_call=interrupt), QuietReporter())
    assert stopped.value.exit_code == 130
    trials = storage.trials(study)
    assert len(trials) == 8 and all(t.state == TrialState.COMPLETE for t in trials)
    assert sum(t.final is not None for t in trials) == 1
    # Until the re-score is finished, the winner is chosen among the finalists done so far.
    assert study_result(storage, study).winner.final_candidates == 1
    rest = Noisy(2)
    rescore(cfg, storage, study, rest, QuietReporter())
    assert len(rest.calls) == 2 * 3, "the second and third finalists, 3 chunks each"
    assert study_result(storage, study).winner.final_candidates == 3


# --- the confirmation --------------------------------------------------------------------


def test_the_winner_is_confirmed_on_splits_the_search_and_the_finalists_never_used(storage):
    cfg = config(final_candidates=3, confirm_splits=3)
    study, search_objective = searched(storage, cfg)
    scorer = Noisy(2)
    rescore_final(cfg, storage, study, scorer, QuietReporter())
    trials = storage.trials(study)
    finals = final_seeds(cfg, trials)
    seeds = confirm_seeds(cfg, trials)
    result = study_result(storage, study)
    best = result.best
    # 3 finalists on 3 chunks of single networks, then the winner alone as an ensemble of 2
    # networks on 3 chunks of one outer split each.
    assert len(seeds) == 3 and scorer.calls[9:] == [(s, best.params) for s in seeds]
    assert scorer.members == [1] * 9 + [2] * 3
    used = trial_ranges(trials, 2) + [(s, s + n) for s, n in zip(finals, (2, 2, 1), strict=True)]
    for seed in seeds:  # an outer split of 2 networks uses 2 seeds
        assert not any(overlaps((seed, seed + 2), r) for r in used)
    assert not set(seeds) & {s for s, _ in search_objective.calls}
    assert best.number == min(candidates(trials, 3), key=lambda t: t.final.loss).number
    assert best.confirm.seeds == tuple(seeds) and best.confirm.splits == 3
    data = result.to_dict()
    assert data["loss"] == best.confirm.loss != best.final.loss
    assert data["loss_se"] == pytest.approx(np.std(best.confirm.split_losses, ddof=1) / 3**0.5)
    assert data["final_loss"] == best.final.loss and data["search_loss"] == best.loss
    assert data["confirm_splits"] == 3 and data["final_splits"] == 5 and data["members"] == 2
    assert result.winner.describe().endswith(", an ensemble of 2 networks on 3 fresh splits")
    again = Noisy(2)
    rescore_final(cfg, storage, study, again, QuietReporter())
    assert again.calls == [], "a resumed search does not confirm again"


def test_one_finalist_is_confirmed_too_and_confirm_splits_0_is_not(storage):
    study, _ = searched(storage, config(final_candidates=2))
    scorer = Noisy(2)
    rescore_final(config(final_candidates=2), storage, study, scorer, QuietReporter())
    found = study_result(storage, study).winner
    assert len(scorer.calls) == 6 and not found.confirmed and found.loss == found.final_loss
    assert "(a single network's)" in found.describe()
    # One finalist: its re-score chose nothing, but the ensemble is what is exported.
    alone = config(final_candidates=1, confirm_splits=4)
    rescore_final(alone, storage, study, scorer, QuietReporter())
    found = study_result(storage, study).winner
    assert len(scorer.calls) == 10 and scorer.members[6:] == [2] * 4, "its final score is kept"
    assert found.confirmed and found.members == 2 and found.loss == found.trial.confirm.loss


def test_a_lone_finalist_is_confirmed_as_exported_not_rescored(storage):
    """Its re-score would choose nothing: the end confirms it straight away, and a resumed
    search keeps that confirmation."""
    cfg = config(final_candidates=1, confirm_splits=4)
    study, _ = searched(storage, cfg)
    end = fit_final(cfg, storage.trials(study), 60.0)
    assert (end.search.final_candidates, end.search.final_splits) == (1, 0)
    scorer = Noisy(2)
    rescore_final(end, storage, study, scorer, QuietReporter())
    trials = storage.trials(study)
    first = candidates(trials, 1)[0]
    assert scorer.calls == [(s, first.params) for s in confirm_seeds(end, trials)]
    assert scorer.members == [2] * 4, "the ensemble, an outer split a call"
    used = trial_ranges(trials, 2)
    assert not any(overlaps((s, s + 2), r) for s, _ in scorer.calls for r in used)
    assert first.final is None and first.confirm.splits == 4
    result = study_result(storage, study)
    found = result.winner
    assert found.trial.number == first.number and found.confirmed and not found.rescored
    assert found.loss == first.confirm.loss and found.members == 2
    assert found.describe().endswith(", an ensemble of 2 networks on 4 fresh splits")
    data = result.to_dict()
    assert (data["final_splits"], data["final_loss"], data["final_candidates"]) == (0, None, 1)
    assert data["confirm_splits"] == data["loss_splits"] == 4
    assert data["loss_se"] == pytest.approx(np.std(first.confirm.split_losses, ddof=1) / 2)
    assert pending(cfg, trials).seconds == 0 and pending(cfg, trials).confirm == 0
    again = Noisy(2)
    rescore_final(fit_final(cfg, trials, 60.0), storage, study, again, QuietReporter())
    assert again.calls == [], "a resumed search keeps the confirmation"


def test_a_lone_confirmation_replaces_an_earlier_ends_rescore(storage):
    two = config(final_candidates=2)
    study, _ = searched(storage, two)
    rescore_final(two, storage, study, Noisy(2), QuietReporter())
    first = candidates(storage.trials(study), 1)[0]
    assert first.final is not None
    # A later end on a single finalist: the old re-score would choose among the old finalists.
    rescore_final(alone(config(confirm_splits=2)), storage, study, Noisy(2), QuietReporter())
    found = winner(storage.trials(study))
    assert found.trial.number == first.number and found.trial.final is None
    assert found.confirmed and found.confirm_splits == 2


def test_a_failed_lone_confirmation_reports_the_search_time_loss(storage):
    cfg = config(confirm_splits=2)
    study, _ = searched(storage, cfg)
    failing = Noisy(2, fail_if=lambda *_: True)
    rescore_final(alone(cfg), storage, study, failing, QuietReporter())
    found = winner(storage.trials(study))
    assert not found.fresh and found.loss == found.search_loss
    assert found.describe().endswith("not re-scored; its confirmation failed: diverged)")


def test_a_failed_confirmation_reports_the_rescored_loss(storage):
    cfg = config(final_candidates=2, confirm_splits=2)
    study, _ = searched(storage, cfg)
    finals = set(final_seeds(cfg, storage.trials(study)))
    failing = Noisy(2, fail_if=lambda _p, seed: seed not in finals)
    rescore_final(cfg, storage, study, failing, QuietReporter())
    found = study_result(storage, study).winner
    assert found.trial.confirm.error_kind == "diverged" and not found.confirmed
    assert found.loss == found.trial.final.loss and found.rescored
    assert "confirmation failed: diverged" in found.describe()


def test_with_one_split_a_trial_the_confirmation_is_of_a_single_network(storage):
    cfg = validate_config(
        {**RAW, "evaluation": {"splits": 1}, "search": {**RAW["search"], "confirm_splits": 3}}
    )
    study, _ = searched(storage, cfg)
    scorer = Noisy(1)
    rescore_final(cfg, storage, study, scorer, QuietReporter())
    found = study_result(storage, study).winner
    assert found.confirmed and found.members == 1 and set(scorer.members) == {1}
    assert found.describe().endswith(", a network on 3 fresh splits")


class Flat(Noisy):
    """Every point has the same true loss, 0.5: any difference between means is noise."""

    def __call__(self, params, seed, splits=None, members=1):
        n = splits or self.splits
        point = int(params["dropout"] * 1e9)
        losses = 0.5 + np.random.default_rng([seed, point]).normal(0.0, self.sd, n)
        return Score(
            float(np.mean(losses)), float(np.std(losses, ddof=1)), tuple(losses), (1,) * n, 0.0
        )


def test_the_confirmed_loss_is_unbiased_where_the_best_finalists_mean_is_not(storage):
    study, _ = searched(storage, config())
    picked, reported = [], []
    for seed in range(60):  # 60 final re-scores of 5 equal finalists, each on its own splits
        cfg = config(seed=seed, final_candidates=5, final_splits=4, confirm_splits=4)
        rescore_final(cfg, storage, study, Flat(2), QuietReporter())
        found = study_result(storage, study).winner
        assert found.confirmed and found.final_candidates == 5
        picked.append(found.final_loss - 0.5)
        reported.append(found.loss - 0.5)
    # The lowest of 5 means (se 0.025 each) is about 1.16 se too low; the confirmation is not.
    assert np.mean(picked) < -0.02
    assert abs(np.mean(reported)) < 0.01


# --- the winner rule ---------------------------------------------------------------------


def record(number: int, loss: float, final: float | None = None, seed: int = 99) -> TrialRecord:
    rescored = None
    if final is not None:
        rescored = FinalScore((seed,), 3, final, 0.03, (final - 0.03, final, final + 0.03))
    return TrialRecord(
        number,
        TrialState.COMPLETE,
        {},
        {"dropout": number / 10},
        number,
        loss=loss,
        loss_std=0.02,
        split_losses=(loss - 0.01, loss + 0.01),
        final=rescored,
    )


def test_the_winner_is_the_best_rescored_finalist_not_the_luckiest():
    trials = [record(0, 0.50, 0.62), record(1, 0.55, 0.58), record(2, 0.60, 0.70), record(3, 0.9)]
    found = winner(trials)
    assert found.trial.number == 1 and found.loss == 0.58 and found.search_loss == 0.55
    assert found.final_candidates == 3 and found.final_splits == 3
    assert found.loss_se == pytest.approx(0.03 / 3**0.5)


def test_a_new_search_time_best_without_rescore_is_reported_as_not_rescored():
    trials = [record(0, 0.50, 0.62), record(1, 0.55, 0.58), record(2, 0.40)]
    found = winner(trials)
    assert found.trial.number == 2 and not found.rescored and found.loss == 0.40
    assert winner([record(0, 0.5, 0.6, seed=1), record(1, 0.55, 0.5, seed=2)]).loss == 0.6, (
        "re-scores on other splits are not compared"
    )


def test_a_mean_on_few_splits_must_be_lower_to_become_the_finalist():
    # A lucky mean on 2 splits against a slightly higher one on 6: ranked by mean plus a
    # standard error, the better-known one goes first.
    def trial(number, losses):
        return TrialRecord(
            number, TrialState.COMPLETE, {"x": number}, {"x": number}, 10 + number,
            loss=float(np.mean(losses)), split_losses=tuple(losses),
        )  # fmt: skip

    lucky = trial(0, [0.60, 0.64])
    known = trial(1, [0.58, 0.66, 0.60, 0.64, 0.61, 0.65])
    poor = [trial(n, [0.70 + n / 100, 0.74]) for n in (2, 3)]
    trials = [lucky, known, *poor]
    assert lucky.loss < known.loss
    assert [t.number for t in candidates(trials, 3)] == [1, 0, 2]
    found = winner(trials)
    assert found.trial.number == 1 and not found.rescored, "the first finalist, not re-scored"
    far = trial(4, [0.50, 0.54])  # far ahead: its standard error does not undo that
    assert [t.number for t in candidates([*trials, far], 2)] == [4, 1]


# --- through the command line, in worker processes ----------------------------------------


def calls(log: Path) -> list[tuple[int, int, int]]:
    """(parent pid, seed, splits) of every call of the noisy objective."""
    if not log.exists():
        return []
    return [tuple(int(x) for x in line.split()) for line in log.read_text().splitlines()]


@pytest.fixture
def cli(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TUNER_TEST_LOG", str(tmp_path / "calls.log"))

    def invoke(*args: object):
        return CliRunner().invoke(cli_group, [str(a) for a in args])

    return invoke


NOISY = ("--objective", "tests.objectives:noisy")


def test_search_json_best_and_trials_report_the_rescored_winner(cli, write_config, tmp_path):
    # conftest's tiny end: 2 finalists on 4 fresh splits, the winner's ensemble of 2 networks
    # confirmed on 2 more (a call each).
    config = write_config("n", search={"init_points": 4, "n_iter": 4, "seed": 3})
    result = cli("search", config, *NOISY, "--json")
    assert result.exit_code == 0, result.output
    assert "end: 2 finalist(s) re-scored on fresh splits (4 each)" in result.stderr
    found = json.loads(result.stdout)
    trials = json.loads(cli("trials", config, "--json").stdout)["trials"]
    finals = {t["trial"]: t["final"] for t in trials if t["final"]}
    assert len(finals) == 2 and found["final_splits"] == 4 and found["final_candidates"] == 2
    assert found["final_loss"] == min(f["loss"] for f in finals.values())
    confirm = trials[found["trial"]]["confirm"]
    assert found["confirm_splits"] == confirm["splits"] == found["loss_splits"] == 2
    assert found["members"] == 2 and len(confirm["seeds"]) == 2
    assert found["loss"] == confirm["loss"], "reported on splits that did not choose it"
    assert found["loss_se"] == pytest.approx(confirm["loss_std"] / 2**0.5)
    assert sum(t["confirm"] is not None for t in trials) == 1, "the winner only"
    assert found["search_loss"] == trials[found["trial"]]["loss"] != found["loss"]
    assert 0 < found["end_seconds"] < found["run_seconds"]
    best = json.loads(cli("best", config, "--json").stdout)
    assert {k: best[k] for k in found if k in best} == {k: found[k] for k in found if k in best}
    # The final and confirmation splits' seeds are not ones the search used, nor each other's.
    logged = calls(tmp_path / "calls.log")
    final_seeds = {tuple(f["seeds"]) for f in finals.values()}
    assert len(final_seeds) == 1 and len(next(iter(final_seeds))) == 2, "4 splits, 2 chunks"
    final_seeds = set(next(iter(final_seeds)))
    confirm_seeds = set(confirm["seeds"])
    searched = {t["seed"] for t in trials}
    assert len(searched) == 8
    expected = [*searched, *list(final_seeds) * 2, *confirm_seeds]
    assert sorted(s for _, s, _ in logged) == sorted(expected)
    assert sorted(n for _, s, n in logged if s in confirm_seeds) == [1, 1], "an outer split a call"
    fresh = final_seeds | confirm_seeds
    assert len(fresh) == 4 and all(s + 2 <= f or f + 2 <= s for s in searched for f in fresh)
    # A resumed search with nothing left to do re-scores nothing.
    again = cli("search", config, *NOISY, "--resume", "--json")
    assert again.exit_code == 0
    assert {k: v for k, v in json.loads(again.stdout).items() if "seconds" not in k} == {
        k: v for k, v in found.items() if "seconds" not in k
    }
    assert calls(tmp_path / "calls.log") == logged
    assert "2 already re-scored" in again.stderr


def test_a_lone_finalists_end_confirms_it_and_reports_that(cli, write_config, tmp_path):
    config = write_config("lone", search={"init_points": 3, "n_iter": 1, "final_candidates": 1})
    result = cli("search", config, *NOISY, "--json")
    assert result.exit_code == 0, result.output
    end = [line for line in result.stderr.splitlines() if line.startswith("end: ")]
    assert end == [
        "end: the best trial confirmed as exported (an ensemble of 2 networks) on 2 fresh "
        "splits; at most 90% of the run"
    ]
    assert "re-scoring" not in result.stderr
    found = json.loads(result.stdout)
    trials = json.loads(cli("trials", config, "--json").stdout)["trials"]
    assert all(t["final"] is None for t in trials), "no re-score"
    confirm = trials[found["trial"]]["confirm"]
    assert found["loss"] == confirm["loss"] and found["confirm_splits"] == 2 == found["loss_splits"]
    assert (found["final_splits"], found["final_candidates"], found["members"]) == (0, 1, 2)
    assert f"winner: #{found['trial']}: loss {found['loss']:.4f} ± " in result.stderr
    assert "an ensemble of 2 networks on 2 fresh splits" in result.stderr
    table = cli("best", config).stdout
    assert "(2 fresh splits, the exported ensemble of 2)" in table and "search loss" in table
    logged = calls(tmp_path / "calls.log")
    assert len(logged) == 4 + 2, "4 trials, then 2 confirmation calls"
    again = cli("search", config, *NOISY, "--resume", "--json")
    assert again.exit_code == 0 and calls(tmp_path / "calls.log") == logged, "kept on resume"


def test_final_candidates_0_reports_the_search_time_loss(cli, write_config, tmp_path):
    config = write_config("off", search={"final_candidates": 0})
    result = cli("search", config, *NOISY, "--json")
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)
    assert found["final_splits"] == 0 and found["loss"] == found["search_loss"]
    assert {n for _, _, n in calls(tmp_path / "calls.log")} == {2}
    assert "re-scoring" not in result.stderr


def test_a_failed_rescore_in_a_worker_process_is_recorded(cli, write_config, monkeypatch):
    monkeypatch.setenv("TUNER_TEST_FAIL_REPEAT", "1")  # every re-score fails
    config = write_config("bad", search={"final_candidates": 2})
    result = cli("search", config, *NOISY, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["final_splits"] == 0, "no finalist left: search-time"
    finals = [t["final"] for t in json.loads(cli("trials", config, "--json").stdout)["trials"]]
    assert sum(f is not None and f["error_kind"] == "diverged" for f in finals) == 2
    assert "re-score failed (diverged)" in result.stderr


@pytest.mark.slow
def test_in_a_shared_study_only_tuner_search_rescores_once(write_config, tmp_path):
    log = tmp_path / "calls.log"
    url = sqlite_url(tmp_path / "shared.db")
    config = write_config("tiny", search={"init_points": 6, "n_iter": 6, "seed": 2})
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TUNER_TEST_LOG": str(log)}
    env["TUNER_TEST_SLEEP"] = "0.2"

    def start(*args: str) -> subprocess.Popen:
        command = [sys.executable, "-m", "tuner.cli.commands", *args, *NOISY, "-q", "--json"]
        return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    search = start("search", str(config), "--storage", url, "--workers", "2")
    deadline = time.monotonic() + 120
    while not calls(log) and time.monotonic() < deadline:
        time.sleep(0.2)
    worker = start("worker", "--storage", url, "--study", "tiny")
    out, err = search.communicate(timeout=300)
    assert search.returncode == 0, err
    worker.communicate(timeout=300)
    storage = Storage(url)
    trials = storage.trials(storage.get_study("tiny"))
    storage.close()
    seeds = {s for t in trials if t.final is not None for s in t.final.seeds}
    final = [(parent, seed) for parent, seed, _ in calls(log) if seed in seeds]
    assert len(seeds) == 2 and len(final) == 2 * 2, "2 finalists, 2 chunks each, once"
    assert {p for p, _ in final} == {search.pid}, "by tuner search"
    assert json.loads(out)["final_candidates"] == 2
