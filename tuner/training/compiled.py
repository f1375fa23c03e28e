"""The stacked trainer's epoch, compiled by each Keras backend's own means.

The maths (the stacked forward pass, the losses, the optimisers' updates) is written once in
`keras.ops`; only the gradient and the compilation differ: `tf.GradientTape` in a
`tf.function` on TensorFlow, `jax.value_and_grad` in a `jax.jit` on JAX, `torch.autograd` run
eagerly on PyTorch. Dropout draws from a seed carried through the loop (Keras's
`StatelessScope`), so that the epoch is a pure function on every backend.
"""

from collections.abc import Callable
from typing import Any, Protocol

import keras
from keras import ops

from tuner.training.replicas import StackedData
from tuner.training.updates import STEPS

# The state carried between epochs: weights, the optimiser's slots m and v, the steps per
# replica, the batch-norm moving statistics ((replicas, 2, units) per hidden layer), and the
# dropout seed.
State = tuple[Any, Any, Any, Any, list[Any], Any]
Epoch = Callable[[State, Any, Any, Any], tuple[State, Any, Any]]


class Net(Protocol):
    """What the epoch needs of the stacked network (trainer.StackedNet)."""

    replicas: int
    seed: keras.random.SeedGenerator

    def unflatten(self, flat: Any) -> list[Any]: ...

    def losses(
        self, weights: list[Any], stats: list[Any], x: Any, y: Any, rows: Any, training: bool
    ) -> tuple[Any, list[Any]]: ...


Gradients = Callable[[Net, Any, list[Any], Any, Any, Any, Any], tuple[Any, list[Any], Any, Any]]


def _forward(
    net: Net, weights: list[Any], stats: list[Any], x: Any, y: Any, rows: Any, seed: Any
) -> tuple[Any, tuple[Any, list[Any], Any]]:
    """The summed training loss, and (losses, new statistics, next seed): dropout's draws
    come from `seed` instead of the generator's variable, which a compiled epoch cannot write."""
    with keras.StatelessScope(state_mapping=[(net.seed.state, seed)]) as scope:
        losses, stats = net.losses(weights, stats, x, y, rows, training=True)
        seed = scope.get_current_value(net.seed.state)
    return ops.sum(losses), (losses, stats, seed)


def _flat(net: Net, grads: list[Any]) -> Any:
    """The pieces' gradients as one (replicas, weights) matrix, the layout of the weights.
    Differentiating by the pieces rather than through slices of the flat matrix: each slice's
    gradient would otherwise be a full-size matrix of zeros around the piece."""
    return ops.concatenate([ops.reshape(g, (net.replicas, -1)) for g in grads], axis=1)


def _tensorflow_gradients(
    net: Net, flat: Any, stats: list[Any], x: Any, y: Any, rows: Any, seed: Any
) -> tuple[Any, list[Any], Any, Any]:
    import tensorflow as tf

    weights = net.unflatten(flat)
    with tf.GradientTape() as tape:
        tape.watch(weights)
        total, (losses, stats, seed) = _forward(net, weights, stats, x, y, rows, seed)
    return losses, stats, _flat(net, tape.gradient(total, weights)), seed


def _jax_gradients(
    net: Net, flat: Any, stats: list[Any], x: Any, y: Any, rows: Any, seed: Any
) -> tuple[Any, list[Any], Any, Any]:
    import jax

    def forward(weights: list[Any]) -> tuple[Any, tuple[Any, list[Any], Any]]:
        return _forward(net, weights, stats, x, y, rows, seed)

    value_and_grad = jax.value_and_grad(forward, has_aux=True)
    (_, (losses, stats, seed)), grads = value_and_grad(net.unflatten(flat))
    return losses, stats, _flat(net, grads), seed


def _torch_gradients(
    net: Net, flat: Any, stats: list[Any], x: Any, y: Any, rows: Any, seed: Any
) -> tuple[Any, list[Any], Any, Any]:
    import torch

    with torch.enable_grad():
        weights = [w.detach().requires_grad_(True) for w in net.unflatten(flat)]
        total, (losses, stats, seed) = _forward(net, weights, stats, x, y, rows, seed)
        grads = torch.autograd.grad(total, weights)
    return losses.detach(), [s.detach() for s in stats], _flat(net, list(grads)), seed


def _compile(epoch: Epoch) -> Epoch:
    """The backend's own compilation of the epoch (none on PyTorch: eager, which pays there)."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        # AutoGraph is not needed (no Python control flow on tensors) and slows the trace.
        return tf.function(epoch, autograph=False)  # type: ignore[no-any-return]
    if backend == "jax":
        import jax

        return jax.jit(epoch)  # type: ignore[no-any-return]
    if backend == "torch":
        import torch

        return torch.no_grad()(epoch)  # type: ignore[no-any-return]
    raise ValueError(
        f"KERAS_BACKEND={backend}: the stacked trainer runs on tensorflow, jax or torch"
    )


GRADIENTS: dict[str, Gradients] = {
    "tensorflow": _tensorflow_gradients,
    "jax": _jax_gradients,
    "torch": _torch_gradients,
}


def epoch_function(
    net: Net, data: StackedData, batch: int, learning_rate: float, optimizer: str = "adam"
) -> Epoch:
    """(state, indices, row weights, active) -> (state, training loss, held-out loss)."""
    replicas, rows, width = data.x_train.shape
    x_flat = ops.convert_to_tensor(data.x_train.reshape(replicas * rows, width))
    y_flat = ops.convert_to_tensor(data.y_train.reshape(replicas * rows))
    x_test, y_test = ops.convert_to_tensor(data.x_test), ops.convert_to_tensor(data.y_test)
    update, gradients = STEPS[optimizer], GRADIENTS[keras.backend.backend()]

    def epoch(state: State, indices: Any, weights: Any, active: Any) -> tuple[State, Any, Any]:
        def step(i: Any, carry: tuple[Any, ...]) -> tuple[Any, ...]:
            flat, m, v, steps, stats, seed, total = carry
            x = ops.reshape(ops.take(x_flat, indices[i], axis=0), (replicas, batch, width))
            y = ops.reshape(ops.take(y_flat, indices[i], axis=0), (replicas, batch))
            losses, new_stats, grads, seed = gradients(net, flat, stats, x, y, weights[i], seed)
            flat, m, v, steps = update(flat, m, v, steps, grads, active, learning_rate)
            on = ops.reshape(active, (-1, 1, 1))
            stats = [ops.where(on, new, old) for new, old in zip(new_stats, stats, strict=True)]
            return flat, m, v, steps, stats, seed, total + losses * ops.sum(weights[i])

        indices, weights = ops.convert_to_tensor(indices), ops.convert_to_tensor(weights)
        active = ops.convert_to_tensor(active)
        start = (*state, ops.zeros((replicas,)))
        carry = ops.fori_loop(0, indices.shape[0], step, start)
        flat, stats = carry[0], carry[4]
        val, _ = net.losses(net.unflatten(flat), stats, x_test, y_test, None, training=False)
        return carry[:6], carry[6] / rows, val

    return _compile(epoch)
