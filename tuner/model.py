"""Build Keras networks and train them on bootstrap splits (optimisers: `updates.py`).

`train_splits` is the product's trainer: every split's network is one replica of a stacked
model (weights with a leading replica axis), trained by one compiled loop per epoch with
early stopping and best weights kept per replica. `train_split` is the plain Keras `fit`
path, kept as the reference that the stacked trainer is tested against.
"""

from __future__ import annotations

import functools
import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from tuner.architecture import Architecture, training_of
from tuner.config import EvaluationConfig
from tuner.data import PreparedSplit
from tuner.errors import TrialFailed
from tuner.replicas import (
    EarlyStopping,
    StackedData,
    epoch_batches,
    initial_weights,
    layout,
    stack_splits,
)
from tuner.updates import STEPS, keras_optimizer

if TYPE_CHECKING:
    import keras

# TensorFlow's C++ start-up chatter is noise on the user's terminal; an explicit setting wins.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@dataclass(frozen=True)
class SplitResult:
    """Held-out loss of one split after early stopping, and the epochs it trained."""

    loss: float
    epochs: int


@functools.cache
def _stop_on_nan() -> type:
    import keras

    class StopOnNaN(keras.callbacks.Callback):
        """Keras's TerminateOnNaN, without its print to stdout (stdout carries results)."""

        def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
            loss = (logs or {}).get("loss")
            if loss is not None and not math.isfinite(float(loss)):
                self.model.stop_training = True

    return StopOnNaN


def fit_callbacks(evaluation: EvaluationConfig) -> list[Any]:
    """Callbacks of a Keras `fit` scored like a trial: early stopping on the held-out loss with
    the best weights restored, and a silent stop at a non-finite training loss."""
    import keras

    stopper = keras.callbacks.EarlyStopping(
        monitor="val_loss",
        min_delta=evaluation.min_delta,
        patience=evaluation.patience,
        restore_best_weights=True,
    )
    return [stopper, _stop_on_nan()()]


def _activation(name: str) -> keras.layers.Layer:
    import keras

    if name == "prelu":
        return keras.layers.PReLU()
    if name == "leaky_relu":
        return keras.layers.LeakyReLU()
    return keras.layers.Activation(name)


def build_model(arch: Architecture, learning_rate: float, optimizer: str = "adam") -> keras.Model:
    """A compiled Keras model for an architecture: dense blocks, then the output layer.

    With `arch.l2` > 0 every Dense kernel (the output layer's too) carries keras.regularizers.L2,
    which Keras adds to the training and the validation loss.
    """
    import keras

    def dense(units: int, **kwargs: Any) -> keras.layers.Dense:
        decay = keras.regularizers.L2(arch.l2) if arch.l2 > 0 else None
        return keras.layers.Dense(units, kernel_regularizer=decay, **kwargs)

    inputs = keras.Input(shape=(arch.n_inputs,))
    x = inputs
    for units in arch.hidden:
        x = dense(int(units))(x)
        if arch.batch_norm:
            x = keras.layers.BatchNormalization()(x)
        x = _activation(arch.activation)(x)
        x = keras.layers.Dropout(arch.dropout)(x)
    if arch.task == "classification":
        outputs = dense(arch.n_outputs, activation="softmax")(x)
        loss = "sparse_categorical_crossentropy"
    else:
        outputs = dense(1)(x)
        loss = "mean_squared_error"
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras_optimizer(optimizer, learning_rate), loss=loss)
    return model


def train_split(
    arch: Architecture,
    params: dict[str, Any],
    split: PreparedSplit,
    evaluation: EvaluationConfig,
    seed: int,
) -> SplitResult:
    """Train on one split with early stopping on its held-out part; score the best weights."""
    import keras

    # TensorFlow's retracing notices are about its internals, not the user's search.
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    keras.backend.clear_session()
    keras.utils.set_random_seed(seed % 2**31)
    training = training_of(params)
    model = build_model(arch, training.learning_rate, training.optimizer)
    history = model.fit(
        split.x_train,
        split.y_train,
        validation_data=(split.x_test, split.y_test),
        epochs=evaluation.epochs,
        batch_size=training.batch_size,
        callbacks=fit_callbacks(evaluation),
        verbose=0,
    )
    train_losses = history.history.get("loss", [])
    for epoch, value in enumerate(train_losses, start=1):
        if not math.isfinite(value):
            raise TrialFailed("diverged", f"training loss became {value} at epoch {epoch}")
    predictions = keras.ops.convert_to_numpy(model(split.x_test, training=False))
    if not np.all(np.isfinite(predictions)):
        raise TrialFailed("diverged", "the network predicts NaN or infinite values")
    return SplitResult(
        loss=held_out_loss(arch, split.y_test, predictions), epochs=len(train_losses)
    )


