"""Keras's optimisers' updates (Adam, SGD with momentum, RMSprop) written on the stacked
trainer's flat weight matrix, one row per replica."""

import os
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before Keras: TensorFlow's start-up chatter

from keras import ops

# keras.optimizers.Adam's defaults; `adam_step` is its update, written on the flat matrix.
BETA_1, BETA_2, EPSILON = 0.9, 0.999, 1e-7
# keras.optimizers.RMSprop's default rho (its epsilon is Adam's); SGD's momentum is ours.
RHO, SGD_MOMENTUM = 0.9, 0.9


def adam_step(
    flat: Any, m: Any, v: Any, steps: Any, grads: Any, active: Any, learning_rate: float
) -> tuple[Any, Any, Any, Any]:
    """keras.optimizers.Adam's update for each replica; a stopped replica is left as it is."""
    on = ops.expand_dims(ops.cast(active, "float32"), 1)
    grads = ops.where(on > 0, grads, ops.zeros_like(grads))
    steps = steps + on
    alpha = learning_rate * ops.sqrt(1 - ops.power(BETA_2, steps)) / (1 - ops.power(BETA_1, steps))
    m = m + (grads - m) * ((1 - BETA_1) * on)
    v = v + (ops.square(grads) - v) * ((1 - BETA_2) * on)
    return flat - (on * alpha) * m / (ops.sqrt(v) + EPSILON), m, v, steps


def sgd_step(
    flat: Any, m: Any, v: Any, steps: Any, grads: Any, active: Any, learning_rate: float
) -> tuple[Any, Any, Any, Any]:
    """keras.optimizers.SGD(momentum=0.9)'s update (m is the momentum); v is not used."""
    on = ops.expand_dims(active, 1)
    m = ops.where(on, m * SGD_MOMENTUM - grads * learning_rate, m)
    return ops.where(on, flat + m, flat), m, v, steps + ops.cast(on, "float32")


def rmsprop_step(
    flat: Any, m: Any, v: Any, steps: Any, grads: Any, active: Any, learning_rate: float
) -> tuple[Any, Any, Any, Any]:
    """keras.optimizers.RMSprop's update with its defaults (v is the mean square); m is not used."""
    on = ops.expand_dims(active, 1)
    v = ops.where(on, RHO * v + (1 - RHO) * ops.square(grads), v)
    increment = learning_rate * grads / ops.sqrt(v + EPSILON)
    return ops.where(on, flat - increment, flat), m, v, steps + ops.cast(on, "float32")


STEPS = {"adam": adam_step, "sgd": sgd_step, "rmsprop": rmsprop_step}
