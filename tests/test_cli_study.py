"""The study-reading commands (trials, best, report, export, predict, init) through CliRunner."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from matplotlib.figure import Figure

from tuner.cli.commands import cli
from tuner.engine.loop import SearchResult
from tuner.outputs.plots import _baseline_lines
from tuner.outputs.report import print_search_result
from tuner.study.results import load_results
from tuner.study.store import Storage, sqlite_url

from .conftest import tree_digest


@pytest.fixture
def run(finished_study, monkeypatch):
    """Invoke `tuner` from the study's folder, where `tuner search tiny.yaml` put the study."""
    monkeypatch.chdir(finished_study.folder)

    def invoke(*args: object):
        return CliRunner().invoke(cli, [str(a) for a in args])

    return invoke


def test_trials_in_every_format(run, finished_study):
    table = run("trials", "tiny.yaml")
    assert table.exit_code == 0, table.output
    assert "trials of study tiny" in table.stdout and "crashed: boom" in table.stdout
    as_json = json.loads(run("trials", "tiny.yaml", "--json").stdout)
    assert as_json == json.loads(run("trials", "tiny.yaml", "--format", "json").stdout)
    assert as_json["study"] == "tiny" and as_json["storage"] == finished_study.url
    states = [t["state"] for t in as_json["trials"]]
    assert states == ["complete"] * 3 + ["failed"]
    assert set(as_json["trials"][0]) >= {"trial", "params", "loss", "loss_std", "epochs", "error"}
    rows = list(csv.DictReader(io.StringIO(run("trials", "tiny.yaml", "--format", "csv").stdout)))
    assert len(rows) == 4 and rows[3]["error"] == "crashed: boom"
    assert float(rows[0]["loss"]) == as_json["trials"][0]["loss"], "full precision in CSV"
    assert {"batch_size", "learning_rate", "loss_std", "seconds"} <= set(rows[0])
    # The tiny config re-scores the best 2 of the 3 completed trials.
    finals = [i for i, t in enumerate(as_json["trials"]) if t["final"] is not None]
    assert len(finals) == 2
    for i, trial in enumerate(as_json["trials"]):
        if i in finals:
            assert float(rows[i]["final_loss"]) == trial["final"]["loss"]
            assert float(rows[i]["final_loss_se"]) == pytest.approx(
                trial["final"]["loss_std"] / len(trial["final"]["split_losses"]) ** 0.5
            )
        else:
            assert rows[i]["final_loss"] == rows[i]["final_loss_se"] == ""
    assert rows[3]["final_loss"] == "", "a failed trial is not re-scored"
    # Per-trial extras are the final and confirmation scores; nothing of the removed features.
    assert not set(as_json["trials"][0]) & {"baselines", "raw_loss", "difficulty", "race_seeds"}


def test_storage_and_study_instead_of_a_config(run, finished_study):
    by_url = run("trials", "--storage", finished_study.url, "--study", "tiny", "--json")
    assert by_url.exit_code == 0
    assert by_url.stdout == run("trials", "tiny.yaml", "--json").stdout


def test_best_is_the_lowest_rescored_loss(run):
    result = run("best", "tiny.yaml", "--json")
    assert result.exit_code == 0, result.output
    best = json.loads(result.stdout)
    trials = json.loads(run("trials", "tiny.yaml", "--json").stdout)["trials"]
    finals = [t["final"]["loss"] for t in trials if t["final"] is not None]
    assert len(finals) == 2, "the tiny config's 2 finalists"
    assert best["final_loss"] == min(finals) == best["final"]["loss"], "chosen on fresh splits"
    assert best["loss"] == best["confirm"]["loss"], "reported on other fresh splits"
    assert not set(best["confirm"]["seeds"]) & set(best["final"]["seeds"])
    assert best["search_loss"] == trials[best["trial"]]["loss"]
    assert best["final_splits"] == 4 and best["final_candidates"] == 2
    assert best["confirm_splits"] == best["loss_splits"] == 2
    assert best["loss_std"] == best["confirm"]["loss_std"]
    assert best["loss_se"] == pytest.approx(best["confirm"]["loss_std"] / 2**0.5)
    assert not set(best) & {"raw_loss", "raw_loss_se", "difficulty", "difficulty_shift"}
    assert best["architecture"].startswith("5 -> ") and best["study"] == "tiny"
    text = run("best", "tiny.yaml").stdout
    assert "best of study tiny" in text and "architecture" in text
    assert f"{best['loss']:.4f} ± {best['loss_se']:.4f} (2 fresh splits, the exported" in text
    assert f"{best['search_loss']:.4f} (2 splits)" in text.split("search loss")[-1]
    fresh = text.split("fresh splits")[-1]
    assert f"{best['final']['split_losses'][0]:.4f}" in fresh
    confirmed = text.split("confirmation splits")[-1]
    assert f"{best['confirm']['split_losses'][0]:.4f}" in confirmed