def held_out_loss(arch: Architecture, y_true: np.ndarray, predictions: np.ndarray) -> float:
    """Log loss over all classes (classification) or RMSE (regression)."""
    if arch.task == "classification":
        from sklearn.metrics import log_loss

        probs = predictions.astype("float64")
        probs /= probs.sum(axis=1, keepdims=True)
        return float(log_loss(y_true, probs, labels=list(range(arch.n_outputs))))
    error = predictions.reshape(-1).astype("float64") - y_true.astype("float64")
    return float(np.sqrt(np.mean(error**2)))


# The stacked trainer: all replicas in one flat weight matrix, one compiled call per epoch.

# keras.layers.BatchNormalization's defaults.
BN_MOMENTUM, BN_EPSILON = 0.99, 1e-3
# The training state carried from epoch to epoch: weights, the optimiser's slots m and v
# (Adam's moments; SGD's momentum is m, RMSprop's average of squares is v), the step count
# per replica, and batch-norm moving statistics, (replicas, 2, units) per hidden layer.
State = tuple[Any, Any, Any, Any, list[Any]]


class StackedNet:
    """The forward pass of every replica's network, from the flat (replicas, weights) matrix."""

    def __init__(self, arch: Architecture, replicas: int, seed: int) -> None:
        import keras

        self.arch, self.replicas, self.pieces = arch, replicas, layout(arch)
        self.activation = None if arch.activation == "prelu" else _activation(arch.activation)
        self.seed = keras.random.SeedGenerator(seed % 2**31)

    def initial_state(self, seeds: Sequence[int]) -> State:
        """Keras's initial weights for each replica's seed; zero optimiser slots and steps."""
        from keras import ops

        flat = ops.convert_to_tensor(initial_weights(self.pieces, seeds))
        stats = [
            ops.convert_to_tensor(
                np.stack([np.zeros((self.replicas, u)), np.ones((self.replicas, u))], 1).astype(
                    "float32"
                )
            )
            for u in (self.arch.hidden if self.arch.batch_norm else ())
        ]
        zeros = ops.zeros_like(flat)
        return flat, zeros, zeros, ops.zeros((self.replicas, 1)), stats

    def unflatten(self, flat: Any) -> list[Any]:
        """The weight pieces, each (replicas, *shape), cut from the flat matrix."""
        from keras import ops

        return [
            ops.reshape(flat[:, p.offset : p.offset + p.size], (self.replicas, *p.shape))
            for p in self.pieces
        ]

    def outputs(
        self, weights: list[Any], stats: list[Any], x: Any, training: bool
    ) -> tuple[Any, list[Any]]:
        """Logits or values (replicas, rows, outputs), and the updated batch-norm statistics."""
        import keras
        from keras import ops

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
        from keras import ops

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
        # Keras adds its L2 penalty to the training loss and to the validation loss that
        # early stopping watches; the trial's score (held_out_loss) is without it.
        return (loss + self.penalty(weights) if self.arch.l2 > 0 else loss), stats

    def penalty(self, weights: list[Any]) -> Any:
        """keras.regularizers.L2(l2) summed over every kernel, per replica."""
        from keras import ops

        kernels = [w for p, w in zip(self.pieces, weights, strict=True) if p.name == "kernel"]
        return self.arch.l2 * sum(ops.sum(ops.square(k), axis=(1, 2)) for k in kernels)

    def predict(self, flat: np.ndarray, stats: list[np.ndarray], x: np.ndarray) -> np.ndarray:
        """Probabilities (classification) or values: (replicas, rows, outputs)."""
        from keras import ops

        weights = self.unflatten(ops.convert_to_tensor(flat))
        out, _ = self.outputs(weights, stats, ops.convert_to_tensor(x), training=False)
        return ops.convert_to_numpy(ops.softmax(out) if self.arch.task == "classification" else out)


def _batch_norm(layer: dict[str, Any], stat: Any, x: Any, training: bool) -> tuple[Any, Any]:
    """Keras's BatchNormalization for each replica; `stat` is (replicas, 2, units)."""
    from keras import ops

    if training:
        mean, var = ops.mean(x, axis=1, keepdims=True), ops.var(x, axis=1, keepdims=True)
        batch = ops.concatenate([mean, var], axis=1)
        stat = stat * BN_MOMENTUM + batch * (1 - BN_MOMENTUM)
    else:
        mean, var = stat[:, :1], stat[:, 1:]
    scale = layer["gamma"] * ops.rsqrt(var + BN_EPSILON)
    return (x - mean) * scale + layer["beta"], stat


def _gradients(
    net: StackedNet, flat: Any, stats: list[Any], x: Any, y: Any, rows: Any
) -> tuple[Any, list[Any], Any]:
    """Losses, statistics and the flat gradient: the one TensorFlow-specific place."""
    import tensorflow as tf
    from keras import ops

    weights = net.unflatten(flat)
    with tf.GradientTape() as tape:
        tape.watch(weights)
        losses, stats = net.losses(weights, stats, x, y, rows, training=True)
        total = ops.sum(losses)
    grads = tape.gradient(total, weights)
    return losses, stats, ops.concatenate([ops.reshape(g, (net.replicas, -1)) for g in grads], 1)


