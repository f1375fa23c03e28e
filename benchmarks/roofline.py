"""How fast an epoch can be: the course's Keras epoch against the matrix products it must do.

    python benchmarks/roofline.py [--points 8] [--epochs 4] [--data PATH]

For each of evaluate_speed.py's points it times, in one run:
- the reference: one epoch of the course's Keras `fit` (batch 32, validation on the held-out
  10%), the median of `--epochs` epochs after the first;
- the floor: the same epoch's matrix products alone, with NumPy's BLAS on preallocated
  float32 arrays (for each batch of 32 and each Dense layer: the forward product, the weights'
  gradient and, past the first layer, the inputs' gradient; then one in-place pass over the
  weights for the update; then the held-out part's forward products), the best of 3;
- the same with Adam's update written out in NumPy (its moments, one array operation at a
  time, as an unfused implementation such as Keras's runs it) instead of the one pass.

Any trainer of the same network at batch 32 for the same epochs does at least this
arithmetic, so reference / floor bounds the speed-up at equal epochs: where it is under 10,
no evaluator that keeps the course's batch size and early stopping can be 10x faster on this
machine. The floor leaves out activations, dropout, the loss and the optimiser's moments, so
the true bound is lower still; the Adam column shows how much the moments alone add at batch
32, where each step touches every weight several times for few products. Large products give
the machine's peak for scale.
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from benchmarks.evaluate_speed import DATA, course_config, course_model, points
from tuner.training.architecture import decode
from tuner.training.data import load_dataset, make_splits, prepare_split

BATCH = 32


def reference_epoch(arch, params, part, epochs: int) -> float:
    """Median seconds of a Keras `fit` epoch, the first (its trace) left out."""
    import keras

    model = course_model(arch, params, seed=1)
    times: list[float] = []

    class Clock(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.started)

    y_train = keras.utils.to_categorical(part.y_train, arch.n_outputs)
    y_test = keras.utils.to_categorical(part.y_test, arch.n_outputs)
    model.fit(
        part.x_train,
        y_train,
        validation_data=(part.x_test, y_test),
        epochs=epochs + 1,
        batch_size=BATCH,
        verbose=0,
        callbacks=[Clock()],
    )
    return float(np.median(times[1:]))


def floor_epoch(widths: list[int], train_rows: int, test_rows: int, adam: bool = False) -> float:
    """Best of 3 of one epoch's matrix products and one update pass (or Adam's), float32."""
    rng = np.random.default_rng(0)
    layers = list(itertools.pairwise(widths))
    # Scaled so that values stay ordinary floats through the layers (no inf or denormals).
    weights = [rng.standard_normal((i, o), dtype=np.float32) / math.sqrt(i) for i, o in layers]
    grads = [np.empty_like(w) for w in weights]
    slots = [[np.zeros_like(w) for _ in range(3)] for w in weights]  # m, v, scratch
    acts = [rng.standard_normal((BATCH, w), dtype=np.float32) for w in widths]
    deltas = [np.empty((BATCH, w), dtype=np.float32) for w in widths]
    test_acts = [np.empty((test_rows, w), dtype=np.float32) for w in widths]
    test_acts[0] = rng.standard_normal((test_rows, widths[0]), dtype=np.float32)
    steps = math.ceil(train_rows / BATCH)
    best = math.inf
    for _ in range(3):
        started = time.perf_counter()
        for _ in range(steps):
            for k, w in enumerate(weights):
                np.matmul(acts[k], w, out=acts[k + 1])
            for k in reversed(range(len(weights))):
                np.matmul(acts[k].T, acts[k + 1], out=grads[k])
                if k:
                    np.matmul(acts[k + 1], weights[k].T, out=deltas[k])
            for w, g, slot in zip(weights, grads, slots, strict=True):
                if adam:
                    _adam(w, g, *slot)
                else:
                    np.add(w, g, out=g)  # an update's traffic; the weights stay as they are
        for k, w in enumerate(weights):
            np.matmul(test_acts[k], w, out=test_acts[k + 1])
        best = min(best, time.perf_counter() - started)
    return best


def _adam(w, g, m, v, t, lr=1e-7, b1=0.9, b2=0.999, eps=1e-7) -> None:
    """Adam's step as unfused array operations; the tiny rate keeps the weights in range."""
    np.multiply(m, b1, out=m)
    np.multiply(g, 1 - b1, out=t)
    np.add(m, t, out=m)
    np.multiply(v, b2, out=v)
    np.multiply(g, g, out=t)
    np.multiply(t, 1 - b2, out=t)
    np.add(v, t, out=v)
    np.sqrt(v, out=t)
    np.add(t, eps, out=t)
    np.divide(m, t, out=t)
    np.multiply(t, lr, out=t)
    np.subtract(w, t, out=w)


def peak_gflops(size: int = 1024) -> float:
    """The machine's float32 matrix product rate on large square matrices."""
    a = np.ones((size, size), dtype=np.float32)
    out = np.empty_like(a)
    np.matmul(a, a, out=out)
    started = time.perf_counter()
    for _ in range(10):
        np.matmul(a, a, out=out)
    return 10 * 2 * size**3 / (time.perf_counter() - started) / 1e9


def run(args: argparse.Namespace) -> None:
    config = course_config(args.data)
    dataset = load_dataset(config.data)
    train, test = next(iter(make_splits(dataset, 2, 0.1, 1)))
    part = prepare_split(dataset, train, test)
    rows, test_rows = len(part.x_train), len(part.x_test)
    print(
        f"{rows} training and {test_rows} held-out rows per split; float32 products of "
        f"1024x1024 matrices: {peak_gflops():.0f} GFLOP/s"
    )
    ceilings = []
    for index, params in enumerate(points(config, dataset, args.points)):
        arch = decode(
            params, config.network, part.x_train.shape[1], dataset.n_outputs, "classification"
        )
        widths = [arch.n_inputs, *arch.hidden, arch.n_outputs]
        floor = floor_epoch(widths, rows, test_rows)
        with_adam = floor_epoch(widths, rows, test_rows, adam=True)
        ref = reference_epoch(arch, params, part, args.epochs)
        ceilings.append(ref / floor)
        print(
            f"point {index} {arch.n_params:>9,} params, layers {widths} | reference "
            f"{ref:.3f} s/epoch | floor {floor:.3f} s/epoch: at most {ref / floor:5.1f}x | "
            f"with Adam {with_adam:.3f} s/epoch: {ref / with_adam:5.1f}x",
            flush=True,
        )
    print(
        f"speed-up at most (reference epoch / floor epoch): median {np.median(ceilings):.1f}x, "
        f"{sum(c < 10 for c in ceilings)} of {len(ceilings)} points under 10x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args()
    print(f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs, data {args.data}")
    run(args)


if __name__ == "__main__":
    main()
