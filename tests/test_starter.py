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