def epoch_function(
    net: StackedNet, data: StackedData, batch: int, learning_rate: float, optimizer: str = "adam"
) -> Callable[..., tuple[State, Any, Any]]:
    """One compiled call per epoch: every step of every replica, then the held-out losses.

    The call takes (state, indices, row weights, active) and returns (state, mean training
    loss, held-out loss), each loss per replica. Shapes do not change between epochs, so
    the function is traced once per trial.
    """
    import tensorflow as tf
    from keras import ops

    replicas, rows, width = data.x_train.shape
    x_flat = ops.convert_to_tensor(data.x_train.reshape(replicas * rows, width))
    y_flat = ops.convert_to_tensor(data.y_train.reshape(replicas * rows))
    x_test, y_test = ops.convert_to_tensor(data.x_test), ops.convert_to_tensor(data.y_test)
    update = STEPS[optimizer]

    def epoch(state: State, indices: Any, weights: Any, active: Any) -> tuple[State, Any, Any]:
        def step(i: Any, carry: tuple[Any, ...]) -> tuple[Any, ...]:
            flat, m, v, steps, stats, total = carry
            x = ops.reshape(ops.take(x_flat, indices[i], axis=0), (replicas, batch, width))
            y = ops.reshape(ops.take(y_flat, indices[i], axis=0), (replicas, batch))
            losses, new_stats, grads = _gradients(net, flat, stats, x, y, weights[i])
            flat, m, v, steps = update(flat, m, v, steps, grads, active, learning_rate)
            on = ops.reshape(active, (-1, 1, 1))
            stats = [ops.where(on, new, old) for new, old in zip(new_stats, stats, strict=True)]
            return flat, m, v, steps, stats, total + losses * ops.sum(weights[i])

        carry = ops.fori_loop(0, indices.shape[0], step, (*state, ops.zeros((replicas,))))
        flat, stats = carry[0], carry[4]
        val, _ = net.losses(net.unflatten(flat), stats, x_test, y_test, None, training=False)
        return carry[:5], carry[5] / rows, val

    # AutoGraph is not needed (no Python control flow on tensors) and triples the trace time.
    return tf.function(epoch, autograph=False)


def train_splits(
    arch: Architecture,
    params: dict[str, Any],
    splits: Sequence[PreparedSplit],
    evaluation: EvaluationConfig,
    seed: int,
) -> list[SplitResult]:
    """Train one replica per split, all at once; replica i starts from seed + i's weights."""
    import keras

    if keras.backend.backend() != "tensorflow":  # the compiled loop is TensorFlow's
        return [train_split(arch, params, s, evaluation, seed + i) for i, s in enumerate(splits)]
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    keras.backend.clear_session()
    data = stack_splits(splits)
    replicas, rows, width = data.x_train.shape
    net = StackedNet(replace(arch, n_inputs=width), replicas, seed)
    state = net.initial_state([seed + i for i in range(replicas)])
    training = training_of(params)
    batch = min(training.batch_size, rows)
    run_epoch = epoch_function(net, data, batch, training.learning_rate, training.optimizer)
    stopping = EarlyStopping(replicas, evaluation)
    rngs = [np.random.default_rng(seed + i) for i in range(replicas)]
    best = _numpy(state)
    for epoch in range(evaluation.epochs):
        indices, weights = epoch_batches(rngs, rows, batch)
        state, train_loss, val_loss = run_epoch(state, indices, weights, stopping.active)
        for value in keras.ops.convert_to_numpy(train_loss)[stopping.active]:
            if not math.isfinite(value):
                raise TrialFailed("diverged", f"training loss became {value} at epoch {epoch + 1}")
        improved = stopping.update(epoch, keras.ops.convert_to_numpy(val_loss))
        best = _keep_best(best, state, improved)
        if not stopping.active.any():
            break
    predictions = net.predict(*best, data.x_test)
    if not np.all(np.isfinite(predictions)):
        raise TrialFailed("diverged", "the network predicts NaN or infinite values")
    return [
        SplitResult(loss=held_out_loss(net.arch, y, p), epochs=int(n))
        for y, p, n in zip(data.y_test, predictions, stopping.epochs, strict=True)
    ]


def _numpy(state: State) -> tuple[np.ndarray, list[np.ndarray]]:
    """The weights and batch-norm statistics of a state, as NumPy arrays."""
    import keras

    return keras.ops.convert_to_numpy(state[0]), [keras.ops.convert_to_numpy(s) for s in state[4]]


def _keep_best(
    best: tuple[np.ndarray, list[np.ndarray]], state: State, improved: np.ndarray
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Copy the improved replicas' weights and statistics into the best-weights store."""
    if not improved.any():
        return best
    flat, stats = _numpy(state)
    keep = improved[:, None]
    return np.where(keep, flat, best[0]), [
        np.where(keep[..., None], new, old) for new, old in zip(stats, best[1], strict=True)
    ]
