"""Shared fixtures: a tiny real CSV, config files written on the fly, the course's data."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
COURSE_DATA = ROOT.parent / "shared" / "data" / "jh-simple-dataset.csv"

# The course's four hyperparameters (learning rate on a log scale), for searches that never
# read data: the cheap objectives and the optimiser's own tests.
BOWL_SPACE = {
    "dropout": {"low": 0.0, "high": 0.5},
    "learning_rate": {"low": 1.0e-4, "high": 0.1, "log": True},
    "neuron_pct": {"low": 0.01, "high": 1.0},
    "neuron_shrink": {"low": 0.01, "high": 1.0},
}
NO_DATA = {"path": "/unused.csv", "target": "y"}

TINY_SPACE = {
    "dropout": {"low": 0.0, "high": 0.3},
    "learning_rate": {"low": 1.0e-3, "high": 3.0e-2, "log": True},
    "neuron_pct": {"low": 0.002, "high": 0.006},
    "neuron_shrink": {"low": 0.3, "high": 0.8},
}


def make_tiny_frame(rows: int = 150, seed: int = 0) -> pd.DataFrame:
    """Three learnable classes, a categorical column and missing values."""
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 3, rows)
    frame = pd.DataFrame(
        {
            "id": np.arange(rows),
            "x1": label + rng.normal(0, 0.6, rows),
            "x2": -label + rng.normal(0, 0.6, rows),
            "colour": np.where(label == 2, "red", rng.choice(["blue", "green"], rows)),
            "label": np.array(["a", "b", "c"])[label],
        }
    )
    frame.loc[rng.choice(rows, 8, replace=False), "x1"] = np.nan
    frame.loc[rng.choice(rows, 8, replace=False), "colour"] = np.nan
    return frame


@pytest.fixture
def tiny_csv(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.csv"
    make_tiny_frame().to_csv(path, index=False)
    return path


def tiny_config_dict(csv: Path, **sections: dict) -> dict:
    config = {
        "data": {"path": str(csv), "target": "label", "drop": ["id"]},
        "space": dict(TINY_SPACE),
        "network": {"max_neurons": 5000, "min_neurons": 5, "max_layers": 3},
        "evaluation": {"splits": 2, "test_size": 0.2, "epochs": 4, "patience": 2},
        # A small end, never cut by its share of the run (a loaded machine would cut it
        # otherwise): the suite runs dozens of searches.
        "search": {
            "init_points": 2,
            "n_iter": 1,
            "seed": 3,
            "final_candidates": 2,
            "final_splits": 4,
            "confirm_splits": 2,
            "final_share": 0.9,
        },
    }
    for key, value in sections.items():
        config[key] = {**config.get(key, {}), **value} if isinstance(value, dict) else value
    return config


@pytest.fixture
def write_config(tmp_path: Path, tiny_csv: Path):
    """Write a YAML config (the tiny one, with sections replaced or merged) and return its path."""

    def write(name: str = "tiny", raw: dict | None = None, **sections: dict) -> Path:
        path = tmp_path / f"{name}.yaml"
        path.write_text(
            yaml.safe_dump(raw if raw is not None else tiny_config_dict(tiny_csv, **sections))
        )
        return path

    return write


def tree_digest(folder: Path) -> str:
    """A checksum of every file under a folder (names and bytes)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


@pytest.fixture
def course_csv() -> Path:
    if not COURSE_DATA.exists():
        pytest.skip(f"the course's data is not at {COURSE_DATA}")
    return COURSE_DATA


class FinishedStudy:
    """A tiny finished study: its folder, config, CSV and database URL."""

    def __init__(self, folder: Path, config: Path, csv: Path, url: str) -> None:
        self.folder, self.config, self.csv, self.url = folder, config, csv, url


@pytest.fixture(scope="session")
def finished_study(tmp_path_factory) -> FinishedStudy:
    """Three trials on the tiny data (3 epochs), plus one failed trial; built once per session.

    The database is where `tuner search CONFIG` puts it when run from `folder`.
    """
    from tuner.config.schema import load_config
    from tuner.engine.api import search
    from tuner.study.store import Storage, TrialState, sqlite_url

    folder = tmp_path_factory.mktemp("study")
    csv = folder / "tiny.csv"
    make_tiny_frame().to_csv(csv, index=False)
    config = folder / "tiny.yaml"
    raw = tiny_config_dict(csv, evaluation={"epochs": 3})
    config.write_text(yaml.safe_dump(raw))
    url = sqlite_url(folder / "runs" / "tiny" / "study.db")
    result = search(load_config(config), storage_url=url, study_name="tiny")
    storage = Storage(url)
    try:
        study = storage.get_study("tiny")
        failed = storage.start_trial(study, {}, dict(result.best.params), seed=7)
        storage.finish_trial(
            failed, state=TrialState.FAILED, error_kind="crashed", error="boom", seconds=0.5
        )
    finally:
        storage.close()
    return FinishedStudy(folder, config, csv, url)


@pytest.fixture(scope="session")
def postgres_server():
    """The admin URL of a PostgreSQL server, or the loud reason there is none (an exception)."""
    import contextlib
    import os

    from tests.postgres import PostgresUnavailable, check_server, throwaway_server

    with contextlib.ExitStack() as stack:
        try:
            given = os.environ.get("TUNER_TEST_POSTGRES_URL")
            url = given or stack.enter_context(throwaway_server())
            check_server(url)
        except PostgresUnavailable as exc:
            yield exc
            return
        yield url


@pytest.fixture
def postgres_url(postgres_server) -> str:
    """A fresh, empty database on the test server; skips loudly when there is no server."""
    from tests.postgres import fresh_database, skip_reason

    if isinstance(postgres_server, Exception):
        pytest.skip(skip_reason(postgres_server))
    return fresh_database(postgres_server)


@pytest.fixture(params=["sqlite", "postgresql"])
def storage_url(request, tmp_path: Path) -> str:
    """The URL of an empty study database, on each backend in turn."""
    from tuner.study.store import sqlite_url

    if request.param == "sqlite":
        return sqlite_url(tmp_path / "nested" / "study.db")
    return request.getfixturevalue("postgres_url")
