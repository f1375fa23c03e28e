"""Export and predict: the saved model predicts as the one in memory did."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tuner.errors import UsageError
from tuner.export import check_model_folder, export_model, load_exported, predict_frame
from tuner.results import load_results


def test_saved_model_predicts_like_the_model_in_memory(finished_study, tmp_path):
    results = load_results(finished_study.url, "tiny")
    in_memory = export_model(results, tmp_path / "model", seeds=1)
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
    assert loaded.meta["score"]["held_out_loss"] == in_memory.meta["score"]["held_out_loss"]


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
