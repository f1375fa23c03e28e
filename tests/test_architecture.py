"""The course's rule from a point to layers; pure, no Keras."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tuner.config.schema import NetworkConfig
from tuner.errors import UsageError
from tuner.training.architecture import decode, hidden_layers, training_of

COURSE = NetworkConfig()


def test_course_published_example():
    params = {"dropout": 0.2, "neuron_pct": 0.1, "neuron_shrink": 0.25}
    arch = decode(params, COURSE, n_inputs=47, n_outputs=7, task="classification")
    assert arch.hidden == (500, 125, 31)
    assert arch.n_params == 91_411
    assert arch.describe() == "47 -> 500 -> 125 -> 31 -> 7 (prelu, dropout 0.2), 91,411 parameters"


def test_count_stays_real_between_layers():
    # 0.3 * 5000 = 1500 -> 1500 * 0.33 = 495.0 -> 163.35 -> 53.9 -> 17.8 (stops at <= 25)
    assert hidden_layers(0.3, 0.33, COURSE) == (1500, 495, 163, 53)


def test_no_hidden_layer_is_a_softmax_regression():
    arch = decode(
        {"dropout": 0.1, "neuron_pct": 0.005, "neuron_shrink": 0.5}, COURSE, 10, 3, "classification"
    )
    assert arch.hidden == ()
    assert arch.n_params == 10 * 3 + 3
    assert "no hidden layer (softmax regression)" in arch.describe()


def test_a_zero_floor_never_gives_an_empty_layer():
    assert hidden_layers(0.001, 0.1, NetworkConfig(min_neurons=0)) == (5,)


def test_max_layers_caps_the_depth():
    assert len(hidden_layers(1.0, 1.0, COURSE)) == 10
    assert hidden_layers(1.0, 1.0, NetworkConfig(max_layers=2)) == (5000, 5000)
    assert hidden_layers(1.0, 0.5, NetworkConfig(max_layers=0)) == ()


def test_batch_norm_and_plain_activations_count_like_keras():
    params = {"dropout": 0.0, "neuron_pct": 0.01, "neuron_shrink": 0.5, "batch_norm": True}
    prelu = decode(params, COURSE, 4, 2, "classification")
    relu = decode(params, NetworkConfig(activation="relu"), 4, 2, "classification")
    # 50 -> 25 is not above 25, so one hidden layer of 50
    assert prelu.hidden == (50,)
    assert relu.n_params == (4 * 50 + 50) + 4 * 50 + (50 * 2 + 2)
    assert prelu.n_params == relu.n_params + 50


def test_a_searched_activation_and_l2_replace_the_network_defaults():
    params = {"dropout": 0.0, "neuron_pct": 0.01, "neuron_shrink": 0.5}
    plain = decode(params, NetworkConfig(activation="relu"), 4, 2, "classification")
    assert (plain.activation, plain.l2) == ("relu", 0.0)
    tanh = decode({**params, "activation": "tanh", "l2": 1e-3}, COURSE, 4, 2, "classification")
    assert (tanh.activation, tanh.l2) == ("tanh", 1e-3)
    assert tanh.n_params == plain.n_params, "only prelu has weights of its own"
    assert tanh.describe() == "4 -> 50 -> 2 (tanh, dropout 0, l2 0.001), 352 parameters"
    with pytest.raises(
        UsageError, match=r"^activation: must be one of prelu, relu, .* \(got 'sigmoid'\)$"
    ):
        decode({**params, "activation": "sigmoid"}, COURSE, 4, 2, "classification")
    with pytest.raises(UsageError, match=r"^l2: must be a finite number at least 0 \(got -1\)"):
        decode({**params, "l2": -1}, COURSE, 4, 2, "classification")


def test_training_settings_default_to_adam_and_batch_32():
    assert training_of({"learning_rate": 0.01}) == training_of(
        {"learning_rate": 0.01, "optimizer": "adam", "batch_size": 32}
    )
    sgd = training_of({"learning_rate": 0.1, "optimizer": "sgd", "batch_size": 64})
    assert (sgd.optimizer, sgd.learning_rate, sgd.batch_size) == ("sgd", 0.1, 64)
    with pytest.raises(UsageError, match=r"^optimizer: must be one of adam, sgd, rmsprop"):
        training_of({"learning_rate": 0.01, "optimizer": "adagrad"})
    with pytest.raises(UsageError, match=r"^batch_size: must be a finite number at least 1"):
        training_of({"learning_rate": 0.01, "batch_size": 0})


def test_regression_has_one_output():
    arch = decode(
        {"dropout": 0.0, "neuron_pct": 0.01, "neuron_shrink": 0.1}, COURSE, 3, 1, "regression"
    )
    assert arch.describe().endswith("-> 1 (prelu, dropout 0), 301 parameters")


@given(
    pct=st.floats(0.0001, 1.0),
    shrink=st.floats(0.01, 1.5),
    min_neurons=st.integers(0, 100),
    max_layers=st.integers(0, 12),
)
def test_rule_invariants(pct, shrink, min_neurons, max_layers):
    network = NetworkConfig(min_neurons=min_neurons, max_layers=max_layers)
    layers = hidden_layers(pct, shrink, network)
    assert len(layers) <= max_layers
    # the real count is above the floor; the width is that count cut to a whole number
    assert all(isinstance(n, int) and n >= max(min_neurons, 1) for n in layers)
    if layers:
        assert layers[0] == int(pct * 5000)


def test_decoding_and_the_cli_do_not_import_keras():
    code = (
        "import sys, tuner.cli.commands, tuner.training.architecture, tuner.engine.loop; "
        "import tuner.training.evaluate, tuner.study.store; "
        "heavy = {'keras', 'tensorflow'} & set(sys.modules); assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
