"""Export and predict: the saved model (the winner's ensemble) predicts as the one in memory
did, and model.json states the loss the study reports for it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tuner.errors import UsageError
from tuner.outputs.export import check_model_folder, export_model, load_exported, predict_frame
from tuner.study.results import load_results


def test_saved_model_predicts_like_the_model_in_memory(finished_study, tmp_path):
    results = load_results(finished_study.url, "tiny")
    in_memory = export_model(results, tmp_path / "model")
    loaded = load_exported(tmp_path / "model")
    frame = pd.read_csv(finished_study.csv)
    expected = predict_frame(in_memory, frame)
    got = predict_frame(loaded, frame)
    assert list(got.columns) == ["id", "p_a", "p_b", "p_c", "prediction"]
    np.testing.assert_allclose(
        got[["p_a", "p_b", "p_c"]], expected[["p_a", "p_b", "p_c"]], rtol=1e-6, atol=1e-7
    )
    assert (got["prediction"] == expected["prediction"]).all()
    np.testing.assert_allclose(got[["p_a", "p_b", "p_c"]].sum(axis=1), 1.0, rtol=1e-5)
    assert loaded.meta["trial"] == results.best.number
    score, found = loaded.meta["score"], results.winner
    assert score == in_memory.meta["score"]
    assert (score["loss"], score["loss_se"], score["splits"]) == (
        found.loss,
        found.loss_se,
        found.confirm_splits,
    ), "the estimate `tuner best` reports"
    assert score["members"] == loaded.meta["architecture"]["members"] == 2 == found.members
    assert score["estimate"].endswith("an ensemble of 2 networks on 2 fresh splits")
    assert score["search_loss"] == results.best.loss and "held_out_loss" not in score
    assert set(score["metrics"]) == {"accuracy", "balanced_accuracy", "roc_auc"}
    assert len(loaded.model.layers) == 2 + 2, "input, 2 networks, their average"


def test_the_model_folder_is_never_overwritten_unasked(tmp_path):
    check_model_folder(tmp_path / "new", force=False)
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x").write_text("keep")
    with pytest.raises(UsageError, match="exists and is not empty"):
        check_model_folder(tmp_path / "used", force=False)
    check_model_folder(tmp_path / "used", force=True)
    (tmp_path / "file").write_text("")
    with pytest.raises(UsageError, match="is a file"):
        check_model_folder(tmp_path / "file", force=True)


def test_regression_round_trip(tmp_path):
    import yaml

    from tuner.config.schema import load_config
    from tuner.engine.api import search
    from tuner.outputs.progress import QuietReporter
    from tuner.study.store import sqlite_url

    from .conftest import make_tiny_frame, tiny_config_dict

    frame = make_tiny_frame().drop(columns=["label"])
    frame["y"] = 2.0 * frame["x2"].fillna(0) + 0.1 * frame["id"] / 150
    frame.to_csv(tmp_path / "reg.csv", index=False)
    raw = tiny_config_dict(
        tmp_path / "reg.csv",
        data={"target": "y", "task": "regression"},
        evaluation={"splits": 1, "epochs": 2},
        search={"init_points": 1, "n_iter": 0},
    )
    (tmp_path / "reg.yaml").write_text(yaml.safe_dump(raw))
    url = sqlite_url(tmp_path / "study.db")
    search(
        load_config(tmp_path / "reg.yaml"),
        storage_url=url,
        study_name="reg",
        resume=False,
        reporter=QuietReporter(),
    )
    in_memory = export_model(load_results(url, "reg"), tmp_path / "model")
    loaded = load_exported(tmp_path / "model")
    expected, got = predict_frame(in_memory, frame), predict_frame(loaded, frame)
    assert list(got.columns) == ["id", "prediction"]
    np.testing.assert_allclose(got["prediction"], expected["prediction"], rtol=1e-5, atol=1e-6)
    assert loaded.meta["score"]["metric"] == "rmse" and loaded.meta["classes"] == []
    assert loaded.meta["score"]["members"] == 1, "evaluation.splits 1: a single network"
