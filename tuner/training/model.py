"""Build Keras networks and train one with Keras `fit` (optimisers: `updates.py`).

`train_split` is the plain Keras path: `tuner export` refits with it, the stacked trainer
(`trainer.py`, the product's) is tested against it, and other backends than TensorFlow use it.
"""

from __future__ import annotations

import functools
import logging
import math
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from tuner.config.schema import EvaluationConfig
from tuner.errors import TrialFailed
from tuner.training.architecture import Architecture, training_of
from tuner.training.data import PreparedSplit
from tuner.training.updates import keras_optimizer

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


def activation_layer(name: str) -> keras.layers.Layer:
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
        x = activation_layer(arch.activation)(x)
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
