"""Bookkeeping for training one replica per split at once. Pure NumPy: no Keras here."""

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tuner.config.schema import EvaluationConfig
from tuner.training.architecture import Architecture
from tuner.training.data import PreparedSplit


@dataclass(frozen=True)
class StackedData:
    """Every split's arrays with a leading replica axis; one-hot widths padded with zeros."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def take_replicas(data: StackedData, ids: np.ndarray) -> StackedData:
    return StackedData(data.x_train[ids], data.y_train[ids], data.x_test[ids], data.y_test[ids])


def worth_narrowing(
    active: np.ndarray, wait: np.ndarray, patience: int, epoch_s: float, trace_s: float
) -> bool:
    """Whether retracing for the active replicas alone saves more than the trace costs."""
    left = int(active.sum())
    if left == 0 or left > len(active) // 2:
        return False
    epochs_left = patience - int(wait[active].min())
    return epoch_s * (1 - left / len(active)) * epochs_left > trace_s


def pad_splits(splits: Sequence[PreparedSplit]) -> list[PreparedSplit]:
    """The splits at one width: a narrower split gets zero columns on the right."""
    width = max(split.x_train.shape[1] for split in splits)

    def pad(x: np.ndarray) -> np.ndarray:
        return np.pad(x, ((0, 0), (0, width - x.shape[1])))

    return [PreparedSplit(pad(s.x_train), s.y_train, pad(s.x_test), s.y_test) for s in splits]


def stack_splits(splits: Sequence[PreparedSplit]) -> StackedData:
    """Stack splits of equal row counts, padded to one width."""
    if len({(len(s.y_train), len(s.y_test)) for s in splits}) != 1:
        raise ValueError("stacked splits must have the same numbers of training and test rows")
    parts = [(s.x_train, s.y_train, s.x_test, s.y_test) for s in pad_splits(splits)]
    return StackedData(*(np.stack(part) for part in zip(*parts, strict=True)))


@dataclass(frozen=True)
class Piece:
    """One weight array of one layer, per replica: its name, shape and place in the flat row."""

    layer: int
    name: str
    shape: tuple[int, ...]
    offset: int

    @property
    def size(self) -> int:
        return math.prod(self.shape)


def layout(arch: Architecture) -> list[Piece]:
    """Each layer's pieces: kernel (in, out), then bias, alpha, gamma, beta, each (1, out)."""
    pieces: list[Piece] = []
    widths = (arch.n_inputs, *arch.hidden, arch.n_outputs if arch.task == "classification" else 1)
    for index, (fan_in, units) in enumerate(itertools.pairwise(widths)):
        names = ["kernel", "bias"]
        if index < len(arch.hidden):
            names += ["alpha"] if arch.activation == "prelu" else []
            names += ["gamma", "beta"] if arch.batch_norm else []
        for name in names:
            shape = (fan_in, units) if name == "kernel" else (1, units)
            offset = pieces[-1].offset + pieces[-1].size if pieces else 0
            pieces.append(Piece(index, name, shape, offset))
    return pieces


def initial_weights(pieces: Sequence[Piece], seeds: Sequence[int]) -> np.ndarray:
    """Keras's defaults, one replica per seed: Glorot-uniform kernels, gamma 1, the rest 0."""
    rows = []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        parts = []
        for piece in pieces:
            if piece.name == "kernel":
                limit = math.sqrt(6.0 / sum(piece.shape))
                parts.append(rng.uniform(-limit, limit, piece.size))
            else:
                parts.append(np.full(piece.size, 1.0 if piece.name == "gamma" else 0.0))
        rows.append(np.concatenate(parts))
    return np.stack(rows).astype("float32")


class EarlyStopping:
    """Keras's EarlyStopping (min mode, best weights restored), one counter per replica."""

    def __init__(self, replicas: int, evaluation: EvaluationConfig) -> None:
        self.patience = evaluation.patience
        self.min_delta = evaluation.min_delta
        self.best = np.full(replicas, np.inf)
        self.wait = np.zeros(replicas, dtype=int)
        self.active = np.ones(replicas, dtype=bool)
        self.epochs = np.zeros(replicas, dtype=int)

    def update(self, epoch: int, val_loss: np.ndarray) -> np.ndarray:
        """Record epoch `epoch` (from 0); return the replicas whose weights are the new best."""
        improved = self.active & ((epoch == 0) | (val_loss + self.min_delta < self.best))
        self.epochs[self.active] = epoch + 1
        self.wait[self.active] += 1
        self.best = np.where(improved, val_loss, self.best)
        self.wait[improved] = 0
        stop = self.active & ~improved & (self.wait >= self.patience) & (epoch > 0)
        self.active = self.active & ~stop
        return improved


def epoch_batches(
    rngs: Sequence[np.random.Generator], rows: int, batch: int
) -> tuple[np.ndarray, np.ndarray]:
    """Each replica's shuffled row indices (steps, replicas * batch) into the flattened stack,
    and row weights: 0 on the rows that fill up a short last batch."""
    steps = -(-rows // batch)
    order = np.stack(
        [np.resize(rng.permutation(rows), steps * batch) + r * rows for r, rng in enumerate(rngs)]
    )
    indices = order.reshape(len(rngs), steps, batch).transpose(1, 0, 2).reshape(steps, -1)
    weights = (np.arange(steps * batch) < rows).astype("float32").reshape(steps, batch)
    return indices.astype("int32"), weights
