"""The product's trainer: one replica per split, all in one compiled call an epoch, on
TensorFlow, JAX or PyTorch (the epoch's compilation: compiled.py)."""

import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before Keras: TensorFlow's start-up chatter

import keras
import numpy as np
from keras import ops

from tuner.config.schema import EvaluationConfig
from tuner.errors import TrialFailed
from tuner.training.architecture import Architecture, Training, training_of
from tuner.training.compiled import State, epoch_function
from tuner.training.data import PreparedSplit, TargetScale, target_scale
from tuner.training.model import (
    Replicas,
    SplitResult,
    activation_layer,
    load_replica,
    network,
    score_split,
)
from tuner.training.progress import epoch_done
from tuner.training.replicas import (
    EarlyStopping,
    StackedData,
    epoch_batches,
    initial_weights,
    layout,
    pad_splits,
    stack_splits,
    take_replicas,
    worth_narrowing,
)

# keras.layers.BatchNormalization's defaults.
BN_MOMENTUM, BN_EPSILON = 0.99, 1e-3
Weights = tuple[np.ndarray, list[np.ndarray]]  # flat weights and batch-norm statistics


class StackedNet:
    """The forward pass of every replica's network, from the flat (replicas, weights) matrix."""

    def __init__(self, arch: Architecture, replicas: int, seed: int) -> None:
        self.arch, self.replicas, self.pieces = arch, replicas, layout(arch)
        self.activation = None if arch.activation == "prelu" else activation_layer(arch.activation)
        self.seed = keras.random.SeedGenerator(seed % 2**31)

    def initial_state(self, seeds: Sequence[int]) -> State:
        """Keras's initial weights for each replica's seed; zero optimiser slots and steps; the
        dropout seed generator's first state."""
        flat = ops.convert_to_tensor(initial_weights(self.pieces, seeds))
        shapes = [(self.replicas, u) for u in (self.arch.hidden if self.arch.batch_norm else ())]
        stats = [np.stack([np.zeros(s), np.ones(s)], 1).astype("float32") for s in shapes]
        stats = [ops.convert_to_tensor(s) for s in stats]
        zeros = ops.zeros_like(flat)
        seed = ops.convert_to_tensor(self.seed.state.value)
        return flat, zeros, zeros, ops.zeros((self.replicas, 1)), stats, seed

    def unflatten(self, flat: Any) -> list[Any]:
        """The weight pieces, each (replicas, *shape), cut from the flat matrix."""
        return [
            ops.reshape(flat[:, p.offset : p.offset + p.size], (self.replicas, *p.shape))
            for p in self.pieces
        ]

    def outputs(
        self, weights: list[Any], stats: list[Any], x: Any, training: bool
    ) -> tuple[Any, list[Any]]:
        """Logits or values (replicas, rows, outputs), and the updated batch-norm statistics."""
        layers: dict[int, dict[str, Any]] = {}
        for piece, value in zip(self.pieces, weights, strict=True):
            layers.setdefault(piece.layer, {})[piece.name] = value
        new_stats = []
        for index in range(len(self.arch.hidden)):
            layer = layers[index]
            x = ops.matmul(x, layer["kernel"]) + layer["bias"]
            if self.arch.batch_norm:
                x, stat = _batch_norm(layer, stats[index], x, training)
                new_stats.append(stat)
            if self.activation is None:  # PReLU, as Keras computes it
                x = ops.relu(x) - layer["alpha"] * ops.relu(-x)
            else:
                x = self.activation(x)
            if training and self.arch.dropout > 0:
                x = keras.random.dropout(x, self.arch.dropout, seed=self.seed)
        last = layers[len(self.arch.hidden)]
        return ops.matmul(x, last["kernel"]) + last["bias"], new_stats

    def losses(
        self, weights: list[Any], stats: list[Any], x: Any, y: Any, rows: Any, training: bool
    ) -> tuple[Any, list[Any]]:
        """Each replica's mean loss (weighted by `rows` when given) and the new statistics."""
        out, stats = self.outputs(weights, stats, x, training)
        if self.arch.task == "classification":
            hot = ops.one_hot(y, self.arch.n_outputs)
            per_row = -ops.sum(hot * ops.log_softmax(out, axis=-1), axis=-1)
        else:
            per_row = ops.square(out[..., 0] - y)
        if rows is None:
            loss = ops.mean(per_row, axis=1)
        else:
            loss = ops.sum(per_row * rows, axis=1) / ops.sum(rows)
        # As Keras: the L2 penalty is in the losses that train and stop, not in the score.
        return (loss + self.penalty(weights) if self.arch.l2 > 0 else loss), stats

    def penalty(self, weights: list[Any]) -> Any:
        """keras.regularizers.L2(l2) summed over every kernel, per replica."""
        kernels = [w for p, w in zip(self.pieces, weights, strict=True) if p.name == "kernel"]
        return self.arch.l2 * sum(ops.sum(ops.square(k), axis=(1, 2)) for k in kernels)

    def predict(self, flat: np.ndarray, stats: list[np.ndarray], x: np.ndarray) -> np.ndarray:
        """Probabilities (classification) or values: (replicas, rows, outputs)."""
        weights = self.unflatten(ops.convert_to_tensor(flat))
        out, _ = self.outputs(weights, stats, ops.convert_to_tensor(x), training=False)
        return ops.convert_to_numpy(ops.softmax(out) if self.arch.task == "classification" else out)


