"""Does telling the GP a diverged loss as the fence (tuner/optimizer.py, `loss_fence`) help it
find good points? Offline, on trials that searches already ran.

    python benchmarks/loss_fence.py LOG [LOG ...] --config CONFIG [--draws 200] [--sizes 12,20,30]

Reads the trial lines that `tuner search` printed (the `.log` files of benchmarks/results/, one
data set and one space, given by CONFIG): each distinct point with its mean loss, split standard
deviation and number of splits. For each draw it takes a random `size` of them as the history
of a search, fits tuner's own Gaussian process to them (`Proposer.optimizer`, noise included)
with the fence and without, and looks at the other trials: the true (logged) loss of the one
with the best posterior mean, and the mean loss of the best five by posterior mean. A GP that
models the good region well picks low losses there. The split losses of a history trial are
rebuilt to have its logged mean and standard deviation.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tuner import optimizer as optimizer_module
from tuner.config import SearchConfig, load_config
from tuner.optimizer import Proposer
from tuner.space import SearchSpace
from tuner.store import TrialRecord, TrialState

TRIAL = re.compile(r"^trial\s+\d+\s+(?P<point>(?:\S+=\S+ )+)\s*loss (?P<loss>\S+) ± (?P<std>\S+)")
RACED = re.compile(r"\(raced: (\d+) splits\)")


def load(
    paths: Sequence[Path], names: Sequence[str]
) -> list[tuple[dict[str, float], float, float, int]]:
    """Each distinct logged point of the space: (params, mean loss, split std, splits)."""
    found: dict[tuple[float, ...], tuple[dict[str, float], float, float, int]] = {}
    for path in paths:
        for line in path.read_text().splitlines():
            match = TRIAL.match(line)
            if not match:
                continue
            params = dict(item.split("=") for item in match["point"].split())
            if sorted(params) != sorted(names):
                continue
            values = {k: float(v) for k, v in params.items()}
            raced = RACED.search(line)
            splits = int(raced.group(1)) if raced else 2
            key = tuple(values[k] for k in names)
            found.setdefault(key, (values, float(match["loss"]), float(match["std"]), splits))
    return list(found.values())


def split_losses(mean: float, std: float, n: int) -> tuple[float, ...]:
    """n values with this mean and sample standard deviation (half above, half below)."""
    if n < 2:
        return (mean,)
    half = n // 2
    d = std if n % 2 else std * math.sqrt((n - 1) / n)
    return tuple([mean + d] * half + [mean - d] * half + [mean] * (n % 2))


def pick(space: SearchSpace, proposer: Proposer, trials: list, idx, rest) -> tuple[float, float]:
    history = [
        TrialRecord(
            i, TrialState.COMPLETE, space.point(trials[j][0]), dict(trials[j][0]), i,
            loss=trials[j][1], split_losses=split_losses(*trials[j][1:]), seconds=1.0,
        )
        for i, j in enumerate(idx)
    ]  # fmt: skip
    bo = proposer.optimizer(len(history), history)
    acquisition = bo.acquisition_function
    acquisition.fit(bo._gp, bo.space)
    rows = np.array([bo.space.params_to_array(space.point(trials[j][0])) for j in rest])
    mean = acquisition.posterior(rows)[0]
    losses = np.array([trials[j][1] for j in rest])
    order = np.argsort(-mean)
    return float(losses[order[0]]), float(np.mean(losses[order[:5]]))


def compare(
    space: SearchSpace,
    search: SearchConfig,
    trials: list,
    sizes: Sequence[int],
    draws: int,
    seed: int,
) -> dict[tuple[int, str], np.ndarray]:
    """(history size, "fence" or "no fence") -> rows of (best pick's loss, best five's mean)."""
    proposer = Proposer(space, search.model_copy(update={"init_points": 0}))
    rng = np.random.default_rng(seed)
    fenced = optimizer_module.FENCE_MIN_TRIALS
    results: dict[tuple[int, str], list[tuple[float, float]]] = {}
    try:
        for size in sizes:
            for _ in range(draws):
                order = rng.permutation(len(trials))
                idx, rest = order[:size], order[size:]
                for name, least in (("fence", fenced), ("no fence", 10**9)):
                    optimizer_module.FENCE_MIN_TRIALS = least
                    found = pick(space, proposer, trials, idx, rest)
                    results.setdefault((size, name), []).append(found)
    finally:
        optimizer_module.FENCE_MIN_TRIALS = fenced
    return {key: np.array(rows) for key, rows in results.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("logs", nargs="+", type=Path)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--draws", type=int, default=200)
    parser.add_argument("--sizes", default="12,20,30")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    config = load_config(args.config)
    space = SearchSpace(config.space)
    trials = load(args.logs, space.names)
    if len(trials) < 40:
        sys.exit(f"{len(trials)} distinct trials of this space in the logs; need 40 or more")
    losses = np.array([t[1] for t in trials])
    print(f"{len(trials)} distinct trials; losses median {np.median(losses):.3f}, "
          f"max {losses.max():.2f}, over 1.5: {np.mean(losses > 1.5):.1%}")  # fmt: skip
    sizes = [int(s) for s in args.sizes.split(",")]
    found = compare(space, config.search, trials, sizes, args.draws, args.seed)
    for (size, name), rows in found.items():
        best, top5 = rows.T
        print(
            f"history {size:3d}  {name:8s}  best posterior mean's loss: mean {best.mean():.4f} "
            f"median {np.median(best):.4f}  under 0.66 {np.mean(best < 0.66):.0%}  "
            f"best five's mean {top5.mean():.4f}"
        )


if __name__ == "__main__":
    main()
