"""The stacked trainer: one replica per split, trained at once, against the plain Keras path."""

from __future__ import annotations

import numpy as np
import pytest

from tuner.config.schema import EvaluationConfig, NetworkConfig
from tuner.errors import TrialFailed
from tuner.training.architecture import decode
from tuner.training.data import PreparedSplit
from tuner.training.metrics import mean_metrics
from tuner.training.model import load_replica
from tuner.training.replicas import (
    EarlyStopping,
    epoch_batches,
    layout,
    stack_splits,
    worth_narrowing,
)
from tuner.training.trainer import StackedNet, epoch_function, fit_replicas, train_splits
from tuner.training.updates import STEPS

from .keras_reference import build_model, train_split


def blobs(seed=0, rows=200, noise=0.7, random_labels=False):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, rows)
    x = (y[:, None] * 1.5 + rng.normal(0, noise, (rows, 4))).astype("float32")
    if random_labels:
        y = rng.integers(0, 3, rows)
    cut = int(rows * 0.8)
    return PreparedSplit(x[:cut], y[:cut], x[cut:], y[cut:])


def small(min_neurons=5, pct=0.004, dropout=0.0, n_inputs=4, **extra):
    params = {"dropout": dropout, "neuron_pct": pct, "neuron_shrink": 0.5, **extra}
    return decode(params, NetworkConfig(min_neurons=min_neurons), n_inputs, 3, "classification")


@pytest.mark.parametrize(
    ("extra", "learning_rate"),
    [
        ({}, 0.01),
        ({"optimizer": "sgd", "activation": "relu"}, 0.05),
        ({"optimizer": "rmsprop", "activation": "tanh", "l2": 1e-3}, 0.005),
    ],
    ids=["adam-prelu", "sgd-relu", "rmsprop-tanh-l2"],
)
def test_stacked_and_single_model_paths_agree(extra, learning_rate):
    arch = small(**{k: v for k, v in extra.items() if k != "optimizer"})
    params = {"learning_rate": learning_rate, "batch_size": 32, **extra}
    evaluation = EvaluationConfig(epochs=40, patience=5)
    splits = [blobs(seed=1), blobs(seed=2)]
    stacked = train_splits(arch, params, splits, evaluation, seed=3)
    single = [train_split(arch, params, s, evaluation, 3 + i) for i, s in enumerate(splits)]
    for fast, plain in zip(stacked, single, strict=True):
        assert fast.loss == pytest.approx(plain.loss, abs=0.08)
        assert fast.loss < 0.5 * np.log(3)


def test_a_replica_that_stops_early_keeps_its_best_weights_while_the_other_trains_on():
    arch = small()
    params = {"learning_rate": 0.01, "batch_size": 16}
    evaluation = EvaluationConfig(epochs=60, patience=3, min_delta=0.0)
    noise = blobs(seed=5, rows=120, random_labels=True)  # nothing to learn: stops early
    signal = blobs(seed=6, rows=120, noise=1.2)
    both = train_splits(arch, params, [noise, signal], evaluation, seed=7)
    alone = train_splits(arch, params, [noise], evaluation, seed=7)
    assert both[0].epochs < both[1].epochs
    # Replicas are independent: the stopped one ends exactly as it does when trained alone.
    assert both[0].epochs == alone[0].epochs
    assert both[0].loss == pytest.approx(alone[0].loss, abs=1e-4)


def test_early_stopping_follows_keras_rule_per_replica():
    stopping = EarlyStopping(2, EvaluationConfig(patience=2, min_delta=0.1))
    history = [(1.0, 1.0), (0.95, 0.8), (0.5, 0.75), (0.6, 0.6), (0.6, 0.55), (0.6, 0.54)]
    improved = [stopping.update(e, np.array(v)).tolist() for e, v in enumerate(history)]
    # 0.95 is not 0.1 better than 1.0; 0.5 is. Replica 1: 0.75 and 0.55 are not improvements.
    assert [row[0] for row in improved] == [True, False, True, False, False, False]
    assert [row[1] for row in improved] == [True, True, False, True, False, False]
    assert stopping.epochs.tolist() == [5, 6]
    assert stopping.active.tolist() == [False, False]
    assert stopping.best.tolist() == [0.5, 0.6]


