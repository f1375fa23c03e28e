"""Keras networks trained with `fit` (for export, other backends, and to test the trainer)."""

import logging
import math
import os
from dataclasses import dataclass
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before Keras: TensorFlow's start-up chatter

import keras
import numpy as np
from sklearn.metrics import log_loss

from tuner.config.schema import EvaluationConfig
from tuner.errors import TrialFailed
from tuner.training.architecture import Architecture, training_of
from tuner.training.data import PreparedSplit
from tuner.training.updates import keras_optimizer


@dataclass(frozen=True)
class SplitResult:
    """Held-out loss of one split after early stopping, and the epochs it trained."""

    loss: float
    epochs: int


class _StopOnNaN(keras.callbacks.Callback):
    """Keras's TerminateOnNaN, without its print to stdout (stdout carries results)."""

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.model.stop_training = True


def fit_model(
    arch: Architecture, params: dict[str, Any], evaluation: EvaluationConfig, seed: int, *data: Any
) -> tuple[keras.Model, list[float]]:
    """A model trained as a trial trains on (x, y, x_held_out, y_held_out), and its losses."""
    keras.utils.set_random_seed(seed % 2**31)
    training = training_of(params)
    model = build_model(arch, training.learning_rate, training.optimizer)
    stop = keras.callbacks.EarlyStopping(
        min_delta=evaluation.min_delta, patience=evaluation.patience, restore_best_weights=True
    )
    history = model.fit(
        *data[:2],
        validation_data=data[2:],
        epochs=evaluation.epochs,
        batch_size=training.batch_size,
        callbacks=[stop, _StopOnNaN()],
        verbose=0,
    )
    return model, history.history.get("loss", [])


def activation_layer(name: str) -> keras.layers.Layer:
    own = {"prelu": keras.layers.PReLU, "leaky_relu": keras.layers.LeakyReLU}
    return own[name]() if name in own else keras.layers.Activation(name)


def build_model(arch: Architecture, learning_rate: float, optimizer: str = "adam") -> keras.Model:
    """A compiled Keras model: dense blocks (with `arch.l2`, L2 on each kernel), then the output."""

    def dense(units: int, **kwargs: Any) -> keras.layers.Dense:
        decay = keras.regularizers.L2(arch.l2) if arch.l2 > 0 else None
        return keras.layers.Dense(units, kernel_regularizer=decay, **kwargs)

    inputs = keras.Input(shape=(arch.n_inputs,))
    x = inputs
    for units in arch.hidden:
        x = dense(int(units))(x)
        if arch.batch_norm:
            x = keras.layers.BatchNormalization()(x)
        x = activation_layer(arch.activation)(x)
        x = keras.layers.Dropout(arch.dropout)(x)
    classify = arch.task == "classification"
    outputs = dense(arch.n_outputs, activation="softmax")(x) if classify else dense(1)(x)
    loss = "sparse_categorical_crossentropy" if classify else "mean_squared_error"
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
    logging.getLogger("tensorflow").setLevel(logging.ERROR)  # its retracing notices
    keras.backend.clear_session()
    data = (split.x_train, split.y_train, split.x_test, split.y_test)
    model, train_losses = fit_model(arch, params, evaluation, seed, *data)
    for epoch, value in enumerate(train_losses, start=1):
        if not math.isfinite(value):
            raise TrialFailed("diverged", f"training loss became {value} at epoch {epoch}")
    predictions = keras.ops.convert_to_numpy(model(split.x_test, training=False))
    if not np.all(np.isfinite(predictions)):
        raise TrialFailed("diverged", "the network predicts NaN or infinite values")
    return SplitResult(held_out_loss(arch, split.y_test, predictions), len(train_losses))


def held_out_loss(arch: Architecture, y_true: np.ndarray, predictions: np.ndarray) -> float:
    """Log loss over all classes (classification) or RMSE (regression)."""
    if arch.task == "classification":
        probs = predictions.astype("float64")
        probs /= probs.sum(axis=1, keepdims=True)
        return float(log_loss(y_true, probs, labels=list(range(arch.n_outputs))))
    error = predictions.reshape(-1).astype("float64") - y_true.astype("float64")
    return float(np.sqrt(np.mean(error**2)))
