"""The Keras model of an architecture, and the loss a split's predictions score."""

from __future__ import annotations

import numpy as np
import pytest

from tuner.config.schema import NetworkConfig
from tuner.training.architecture import decode
from tuner.training.model import held_out_loss, network


@pytest.mark.parametrize(
    ("sizes", "batch_norm"),
    [(NetworkConfig(), False), (NetworkConfig(), True), (NetworkConfig(activation="relu"), True)],
)
def test_keras_parameter_count_matches_the_decoder(sizes, batch_norm):
    params = {"dropout": 0.2, "neuron_pct": 0.1, "neuron_shrink": 0.25, "batch_norm": batch_norm}
    arch = decode(params, sizes, n_inputs=47, n_outputs=7, task="classification")
    model = network(arch)
    assert model.count_params() == arch.n_params
    if arch.activation == "prelu" and not batch_norm:
        assert model.count_params() == 91_411


@pytest.mark.parametrize(
    ("activation", "layer"),
    [
        ("prelu", "PReLU"),
        ("leaky_relu", "LeakyReLU"),
        ("relu", "Activation"),
        ("elu", "Activation"),
        ("selu", "Activation"),
        ("tanh", "Activation"),
    ],
)
def test_each_searched_activation_builds_its_layer(activation, layer):
    params = {"dropout": 0.1, "neuron_pct": 0.01, "neuron_shrink": 0.5, "activation": activation}
    arch = decode(params, NetworkConfig(), n_inputs=6, n_outputs=3, task="classification")
    model = network(arch)
    built = [item for item in model.layers if type(item).__name__ == layer]
    assert len(built) == len(arch.hidden) == 1
    if layer == "Activation":
        assert built[0].activation.__name__ == activation
    assert model.count_params() == arch.n_params


def test_the_l2_penalty_is_on_each_kernel_as_chosen():
    import keras

    params = {"dropout": 0.0, "neuron_pct": 0.01, "neuron_shrink": 0.5, "l2": 1e-3}
    arch = decode(params, NetworkConfig(), n_inputs=6, n_outputs=3, task="classification")
    model = network(arch)
    dense = [item for item in model.layers if isinstance(item, keras.layers.Dense)]
    assert len(dense) == 2, "the hidden layer and the output layer"
    assert all(item.kernel_regularizer.get_config() == {"l2": 1e-3} for item in dense)
    kernels = sum(float(np.sum(np.square(item.kernel.numpy()))) for item in dense)
    penalty = sum(float(loss) for loss in model.losses)
    assert penalty == pytest.approx(1e-3 * kernels, rel=1e-5)
    plain = network(decode({**params, "l2": 0.0}, NetworkConfig(), 6, 3, "classification"))
    assert plain.losses == []


def test_softmax_regression_builds():
    arch = decode(
        {"dropout": 0.0, "neuron_pct": 0.001, "neuron_shrink": 0.5},
        NetworkConfig(),
        5,
        3,
        "classification",
    )
    assert arch.hidden == ()
    assert network(arch).count_params() == 18


def test_a_regression_scores_its_rmse_and_a_classification_its_log_loss():
    arch = decode(
        {"dropout": 0.0, "neuron_pct": 0.001, "neuron_shrink": 0.5},
        NetworkConfig(),
        2,
        1,
        "regression",
    )
    assert held_out_loss(arch, np.array([1.0, 3.0]), np.array([[2.0], [1.0]])) == pytest.approx(
        np.sqrt(2.5)
    )
    classes = decode(
        {"dropout": 0.0, "neuron_pct": 0.001, "neuron_shrink": 0.5},
        NetworkConfig(),
        2,
        3,
        "classification",
    )
    # Unnormalised rows are normalised; a class absent from y_true still counts.
    probs = np.array([[0.7, 0.2, 0.1], [0.2, 0.6, 0.2]]) * 2
    expected = -(np.log(0.7) + np.log(0.6)) / 2
    assert held_out_loss(classes, np.array([0, 1]), probs) == pytest.approx(expected)