@pytest.mark.parametrize("name", ["adam", "sgd", "rmsprop"])
def test_each_update_is_its_keras_optimizer(name):
    import keras

    rng = np.random.default_rng(0)
    start = rng.normal(size=(1, 6)).astype("float32")
    variable = keras.Variable(start)
    optimizer = {
        "adam": keras.optimizers.Adam(learning_rate=0.01),
        "sgd": keras.optimizers.SGD(learning_rate=0.01, momentum=0.9),
        "rmsprop": keras.optimizers.RMSprop(learning_rate=0.01),
    }[name]
    step, tensor = STEPS[name], keras.ops.convert_to_tensor
    zeros, no_steps = np.zeros_like(start), np.zeros((1, 1), "float32")
    flat, m, v, steps = tensor(start), tensor(zeros), tensor(zeros), tensor(no_steps)
    for _ in range(5):
        grads = tensor(rng.normal(size=(1, 6)).astype("float32"))
        optimizer.apply([grads], [variable])
        flat, m, v, steps = step(flat, m, v, steps, grads, tensor(np.array([True])), 0.01)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(flat), variable.numpy(), rtol=1e-5)
    frozen = step(flat, m, v, steps, grads, tensor(np.array([False])), 0.01)[0]
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(frozen), keras.ops.convert_to_numpy(flat)
    )


def _load_replica_0(model, net, state):
    """Load the stacked replica 0's weights and statistics into a Keras model."""
    import keras

    flat = keras.ops.convert_to_numpy(state[0])[0]
    load_replica(model, net.arch, flat, [keras.ops.convert_to_numpy(s)[0] for s in state[4]])
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    prelu = [layer for layer in model.layers if isinstance(layer, keras.layers.PReLU)]
    return dense, prelu


@pytest.mark.parametrize(
    ("optimizer", "activation", "l2", "batch_norm"),
    [
        ("adam", "prelu", 0.0, False),
        ("sgd", "relu", 0.0, False),
        ("rmsprop", "elu", 0.0, False),
        ("adam", "tanh", 1e-3, False),
        ("sgd", "leaky_relu", 1e-2, False),
        ("rmsprop", "selu", 1e-3, False),
        # With batch norm the bias before it has a zero gradient up to rounding, which Adam
        # and RMSprop scale up to full steps, differently in each implementation: SGD only.
        ("sgd", "prelu", 1e-3, True),
        ("sgd", "elu", 0.0, True),
    ],
)
def test_stacked_steps_are_keras_training_steps(optimizer, activation, l2, batch_norm):
    """Same start, full-batch steps: the stacked epoch and Keras's train_on_batch agree."""
    import keras

    arch = small(activation=activation, l2=l2, batch_norm=batch_norm)
    split = blobs(seed=4, rows=60)
    data = stack_splits([split])
    rows = len(split.y_train)
    net = StackedNet(arch, 1, seed=0)
    state = net.initial_state([9])
    keras.backend.clear_session()
    model = build_model(arch, 0.02, optimizer)
    _load_replica_0(model, net, state)
    run = epoch_function(net, data, rows, 0.02, optimizer)
    indices, weights = np.arange(rows, dtype="int32")[None], np.ones((1, rows), "float32")
    for _ in range(3):
        state, train_loss, val_loss = run(state, indices, weights, np.array([True]))
        keras_train = model.train_on_batch(split.x_train, split.y_train)
        assert float(train_loss[0]) == pytest.approx(float(keras_train), rel=1e-4)
    # The validation loss that early stopping watches includes the L2 penalty, as Keras's does.
    keras_val = model.evaluate(split.x_test, split.y_test, verbose=0)
    assert float(val_loss[0]) == pytest.approx(float(keras_val), rel=1e-4)
    check = build_model(arch, 0.02, optimizer)
    dense, prelu = _load_replica_0(check, net, state)
    for ours, theirs in zip(check.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-6)
    assert bool(prelu) == (activation == "prelu")
    regularised = [layer.kernel_regularizer for layer in dense]
    assert all((r is not None) == (l2 > 0) for r in regularised)


