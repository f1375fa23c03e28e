"""Patience on small tables: the same points on the same splits, scored with patience P0 and
with each other patience, paired; `tuner init` sizes patience from the table on this evidence.

    python benchmarks/patience.py --config configs/default.yaml --patience 5,30
"""

import argparse

import numpy as np

from tuner import load_config
from tuner.training.data import load_dataset
from tuner.training.evaluate import evaluate_point

# Three points of the default space: small to mid-sized networks, low to high learning rates.
POINTS = (
    {"dropout": 0.1, "learning_rate": 1e-3, "neuron_pct": 0.01, "neuron_shrink": 0.5},
    {"dropout": 0.3, "learning_rate": 3e-3, "neuron_pct": 0.03, "neuron_shrink": 0.7},
    {"dropout": 0.2, "learning_rate": 3e-4, "neuron_pct": 0.02, "neuron_shrink": 0.3},
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/default.yaml")
    parser.add_argument("--patience", default="5,30", help="the first is the baseline")
    parser.add_argument("--seeds", default="11,22")
    parser.add_argument("--splits", type=int, default=4)
    args = parser.parse_args()
    config = load_config(args.config)
    dataset = load_dataset(config.data)
    fixed = {k: v for k, v in config.space.items() if not hasattr(v, "low")}
    seeds = [int(s) for s in args.seeds.split(",")]
    losses: dict[int, list[float]] = {}
    for patience in (int(p) for p in args.patience.split(",")):
        update = {"patience": patience, "epochs": 20 * patience, "splits": args.splits}
        evaluation = config.evaluation.model_copy(update=update)
        changed = config.model_copy(update={"evaluation": evaluation})
        scores = [
            evaluate_point(changed, dataset, {**fixed, **point}, seed)
            for point in POINTS
            for seed in seeds
        ]
        losses[patience] = [s.loss for s in scores]
        epochs = np.mean([np.mean(s.epochs) for s in scores])
        mean = np.mean(losses[patience])
        print(f"patience {patience}: mean loss {mean:.4f}, epochs {epochs:.0f}")
    first, *others = losses
    for patience in others:
        diff = np.array(losses[patience]) - np.array(losses[first])
        se = diff.std(ddof=1) / np.sqrt(len(diff))
        print(f"patience {patience} - {first}: {diff.mean():+.4f} ± {se:.4f} (n = {len(diff)})")


if __name__ == "__main__":
    main()
