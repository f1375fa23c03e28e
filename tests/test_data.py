"""Loading, splitting and preprocessing real CSV files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tuner.config.schema import DataConfig
from tuner.errors import DataError
from tuner.training.data import load_dataset, make_splits, prepare_split

from .conftest import make_tiny_frame


def cfg(path: Path, **extra) -> DataConfig:
    return DataConfig(path=str(path), target=extra.pop("target", "label"), **extra)


def test_roles_and_target_encoding(tiny_csv):
    dataset = load_dataset(cfg(tiny_csv, drop=["id"]))
    assert dataset.numeric == ("x1", "x2")
    assert dataset.categorical == ("colour",)
    assert dataset.classes == ("a", "b", "c")
    assert dataset.n_outputs == 3
    assert set(np.unique(dataset.target)) == {0, 1, 2}
    assert len(dataset) == 150


def test_categorical_can_be_given_and_numbers_become_categories(tiny_csv):
    dataset = load_dataset(cfg(tiny_csv, drop=["colour"], categorical=["id"]))
    assert dataset.categorical == ("id",)
    assert dataset.features["id"].dropna().map(type).eq(str).all()


def test_stratified_splits_keep_class_shares(tiny_csv):
    dataset = load_dataset(cfg(tiny_csv, drop=["id"]))
    splits = make_splits(dataset, 3, 0.2, seed=1)
    assert len(splits) == 3
    for train, test in splits:
        assert len(test) == 30 and not set(train) & set(test)
        shares = np.bincount(dataset.target[test], minlength=3) / len(test)
        overall = np.bincount(dataset.target, minlength=3) / len(dataset)
        assert np.abs(shares - overall).max() < 0.05
    again = make_splits(dataset, 3, 0.2, seed=1)
    assert all((a[1] == b[1]).all() for a, b in zip(splits, again, strict=True))
    assert not (make_splits(dataset, 1, 0.2, seed=2)[0][1] == splits[0][1]).all()


def test_preprocessing_is_fitted_on_the_training_part_only(tmp_path):
    frame = make_tiny_frame()
    # Held-out rows get extreme values and a category never seen in training.
    frame["x2"] = np.arange(len(frame), dtype=float)
    path = tmp_path / "d.csv"
    frame.to_csv(path, index=False)
    dataset = load_dataset(cfg(path, drop=["id"]))
    train = np.arange(0, 120)
    test = np.arange(120, 150)
    dataset.features.loc[test, "colour"] = "purple"
    part = prepare_split(dataset, train, test)
    x2_train = part.x_train[:, 1]
    assert x2_train.mean() == pytest.approx(0.0, abs=1e-5)
    assert x2_train.std() == pytest.approx(1.0, abs=1e-3)
    expected = (np.arange(120, 150) - np.arange(120).mean()) / np.arange(120).std()
    assert part.x_test[:, 1] == pytest.approx(expected, rel=1e-5)
    assert part.x_train.shape[1] == part.x_test.shape[1] == 2 + 3
    assert (part.x_test[:, 2:] == 0).all(), "an unseen category is ignored (all zeros)"
    assert not np.isnan(part.x_train).any() and not np.isnan(part.x_test).any()


def test_missing_target_rows_are_dropped(tmp_path):
    frame = make_tiny_frame()
    frame.loc[:4, "label"] = np.nan
    frame.to_csv(tmp_path / "d.csv", index=False)
    dataset = load_dataset(cfg(tmp_path / "d.csv"))
    assert len(dataset) == 145 and dataset.dropped_rows == 5


def test_regression_target(tiny_csv):
    dataset = load_dataset(cfg(tiny_csv, target="x2", task="regression", drop=["id", "label"]))
    assert dataset.n_outputs == 1 and dataset.target.dtype == np.float32
    assert len(make_splits(dataset, 2, 0.25, seed=0)[0][1]) == 38


def write(tmp_path: Path, name: str, content: bytes | str) -> Path:
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


@pytest.mark.parametrize(
    ("content", "extra", "message"),
    [
        ("", {}, "is empty; it needs a header row and data rows"),
        ("label,x\n", {}, "has a header but no data rows"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", {}, "is a binary file, not a CSV"),
        ("x,y\n1,2\n", {}, "data.target: column 'label' is not in the data; columns: x, y"),
        (
            "label,x\na,1\nb,2\n",
            {"drop": ["id"]},
            "data.drop: column 'id' is not in the data; columns: label, x",
        ),
        (
            "label,x\na,1\nb,2\n",
            {"categorical": ["z"]},
            "data.categorical: column 'z' is not in the data",
        ),
        (
            "label,x,t\na,1,u\nb,2,v\n",
            {"categorical": ["x"]},
            "data.categorical: column 't' is not numeric; add it to data.categorical or data.drop",
        ),
        (
            "label,x\na,1\na,2\n",
            {},
            "data.target: column 'label' has a single class ('a'); "
            "classification needs at least two",
        ),
        ("label,x,e\na,1,\nb,2,\n", {}, "data: column 'e' has no values; add it to data.drop"),
        (
            "label,x\na,1\nb,2\n",
            {"drop": ["x"]},
            "data.drop: no feature columns are left; drop fewer columns",
        ),
        (
            "label,x\na,1\nb,2\n",
            {"drop": ["label"]},
            "data.drop: lists the target column 'label'; remove it from drop",
        ),
        (
            "label,x\na,1\nb,2\n",
            {"task": "regression"},
            "data.target: column 'label' is not numeric; use task: classification",
        ),
        ('label,x\n"a,1\n', {}, "is not a valid CSV"),
    ],
)
def test_bad_data_files(tmp_path, content, extra, message):
    path = write(tmp_path, "d.csv", content)
    with pytest.raises(DataError) as info:
        load_dataset(cfg(path, **extra))
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_not_utf8(tmp_path):
    path = write(tmp_path, "d.csv", b"label,x\n" + "é,1\nb,2\n".encode("latin-1"))
    with pytest.raises(DataError, match="is not UTF-8 text; save it as UTF-8"):
        load_dataset(cfg(path))


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(DataError, match=r"^data.path: file not found: .*nope.csv; check the path$"):
        load_dataset(cfg(tmp_path / "nope.csv"))
    with pytest.raises(DataError, match="is a directory; give the path of a CSV file"):
        load_dataset(cfg(tmp_path))


def test_a_class_with_one_row_cannot_be_stratified(tmp_path):
    frame = pd.DataFrame({"label": ["a"] * 10 + ["b"] * 10 + ["c"], "x": range(21)})
    frame.to_csv(tmp_path / "d.csv", index=False)
    dataset = load_dataset(cfg(tmp_path / "d.csv"))
    with pytest.raises(
        DataError, match=r"class 'c' has fewer than 2 rows, so stratified splits are impossible"
    ):
        make_splits(dataset, 2, 0.3, seed=0)


def test_held_out_part_too_small_for_the_classes(tiny_csv):
    dataset = load_dataset(cfg(tiny_csv, drop=["id"]))
    with pytest.raises(
        DataError,
        match=r"^evaluation.test_size: holds out 2 of 150 rows, fewer than the 3 classes "
        r"\(got 0.01\); raise test_size to at least 0.02$",
    ):
        make_splits(dataset, 2, 0.01, seed=0)
    with pytest.raises(DataError, match=r"; lower test_size to at most 0.98$"):
        make_splits(dataset, 2, 0.99, seed=0)


def test_a_mostly_numeric_column_with_a_word_is_refused_unless_categorical(tmp_path):
    frame = pd.DataFrame({"label": ["a", "b"] * 5, "x": ["12", "7", "n/a?"] + ["15"] * 7})
    frame.to_csv(tmp_path / "d.csv", index=False)
    with pytest.raises(DataError) as info:
        load_dataset(cfg(tmp_path / "d.csv"))
    assert str(info.value) == (
        "data: column 'x' holds numbers but also 1 non-numeric value(s) (got 'n/a?'); "
        "fix or empty the value(s), or list 'x' in data.categorical"
    )
    dataset = load_dataset(cfg(tmp_path / "d.csv", categorical=["x"]))
    assert dataset.categorical == ("x",) and "n/a?" in set(dataset.features["x"])
