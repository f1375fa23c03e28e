"""`tuner init`: a commented starter config guessed from a CSV file."""

import json
import math
from pathlib import Path

import pandas as pd

from tuner.errors import DataError, UsageError
from tuner.training.data import read_table

# Above this many distinct numeric values (and not all whole numbers), a target is a quantity.
_MAX_CLASSES = 20
_ID_NAMES = {"id", "key", "row_id", "index", "uuid"}


def guess_task(column: pd.Series) -> str:
    """`regression` for a numeric target with many distinct or fractional values."""
    values = column.dropna()
    if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        return "classification"
    whole = bool((values == values.round()).all())
    return "regression" if values.nunique() > _MAX_CLASSES or not whole else "classification"


def _drop_reason(frame: pd.DataFrame, column: str) -> str | None:
    """Why a column should be left out of the features, or None to keep it."""
    values = frame[column].dropna()
    if values.empty:
        return "has no values"
    if values.nunique() == 1:
        return "has a single value"
    if column.lower() in _ID_NAMES and values.is_unique:
        return "an id: unique per row"
    numeric = pd.api.types.is_numeric_dtype(values)
    if not numeric and values.nunique() > max(50, len(frame) // 2):
        return f"free text or an id: {values.nunique()} distinct values"
    if numeric and values.is_unique and bool((values.diff().dropna() == 1).all()):
        return "a row counter"
    return None


def _data_section(path: Path, frame: pd.DataFrame, target: str) -> list[str]:
    task = guess_task(frame[target])
    classes = frame[target].dropna().nunique()
    drops = {c: r for c in frame.columns if c != target and (r := _drop_reason(frame, c))}
    features = [c for c in frame.columns if c != target and c not in drops]
    categorical = [c for c in features if not pd.api.types.is_numeric_dtype(frame[c])]
    lines = [
        "data:",
        "  # The CSV file (an absolute path here; a relative one is relative to this file).",
        f"  path: {json.dumps(str(path.resolve()))}",
        f"  target: {json.dumps(target)}",
        f"  # Guessed from the target: {classes} distinct values"
        f"{' (numeric)' if task == 'regression' else ''}. classification or regression.",
        f"  task: {task}",
        "  # Columns left out of the features, and why they were suggested:",
    ]
    lines += [f"  #   {c}: {r}" for c, r in drops.items()] or ["  #   (none)"]
    lines.append(f"  drop: [{', '.join(json.dumps(c) for c in drops)}]")
    lines += [
        "  # Columns to one-hot encode: those pandas does not read as numbers. A numeric code",
        "  # (a zip code, a category number) belongs here too; add it by hand.",
        f"  categorical: [{', '.join(json.dumps(c) for c in categorical)}]",
    ]
    return lines


# Patience counted in gradient steps rather than epochs: on a small table an epoch is a few
# steps, and networks stopped after a handful of noisy epochs score worse than the same point
# given more patience (docs/results.md, "Patience on small tables").
_PATIENCE_STEPS = 400
_BATCH = 32
# Held-out rows per trial (summed over its splits) below which a trial's mean is too noisy.
_HELD_OUT_ROWS = 200
# Conservative speed of a 2-core CPU on small batches, for the timeout's estimate.
_FLOPS, _STEP_SECONDS = 2e9, 0.002


def evaluation_section(rows: int, inputs: int, outputs: int) -> list[str]:
    """`evaluation:` sized from the table: patience, epochs, splits and timeout, with why."""
    test_size = 0.2 if rows < 20_000 else 0.1
    steps = max(1.0, rows * (1 - test_size) / _BATCH)
    patience = min(30, max(5, math.ceil(_PATIENCE_STEPS / steps)))
    epochs = min(500, max(100, 10 * patience))
    splits = min(5, max(2, math.ceil(_HELD_OUT_ROWS / (rows * test_size))))
    # The space's largest network: 250 neurons first (5000 x 0.05), halving after.
    params = (inputs + 1) * 250 + 251 * 125 + 126 * outputs
    step_flops = 6 * params * _BATCH * splits
    worst = epochs * math.ceil(steps) * (step_flops / _FLOPS + _STEP_SECONDS)
    timeout = max(300, 60 * math.ceil(3 * worst / 60))
    return [
        f"# Sized from the table ({rows} rows, {inputs} inputs after one-hot encoding, "
        f"{outputs} output(s)):",
        f"# - an epoch is about {steps:.0f} steps of {_BATCH} rows; patience {patience} epochs "
        f"waits about {patience * steps:.0f} steps",
        f"#   for a better held-out loss (aiming at {_PATIENCE_STEPS}, within 5 to 30 epochs), "
        f"and epochs ({epochs}) leaves room for it;",
        f"# - {splits} splits hold out about {_HELD_OUT_ROWS} rows or more per trial in all;",
        f"# - timeout ({timeout} s): about 3x the largest network's time on 2 CPU cores, at "
        "least 300 s; a trial past it is cut",
        "#   and recorded timed_out. Each point's score is the mean held-out loss over the splits",
        "#   (log loss for classification, RMSE for regression).",
        f"evaluation: {{splits: {splits}, test_size: {test_size}, epochs: {epochs}, "
        f"patience: {patience}, min_delta: 0.001, timeout: {timeout}}}",
    ]


_REST = """
# The course's four hyperparameters. {low, high} is a searched range; log: true searches the
# logarithm uniformly. Narrow the ranges once a first search shows where the good points are.
space:
  # Dropout rate after each hidden layer (0 <= x < 1).
  dropout: {low: 0.0, high: 0.5}
  # Adam's learning rate, on a log scale: as many trials in 1e-4..1e-3 as in 1e-3..1e-2.
  learning_rate: {low: 1.0e-4, high: 0.03, log: true}
  # First hidden layer's width as a fraction of network.max_neurons: 10 to 250 neurons here.
  neuron_pct: {low: 0.002, high: 0.05}
  # Factor from one hidden layer's width to the next.
  neuron_shrink: {low: 0.1, high: 1.0}
  batch_size: 32

network: {max_neurons: 5000, min_neurons: 5, max_layers: 4, activation: prelu}

{evaluation}
# 5 random points, then 10 proposed by the Gaussian process.
search: {init_points: 5, n_iter: 10, seed: 1}
"""


def starter_config(path: Path, target: str) -> str:
    """The text of a starter config for the CSV at `path` predicting `target`."""
    try:
        frame = read_table(str(path))
    except DataError as exc:
        raise DataError(str(exc).removeprefix("data.path: ")) from exc
    if target not in frame.columns:
        shown = ", ".join(map(str, frame.columns[:20]))
        raise UsageError(f"--target: column '{target}' is not in {path}; columns: {shown}")
    header = [
        f"# Starter config for {path.name}, written by `tuner init`. Check the guesses below,",
        "# then run: tuner search THIS_FILE",
    ]
    evaluation = "\n".join(evaluation_section(*_shape(frame, target)))
    rest = _REST.replace("{evaluation}", evaluation + "\n")
    return "\n".join([*header, *_data_section(path, frame, target)]) + "\n" + rest


def _shape(frame: pd.DataFrame, target: str) -> tuple[int, int, int]:
    """Rows with a target, network inputs after one-hot encoding, and outputs."""
    rows = int(frame[target].notna().sum())
    drops = {c for c in frame.columns if c != target and _drop_reason(frame, c)}
    features = [c for c in frame.columns if c != target and c not in drops]
    inputs = sum(
        1 if pd.api.types.is_numeric_dtype(frame[c]) else frame[c].nunique() for c in features
    )
    task = guess_task(frame[target])
    outputs = int(frame[target].nunique()) if task == "classification" else 1
    return rows, max(1, inputs), outputs
