"""Speed of tuner's evaluator against the course's reference evaluation, interleaved.

    python benchmarks/evaluate_speed.py [--points 8] [--reps 3] [--data PATH] [--backend jax]

Both score the same points on the same splits (tuner's preprocessing for both), A B A B...,
in one process. The reference is the course's code: a Sequential stack of Dense + PReLU +
Dropout layers, Adam, batch 32, EarlyStopping(val_loss, min_delta 1e-3, patience 10, best
weights restored), 2 stratified shuffle splits with 10% held out, at most 500 epochs.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
if "--backend" in sys.argv:  # before Keras is imported: it reads KERAS_BACKEND once
    os.environ["KERAS_BACKEND"] = sys.argv[sys.argv.index("--backend") + 1]

import tuner.training.trainer  # noqa: E402
from tuner.config.schema import Config, validate_config  # noqa: E402
from tuner.training.architecture import decode  # noqa: E402
from tuner.training.data import Dataset, load_dataset, make_splits, prepare_split  # noqa: E402
from tuner.training.evaluate import architecture_for, evaluate_point  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "jh-simple-dataset.csv"
COURSE_POINT = {"dropout": 0.2, "learning_rate": 1e-3, "neuron_pct": 0.2, "neuron_shrink": 0.2}
LARGE_POINT = {"dropout": 0.1, "learning_rate": 3e-4, "neuron_pct": 0.9, "neuron_shrink": 0.05}


def course_config(data: Path):
    raw = {
        "data": {"path": str(data), "target": "product", "drop": ["id"]},
        "space": {
            "dropout": {"low": 0.0, "high": 0.499},
            "learning_rate": {"low": 1e-4, "high": 0.1, "log": True},
            "neuron_pct": {"low": 0.01, "high": 1.0},
            "neuron_shrink": {"low": 0.01, "high": 1.0},
        },
        "evaluation": {"splits": 2, "test_size": 0.1, "epochs": 500, "patience": 10},
    }
    return validate_config(raw)


def points(config, dataset, count: int, seed: int = 0) -> list[dict]:
    """The course point, one network over 1M parameters, then seeded draws up to 1M."""
    rng = np.random.default_rng(seed)
    chosen = [COURSE_POINT, LARGE_POINT]
    while len(chosen) < count:
        point = {
            "dropout": float(rng.uniform(0.0, 0.499)),
            "learning_rate": float(10 ** rng.uniform(-4, -1)),
            "neuron_pct": float(rng.uniform(0.01, 1.0)),
            "neuron_shrink": float(rng.uniform(0.01, 1.0)),
        }
        if architecture_for(config, dataset, full(point)).n_params <= 1_000_000:
            chosen.append(point)
    return [full(p) for p in chosen[:count]]


def full(point: dict) -> dict:
    return {**point, "batch_size": 32, "batch_norm": False}


def course_model(arch, params, seed: int):
    """The course's network, compiled as the course compiles it."""
    import keras

    keras.backend.clear_session()
    keras.utils.set_random_seed(seed % 2**31)
    model = keras.Sequential([keras.Input(shape=(arch.n_inputs,))])
    for units in arch.hidden:
        model.add(keras.layers.Dense(units))
        model.add(keras.layers.PReLU())
        model.add(keras.layers.Dropout(params["dropout"]))
    model.add(keras.layers.Dense(arch.n_outputs, activation="softmax"))
    model.compile(
        loss="categorical_crossentropy",
        optimizer=keras.optimizers.Adam(learning_rate=params["learning_rate"]),
    )
    return model


def reference_split(arch, params, part, seed: int) -> tuple[float, int]:
    """The course's evaluation of one split, written as the course writes it."""
    import keras
    from sklearn import metrics

    model = course_model(arch, params, seed)
    y_train = keras.utils.to_categorical(part.y_train, arch.n_outputs)
    y_test = keras.utils.to_categorical(part.y_test, arch.n_outputs)
    monitor = keras.callbacks.EarlyStopping(
        monitor="val_loss", min_delta=1e-3, patience=10, verbose=0, restore_best_weights=True
    )
    history = model.fit(
        part.x_train,
        y_train,
        validation_data=(part.x_test, y_test),
        callbacks=[monitor],
        verbose=0,
        epochs=500,
        batch_size=32,
    )
    pred = model.predict(part.x_test, verbose=0)
    loss = metrics.log_loss(part.y_test, pred, labels=list(range(arch.n_outputs)))
    return float(loss), len(history.history["loss"])


def reference(config, dataset, params, seed: int) -> tuple[float, list[int], float]:
    """Mean held-out log loss over the splits, epochs per split, seconds."""
    started = time.perf_counter()
    losses, epochs = [], []
    for index, (train, test) in enumerate(make_splits(dataset, 2, 0.1, seed)):
        part = prepare_split(dataset, train, test)
        arch = decode(
            params, config.network, part.x_train.shape[1], dataset.n_outputs, "classification"
        )
        loss, n = reference_split(arch, params, part, seed + index)
        losses.append(loss)
        epochs.append(n)
    return float(np.mean(losses)), epochs, time.perf_counter() - started


