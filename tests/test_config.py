"""Config validation: each rule with its exact message, YAML strictness, --set overrides."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from tuner.config.schema import load_config, validate_config
from tuner.config.yamlfile import apply_overrides, parse_yaml
from tuner.errors import ConfigError

BASE = {
    "data": {"path": "/data/x.csv", "target": "y"},
    "space": {
        "dropout": {"low": 0.0, "high": 0.499},
        "learning_rate": {"low": 1.0e-4, "high": 0.1, "log": True},
        "neuron_pct": {"low": 0.01, "high": 1.0},
        "neuron_shrink": {"low": 0.01, "high": 1.0},
    },
}


def with_change(path: str, value: object) -> dict:
    raw = copy.deepcopy(BASE)
    node = raw
    *parents, last = path.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return raw


DELETE = object()

CASES = [
    (
        "space.dropout",
        {"low": 0.5, "high": 0.1},
        "space.dropout: high must be greater than low (got low=0.5, high=0.1); swap or widen them",
    ),
    (
        "space.dropout",
        {"low": 0.1, "high": 0.1},
        "space.dropout: high must be greater than low (got low=0.1, high=0.1); swap or widen them",
    ),
    (
        "space.learning_rate",
        {"low": 0.0, "high": 0.1, "log": True},
        "space.learning_rate: a log-scale range needs low > 0 (got low=0.0); "
        "raise low or remove `log: true`",
    ),
    (
        "space.dropout",
        {"low": 0.0},
        "space.dropout: a range needs both low and high (got low=0.0, high=None)",
    ),
    (
        "space.dropout",
        {"low": 0.0, "high": 1.5},
        "space.dropout: high must be below 1 (got high=1.5)",
    ),
    (
        "space.dropout",
        {"low": float("nan"), "high": 0.4},
        "space.dropout.low: input should be a finite number (got nan); write a finite number",
    ),
    (
        "space.dropout",
        {"low": 0.0, "high": float("inf")},
        "space.dropout.high: input should be a finite number (got inf); write a finite number",
    ),
    (
        "space.dropout",
        {"lo": 0.0, "high": 0.4},
        "space.dropout.lo: unknown key; allowed keys: value, low, high, log, int, values",
    ),
    (
        "space.dropout",
        {"low": "a", "high": 0.4},
        "space.dropout.low: input should be a valid number (got 'a'); write a number, e.g. 0.5",
    ),
    (
        "space.dropout",
        None,
        "space.dropout: give a fixed value, {low: .., high: ..} or {values: [..]} (got nothing)",
    ),
    (
        "space.neuron_pct",
        {"low": 0.0, "high": 0.5},
        "space.neuron_pct: low must be above 0 (got low=0.0)",
    ),
    (
        "space.neuron_pct",
        DELETE,
        "space.neuron_pct: required hyperparameter is missing; "
        "add e.g. `neuron_pct: {low: 0.01, high: 1}`",
    ),
    (
        "space.neurons",
        3,
        "space.neurons: unknown hyperparameter; known ones: dropout, learning_rate, "
        "neuron_pct, neuron_shrink, batch_norm, batch_size, activation, l2, optimizer",
    ),
    (
        "space.activation",
        {"values": ["relu", "sigmoid"]},
        "space.activation: must be one of prelu, relu, leaky_relu, elu, selu, tanh, gelu, swish "
        "(got 'sigmoid')",
    ),
    (
        "space.activation",
        {"low": 0, "high": 1},
        "space.activation: is a choice among prelu, relu, leaky_relu, elu, selu, tanh, gelu, "
        "swish; search it with {values: [prelu, relu]}",
    ),
    (
        "space.optimizer",
        "adagrad",
        "space.optimizer: must be one of adam, sgd, rmsprop (got 'adagrad')",
    ),
    ("space.optimizer", 1, "space.optimizer: must be one of adam, sgd, rmsprop (got 1)"),
    ("space.l2", -0.01, "space.l2: value must be at least 0 (got value=-0.01)"),
    (
        "space.l2",
        {"low": 0.0, "high": 0.01, "log": True},
        "space.l2: a log-scale range needs low > 0 (got low=0.0); raise low or remove `log: true`",
    ),
    ("space.l2", "small", "space.l2: must be a number (got 'small')"),
    (
        "search.warm_start",
        {"storage": "sqlite:///a.db"},
        "search.warm_start.study: required key is missing; add `study:` under `search.warm_start:`",
    ),
    (
        "space.batch_norm",
        {"low": 0, "high": 1},
        "space.batch_norm: is true/false; use {values: [false, true]} to search it",
    ),
    ("space.batch_norm", "yes", "space.batch_norm: must be true or false (got 'yes')"),
    ("space.batch_size", 32.5, "space.batch_size: must be a whole number (got 32.5)"),
    (
        "space.batch_size",
        {"low": 16, "high": 100.5, "int": True},
        "space.batch_size: bounds must be whole numbers (got low=16.0, high=100.5)",
    ),
    (
        "space.batch_size",
        {"low": 0, "high": 64, "int": True},
        "space.batch_size: low must be at least 1 (got low=0.0)",
    ),
    (
        "space.dropout",
        {"low": 0.0, "high": 0.4, "int": True},
        "space.dropout: is a real number; remove `int: true`",
    ),
    (
        "space.batch_norm",
        {"values": [True]},
        "space.batch_norm: values needs at least two entries (got [True]); "
        "add one, or give the value alone",
    ),
    (
        "space.batch_norm",
        {"values": [True, True]},
        "space.batch_norm: values must not repeat (got [True, True])",
    ),
    (
        "space.dropout",
        {"values": [0.1, 0.2], "low": 0.0},
        "space.dropout: use one form: a fixed value, low/high or values (got low/high and values)",
    ),
    (
        "space.dropout",
        {"value": 0.1, "high": 0.2},
        "space.dropout: use one form: a fixed value, low/high or values "
        "(got a fixed value and low/high)",
    ),
    ("data.target", DELETE, "data.target: required key is missing; add `target:` under `data:`"),
    (
        "data.tagret",
        "y",
        "data.tagret: unknown key; allowed keys: path, target, task, drop, categorical",
    ),
    (
        "data.task",
        "ranking",
        "data.task: input should be 'classification' or 'regression' (got 'ranking'); "
        "use one of these",
    ),
    (
        "data.drop",
        "id",
        "data.drop: input should be a valid list (got 'id'); write a list, e.g. [a, b]",
    ),
    (
        "evaluation.splits",
        0,
        "evaluation.splits: input should be greater than or equal to 1 (got 0); raise the value",
    ),
    (
        "evaluation.splits",
        "two",
        "evaluation.splits: input should be a valid integer (got 'two'); "
        "write a whole number, e.g. 5",
    ),
    (
        "evaluation.splits",
        True,
        "evaluation.splits: input should be a valid integer (got True); "
        "write a whole number, e.g. 5",
    ),
    (
        "evaluation.test_size",
        1.0,
        "evaluation.test_size: input should be less than 1 (got 1.0); lower the value",
    ),
    (
        "evaluation.test_size",
        0,
        "evaluation.test_size: input should be greater than 0 (got 0); raise the value",
    ),
    (
        "evaluation.patience",
        -1,
        "evaluation.patience: input should be greater than or equal to 0 (got -1); raise the value",
    ),
    (
        "network.activation",
        "sigmoid2",
        "network.activation: input should be 'prelu', 'relu', 'leaky_relu', 'elu', 'selu', 'tanh', "
        "'gelu' or 'swish' (got 'sigmoid2'); use one of these",
    ),
    (
        "network.max_nerons",
        10,
        "network.max_nerons: unknown key; allowed keys: max_neurons, "
        "min_neurons, max_layers, activation",
    ),
    ("search.init_points", 0, None),
    (
        "search.acquisition.kind",
        "thompson",
        "search.acquisition.kind: input should be 'ucb', 'ei' or 'poi' (got 'thompson'); "
        "use one of these",
    ),
    (
        "searches",
        {},
        "searches: unknown key; allowed keys: data, space, network, evaluation, search",
    ),
]


@pytest.mark.parametrize(("path", "value", "message"), CASES, ids=[c[0] for c in CASES])
def test_each_rule_has_its_exact_message(path, value, message):
    raw = with_change(path, value)
    if message is None:
        assert validate_config(raw).search.init_points == 0
        return
    with pytest.raises(ConfigError) as info:
        validate_config(raw)
    assert str(info.value) == message


def test_empty_budget_is_refused():
    raw = with_change("search", {"init_points": 0, "n_iter": 0})
    with pytest.raises(
        ConfigError, match=r"^search: init_points \+ n_iter must be at least 1 \(got 0 \+ 0\)$"
    ):
        validate_config(raw)


def test_defaults_match_the_course():
    config = validate_config(BASE)
    assert config.network.model_dump() == {
        "max_neurons": 5000,
        "min_neurons": 25,
        "max_layers": 10,
        "activation": "prelu",
    }
    assert config.evaluation.model_dump() == {
        "splits": 2,
        "test_size": 0.1,
        "epochs": 500,
        "patience": 10,
        "min_delta": 0.001,
        "max_params": 100_000_000,
        "timeout": None,
        "worker_trials": 50,
    }
    assert config.search.max_consecutive_failures == 5
    assert (config.search.init_points, config.search.n_iter, config.search.seed) == (10, 20, 1)
    assert (config.search.acquisition.kind, config.search.acquisition.kappa) == ("ucb", 2.576)
    assert config.data.task == "classification"


def test_three_forms_of_a_space_entry():
    raw = with_change("space.batch_norm", {"values": [False, True]})
    raw["space"]["batch_size"] = 64
    config = validate_config(raw)
    assert config.space["batch_norm"].kind == "choice"
    assert config.space["batch_size"].kind == "fixed"
    assert config.space["dropout"].kind == "range"
    assert config.to_dict()["space"]["learning_rate"] == {"low": 1.0e-4, "high": 0.1, "log": True}
    assert validate_config(config.to_dict()) == config


def test_duplicate_keys_are_refused():
    with pytest.raises(
        ConfigError, match=r"^c.yaml: line 2: duplicate key 'a'; keep only one of them$"
    ):
        parse_yaml("a: 1\na: 2\n", "c.yaml")


def test_alias_bomb_is_refused_without_expanding():
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
        for p, c in zip("abcdefgh", "bcdefghi", strict=True)
    )
    with pytest.raises(ConfigError, match=r"YAML aliases \(\*a\) are not supported"):
        parse_yaml(bomb, "bomb.yaml")


def test_malformed_yaml_names_the_line():
    with pytest.raises(
        ConfigError,
        match=r"^c.yaml: not valid YAML at line 2, column 1: expected .,. or .\]., but got",
    ):
        parse_yaml("data: [1, 2\n", "c.yaml")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "is empty; it needs at least the data: and space: sections"),
        ("- a\n- b\n", "must be a mapping with data: and space: sections (got a list)"),
        ("just text", "must be a mapping with data: and space: sections (got a str)"),
    ],
)
def test_config_file_shapes(tmp_path: Path, text: str, message: str):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: {message}"


def test_missing_directory_and_binary_files(tmp_path: Path):
    with pytest.raises(ConfigError, match="file not found; check the path"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="is a directory; give the path of a YAML config file"):
        load_config(tmp_path)
    (tmp_path / "bin.yaml").write_bytes(b"\xff\xfe\x00\x01")
    with pytest.raises(ConfigError, match="is not UTF-8 text"):
        load_config(tmp_path / "bin.yaml")


def test_relative_data_path_is_relative_to_the_config(tmp_path: Path):
    (tmp_path / "sub").mkdir()
    raw = with_change("data.path", "../data.csv")
    (tmp_path / "sub" / "c.yaml").write_text(yaml.safe_dump(raw))
    config = load_config(tmp_path / "sub" / "c.yaml")
    assert config.data.path == str((tmp_path / "data.csv").resolve())


def test_url_data_path_is_kept(tmp_path: Path):
    raw = with_change("data.path", "https://example.org/d.csv")
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(raw))
    assert load_config(tmp_path / "c.yaml").data.path == "https://example.org/d.csv"


def test_set_overrides_any_key_with_yaml_typed_values(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    raw = apply_overrides(
        BASE,
        [
            "evaluation.splits=5",
            "space.batch_norm={values: [false, true]}",
            "space.dropout.high=0.3",
            "data.path=local/x.csv",
            "search.acquisition.kind=ei",
        ],
    )
    config = validate_config(raw)
    assert config.evaluation.splits == 5
    assert config.space["batch_norm"].values == [False, True]
    assert config.space["dropout"].high == 0.3
    assert config.data.path == str(tmp_path / "local" / "x.csv")
    assert config.search.acquisition.kind == "ei"
    assert BASE["space"]["dropout"]["high"] == 0.499, "the original mapping is not changed"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "evaluation.splits",
            "--set evaluation.splits: expected key.path=value, e.g. evaluation.splits=5",
        ),
        ("=3", "--set =3: expected key.path=value, e.g. evaluation.splits=5"),
        ("data.path.x=1", "--set data.path.x: data.path is not a section (it is '/data/x.csv')"),
    ],
)
def test_bad_set_items(override: str, message: str):
    with pytest.raises(ConfigError) as info:
        apply_overrides(BASE, [override])
    assert str(info.value) == message


def test_set_values_are_validated_like_the_file():
    with pytest.raises(ConfigError) as info:
        validate_config(apply_overrides(BASE, ["evaluation.splits=0"]))
    assert (
        str(info.value)
        == "evaluation.splits: input should be greater than or equal to 1 (got 0); raise the value"
    )
    with pytest.raises(ConfigError) as info:
        validate_config(apply_overrides(BASE, ["evaluation.split=3"]))
    assert str(info.value).startswith("evaluation.split: unknown key; allowed keys: splits,")


def test_activation_is_searched_in_space_or_fixed_in_network_not_both():
    raw = with_change("space.activation", {"values": ["relu", "elu"]})
    config = validate_config(raw)
    # Stored once, in space: the stored config validates again (tuner worker, --resume).
    assert "activation" not in config.to_dict()["network"]
    assert validate_config(config.to_dict()) == config
    raw["network"] = {"activation": "prelu"}
    with pytest.raises(ConfigError) as info:
        validate_config(raw)
    assert str(info.value) == (
        "space.activation: network.activation is set too; remove network.activation "
        "(space.activation takes its place)"
    )


def test_the_course_space_has_the_new_hyperparameters_at_their_defaults():
    full = validate_config(BASE).full_space()
    assert (full["activation"], full["l2"], full["optimizer"]) == ("prelu", 0.0, "adam")
    relu = validate_config(with_change("network.activation", "relu")).full_space()
    assert relu["activation"] == "relu", "network.activation is part of the space compared"
    searched = {
        "activation": {"values": ["relu", "prelu", "leaky_relu", "elu", "selu", "tanh"]},
        "batch_norm": {"values": [False, True]},
        "l2": {"low": 1e-6, "high": 1e-2, "log": True},
        "batch_size": {"low": 16, "high": 256, "log": True, "int": True},
        "optimizer": {"values": ["adam", "sgd", "rmsprop"]},
    }
    config = validate_config({**BASE, "space": {**BASE["space"], **searched}})
    assert {name: config.space[name].to_data() for name in searched} == {
        **searched,
        "l2": {"low": 1e-6, "high": 1e-2, "log": True},
        "batch_size": {"low": 16.0, "high": 256.0, "log": True, "int": True},
    }


SHIPPED = sorted((Path(__file__).resolve().parent.parent / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_the_shipped_configs_validate(path: Path):
    config = load_config(path, [])
    assert config.search.budget >= 1 and config.space


def test_the_example_config_documents_every_search_key():
    """configs/example.yaml writes every key of `search` (warm_start commented out)."""
    path = SHIPPED[0].with_name("example.yaml")
    written = yaml.safe_load(path.read_text())["search"]
    text = path.read_text()
    for name in type(load_config(path, []).search).model_fields:
        if name == "warm_start":
            assert "# warm_start:" in text
        else:
            assert name in written, f"search.{name} is not in configs/example.yaml"


@pytest.mark.parametrize(
    "key",
    [
        "search.race_top",
        "search.race_splits",
        "search.comparison",
        "search.cost_aware",
        "search.difficulty_splits",
    ],
)
def test_a_removed_key_is_refused_in_a_config_and_dropped_from_a_stored_one(key: str):
    from tuner.config.schema import REMOVED_KEYS, validate_stored

    assert key in REMOVED_KEYS
    raw = with_change(key, 2)
    with pytest.raises(ConfigError, match=rf"^{key}: this key was removed \(.+\); delete it$"):
        validate_config(raw)
    # A study stored by an earlier version holds such keys; it still opens, without them.
    assert validate_stored(raw) == validate_config(BASE)
    assert raw["search"] == {key.split(".")[1]: 2}, "the stored mapping is not changed"