BASELINES = {
    "prior": {
        "name": "class frequencies",
        "loss": 1.0986,
        "loss_se": 0.0012,
        "splits": 2,
        "metrics": {"accuracy": 0.3333, "balanced_accuracy": 0.3333, "roc_auc": 0.5},
    },
    "linear": {
        "name": "logistic regression",
        "loss": 0.0777,  # under every trial: drawn on the convergence plot
        "loss_se": 0.0321,
        "splits": 2,
        "metrics": {"accuracy": 0.6111, "balanced_accuracy": 0.6, "roc_auc": None},
    },
}


@pytest.fixture
def annotated(finished_study, tmp_path, monkeypatch):
    """A copy of the finished study with metrics and baselines set by hand, and a `tuner`
    invoker in its folder: search-time metrics on every completed trial (accuracy 0.5 + its
    number / 100), the winner's confirmation metrics, and its baselines."""
    folder = tmp_path / "annotated"
    shutil.copytree(finished_study.folder, folder)
    url = sqlite_url(folder / "runs" / "tiny" / "study.db")
    winner = load_results(url, "tiny").winner
    storage = Storage(url)
    try:
        study = storage.get_study("tiny")
        for trial in storage.trials(study):
            if trial.loss is not None:
                accuracy = 0.5 + trial.number / 100
                storage.set_attrs(trial, {"metrics": {"accuracy": accuracy, "roc_auc": 0.7}})
        confirm = {**winner.trial.confirm.to_dict(), "metrics": {"accuracy": 0.9, "roc_auc": None}}
        storage.set_attrs(winner.trial, {"confirm": confirm, "baselines": BASELINES})
    finally:
        storage.close()
    monkeypatch.chdir(folder)
    return lambda *args: CliRunner().invoke(cli, [str(a) for a in args])


def test_trials_show_search_time_metrics_and_top_n(annotated):
    rows = list(
        csv.DictReader(io.StringIO(annotated("trials", "tiny.yaml", "--format", "csv").stdout))
    )
    assert {"accuracy", "balanced_accuracy", "roc_auc"} <= set(rows[0])
    assert float(rows[1]["accuracy"]) == 0.51 and rows[3]["accuracy"] == "", "failed: none"
    as_json = json.loads(annotated("trials", "tiny.yaml", "--json").stdout)["trials"]
    assert as_json[2]["metrics"] == {"accuracy": 0.52, "roc_auc": 0.7}
    table = annotated("trials", "tiny.yaml").stdout
    assert "accuracy" in table and "ROC AUC" in table and "balanced" not in table
    assert "0.5200" in table and "0.7000" in table
    top = json.loads(annotated("trials", "tiny.yaml", "--top", "2", "--json").stdout)["trials"]
    by_loss = sorted((t for t in as_json if t["loss"] is not None), key=lambda t: t["loss"])
    assert [t["trial"] for t in top] == [t["trial"] for t in by_loss[:2]]
    assert "the best 1" in annotated("trials", "tiny.yaml", "--top", "1").stdout
    refused = annotated("trials", "tiny.yaml", "--top", "0")
    assert refused.exit_code == 2 and "--top" in refused.stderr


def test_best_shows_the_reported_metrics_and_the_baselines(annotated):
    best = json.loads(annotated("best", "tiny.yaml", "--json").stdout)
    assert best["metrics_from"] == "confirmation"
    assert best["metrics"] == {"accuracy": 0.9, "roc_auc": None}, "undefined: null in JSON"
    assert best["search_metrics"]["accuracy"] == 0.5 + best["trial"] / 100
    assert best["baselines"] == BASELINES
    text = annotated("best", "tiny.yaml").stdout
    assert "0.9000" in text.split("accuracy")[1] and "n/a" in text.split("ROC AUC")[1]
    against = text.split("against baselines")[1]
    lines = [line for line in against.splitlines() if "regression" in line or "frequen" in line]
    assert "0.0777 ± 0.0321" in lines[0] and "0.6111" in lines[0] and "n/a" in lines[0]
    assert "class frequencies" in lines[1] and "1.0986 ± 0.0012" in lines[1]
    assert f"tuner's network (#{best['trial']})" in against
    assert f"{best['loss']:.4f} ± {best['loss_se']:.4f}" in against