def _batch_norm(layer: dict[str, Any], stat: Any, x: Any, training: bool) -> tuple[Any, Any]:
    """Keras's BatchNormalization for each replica; `stat` is (replicas, 2, units)."""
    if training:
        mean, var = ops.mean(x, axis=1, keepdims=True), ops.var(x, axis=1, keepdims=True)
        batch = ops.concatenate([mean, var], axis=1)
        stat = stat * BN_MOMENTUM + batch * (1 - BN_MOMENTUM)
    else:
        mean, var = stat[:, :1], stat[:, 1:]
    scale = layer["gamma"] * ops.rsqrt(var + BN_EPSILON)
    return (x - mean) * scale + layer["beta"], stat


class StackedReplicas(Replicas):
    """The stacked trainer's replicas: their best weights, and each training part's scale."""

    def __init__(
        self,
        net: StackedNet,
        epochs: tuple[int, ...],
        best: Weights,
        scales: Sequence[TargetScale],
    ) -> None:
        super().__init__(net.arch, epochs)
        self.net, self.best, self.scales = net, best, tuple(scales)

    def predict(self, x: np.ndarray) -> np.ndarray:
        out = self.net.predict(*self.best, self.per_replica(x))
        return np.stack([scale.inverse(o) for scale, o in zip(self.scales, out, strict=True)])

    def keras_model(self, i: int) -> keras.Model:
        model = network(self.arch, self.scales[i])
        return load_replica(model, self.arch, self.best[0][i], [s[i] for s in self.best[1]])


def fit_replicas(
    arch: Architecture,
    params: dict[str, Any],
    splits: Sequence[PreparedSplit],
    evaluation: EvaluationConfig,
    seed: int,
) -> Replicas:
    """Train one replica per split, all at once; replica i starts from seed + i's weights.
    A regression target trains standardised on each training part (TrialFailed: diverged)."""
    padded = pad_splits(splits)
    arch = replace(arch, n_inputs=padded[0].x_train.shape[1])
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    keras.backend.clear_session()
    scales = [target_scale(arch.task, split.y_train) for split in padded]
    data = stack_splits([scale.apply(s) for scale, s in zip(scales, padded, strict=True)])
    net = StackedNet(arch, len(padded), seed)
    state = net.initial_state([seed + i for i in range(len(padded))])
    stopping = EarlyStopping(len(padded), evaluation)
    best = _Stack(net, data, training_of(params), seed, scales).train(
        state, stopping, evaluation.epochs
    )
    return StackedReplicas(net, tuple(int(n) for n in stopping.epochs), best, scales)


def train_splits(
    arch: Architecture,
    params: dict[str, Any],
    splits: Sequence[PreparedSplit],
    evaluation: EvaluationConfig,
    seed: int,
) -> list[SplitResult]:
    """`fit_replicas`, then each split's held-out loss and metrics in the target's units."""
    replicas = fit_replicas(arch, params, splits, evaluation, seed)
    predictions = replicas.predict(np.stack([s.x_test for s in pad_splits(splits)]))
    return [
        score_split(replicas.arch, split.y_test, p, n)
        for split, p, n in zip(splits, predictions, replicas.epochs, strict=True)
    ]