def test_splits_of_different_widths_are_padded_with_zero_columns():
    narrow, wide = blobs(seed=1), blobs(seed=2)
    narrow = PreparedSplit(
        narrow.x_train[:, :3], narrow.y_train, narrow.x_test[:, :3], narrow.y_test
    )
    data = stack_splits([narrow, wide])
    assert data.x_train.shape == (2, 160, 4)
    assert np.all(data.x_train[0, :, 3] == 0) and np.all(data.x_test[0, :, 3] == 0)
    results = train_splits(
        small(),
        {"learning_rate": 0.01, "batch_size": 32},
        [narrow, wide],
        EvaluationConfig(epochs=3),
        0,
    )
    assert len(results) == 2


def test_short_last_batch_has_zero_weight_rows():
    indices, weights = epoch_batches([np.random.default_rng(0)] * 2, rows=10, batch=4)
    assert indices.shape == (3, 8) and weights.shape == (3, 4)
    assert weights[-1].tolist() == [1, 1, 0, 0]
    assert set(indices[:, 4:].ravel()) <= set(range(10, 20)), "replica 1 reads its own rows"


def test_layout_counts_every_parameter():
    for batch_norm in (False, True):
        arch = small(pct=0.01, batch_norm=batch_norm)
        moving = 2 * sum(arch.hidden) if batch_norm else 0
        assert sum(p.size for p in layout(arch)) + moving == arch.n_params


def test_divergence_is_a_failed_trial():
    with pytest.raises(TrialFailed) as info:
        train_splits(
            small(),
            {"learning_rate": 1e7, "batch_size": 32},
            [blobs(), blobs(1)],
            EvaluationConfig(epochs=5),
            0,
        )
    assert info.value.kind == "diverged"


def test_batch_norm_dropout_and_regression_train():
    arch = small(pct=0.01, dropout=0.2, batch_norm=True)
    results = train_splits(
        arch,
        {"learning_rate": 0.01, "batch_size": 32},
        [blobs(), blobs(1)],
        EvaluationConfig(epochs=30),
        0,
    )
    # Batch norm's moving statistics lag on 5 steps an epoch; Keras's own path does no better.
    assert all(np.isfinite(r.loss) for r in results)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 2)).astype("float32")
    y = (x @ np.array([1.0, -2.0])).astype("float32")
    split = PreparedSplit(x[:160], y[:160], x[160:], y[160:])
    regression = decode(
        {"dropout": 0.0, "neuron_pct": 0.001, "neuron_shrink": 0.5},
        NetworkConfig(),
        2,
        1,
        "regression",
    )
    result = train_splits(
        regression,
        {"learning_rate": 0.05, "batch_size": 16},
        [split, split],
        EvaluationConfig(epochs=60, patience=5),
        0,
    )
    assert all(r.loss < 0.5 * float(np.std(y)) for r in result)


def test_narrowing_the_stack_to_its_active_replicas_changes_no_result(monkeypatch):
    import tuner.training.trainer as model

    arch = small()
    params = {"learning_rate": 0.01, "batch_size": 16}
    evaluation = EvaluationConfig(epochs=60, patience=3, min_delta=0.0)
    # Three replicas with nothing to learn stop early; the fourth trains on alone.
    splits = [blobs(seed=s, rows=120, random_labels=True) for s in (5, 8, 9)]
    splits.append(blobs(seed=6, rows=120, noise=1.2))
    narrowed_to = []

    def always(active, *_):
        left = int(active.sum())
        if 0 < left <= len(active) // 2:
            narrowed_to.append(left)
            return True
        return False

    monkeypatch.setattr(model, "worth_narrowing", always)
    narrowed = train_splits(arch, params, splits, evaluation, seed=7)
    monkeypatch.setattr(model, "worth_narrowing", lambda *_: False)
    masked = train_splits(arch, params, splits, evaluation, seed=7)
    assert narrowed_to, "the stack was narrowed"
    assert [r.epochs for r in narrowed] == [r.epochs for r in masked]
    assert max(r.epochs for r in masked[:3]) < masked[3].epochs
    for a, b in zip(narrowed, masked, strict=True):
        assert a.loss == pytest.approx(b.loss, abs=1e-4)