def test_the_report_shows_metrics_and_baselines(annotated):
    assert annotated("report", "tiny.yaml", "--out", "study.html").exit_code == 0
    page = Path("study.html").read_text()
    assert "Against baselines" in page and "logistic regression" in page
    assert "best ROC AUC" in page and "0.9000" in page
    assert "<th>accuracy</th>" in page and "0.5100" in page
    results = load_results(sqlite_url(Path("runs/tiny/study.db").resolve()), "tiny")
    axes = Figure().subplots()
    _baseline_lines(axes, results)
    highest = max(t.loss for t in results.completed)
    drawn = [b["name"] for b in BASELINES.values() if b["loss"] <= highest]
    assert "logistic regression" in drawn
    assert sorted(line.get_label() for line in axes.get_lines()) == sorted(drawn)


def test_a_search_result_shows_the_winners_metrics_and_baselines(annotated, capsys):
    results = load_results(sqlite_url(Path("runs/tiny/study.db").resolve()), "tiny")
    found = SearchResult("tiny", results.storage, results.winner, results.trials)
    print_search_result(found, results.names, as_json=False)
    out = capsys.readouterr().out
    assert "0.9000" in out.split("accuracy")[1], "the confirmation's accuracy"
    assert "logistic regression" in out.split("against baselines")[1] and "ROC AUC" in out


