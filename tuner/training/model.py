"""The Keras model of an architecture (what a trained replica is loaded into, to export and
predict), and the scoring of one split's held-out predictions."""

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before Keras: TensorFlow's start-up chatter

import keras
import numpy as np
from sklearn.metrics import log_loss

from tuner.errors import TrialFailed
from tuner.training.architecture import Architecture
from tuner.training.data import TargetScale
from tuner.training.metrics import metrics
from tuner.training.replicas import layout


@dataclass(frozen=True)
class SplitResult:
    """Held-out loss of one split after early stopping, the epochs it trained, and the task's
    metrics on the same held-out rows."""

    loss: float
    epochs: int
    metrics: dict[str, float] = field(default_factory=dict)


class Replicas(ABC):
    """Networks trained on a stack of splits, one replica per split, each with its best weights.

    `arch.n_inputs` is the stack's width: narrower splits were padded with zero columns."""

    def __init__(self, arch: Architecture, epochs: tuple[int, ...]) -> None:
        self.arch, self.epochs = arch, epochs

    @abstractmethod
    def predict(self, x: np.ndarray) -> np.ndarray:
        """Probabilities or values (replicas, rows, outputs) in the target's units, from x of
        (rows, width), shared by every replica, or (replicas, rows, width)."""

    @abstractmethod
    def keras_model(self, i: int) -> keras.Model:
        """A Keras model that predicts as replica i does, in the target's units."""

    def per_replica(self, x: np.ndarray) -> np.ndarray:
        """x as (replicas, rows, width), float32."""
        x = np.asarray(x, dtype="float32")
        return np.broadcast_to(x, (len(self.epochs), *x.shape)) if x.ndim == 2 else x


def activation_layer(name: str) -> keras.layers.Layer:
    own = {"prelu": keras.layers.PReLU, "leaky_relu": keras.layers.LeakyReLU}
    return own[name]() if name in own else keras.layers.Activation(name)


def network(arch: Architecture, scale: TargetScale | None = None) -> keras.Model:
    """The Keras model of `arch`: dense blocks (with `arch.l2`, L2 on each kernel), then the
    output, then, with a `scale`, the standardised output taken back to the target's units.
    Not compiled: a model to predict with and save carries no unbuilt optimiser."""

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
    if scale is not None and not scale.identity:
        outputs = keras.layers.Rescaling(scale.std, scale.mean, name="target_units")(outputs)
    return keras.Model(inputs, outputs)


def load_replica(
    model: keras.Model, arch: Architecture, flat: np.ndarray, stats: list[np.ndarray]
) -> keras.Model:
    """Put one stacked replica's weights (its flat row) and batch-norm statistics, (2, units)
    per hidden layer, into a model that `network` built for `arch`."""
    pieces = {(p.layer, p.name): flat[p.offset : p.offset + p.size] for p in layout(arch)}
    kinds = (keras.layers.Dense, keras.layers.PReLU, keras.layers.BatchNormalization)
    dense, prelu, norms = ([x for x in model.layers if isinstance(x, k)] for k in kinds)
    for index, layer in enumerate(dense):
        kernel = pieces[(index, "kernel")].reshape(layer.kernel.shape)
        layer.set_weights([kernel, pieces[(index, "bias")]])
    for index, layer in enumerate(prelu):
        layer.set_weights([pieces[(index, "alpha")]])
    for index, layer in enumerate(norms):
        layer.set_weights([pieces[(index, "gamma")], pieces[(index, "beta")], *stats[index]])
    return model


def score_split(
    arch: Architecture, y_true: np.ndarray, predictions: np.ndarray, epochs: int
) -> SplitResult:
    """The held-out loss and metrics of one split's predictions (TrialFailed: diverged)."""
    if not np.all(np.isfinite(predictions)):
        raise TrialFailed("diverged", "the network predicts NaN or infinite values")
    classify = arch.task == "classification"
    values = predictions if classify else predictions.reshape(-1)
    found = metrics(arch.task, y_true, values, arch.n_outputs)
    return SplitResult(held_out_loss(arch, y_true, predictions), epochs, found)


def held_out_loss(arch: Architecture, y_true: np.ndarray, predictions: np.ndarray) -> float:
    """Log loss over all classes (classification) or RMSE (regression), in the target's units."""
    if arch.task == "classification":
        probs = predictions.astype("float64")
        probs /= probs.sum(axis=1, keepdims=True)
        return float(log_loss(y_true, probs, labels=list(range(arch.n_outputs))))
    error = predictions.reshape(-1).astype("float64") - y_true.astype("float64")
    return float(np.sqrt(np.mean(error**2)))
