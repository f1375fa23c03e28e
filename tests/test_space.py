"""The encoding between named hyperparameters and the optimiser's unit coordinates."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tuner.config.schema import validate_config
from tuner.config.space import SearchSpace
from tuner.errors import UsageError

RAW = {
    "data": {"path": "/x.csv", "target": "y"},
    "space": {
        "dropout": {"low": 0.0, "high": 0.5},
        "learning_rate": {"low": 1.0e-4, "high": 0.1, "log": True},
        "neuron_pct": {"low": 0.01, "high": 1.0},
        "neuron_shrink": 0.5,
        "batch_norm": {"values": [False, True]},
        "batch_size": {"low": 16, "high": 256, "log": True, "int": True},
    },
}


@pytest.fixture
def space() -> SearchSpace:
    return SearchSpace(validate_config(RAW).space)


def test_names_follow_the_config_order_and_fixed_values_are_kept(space):
    assert space.names == ("dropout", "learning_rate", "neuron_pct", "batch_norm", "batch_size")
    # Defaults are fixed values too; activation is not (it is network.activation's).
    assert space.fixed == {"neuron_shrink": 0.5, "l2": 0.0, "optimizer": "adam"}
    assert space.pbounds()["learning_rate"] == (0.0, 1.0)
    assert space.pbounds()["batch_norm"] == ("false", "true")


def test_log_range_is_uniform_in_log_space(space):
    base = {"dropout": 0.0, "neuron_pct": 0.0, "batch_norm": "false", "batch_size": 0.0}
    assert space.params({**base, "learning_rate": 0.0})["learning_rate"] == pytest.approx(1e-4)
    assert space.params({**base, "learning_rate": 0.5})["learning_rate"] == pytest.approx(
        math.sqrt(1e-4 * 0.1)
    )
    assert space.params({**base, "learning_rate": 1.0})["learning_rate"] == pytest.approx(0.1)


def test_a_coordinate_at_a_bound_gives_the_bound_exactly(space):
    base = {"neuron_pct": 0.5, "batch_norm": "false", "batch_size": 0.5}
    # As the acquisition's polish leaves them: 1e-17 from a bound, not on it.
    low = space.params({**base, "dropout": 1.4e-17, "learning_rate": 0.0})
    assert low["dropout"] == 0.0 and low["learning_rate"] == 1e-4  # not 1.0000000000000009e-4
    high = space.params({**base, "dropout": 1 - 1e-16, "learning_rate": 1 - 1e-12})
    assert high["dropout"] == 0.5 and high["learning_rate"] == 0.1
    inside = space.params({**base, "dropout": 1e-6, "learning_rate": 1e-6})
    assert 0.0 < inside["dropout"] < 1e-6 and inside["learning_rate"] > 1e-4


def test_integers_are_rounded_and_choices_decoded(space):
    params = space.params(
        {
            "dropout": 0.5,
            "learning_rate": 0.2,
            "neuron_pct": 1.0,
            "batch_norm": "true",
            "batch_size": 0.5,
        }
    )
    assert params["batch_size"] == 64 and isinstance(params["batch_size"], int)
    assert params["batch_norm"] is True
    assert params["dropout"] == 0.25
    assert params["neuron_shrink"] == 0.5


@given(
    u=st.floats(0.0, 1.0),
    v=st.floats(0.0, 1.0),
    w=st.floats(0.0, 1.0),
)
def test_point_round_trip(u, v, w):
    space = SearchSpace(validate_config(RAW).space)
    point = {
        "dropout": u,
        "learning_rate": v,
        "neuron_pct": w,
        "batch_norm": "false",
        "batch_size": 0.3,
    }
    params = space.params(point)
    back = space.point(params)
    for name in ("dropout", "learning_rate", "neuron_pct"):
        assert back[name] == pytest.approx(point[name], abs=1e-9)
    assert 0.0 <= params["dropout"] <= 0.5
    assert 1e-4 <= params["learning_rate"] <= 0.1


def test_vector_in_config_order(space):
    params = space.params_from_vector("0.2, 0.001, 0.3, true, 32")
    assert params == {
        "dropout": 0.2,
        "learning_rate": 0.001,
        "neuron_pct": 0.3,
        "batch_norm": True,
        "batch_size": 32,
        "neuron_shrink": 0.5,
        "l2": 0.0,
        "optimizer": "adam",
    }


@pytest.mark.parametrize(
    ("vector", "message"),
    [
        (
            "0.2,0.001,0.3,true",
            "--vector: expected 5 values in the order "
            "dropout,learning_rate,neuron_pct,batch_norm,batch_size (got 4)",
        ),
        (
            "",
            "--vector: expected 5 values in the order "
            "dropout,learning_rate,neuron_pct,batch_norm,batch_size (got 0)",
        ),
        ("0.9,0.001,0.3,true,32", "--vector dropout: must be between 0.0 and 0.5 (got 0.9)"),
        (
            "nan,0.001,0.3,true,32",
            "--vector dropout: must be a finite number between 0.0 and 0.5 (got nan)",
        ),
        (
            "abc,0.001,0.3,true,32",
            "--vector dropout: must be a finite number between 0.0 and 0.5 (got 'abc')",
        ),
        (
            "0.2,0.001,0.3,maybe,32",
            "--vector batch_norm: must be one of [False, True] (got 'maybe')",
        ),
        ("0.2,0.001,0.3,true,32.5", "--vector batch_size: must be a whole number (got 32.5)"),
        ("0.2,1.0,0.3,true,32", "--vector learning_rate: must be between 0.0001 and 0.1 (got 1.0)"),
    ],
)
def test_bad_vectors(space, vector, message):
    with pytest.raises(UsageError) as info:
        space.params_from_vector(vector)
    assert str(info.value) == message


def test_params_by_name(space):
    params = space.params_from_assignments(
        [
            "learning_rate=0.001",
            "dropout=0.1",
            "neuron_pct=0.2",
            "batch_norm=false",
            "batch_size=16",
        ]
    )
    assert list(params)[:5] == list(space.names)
    assert params["learning_rate"] == 0.001
    with pytest.raises(UsageError, match=r"^--param: missing value for batch_norm, batch_size$"):
        space.params_from_assignments(["learning_rate=0.001", "dropout=0.1", "neuron_pct=0.2"])
    with pytest.raises(UsageError, match=r"^--param neuron_shrink: fixed in the config \(0.5\)"):
        space.params_from_assignments(["neuron_shrink=0.1"])
    with pytest.raises(UsageError, match=r"^--param lr: not a hyperparameter of this space"):
        space.params_from_assignments(["lr=0.1"])
    with pytest.raises(UsageError, match=r"^--param dropout: expected name=value"):
        space.params_from_assignments(["dropout"])


def test_the_new_choices_and_a_log_l2_are_encoded_and_checked():
    raw = {
        **RAW,
        "space": {
            **RAW["space"],
            "activation": {"values": ["relu", "elu", "tanh"]},
            "l2": {"low": 1e-6, "high": 1e-2, "log": True},
            "optimizer": {"values": ["adam", "sgd", "rmsprop"]},
        },
    }
    space = SearchSpace(validate_config(raw).space)
    assert space.pbounds()["optimizer"] == ('"adam"', '"sgd"', '"rmsprop"')
    point = {name: 0.5 for name in space.names}
    point.update(batch_norm="false", activation='"elu"', optimizer='"sgd"')
    params = space.params(point)
    assert (params["activation"], params["optimizer"]) == ("elu", "sgd")
    assert params["l2"] == pytest.approx(1e-4)
    assert space.point(params)["l2"] == pytest.approx(0.5)
    by_name = space.params_from_assignments(
        [f"{n}={params[n]}" for n in space.names if n != "batch_norm"] + ["batch_norm=false"]
    )
    assert by_name["optimizer"] == "sgd" and by_name["activation"] == "elu"
    with pytest.raises(UsageError, match=r"^--param optimizer: must be one of"):
        space.params_from_assignments(["optimizer=adagrad"])