def test_the_end_keeps_baselines_and_a_study_without_them_shows_none(
    run, finished_study, tmp_path, monkeypatch
):
    # The search's end scored the baselines on the winner's confirmation splits.
    kept = json.loads(run("best", "tiny.yaml", "--json").stdout)["baselines"]
    assert kept["linear"]["name"] == "logistic regression" and kept["prior"]["loss"] > 0
    assert kept["linear"]["splits"] == kept["prior"]["splits"] == 2
    # A study stored before baselines and metrics existed shows neither.
    folder = tmp_path / "plain"
    shutil.copytree(finished_study.folder, folder)
    storage = Storage(sqlite_url(folder / "runs" / "tiny" / "study.db"))
    try:
        for trial in storage.trials(storage.get_study("tiny")):
            storage.set_attrs(trial, {"baselines": None, "metrics": None})
    finally:
        storage.close()
    monkeypatch.chdir(folder)
    best = json.loads(run("best", "tiny.yaml", "--json").stdout)
    assert best["baselines"] is None
    assert "against baselines" not in run("best", "tiny.yaml").stdout
    assert run("report", "tiny.yaml", "--out", "plain.html").exit_code == 0
    assert "Against baselines" not in (folder / "plain.html").read_text()
    assert not math.isnan(best["loss"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["trials"], "give a config file (its default run folder and study name), or both"),
        (["trials", "nope.yaml"], "nope.yaml: config file not found; check the path"),
        (["best", "tiny.yaml", "--study", "other"], "--study: no study 'other' in sqlite:///"),
        (["report", "--storage", "sqlite:///gone.db", "--study", "x"], "no study database at"),
        (["worker", "--storage", "sqlite:///gone.db", "--study", "x"], "no study database at"),
        (["predict", "nomodel", "tiny.csv", "--out", "p.csv"], "nomodel: model folder not found"),
        (["init", "tiny.csv", "--target", "nope"], "--target: column 'nope' is not in tiny.csv"),
        (["init", "nope.csv", "--target", "x"], "file not found: nope.csv; check the path"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(run, finished_study, args, message):
    before = tree_digest(finished_study.folder)
    result = run(*args)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert result.stderr.count("\n") == 1 and result.stdout == ""
    assert tree_digest(finished_study.folder) == before


def test_report_writes_a_page_and_pngs(run, finished_study):
    result = run("report", "tiny.yaml", "--out", "out/study.html", "--json")
    assert result.exit_code == 0, result.output
    written = json.loads(result.stdout)
    page = (finished_study.folder / "out" / "study.html").read_text()
    assert written["bytes"] == len(page.encode())
    names = sorted(Path(p).name for p in written["plots"])
    assert names == [f"study-{n}.png" for n in ("convergence", "parameters", "splits", "timings")]
    for path in written["plots"]:
        assert (finished_study.folder / path).read_bytes().startswith(b"\x89PNG")
    assert page.count('src="data:image/png;base64,') == 4
    assert "crashed" in page and "boom" in page and "hidden 1" in page
    assert "http://" not in page and "https://" not in page and "<script" not in page


def test_export_then_predict_round_trip(run, finished_study, tmp_path):
    out = tmp_path / "model"
    result = run("export", "tiny.yaml", "--out", out, "--json", "--quiet")
    assert result.exit_code == 0, result.output
    meta = json.loads(result.stdout)
    assert sorted(p.name for p in out.iterdir()) == [
        "model.json",
        "model.keras",
        "preprocessing.joblib",
    ]
    stored = json.loads((out / "model.json").read_text())
    assert stored["classes"] == ["a", "b", "c"] and stored["id_column"] == "id"
    assert stored["feature_columns"] == ["x1", "x2", "colour"]
    versions = stored["versions"]
    backend = versions["backend"]  # the one KERAS_BACKEND chose, TensorFlow by default
    assert set(versions) == {"python", "keras", "backend", backend, "scikit-learn", "tuner"}
    assert len(stored["data"]["sha256"]) == 64 and stored["architecture"]["members"] == 2
    best = json.loads(run("best", "tiny.yaml", "--json").stdout)
    assert meta["trial"] == best["trial"] and stored["score"]["loss"] == best["loss"]
    assert run("export", "tiny.yaml", "--out", out, "--seeds", "2").exit_code == 2, "gone"

    again = run("export", "tiny.yaml", "--out", out)
    assert again.exit_code == 2 and "exists and is not empty" in again.stderr

    predicted = run("predict", out, "tiny.csv", "--out", tmp_path / "p.csv", "--json")
    assert predicted.exit_code == 0, predicted.output
    assert json.loads(predicted.stdout)["columns"] == ["id", "p_a", "p_b", "p_c", "prediction"]
    lines = (tmp_path / "p.csv").read_text().splitlines()
    assert len(lines) == 151 and lines[0] == "id,p_a,p_b,p_c,prediction"

    frame = (finished_study.folder / "tiny.csv").read_text().splitlines()
    header = frame[0].split(",")
    without_x2 = "\n".join(
        ",".join(v for h, v in zip(header, line.split(","), strict=True) if h != "x2")
        for line in frame
    )
    (tmp_path / "no_x2.csv").write_text(without_x2 + "\n")
    refused = run("predict", out, tmp_path / "no_x2.csv", "--out", tmp_path / "q.csv")
    assert refused.exit_code == 2
    assert "missing column(s) x2 that the model needs" in refused.stderr
    assert not (tmp_path / "q.csv").exists()


def test_init_writes_a_config_that_search_accepts(run, finished_study, tmp_path):
    result = run("init", "tiny.csv", "--target", "label")
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert text.startswith("# Starter config for tiny.csv")
    assert "task: classification" in text and 'drop: ["id"]' in text
    assert 'categorical: ["colour"]' in text and "log: true" in text
    config = tmp_path / "starter.yaml"
    config.write_text(text)
    searched = run(
        "search",
        config,
        "--out",
        tmp_path / "runs",
        "--quiet",
        "--json",
        "--set",
        "search.init_points=1",
        "--set",
        "search.n_iter=0",
        "--set",
        "evaluation.epochs=2",
        "--set",
        "evaluation.splits=1",
    )
    assert searched.exit_code == 0, searched.output
    assert json.loads(searched.stdout)["trial"] == 0


def test_the_new_commands_keep_matplotlib_and_keras_out_of_the_cli():
    code = (
        "import sys, tuner.cli.commands, tuner.study.results, tuner.outputs.starter; "
        "import tuner.outputs.webpage, tuner.outputs.export; "
        "heavy = {'keras', 'tensorflow', 'matplotlib'} & set(sys.modules); "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_shell_completion_as_readme_shows():
    code = "from tuner.cli.commands import main; main()"
    env = {**os.environ, "COMP_WORDS": "tuner rep", "COMP_CWORD": "1"}
    for shell in ("bash", "zsh", "fish"):
        source = subprocess.run(
            [sys.executable, "-c", code],
            env={**env, "_TUNER_COMPLETE": f"{shell}_source"},
            capture_output=True,
            text=True,
        )
        assert "_TUNER_COMPLETE" in source.stdout, shell
    words = subprocess.run(
        [sys.executable, "-c", code],
        env={**env, "_TUNER_COMPLETE": "bash_complete"},
        capture_output=True,
        text=True,
    )
    assert words.stdout.split() == ["plain,report"]
