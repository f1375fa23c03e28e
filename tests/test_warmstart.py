"""Warm start: a study's completed trials told to another study's optimiser (real SQLite files)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from tuner.cli.commands import cli
from tuner.config.schema import validate_config
from tuner.config.space import SearchSpace
from tuner.engine.api import joined_config
from tuner.errors import StudyError
from tuner.optimize.optimizer import Proposer
from tuner.study.store import Storage, TrialState, sqlite_url
from tuner.study.warmstart import warm_trials

from .conftest import make_tiny_frame, tiny_config_dict
from .test_search import RAW, Bowl, search


def config(warm: dict | None = None, space: dict | None = None, **search_keys):
    search_section = {**RAW["search"], **search_keys}
    if warm is not None:
        search_section["warm_start"] = warm
    return validate_config(
        {**RAW, "space": {**RAW["space"], **(space or {})}, "search": search_section}
    )


@pytest.fixture
def study_a(tmp_path: Path) -> tuple[str, list]:
    """Study `a`: 8 trials of the bowl, one of them failed, in its own SQLite file."""
    url = sqlite_url(tmp_path / "a.db")
    storage = Storage(url)
    calls: list[dict] = []

    def second_fails(params: dict) -> bool:
        calls.append(params)
        return len(calls) == 2

    result = search(storage, config(init_points=4, n_iter=4), Bowl(second_fails), name="a")
    storage.close()
    return url, list(result.trials)


def test_the_first_proposal_follows_the_warm_trials_and_the_budget_is_unchanged(study_a, tmp_path):
    url, a_trials = study_a
    completed = [t for t in a_trials if t.state == TrialState.COMPLETE]
    assert 0 < len(completed) < len(a_trials), "study a has a failed trial, which is not told"
    warm = config(warm={"storage": url, "study": "a"}, init_points=3, n_iter=2)
    assert [t.number for t in warm_trials(warm)] == [t.number for t in completed]
    storage = Storage(sqlite_url(tmp_path / "b.db"))
    bowl = Bowl()
    result = search(storage, warm, bowl, name="b")
    storage.close()
    # The budget is b's own: 5 trials run, and a's trials are not copied into b.
    assert len(result.trials) == 5 == len(bowl.calls)
    assert [t.number for t in result.trials] == list(range(5))
    # 7 completed trials replace all 3 random points: the first proposal is the optimiser's
    # given a's completed trials, not the random point a cold start begins with.
    space = SearchSpace(warm.space)
    expected = Proposer(space, warm.search).propose(len(completed), completed)
    cold = Proposer(space, warm.search).propose(0, [])
    assert result.trials[0].point == pytest.approx(expected)
    assert result.trials[0].point != pytest.approx(cold)


def test_each_warm_trial_takes_the_place_of_a_random_point(tmp_path):
    url = sqlite_url(tmp_path / "a.db")
    storage = Storage(url)
    search(storage, config(init_points=2, n_iter=0), Bowl(), name="a")
    cold = [
        t.point for t in search(storage, config(init_points=4, n_iter=0), Bowl(), "cold").trials
    ]
    warm = config(warm={"storage": url, "study": "a"}, init_points=4, n_iter=1)
    trials = search(storage, warm, Bowl(), name="b").trials
    storage.close()
    # Two warm trials: b's random points are the cold start's 3rd and 4th, then it is guided.
    assert [t.point for t in trials[:2]] == cold[2:4]
    assert len(trials) == 5


def test_another_space_is_refused_naming_the_keys(study_a):
    url, _ = study_a
    warm = {"storage": url, "study": "a"}
    other = config(warm=warm, space={"dropout": {"low": 0.0, "high": 0.3}, "l2": 1e-4})
    with pytest.raises(StudyError) as info:
        warm_trials(other)
    assert str(info.value) == (
        "search.warm_start: study 'a' searched another space (differs in space.dropout, "
        "space.l2); warm-start from a study of the same space"
    )
    relu = validate_config({**config(warm=warm).to_dict(), "network": {"activation": "relu"}})
    with pytest.raises(StudyError, match=r"\(differs in space\.activation\)"):
        warm_trials(relu)


def test_a_missing_study_or_database_is_refused_and_nothing_is_created(study_a, tmp_path):
    url, _ = study_a
    with pytest.raises(StudyError) as info:
        warm_trials(config(warm={"storage": url, "study": "nope"}))
    assert str(info.value) == (
        f"search.warm_start: no study 'nope' in {url}; check the name (--warm-study)"
    )
    missing = tmp_path / "missing" / "x.db"
    with pytest.raises(StudyError, match=r"^search.warm_start: no study database at "):
        warm_trials(config(warm={"storage": sqlite_url(missing), "study": "a"}))
    assert not missing.parent.exists()
    assert warm_trials(config()) == ()


def test_the_cli_stores_the_warm_start_for_resume_and_workers(study_a, tmp_path, monkeypatch):
    url, _ = study_a
    monkeypatch.chdir(tmp_path)
    csv = tmp_path / "tiny.csv"
    make_tiny_frame().to_csv(csv, index=False)
    raw = tiny_config_dict(csv, search={"init_points": 1, "n_iter": 1})
    raw["space"] = dict(RAW["space"])
    path = tmp_path / "b.yaml"
    path.write_text(yaml.safe_dump(raw))
    objective = ["--objective", "tests.objectives:bowl", "--quiet"]
    refused = CliRunner().invoke(cli, ["search", str(path), "--warm-start", url, *objective])
    assert refused.exit_code == 2
    assert refused.stderr == (
        f"error: search.warm_start: no study 'b' in {url}; check the name (--warm-study)\n"
    )
    assert not (tmp_path / "runs").exists()
    args = ["search", str(path), "--warm-start", url, "--warm-study", "a", *objective]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    own = sqlite_url(tmp_path / "runs" / "b" / "study.db")
    stored = joined_config(own, "b", [])
    assert stored.search.warm_start is not None
    assert (stored.search.warm_start.storage, stored.search.warm_start.study) == (url, "a")
    storage = Storage(own)
    assert len(storage.trials(storage.get_study("b"))) == 2
    storage.close()