def test_the_stack_narrows_when_the_epochs_left_save_more_than_a_trace():
    active = np.array([True, False, False, False])
    wait = np.array([0, 3, 3, 3])
    # One of four left, at least 10 more epochs of 0.1 s: saves 0.75 s.
    assert worth_narrowing(active, wait, 10, epoch_s=0.1, trace_s=0.5)
    assert not worth_narrowing(active, wait, 10, epoch_s=0.1, trace_s=1.0), "costs more"
    assert not worth_narrowing(active, np.array([8, 3, 3, 3]), 10, 0.1, 0.5), "2 epochs left"
    two_left = np.array([True, True, True, False])
    assert not worth_narrowing(two_left, wait, 10, 0.1, 0.0), "does not halve the stack"
    assert not worth_narrowing(np.zeros(4, dtype=bool), wait, 10, 0.1, 0.0), "none left"


def waves(seed=0, rows=100, scale=1000.0):
    """A learnable regression target far from zero and unit scale."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 4)).astype("float32")
    y = scale * (4 + x[:, 0] - 0.5 * x[:, 1] ** 2 + rng.normal(0, 0.1, rows))
    cut = int(rows * 0.8)
    y = y.astype("float32")
    return PreparedSplit(x[:cut], y[:cut], x[cut:], y[cut:])


@pytest.mark.parametrize(
    ("task", "activation", "batch_norm"),
    [
        ("classification", "prelu", False),
        ("classification", "relu", True),
        ("regression", "prelu", True),
        ("regression", "elu", False),
    ],
)
def test_a_replicas_keras_model_predicts_as_the_stack_does(task, activation, batch_norm):
    classify = task == "classification"
    params = {"dropout": 0.1, "neuron_pct": 0.004, "neuron_shrink": 0.5}
    params |= {"activation": activation, "batch_norm": batch_norm}
    arch = decode(params, NetworkConfig(min_neurons=5), 4, 3 if classify else 1, task)
    splits = [blobs(1), blobs(2)] if classify else [waves(1), waves(2)]
    training = {"learning_rate": 0.01, "batch_size": 32}
    replicas = fit_replicas(arch, training, splits, EvaluationConfig(epochs=4), seed=3)
    assert replicas.arch.n_inputs == 4 and len(replicas.epochs) == 2
    x = splits[1].x_test
    shared = replicas.predict(x)
    assert shared.shape == (2, len(x), 3 if classify else 1)
    each = replicas.predict(np.stack([s.x_test for s in splits]))
    np.testing.assert_allclose(each[1], shared[1], rtol=1e-6)
    for i in range(2):
        model = replicas.keras_model(i)
        np.testing.assert_allclose(model.predict(x, verbose=0), shared[i], rtol=1e-5, atol=1e-5)
    if not classify:  # in the target's units, not the standardised ones it trained on
        assert abs(float(shared.mean()) - float(splits[1].y_test.mean())) < splits[1].y_test.std()


def test_each_split_has_its_metrics_and_a_score_their_mean_where_defined():
    training = {"learning_rate": 0.01, "batch_size": 32}
    results = train_splits(small(), training, [blobs(1), blobs(2)], EvaluationConfig(epochs=3), 0)
    assert all(set(r.metrics) == {"accuracy", "balanced_accuracy", "roc_auc"} for r in results)
    assert all(0 <= r.metrics["accuracy"] <= 1 for r in results)
    per_split = [{"roc_auc": float("nan"), "accuracy": 0.5}, {"roc_auc": 0.8, "accuracy": 0.7}]
    assert mean_metrics(per_split) == pytest.approx({"roc_auc": 0.8, "accuracy": 0.6})
    assert np.isnan(mean_metrics([{"roc_auc": float("nan")}])["roc_auc"])
