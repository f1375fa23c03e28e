"""The reference the stacked trainer is checked against: the same network trained one split at a
time with Keras's own `compile` and `fit` (early stopping that restores the best weights), on
whichever backend KERAS_BACKEND names. Test code only: the product trains with the stacked
trainer."""

from __future__ import annotations

import math
from typing import Any

import keras

from tuner.config.schema import EvaluationConfig
from tuner.errors import TrialFailed
from tuner.training.architecture import Architecture, training_of
from tuner.training.data import PreparedSplit, target_scale
from tuner.training.model import SplitResult, network, score_split
from tuner.training.updates import SGD_MOMENTUM


def keras_optimizer(name: str, learning_rate: float) -> keras.optimizers.Optimizer:
    """adam, sgd (momentum 0.9) or rmsprop, with Keras's defaults otherwise."""
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate=learning_rate, momentum=SGD_MOMENTUM)
    if name == "rmsprop":
        return keras.optimizers.RMSprop(learning_rate=learning_rate)
    return keras.optimizers.Adam(learning_rate=learning_rate)


def build_model(arch: Architecture, learning_rate: float, optimizer: str = "adam") -> keras.Model:
    """`network(arch)`, compiled with its loss and optimiser, to train with `fit`."""
    model = network(arch)
    classify = arch.task == "classification"
    loss = "sparse_categorical_crossentropy" if classify else "mean_squared_error"
    model.compile(optimizer=keras_optimizer(optimizer, learning_rate), loss=loss)
    return model


class _StopOnNaN(keras.callbacks.Callback):
    """Keras's TerminateOnNaN, without its print."""

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.model.stop_training = True


def train_split(
    arch: Architecture,
    params: dict[str, Any],
    split: PreparedSplit,
    evaluation: EvaluationConfig,
    seed: int,
) -> SplitResult:
    """Train on one split as a trial does, early-stopped on its held-out part; score the best
    weights there. A regression target trains standardised and is scored in its own units."""
    keras.backend.clear_session()
    keras.utils.set_random_seed(seed % 2**31)
    training = training_of(params)
    scale = target_scale(arch.task, split.y_train)
    model = build_model(arch, training.learning_rate, training.optimizer)
    stop = keras.callbacks.EarlyStopping(
        min_delta=evaluation.min_delta, patience=evaluation.patience, restore_best_weights=True
    )
    history = model.fit(
        split.x_train,
        scale.forward(split.y_train),
        validation_data=(split.x_test, scale.forward(split.y_test)),
        epochs=evaluation.epochs,
        batch_size=training.batch_size,
        callbacks=[stop, _StopOnNaN()],
        verbose=0,
    )
    losses = history.history.get("loss", [])
    for epoch, value in enumerate(losses, start=1):
        if not math.isfinite(value):
            raise TrialFailed("diverged", f"training loss became {value} at epoch {epoch}")
    if not scale.identity:
        trained, model = model, network(arch, scale)
        model.set_weights(trained.get_weights())  # the rescaling layer has no weights
    predictions = keras.ops.convert_to_numpy(model(split.x_test, training=False))
    return score_split(arch, split.y_test, predictions, len(losses))
