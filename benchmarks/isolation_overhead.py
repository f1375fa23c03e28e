"""Per-trial cost of running trials in the warm worker process instead of in the search process.

Interleaves the same trials in-process (A) and through tuner.search.worker.Worker (B), and prints
the per-trial overhead (B - A) for a cheap objective and for real tiny networks on the
penguins data. Start-up of the worker (process spawn, imports, TensorFlow) is printed apart.

    python benchmarks/isolation_overhead.py [--trials 40] [--real 6]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tuner.config.schema import load_config  # noqa: E402
from tuner.search.worker import Worker  # noqa: E402
from tuner.training.data import load_dataset  # noqa: E402
from tuner.training.evaluate import evaluate_point  # noqa: E402

PARAMS = {
    "dropout": 0.2,
    "learning_rate": 0.003,
    "neuron_pct": 0.02,
    "neuron_shrink": 0.5,
    "batch_norm": False,
    "batch_size": 32,
}


def paired(label: str, inprocess, worker, trials: int) -> None:
    a_times, b_times = [], []
    for index in range(trials):
        for run, times in ((inprocess, a_times), (worker, b_times)):
            started = time.perf_counter()
            run(PARAMS, index)
            times.append(time.perf_counter() - started)
    a, b = statistics.median(a_times), statistics.median(b_times)
    print(
        f"{label:<28} trials {trials:>3}  in-process median {a * 1000:8.2f} ms  "
        f"worker median {b * 1000:8.2f} ms  overhead {(b - a) * 1000:7.2f} ms/trial  "
        f"ratio {b / a:6.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--real", type=int, default=6)
    args = parser.parse_args()
    os.environ["TUNER_TEST_SLEEP"] = "0.01"
    config = load_config(ROOT / "configs" / "default.yaml", ["evaluation.epochs=20"])
    dataset = load_dataset(config.data)

    from tests.objectives import bowl

    cheap = Worker(config, dataset, factory="tests.objectives:bowl")
    started = time.perf_counter()
    cheap(PARAMS, 0)
    print(f"worker start, cheap objective (spawn + imports): {time.perf_counter() - started:.2f} s")
    paired("cheap objective (10 ms)", bowl(config, dataset), cheap, args.trials)
    cheap.close()

    real = Worker(config, dataset)
    started = time.perf_counter()
    real(PARAMS, 0)
    print(
        f"worker start + first real trial (TensorFlow import, trace): "
        f"{time.perf_counter() - started:.2f} s"
    )
    evaluate_point(config, dataset, PARAMS, 0)  # warm the in-process path too
    paired(
        "tiny network, 20 epochs",
        lambda p, s: evaluate_point(config, dataset, p, s),
        real,
        args.real,
    )
    real.close()


if __name__ == "__main__":
    main()
