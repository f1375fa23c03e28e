"""A study written by an earlier version (tests/fixtures/README.md) opens and reads as stored.

Its trials table has the columns of racing and the split-difficulty adjustment and no `attrs`;
the expected values are read from those columns with sqlite3, not through the code under test.
Each test works on a copy: the fixture itself is never opened for writing.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tuner.cli import cli
from tuner.study.records import LEGACY_COLUMNS, FinalScore, TrialState
from tuner.study.results import load_results
from tuner.study.store import sqlite_url

FIXTURE = Path(__file__).parent / "fixtures" / "study-0ce7dd8.db"
LEGACY_QUERY = (
    "SELECT s.name, t.number, t.state, t.loss, t.split_losses, t.error_kind, "
    + ", ".join(f"t.{name}" for name in LEGACY_COLUMNS)
    + " FROM trials t JOIN studies s ON s.id = t.study_id ORDER BY s.name, t.number"
)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def legacy(tmp_path: Path):
    """A copy of the fixture, and its rows as the earlier version wrote them."""
    before = _digest(FIXTURE)
    path = tmp_path / "study.db"
    shutil.copyfile(FIXTURE, path)
    rows = _legacy_rows(path)
    yield path, rows
    assert _digest(FIXTURE) == before, "the fixture is never written"
    assert not list(FIXTURE.parent.glob("*.db-*")), "no WAL or lock files beside the fixture"


def _legacy_rows(path: Path) -> dict[str, list[dict[str, Any]]]:
    """Every trial by study, its JSON columns decoded, read with sqlite3 alone."""
    with sqlite3.connect(path) as db:
        db.row_factory = sqlite3.Row
        found: dict[str, list[dict[str, Any]]] = {}
        for row in db.execute(LEGACY_QUERY):
            data = dict(row)
            for key in ("split_losses", *LEGACY_COLUMNS):
                data[key] = json.loads(data[key]) if data[key] is not None else None
            found.setdefault(data.pop("name"), []).append(data)
    db.close()
    return found


def test_the_fixture_holds_what_it_was_made_for(legacy):
    _, rows = legacy
    trials = rows["legacy"]
    assert all(t["state"] == "complete" and t["baselines"] for t in trials)
    assert sum(t["race"] is not None for t in trials) >= 1, "a raced trial"
    assert sum(t["final"] is not None for t in trials) >= 2, "finalists"
    (winner,) = [t for t in trials if t["confirm"] is not None]
    assert winner["difficulty"] is not None
    assert [t["state"] for t in rows["diverged"]] == ["failed"]


def test_load_results_reads_trials_and_winner_as_stored(legacy):
    path, rows = legacy
    results = load_results(sqlite_url(path), "legacy")
    stored = rows["legacy"]
    assert [t.number for t in results.trials] == [t["number"] for t in stored]
    for trial, row in zip(results.trials, stored, strict=True):
        assert trial.state == TrialState(row["state"])
        assert trial.loss == row["loss"] and list(trial.split_losses) == row["split_losses"]
        assert trial.final == (FinalScore.from_dict(row["final"]) if row["final"] else None)
        assert trial.confirm == (FinalScore.from_dict(row["confirm"]) if row["confirm"] else None)
    # The earlier version confirmed its winner alone: the finalist of the lowest re-score.
    (confirmed,) = [row for row in stored if row["confirm"] is not None]
    lowest = min((row for row in stored if row["final"]), key=lambda row: row["final"]["loss"])
    assert lowest is confirmed
    best = results.best
    assert best.number == confirmed["number"]
    assert best.final is not None and best.final.loss == confirmed["final"]["loss"]
    assert best.confirm is not None and best.confirm.loss == confirmed["confirm"]["loss"]
    assert results.config.search.final_splits == 4, (
        "the stored config reads without its removed keys"
    )


def test_a_failed_trial_reads_as_stored(legacy):
    path, rows = legacy
    results = load_results(sqlite_url(path), "diverged")
    (row,), (trial,) = rows["diverged"], results.trials
    assert (trial.state, trial.error_kind, trial.loss) == (TrialState.FAILED, "diverged", None)
    assert row["error_kind"] == "diverged" and results.failures() == {"diverged": 1}
    assert results.completed == []


def _invoke(*args: object):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_trials_and_best_show_the_stored_winner(legacy):
    path, rows = legacy
    url = sqlite_url(path)
    (confirmed,) = [row for row in rows["legacy"] if row["confirm"] is not None]
    table = _invoke("trials", "--storage", url, "--study", "legacy")
    assert table.exit_code == 0, table.output
    assert "trials of study legacy" in table.stdout
    listed = _invoke("trials", "--storage", url, "--study", "legacy", "--json")
    assert listed.exit_code == 0, listed.output
    trials = json.loads(listed.stdout)["trials"]
    assert [(t["trial"], t["loss"]) for t in trials] == [
        (row["number"], row["loss"]) for row in rows["legacy"]
    ]
    best = _invoke("best", "--storage", url, "--study", "legacy")
    assert best.exit_code == 0, best.output
    assert "best of study legacy" in best.stdout
    as_json = _invoke("best", "--storage", url, "--study", "legacy", "--json")
    assert as_json.exit_code == 0, as_json.output
    shown = json.loads(as_json.stdout)
    assert shown["trial"] == confirmed["number"]
    assert shown["confirm"]["loss"] == confirmed["confirm"]["loss"]
    failed = _invoke("trials", "--storage", url, "--study", "diverged")
    assert failed.exit_code == 0, failed.output
    assert "diverged" in failed.stdout


def test_opening_keeps_the_legacy_columns_and_copies_the_scores_into_attrs(legacy):
    path, rows = legacy
    load_results(sqlite_url(path), "legacy")
    assert _legacy_rows(path) == rows, "legacy columns are kept as they were"
    with sqlite3.connect(path) as db:
        columns = {row[1] for row in db.execute("PRAGMA table_info(trials)")}
        attrs = dict(db.execute("SELECT number, attrs FROM trials WHERE study_id = 1"))
    db.close()
    assert set(LEGACY_COLUMNS) | {"attrs"} <= columns
    for row in rows["legacy"]:
        expected = {key: row[key] for key in ("final", "confirm") if row[key] is not None}
        copied = json.loads(attrs[row["number"]]) if attrs[row["number"]] else None
        assert copied == (expected or None), f"trial {row['number']}"
