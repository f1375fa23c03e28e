"""Keras models built from architectures, trained on tiny data."""

from __future__ import annotations

import numpy as np
import pytest

from tuner.config.schema import EvaluationConfig, NetworkConfig
from tuner.errors import TrialFailed
from tuner.training.architecture import decode
from tuner.training.data import PreparedSplit
from tuner.training.model import build_model, held_out_loss, train_split


@pytest.mark.parametrize(
    ("network", "batch_norm"),
    [(NetworkConfig(), False), (NetworkConfig(), True), (NetworkConfig(activation="relu"), True)],
)
def test_keras_parameter_count_matches_the_decoder(network, batch_norm):
    params = {"dropout": 0.2, "neuron_pct": 0.1, "neuron_shrink": 0.25, "batch_norm": batch_norm}
    arch = decode(params, network, n_inputs=47, n_outputs=7, task="classification")
    model = build_model(arch, learning_rate=1e-3)
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
    model = build_model(arch, learning_rate=1e-3)
    built = [item for item in model.layers if type(item).__name__ == layer]
    assert len(built) == len(arch.hidden) == 1
    if layer == "Activation":
        assert built[0].activation.__name__ == activation
    assert model.count_params() == arch.n_params


@pytest.mark.parametrize(
    ("name", "kind", "settings"),
    [
        ("adam", "Adam", {"beta_1": 0.9, "beta_2": 0.999}),
        ("sgd", "SGD", {"momentum": 0.9, "nesterov": False}),
        ("rmsprop", "RMSprop", {"rho": 0.9, "momentum": 0.0, "centered": False}),
    ],
)
def test_the_optimiser_and_the_l2_penalty_are_built_as_chosen(name, kind, settings):
    import keras

    params = {"dropout": 0.0, "neuron_pct": 0.01, "neuron_shrink": 0.5, "l2": 1e-3}
    arch = decode(params, NetworkConfig(), n_inputs=6, n_outputs=3, task="classification")
    model = build_model(arch, 0.05, name)
    assert type(model.optimizer).__name__ == kind
    config = model.optimizer.get_config()
    assert config["learning_rate"] == pytest.approx(0.05)
    assert {key: config[key] for key in settings} == settings
    dense = [item for item in model.layers if isinstance(item, keras.layers.Dense)]
    assert len(dense) == 2, "the hidden layer and the output layer"
    assert all(item.kernel_regularizer.get_config() == {"l2": 1e-3} for item in dense)
    kernels = sum(float(np.sum(np.square(item.kernel.numpy()))) for item in dense)
    penalty = sum(float(loss) for loss in model.losses)
    assert penalty == pytest.approx(1e-3 * kernels, rel=1e-5)
    plain = build_model(
        decode({**params, "l2": 0.0}, NetworkConfig(), 6, 3, "classification"), 0.05
    )
    assert plain.losses == [] and type(plain.optimizer).__name__ == "Adam"


def test_softmax_regression_builds():
    arch = decode(
        {"dropout": 0.0, "neuron_pct": 0.001, "neuron_shrink": 0.5},
        NetworkConfig(),
        5,
        3,
        "classification",
    )
    assert arch.hidden == ()
    assert build_model(arch, 1e-3).count_params() == 18


def blobs(seed=0, rows=200):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, rows)
    x = (y[:, None] * 1.5 + rng.normal(0, 0.7, (rows, 4))).astype("float32")
    cut = int(rows * 0.8)
    return PreparedSplit(x[:cut], y[:cut], x[cut:], y[cut:])


def test_training_learns_and_stops_early():
    arch = decode(
        {"dropout": 0.0, "neuron_pct": 0.004, "neuron_shrink": 0.5},
        NetworkConfig(min_neurons=5),
        4,
        3,
        "classification",
    )
    result = train_split(
        arch,
        {"learning_rate": 0.01, "batch_size": 32},
        blobs(),
        EvaluationConfig(epochs=200, patience=3),
        seed=1,
    )
    assert result.loss < 0.5 * np.log(3), "better than guessing"
    assert result.epochs < 200, "early stopping ended it"


def test_best_weights_are_restored():
    arch = decode(
        {"dropout": 0.0, "neuron_pct": 0.01, "neuron_shrink": 0.5},
        NetworkConfig(min_neurons=5),
        4,
        3,
        "classification",
    )
    evaluation = EvaluationConfig(epochs=30, patience=5, min_delta=0.0)
    split = blobs(seed=2, rows=80)
    # A high learning rate makes the held-out loss wander; the score is still the best epoch's.
    result = train_split(arch, {"learning_rate": 0.05, "batch_size": 8}, split, evaluation, seed=4)
    import keras

    keras.utils.set_random_seed(4)
    model = build_model(arch, 0.05)
    history = model.fit(
        split.x_train,
        split.y_train,
        validation_data=(split.x_test, split.y_test),
        epochs=result.epochs,
        batch_size=8,
        verbose=0,
    )
    val_loss = history.history["val_loss"]
    assert val_loss[-1] > min(val_loss) + 0.01, "the last epoch is not the best one"
    assert result.loss == pytest.approx(min(val_loss), rel=0.05)


def test_divergence_is_a_failed_trial():
    arch = decode(
        {"dropout": 0.0, "neuron_pct": 0.004, "neuron_shrink": 0.5},
        NetworkConfig(min_neurons=5),
        4,
        3,
        "classification",
    )
    with pytest.raises(TrialFailed) as info:
        train_split(
            arch, {"learning_rate": 1e7, "batch_size": 32}, blobs(), EvaluationConfig(epochs=5), 0
        )
    assert info.value.kind == "diverged"


def test_regression_scores_rmse():
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
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 2)).astype("float32")
    y = (x @ np.array([1.0, -2.0])).astype("float32")
    split = PreparedSplit(x[:160], y[:160], x[160:], y[160:])
    result = train_split(
        arch,
        {"learning_rate": 0.05, "batch_size": 16},
        split,
        EvaluationConfig(epochs=60, patience=5),
        seed=0,
    )
    assert result.loss < 0.5 * float(np.std(y))