class _Stack:
    """The epoch loop of `fit_replicas`, narrowed to the active replicas when worth it."""

    def __init__(
        self,
        net: StackedNet,
        data: StackedData,
        training: Training,
        seed: int,
        scales: Sequence[TargetScale],
    ) -> None:
        self.net, self.data, self.seed, self.training = net, data, seed, training
        self.stds = np.array([scale.std for scale in scales])
        self.batch = min(self.training.batch_size, data.x_train.shape[1])
        self.rngs = [np.random.default_rng(seed + i) for i in range(net.replicas)]
        self.ids = np.arange(net.replicas)
        self.run_epoch = self._compile(net)

    def _compile(self, net: StackedNet) -> Callable[..., tuple[State, Any, Any]]:
        data = take_replicas(self.data, self.ids)
        lr, optimizer = self.training.learning_rate, self.training.optimizer
        return epoch_function(net, data, self.batch, lr, optimizer)

    def train(self, state: State, stopping: EarlyStopping, epochs: int) -> Weights:
        """Train until every replica has stopped; return the best weights and statistics."""
        best, times = _numpy(state), []
        for epoch in range(epochs):
            started = time.perf_counter()
            rngs = [self.rngs[i] for i in self.ids]
            indices, weights = epoch_batches(rngs, self.data.x_train.shape[1], self.batch)
            active = stopping.active[self.ids]
            state, train_loss, val_loss = self.run_epoch(state, indices, weights, active)
            bad = [v for v in ops.convert_to_numpy(train_loss)[active] if not math.isfinite(v)]
            if bad:
                raise TrialFailed("diverged", f"training loss became {bad[0]} at epoch {epoch + 1}")
            full = np.full(len(stopping.active), np.inf)
            full[self.ids] = ops.convert_to_numpy(val_loss)
            improved = stopping.update(epoch, full)
            epoch_done(epoch + 1, self._watched(stopping.best))
            best = _keep_best(best, state, improved[self.ids], self.ids)
            if not stopping.active.any():
                break
            times.append(time.perf_counter() - started)
            state = self._narrow(state, stopping, times)
        return best

    def _watched(self, best: np.ndarray) -> float:
        """The mean best held-out loss in the score's units: RMSE in the target's for regression
        (the stack's losses are mean squares of the standardised target)."""
        if self.net.arch.task == "classification":
            return float(np.mean(best))
        return float(np.mean(np.sqrt(best) * self.stds))

    def _narrow(self, state: State, stopping: EarlyStopping, times: list[float]) -> State:
        """The state of the active replicas alone, retraced, when worth it; else `state`."""
        if len(times) < 2:
            return state
        trace_s = max(times[0] - times[-1], 0.0)
        active, wait = stopping.active[self.ids], stopping.wait[self.ids]
        if not worth_narrowing(active, wait, stopping.patience, times[-1], trace_s):
            return state
        keep = np.flatnonzero(active)
        self.ids = self.ids[keep]
        net = StackedNet(self.net.arch, len(self.ids), self.seed + len(times))
        self.run_epoch = self._compile(net)
        times.clear()
        rows = (*(_rows(x, keep) for x in state[:4]), [_rows(s, keep) for s in state[4]])
        return (*rows, state[5])  # the dropout seed goes on


def _rows(value: Any, keep: np.ndarray) -> Any:
    return ops.take(value, ops.convert_to_tensor(keep), axis=0)


def _numpy(state: State) -> Weights:
    return ops.convert_to_numpy(state[0]), [ops.convert_to_numpy(s) for s in state[4]]


def _keep_best(best: Weights, state: State, improved: np.ndarray, ids: np.ndarray) -> Weights:
    """Copy the improved rows of `state` (the store's replicas `ids`) into the best weights."""
    if not improved.any():
        return best
    flat, stats = _numpy(state)
    rows = ids[improved]
    best_flat = best[0].copy()
    best_flat[rows] = flat[improved]
    best_stats = [old.copy() for old in best[1]]
    for old, new in zip(best_stats, stats, strict=True):
        old[rows] = new[improved]
    return best_flat, best_stats
