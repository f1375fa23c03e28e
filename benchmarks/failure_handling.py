"""How to tell the optimiser about failed trials: two ways on a function with a failure region.

The objective is a bowl whose minimum (learning rate 0.015) lies next to a region that always
fails (learning rate above 0.02, as a diverging network would). Each way runs the real search
loop (tuner.search.loop.run_search, SQLite study) for several seeds:

- penalty: a failed point is registered with the worst loss seen so far (what tuner does);
- skip: failed points are not registered at all.

It prints, per way: failed trials, proposals that repeat an earlier point, and the best loss.

    python benchmarks/failure_handling.py [--seeds 8] [--budget 25]
"""

from __future__ import annotations

import argparse
import contextlib
import math
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import tuner.optimize.optimizer as optimizer_module  # noqa: E402
from tuner.config.schema import validate_config  # noqa: E402
from tuner.errors import SearchFailed, TrialFailed  # noqa: E402
from tuner.outputs.progress import QuietReporter  # noqa: E402
from tuner.search.loop import open_study, run_search  # noqa: E402
from tuner.study.store import Storage, TrialState, sqlite_url  # noqa: E402
from tuner.training.evaluate import Score  # noqa: E402

PENALTY = optimizer_module.observed


def skip_failures(trials, liar="mean"):
    """Only completed trials are registered."""
    return PENALTY([t for t in trials if t.state == TrialState.COMPLETE], liar)


def objective(params, _seed):
    rate = params["learning_rate"]
    if rate > 0.02:
        raise TrialFailed("diverged", "training loss became nan")
    loss = (math.log10(rate) - math.log10(0.015)) ** 2 + (params["dropout"] - 0.2) ** 2 + 0.5
    return Score(loss, 0.0, (loss,), (1,), 0.0)


def run(way, seed: int, budget: int, folder: Path) -> tuple[int, int, float]:
    optimizer_module.observed = way
    config = validate_config(
        {
            "data": {"path": "/unused.csv", "target": "y"},
            "space": {
                "dropout": {"low": 0.0, "high": 0.5},
                "learning_rate": {"low": 1.0e-4, "high": 0.1, "log": True},
                "neuron_pct": 0.1,
                "neuron_shrink": 0.5,
            },
            "search": {
                "init_points": 5,
                "n_iter": budget - 5,
                "seed": seed,
                "max_consecutive_failures": budget,
            },
        }
    )
    storage = Storage(sqlite_url(folder / f"{way.__name__}-{seed}.db"))
    study = open_study(storage, "s", config, resume=False)
    with contextlib.suppress(SearchFailed):  # every trial may fail under "skip"
        run_search(config, storage, study, objective, QuietReporter())
    trials = storage.trials(study)
    storage.close()
    failed = sum(t.state == TrialState.FAILED for t in trials)
    points = [tuple(round(v, 6) for v in t.point.values()) for t in trials]
    repeats = len(points) - len(set(points))
    best = min((t.loss for t in trials if t.loss is not None), default=math.inf)
    return failed, repeats, best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--budget", type=int, default=25)
    args = parser.parse_args()
    print(
        f"budget {args.budget} trials (5 random), {args.seeds} seeds; optimum loss 0.5 at "
        "learning rate 0.015, failures above 0.02"
    )
    with tempfile.TemporaryDirectory() as folder:
        for way in (PENALTY, skip_failures):
            results = [run(way, seed, args.budget, Path(folder)) for seed in range(args.seeds)]
            failed = statistics.mean(r[0] for r in results)
            repeats = statistics.mean(r[1] for r in results)
            best = statistics.mean(r[2] for r in results)
            label = "penalty (worst loss)" if way is PENALTY else "skip failures"
            print(
                f"{label:<22} failed trials {failed:5.1f}  repeated points {repeats:5.1f}  "
                f"best loss {best:.4f} (gap to optimum {best - 0.5:.4f})"
            )


if __name__ == "__main__":
    main()
