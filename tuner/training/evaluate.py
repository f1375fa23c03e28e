"""Score one point of the space by bootstrap: the same code for `search` and `evaluate`."""

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any

import numpy as np

from tuner.config.schema import Config, Scalar
from tuner.errors import TrialFailed
from tuner.training.architecture import Architecture, decode
from tuner.training.data import Dataset, load_dataset, make_splits, prepare_split
from tuner.training.metrics import mean_metrics


@dataclass(frozen=True)
class Score:
    """The result of scoring one point: mean held-out loss and what it is made of."""

    loss: float
    loss_std: float
    split_losses: tuple[float, ...]
    epochs: tuple[int, ...]
    seconds: float
    # The task's metrics on the same held-out parts, each the mean over the splits.
    metrics: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        lists = {"split_losses": list(self.split_losses), "epochs": list(self.epochs)}
        return {**asdict(self), **lists}


def input_width(dataset: Dataset) -> int:
    """The network's inputs: numeric columns plus one per category (one-hot encoded)."""
    return len(dataset.numeric) + sum(
        dataset.features[c].dropna().nunique() for c in dataset.categorical
    )


def architecture_for(
    config: Config, dataset: Dataset, params: Mapping[str, Scalar]
) -> Architecture:
    """The network a point decodes to on this data set (inputs as one-hot encoded)."""
    return decode(params, config.network, input_width(dataset), dataset.n_outputs, dataset.task)


def size_limit(config: Config, dataset: Dataset) -> Callable[[Mapping[str, Scalar]], bool]:
    """Whether a point's network is within `evaluation.max_params` on this data set."""
    width, limit = input_width(dataset), config.evaluation.max_params

    def within(params: Mapping[str, Scalar]) -> bool:
        try:
            arch = decode(params, config.network, width, dataset.n_outputs, dataset.task)
        except TrialFailed:  # layers that grow without bound
            return False
        return arch.n_params <= limit

    return within


def refuse_too_large(config: Config, dataset: Dataset, params: Mapping[str, Scalar]) -> None:
    """TrialFailed `too_large` for a network over `evaluation.max_params` on this data."""
    planned = architecture_for(config, dataset, params)
    limit = config.evaluation.max_params
    if planned.n_params > limit:
        raise TrialFailed(
            "too_large",
            f"{planned.n_params:,} parameters is over evaluation.max_params ({limit:,}): "
            f"{planned.describe()}",
        )


def evaluate_point(
    config: Config,
    dataset: Dataset,
    params: Mapping[str, Scalar],
    seed: int,
    *,
    members: int | None = None,
) -> Score:
    """The mean held-out loss on `evaluation.splits` resampled splits (TrialFailed: diverged);
    with `members`, the loss of the averaged ensemble of that many networks trained on each
    split's training part alone (the exported procedure) instead."""
    if members is not None:
        from tuner.training.ensemble import evaluate_ensemble  # Keras only when it trains

        return evaluate_ensemble(config, dataset, params, seed, members)
    started = time.perf_counter()
    evaluation = config.evaluation
    refuse_too_large(config, dataset, params)
    splits = make_splits(dataset, evaluation.splits, evaluation.test_size, seed)
    parts = [prepare_split(dataset, train, test) for train, test in splits]
    # One-hot widths differ when a category is absent from a part: the others are padded.
    width = max(part.x_train.shape[1] for part in parts)
    arch = decode(params, config.network, width, dataset.n_outputs, dataset.task)
    from tuner.training.trainer import train_splits  # Keras only when a network is trained

    results = train_splits(arch, dict(params), parts, evaluation, seed)
    losses = [result.loss for result in results]
    loss = float(np.mean(losses))
    if not math.isfinite(loss):
        raise TrialFailed("diverged", f"held-out loss is {loss}")
    std = float(np.std(losses, ddof=1)) if len(losses) > 1 else 0.0
    epochs = tuple(result.epochs for result in results)
    seconds = time.perf_counter() - started
    found = mean_metrics([result.metrics for result in results])
    return Score(loss, std, tuple(losses), epochs, seconds, found)


def make_objective(
    config: Config, dataset: Dataset
) -> Callable[[Mapping[str, Scalar], int], Score]:
    """The objective a worker process runs: `evaluate_point` on this config and data. Keras
    starts here, as the worker starts, so that no trial's seconds count the framework's start."""
    import tuner.training.trainer  # noqa: F401

    return partial(evaluate_point, config, dataset)


def load_for_scoring(config: Config) -> Dataset:
    """The config's data, its splits checked, before any output or work."""
    dataset = load_dataset(config.data)
    make_splits(dataset, config.evaluation.splits, config.evaluation.test_size, 0)
    return dataset
