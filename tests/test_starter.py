"""`tuner init`'s guesses from a CSV."""

from __future__ import annotations

import numpy as np
import pandas as pd
import yaml

from tuner.config.schema import validate_config
from tuner.outputs.starter import guess_task, starter_config


def test_guess_task():
    assert guess_task(pd.Series(["a", "b", "a"])) == "classification"
    assert guess_task(pd.Series([0, 1, 1, 0])) == "classification"
    assert guess_task(pd.Series(np.linspace(0, 1, 50))) == "regression"
    assert guess_task(pd.Series([1.5, 2.0, 2.5])) == "regression"
    assert guess_task(pd.Series(range(100))) == "regression"


def test_starter_config_suggests_drops_and_categoricals(tmp_path):
    rows = 120
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "row": np.arange(rows),
            "name": [f"person {i}" for i in range(rows)],
            "constant": 1,
            "city": rng.choice(["x", "y", "z"], rows),
            "age": rng.integers(18, 90, rows),
            "price": rng.normal(100, 10, rows),
        }
    )
    frame.to_csv(tmp_path / "houses.csv", index=False)
    text = starter_config(tmp_path / "houses.csv", "price")
    config = validate_config(yaml.safe_load(text))
    assert config.data.task == "regression"
    assert config.data.drop == ["row", "name", "constant"]
    assert config.data.categorical == ["city"]
    assert config.space["learning_rate"].log
    assert "#   name: free text or an id: 120 distinct values" in text


def test_evaluation_is_sized_from_the_table():
    from tuner.outputs.starter import evaluation_section

    def settings(rows: int, inputs: int, outputs: int) -> dict:
        return yaml.safe_load(evaluation_section(rows, inputs, outputs)[-1])["evaluation"]

    small, large = settings(344, 10, 3), settings(100_000, 50, 2)
    # A small table's epoch is a few steps: more patience, more splits, and epochs to match.
    assert small["patience"] > large["patience"] == 5
    assert small["splits"] > large["splits"] == 2
    assert small["epochs"] >= 10 * small["patience"]
    assert large["test_size"] < small["test_size"]
    # A bigger table and network get a longer timeout, never under 5 minutes.
    assert large["timeout"] > small["timeout"] >= 300


def test_the_sized_starter_config_is_valid_and_says_why(tmp_path):
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"x": rng.normal(size=300), "y": rng.choice(["a", "b"], 300)})
    frame.to_csv(tmp_path / "small.csv", index=False)
    text = starter_config(tmp_path / "small.csv", "y")
    config = validate_config(yaml.safe_load(text))
    assert config.evaluation.patience > 5 and config.evaluation.timeout is not None
    assert "# Sized from the table (300 rows, 1 inputs" in text