FIRST_CALLS: list[float] = []
LATER_CALLS: list[float] = []


def _timed_epoch_function(*args, **kwargs):
    """tuner's compiled epoch, timed: the first call of a trial includes its trace."""
    import keras

    compiled = ORIGINAL_EPOCH_FUNCTION(*args, **kwargs)
    calls = []

    def call(*inner):
        started = time.perf_counter()
        result = compiled(*inner)
        keras.ops.convert_to_numpy(result[1])
        (LATER_CALLS if calls else FIRST_CALLS).append(time.perf_counter() - started)
        calls.append(1)
        return result

    return call


ORIGINAL_EPOCH_FUNCTION = tuner.training.trainer.epoch_function
tuner.training.trainer.epoch_function = _timed_epoch_function


def fast(config, dataset, params, seed: int) -> tuple[float, list[int], float]:
    score = evaluate_point(config, dataset, params, seed)
    return score.loss, list(score.epochs), score.seconds


def peak_memory_child(kind: str, data: Path) -> None:
    """Run in a child process: one evaluation of the course point; print peak RSS (MiB)."""
    config = course_config(data)
    dataset = load_dataset(config.data)
    import keras  # noqa: F401  (TensorFlow's own memory is the baseline)

    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    (reference if kind == "reference" else fast)(config, dataset, full(COURSE_POINT), 1)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{peak:.0f} {peak - base:.0f}")


def child(*args: str) -> tuple[str, float]:
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout
    return out.strip(), time.perf_counter() - started


def fixed_costs(data: Path) -> None:
    import keras

    backend = keras.backend.backend()
    _, seconds = child("-c", f"import keras, {backend}")
    print(f"process start with Keras on {backend}: {seconds:.1f} s")
    for kind in ("reference", "fast"):
        out, _ = child(__file__, "--memory-child", kind, "--data", str(data))
        peak, above = out.split()
        print(
            f"peak RSS, one evaluation of the course point, {kind}: {peak} MiB "
            f"({above} MiB above the process after importing Keras and its backend)"
        )


def _first_trials(config: Config, dataset: Dataset) -> None:
    """The course point twice in this process: the first pays Keras's import and trace."""
    started = time.perf_counter()
    fast(config, dataset, full(COURSE_POINT), 99)
    first = time.perf_counter() - started
    again = fast(config, dataset, full(COURSE_POINT), 99)[2]
    print(
        f"course point, first trial in the process (Keras import, trace) {first:.1f} s; "
        f"same trial again {again:.1f} s; trace + first epoch per trial: "
        f"median {np.median(FIRST_CALLS):.2f} s, later epochs median {np.median(LATER_CALLS):.3f} s"
    )


def run(args: argparse.Namespace) -> None:
    config = course_config(args.data)
    dataset = load_dataset(config.data)
    chosen = points(config, dataset, args.points)
    _first_trials(config, dataset)
    ratios, paired, totals = [], [], [0.0, 0.0]
    for rep in range(args.reps):
        for index, params in enumerate(chosen):
            seed = 1000 * (rep + 1) + index
            ref_loss, ref_epochs, ref_s = reference(config, dataset, params, seed)
            new_loss, new_epochs, new_s = fast(config, dataset, params, seed)
            n = architecture_for(config, dataset, params).n_params
            ratios.append(ref_s / new_s)
            paired.append(new_loss - ref_loss)
            totals[0] += ref_s
            totals[1] += new_s
            print(
                f"rep {rep} point {index} {n:>9,} params | ref {ref_s:6.1f} s "
                f"({ref_s / sum(ref_epochs):.3f} s/epoch, epochs {ref_epochs}) "
                f"fast {new_s:5.1f} s ({new_s / max(new_epochs):.3f} s/epoch, epochs {new_epochs}) "
                f"| ratio {ref_s / new_s:5.1f}x | log loss ref {ref_loss:.4f} fast {new_loss:.4f}",
                flush=True,
            )
    print(
        f"median ratio {np.median(ratios):.1f}x, min {min(ratios):.1f}x, total-time ratio "
        f"{totals[0] / totals[1]:.1f}x ({totals[0]:.0f} s / {totals[1]:.0f} s)"
    )
    print(
        f"mean paired log loss difference (fast - reference) {np.mean(paired):+.4f} "
        f"(sd {np.std(paired, ddof=1):.4f}, n={len(paired)})"
    )
    print(
        f"fast, per trial: trace + first epoch median {np.median(FIRST_CALLS):.2f} s "
        f"(n={len(FIRST_CALLS)}), later epochs median {np.median(LATER_CALLS):.3f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=8)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--memory-child", choices=["reference", "fast"])
    parser.add_argument(
        "--backend", choices=["tensorflow", "jax", "torch"], help="KERAS_BACKEND for both sides"
    )
    args = parser.parse_args()
    if args.memory_child:
        peak_memory_child(args.memory_child, args.data)
        return
    import keras

    backend = keras.backend.backend()
    print(f"{os.cpu_count()} CPUs ({platform.machine()}), data {args.data}, Keras on {backend}")
    fixed_costs(args.data)
    run(args)


if __name__ == "__main__":
    main()
