"""benchmarks/comparison_noise.py on results files built by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks.comparison_noise import errors, load, main


def results_file(path, rows, fixed, first=0):
    cells = {
        f"equal-trials/m/{i}": {"params": {"x": i}, "rescore_split_losses": list(row)}
        for i, row in enumerate(rows, start=first)
    }
    path.write_text(json.dumps({"cells": cells, "rescore_difficulty": {"fixed": list(fixed)}}))
    return path


def test_split_losses_that_are_the_baselines_plus_a_level_compare_exactly(tmp_path, capsys):
    rng = np.random.default_rng(1)
    base = 0.7 + rng.normal(0, 0.05, 20)
    levels = rng.uniform(-0.05, 0.0, 12)
    rows = levels[:, None] + base[None, :]
    diverged = np.full(20, 3.0)  # over 1.5 x the baseline: left out
    a = results_file(tmp_path / "a.json", [*rows[:6], diverged], base)
    b = results_file(tmp_path / "b.json", rows[6:], base, first=10)
    table, fixed = load([a, b])
    assert table.shape == (12, 20) and np.allclose(fixed, base)
    found = errors(table, fixed, 2000)
    assert found["slope"] == pytest.approx(1.0)
    assert found["independent"] > 0.03, "independent splits: the splits' difficulty"
    for key in ("adjusted", "slope 1", "common"):
        assert found[key] == pytest.approx(0.0, abs=1e-12)
    assert main([str(a), str(b), "--pairs", "500"]) == 0
    assert "12 networks x 20 splits" in capsys.readouterr().out


def test_files_of_two_data_sets_are_refused(tmp_path):
    a = results_file(tmp_path / "a.json", [np.ones(3)], [0.5, 0.6, 0.7])
    b = results_file(tmp_path / "b.json", [np.ones(3)], [0.5, 0.6, 0.9])
    with pytest.raises(SystemExit, match="one data set"):
        load([a, b])
