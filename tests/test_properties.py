"""Property tests: any input to the config parser or the decoder is accepted or refused with
the tool's own error, never with anything else (a crash, a hang, a silent nonsense network)."""

from __future__ import annotations

import copy
import math
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tuner.config.schema import Config, NetworkConfig, validate_config
from tuner.config.yamlfile import parse_yaml
from tuner.errors import ConfigError, TunerError
from tuner.training.architecture import Architecture, decode

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

BASE: dict[str, Any] = {
    "data": {"path": "/data/x.csv", "target": "y", "drop": ["id"]},
    "space": {
        "dropout": {"low": 0.0, "high": 0.3},
        "learning_rate": {"low": 1.0e-3, "high": 3.0e-2, "log": True},
        "neuron_pct": {"low": 0.002, "high": 0.006},
        "neuron_shrink": {"low": 0.3, "high": 0.8},
        "batch_norm": {"values": [False, True]},
        "batch_size": 32,
    },
    "network": {"max_neurons": 5000, "min_neurons": 5, "max_layers": 3, "activation": "relu"},
    "evaluation": {"splits": 2, "test_size": 0.2, "epochs": 4, "patience": 2, "min_delta": 0.0},
    "search": {"init_points": 2, "n_iter": 1, "seed": 3, "acquisition": {"kind": "ei", "xi": 0}},
}
KEYS = [
    ("data",),
    ("space",),
    ("network",),
    ("evaluation",),
    ("search",),
    ("search", "acquisition"),
    *((section, key) for section in BASE for key in BASE[section]),
    ("search", "acquisition", "kind"),
    *(("space", name, key) for name in ("dropout", "learning_rate") for key in ("low", "high")),
    ("space", "learning_rate", "log"),
    ("space", "batch_norm", "values"),
]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(),  # NaN and infinities included
    st.text(max_size=20),
    st.sampled_from(["", "nan", ".inf", "low", "relu", "classification", "0.5"]),
)
keys = st.one_of(st.text(max_size=12), st.sampled_from([*BASE, "low", "high", "values", "value"]))
nested = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=4)),
    max_leaves=12,
)


def _accepted_or_config_error(raw: Any) -> None:
    try:
        config = validate_config(raw)
    except ConfigError as exc:
        message = str(exc)
        assert message and "\n" not in message
        return
    assert isinstance(config, Config)


@FAST
@given(raw=st.dictionaries(keys, nested, max_size=6))
def test_any_mapping_is_a_config_or_a_config_error(raw: dict[str, Any]):
    _accepted_or_config_error(raw)


@FAST
@given(path=st.sampled_from(KEYS), value=nested)
def test_any_value_at_any_key_is_a_config_or_a_config_error(path: tuple[str, ...], value: Any):
    raw = copy.deepcopy(BASE)
    node = raw
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    _accepted_or_config_error(raw)


@pytest.mark.parametrize("raw", [None, [], "text", 3, float("nan"), [BASE], {1: 2}, {None: {}}])
def test_non_mappings_are_config_errors(raw: Any):
    with pytest.raises(ConfigError):
        validate_config(raw)


yaml_text = st.one_of(
    st.text(max_size=200),
    st.text(alphabet="{}[]:,-&*!?|>'\"#%@` \n\tab1.", max_size=80),
    nested.map(lambda data: yaml.safe_dump(data, default_flow_style=None)),
)


@FAST
@given(text=yaml_text)
def test_any_text_parses_or_is_a_config_error(text: str):
    try:
        parse_yaml(text, "c.yaml")
    except ConfigError as exc:
        assert str(exc).startswith("c.yaml: ") and "\n" not in str(exc)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("? [a]\n: 1\n", "line 1: a key must be a single value, not a list; write the key as"),
        ("[" * 5000, "line 1: values nested more than 100 levels deep; flatten the config"),
    ],
)
def test_unhashable_keys_and_deep_nesting_are_refused(text: str, message: str):
    with pytest.raises(ConfigError, match=f"^c.yaml: {message}"):
        parse_yaml(text, "c.yaml")


networks = st.builds(
    NetworkConfig,
    max_neurons=st.integers(1, 1_000_000_000),
    min_neurons=st.integers(0, 10**6),
    max_layers=st.integers(0, 1000),
    activation=st.sampled_from(["prelu", "relu", "tanh"]),
)
any_float = st.one_of(st.floats(), st.integers(-(10**6), 10**6), st.sampled_from([0.0, 1.0, -0.0]))
points = st.fixed_dictionaries(
    {
        "dropout": st.one_of(any_float, st.floats(0.0, 0.99)),
        "neuron_pct": st.one_of(any_float, st.floats(1e-9, 1.0)),
        "neuron_shrink": st.one_of(any_float, st.floats(1e-9, 1.0), st.floats(1.0, 1e300)),
        "batch_norm": st.booleans(),
    }
)


@FAST
@given(params=points, network=networks, n_inputs=st.integers(1, 500), n_outputs=st.integers(1, 9))
def test_decode_gives_a_sane_network_or_a_tuner_error(
    params: dict[str, Any], network: NetworkConfig, n_inputs: int, n_outputs: int
):
    try:
        arch = decode(params, network, n_inputs, n_outputs, "classification")
    except TunerError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    assert isinstance(arch, Architecture)
    assert all(math.isfinite(params[k]) for k in ("dropout", "neuron_pct", "neuron_shrink"))
    assert len(arch.hidden) <= network.max_layers
    assert all(isinstance(width, int) and width >= 1 for width in arch.hidden)
    if params["neuron_shrink"] <= 1:
        assert all(width <= network.max_neurons for width in arch.hidden)
    else:  # above 1 the layers grow (README): wider than max_neurons is allowed, never smaller
        assert list(arch.hidden) == sorted(arch.hidden)
    assert arch.n_params >= n_outputs


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("neuron_pct", math.nan, "neuron_pct: must be a finite number above 0 and at most 1"),
        ("neuron_pct", 2.0, "neuron_pct: must be a finite number above 0 and at most 1"),
        ("neuron_shrink", math.inf, "neuron_shrink: must be a finite number above 0"),
        ("neuron_shrink", -1.0, "neuron_shrink: must be a finite number above 0"),
        ("dropout", math.nan, "dropout: must be a finite number at least 0 and below 1"),
    ],
)
def test_decode_refuses_values_outside_the_domain(name: str, value: float, message: str):
    params = {"dropout": 0.1, "neuron_pct": 0.1, "neuron_shrink": 0.5, name: value}
    with pytest.raises(TunerError, match=f"^{message} \\(got {value!r}\\); change it$"):
        decode(params, NetworkConfig(), 4, 2, "classification")


def test_layers_that_grow_past_any_size_fail_as_too_large():
    params = {"dropout": 0.1, "neuron_pct": 1.0, "neuron_shrink": 1e300}
    with pytest.raises(TunerError, match=r"^too_large: neuron_shrink 1e\+300 makes layer 3"):
        decode(params, NetworkConfig(max_layers=5), 4, 2, "classification")
