"""The only module that touches Keras: build a network and train it on one split."""

from __future__ import annotations

import functools
import logging
import math
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from tuner.architecture import Architecture
from tuner.config import EvaluationConfig
from tuner.data import PreparedSplit
from tuner.errors import TrialFailed

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


def _activation(name: str) -> keras.layers.Layer:
    import keras

    if name == "prelu":
        return keras.layers.PReLU()
    if name == "leaky_relu":
        return keras.layers.LeakyReLU()
    return keras.layers.Activation(name)


def build_model(arch: Architecture, learning_rate: float) -> keras.Model:
    """A compiled Keras model for an architecture: dense blocks, then the output layer."""
    import keras

    inputs = keras.Input(shape=(arch.n_inputs,))
    x = inputs
    for units in arch.hidden:
        x = keras.layers.Dense(int(units))(x)
        if arch.batch_norm:
            x = keras.layers.BatchNormalization()(x)
        x = _activation(arch.activation)(x)
        x = keras.layers.Dropout(arch.dropout)(x)
    if arch.task == "classification":
        outputs = keras.layers.Dense(arch.n_outputs, activation="softmax")(x)
        loss = "sparse_categorical_crossentropy"
    else:
        outputs = keras.layers.Dense(1)(x)
        loss = "mean_squared_error"
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=learning_rate), loss=loss)
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
    model = build_model(arch, float(params["learning_rate"]))
    stopper = keras.callbacks.EarlyStopping(
        monitor="val_loss",
        min_delta=evaluation.min_delta,
        patience=evaluation.patience,
        restore_best_weights=True,
    )
    history = model.fit(
        split.x_train,
        split.y_train,
        validation_data=(split.x_test, split.y_test),
        epochs=evaluation.epochs,
        batch_size=int(params["batch_size"]),
        callbacks=[stopper, _stop_on_nan()()],
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
