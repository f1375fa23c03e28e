"""Does telling the GP a diverged loss as the fence (tuner/optimizer.py, `loss_fence`) help it
find good points? Offline, on trials that searches already ran.

    python benchmarks/loss_fence.py LOG [LOG ...] --config CONFIG [--draws 200] [--sizes 12,20,30]
        [--searches 100] [--trials 20,30]

Reads the trial lines that `tuner search` printed (the `.log` files of benchmarks/results/, one
data set and one space, given by CONFIG): each distinct point with its mean loss, split standard
deviation and number of splits. For each draw it takes a random `size` of them as the history
of a search, fits tuner's own Gaussian process to them (`Proposer.optimizer`, noise included)
with the fence and without, and looks at the other trials: the true (logged) loss of the one
with the best posterior mean, and the mean loss of the best five by posterior mean. A GP that
models the good region well picks low losses there. The split losses of a history trial are
rebuilt to have its logged mean and standard deviation.

The picks above say how well the GP models the good region, not where a search goes next: a
GP told "bad, but not that bad" could send the acquisition to the diverged corners. So it
then runs whole searches, fenced and not, on a surrogate of the same trials
(benchmarks/surrogate.py: a random forest of the logged losses is the true loss, and a trial's
two split losses are it plus Gaussian noise of 0.064, a 2-split mean's 0.045 on the course's
data; more above a loss of 0.7). Each search is `tuner`'s own `Proposer` with the config's
acquisition, `search.init_points` random points (the same for both, by seed) then guided ones,
`--trials` in all, no racing. It prints the true loss of the trial each search would pick (the
lowest mean), of the best trial it found, and how many guided trials went where the true loss
is over 1 (diverged networks), each as a paired difference with its standard error.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tuner.config.schema import SearchConfig, load_config
from tuner.config.space import SearchSpace
from tuner.optimize import optimizer as optimizer_module
from tuner.optimize.optimizer import Proposer
from tuner.study.store import TrialRecord, TrialState

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: the repo root
from benchmarks.surrogate import Surrogate, fitted, logged


def load(
    paths: Sequence[Path], names: Sequence[str]
) -> list[tuple[dict[str, float], float, float, int]]:
    """Each distinct logged point of the space: (params, mean loss, split std, splits); a
    repeated point's lines merged (`surrogate.logged`)."""
    return [(t.params, t.loss, t.std, t.splits) for t in logged(paths, names)]


SETTINGS = ("fence", "no fence")


@contextlib.contextmanager
def setting(name: str) -> Iterator[None]:
    """Inside, the optimiser fences losses ("fence", as shipped) or never does ("no fence")."""
    shipped = optimizer_module.FENCE_MIN_TRIALS
    if name == "no fence":
        optimizer_module.FENCE_MIN_TRIALS = 10**9
    try:
        yield
    finally:
        optimizer_module.FENCE_MIN_TRIALS = shipped


def split_losses(mean: float, std: float, n: int) -> tuple[float, ...]:
    """n values with this mean and sample standard deviation (half above, half below)."""
    if n < 2:
        return (mean,)
    half = n // 2
    d = std if n % 2 else std * math.sqrt((n - 1) / n)
    return tuple([mean + d] * half + [mean - d] * half + [mean] * (n % 2))


def posterior(
    proposer: Proposer, history: Sequence[TrialRecord], points: Sequence[dict[str, Any]]
) -> tuple[np.ndarray, np.ndarray]:
    """The GP's posterior mean and standard deviation of the target (negated loss: higher is
    better) at `points`, fitted to `history` as the proposer would fit it."""
    bo = proposer.optimizer(len(history), history)
    acquisition = bo.acquisition_function
    acquisition.fit(bo._gp, bo.space)
    rows = np.array([bo.space.params_to_array(p) for p in points])
    return acquisition.posterior(rows)


def pick(space: SearchSpace, proposer: Proposer, trials: list, idx, rest) -> tuple[float, float]:
    history = [
        TrialRecord(
            i, TrialState.COMPLETE, space.point(trials[j][0]), dict(trials[j][0]), i,
            loss=trials[j][1], split_losses=split_losses(*trials[j][1:]), seconds=1.0,
        )
        for i, j in enumerate(idx)
    ]  # fmt: skip
    mean, _ = posterior(proposer, history, [space.point(trials[j][0]) for j in rest])
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
    results: dict[tuple[int, str], list[tuple[float, float]]] = {}
    for size in sizes:
        for _ in range(draws):
            order = rng.permutation(len(trials))
            idx, rest = order[:size], order[size:]
            for name in SETTINGS:
                with setting(name):
                    found = pick(space, proposer, trials, idx, rest)
                results.setdefault((size, name), []).append(found)
    return {key: np.array(rows) for key, rows in results.items()}


def simulate(
    space: SearchSpace, search: SearchConfig, trials: list, n_trials: int, seeds: Sequence[int]
) -> dict[str, np.ndarray]:
    """ "fence" and "no fence" -> rows of (picked trial's true loss, best true loss, guided
    trials with a true loss over 1), one row per search seed (see the module's text)."""
    surrogate = fitted(space, [t[0] for t in trials], [t[1] for t in trials])
    found: dict[str, list[tuple[float, float, float]]] = {name: [] for name in SETTINGS}
    for seed in seeds:
        for name in SETTINGS:
            with setting(name):
                found[name].append(_search(space, search, surrogate, n_trials, seed))
    return {name: np.array(rows) for name, rows in found.items()}


def _search(
    space: SearchSpace, search: SearchConfig, surrogate: Surrogate, n_trials: int, seed: int
) -> tuple[float, float, float]:
    init = min(search.init_points, n_trials)
    cfg = search.model_copy(update={"seed": seed, "init_points": init, "n_iter": n_trials - init})
    proposer, rng = Proposer(space, cfg), np.random.default_rng(seed)
    history: list[TrialRecord] = []
    truths: list[float] = []
    for k in range(n_trials):
        point = proposer.propose(k, history)
        truth, splits = surrogate.truth(point), tuple(surrogate.splits(point, 2, rng))
        history.append(
            TrialRecord(
                k, TrialState.COMPLETE, point, space.params(point), 1000 * seed + k,
                loss=float(np.mean(splits)), split_losses=splits, seconds=1.0,
            )
        )  # fmt: skip
        truths.append(truth)
    picked = truths[int(np.argmin([t.loss for t in history]))]
    return picked, min(truths), float(sum(t > 1.0 for t in truths[init:]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("logs", nargs="+", type=Path)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--draws", type=int, default=200)
    parser.add_argument("--sizes", default="12,20,30")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--searches", type=int, default=100)
    parser.add_argument("--trials", default="20,30")
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
    seeds = range(args.seed, args.seed + args.searches)
    for n_trials in (int(s) for s in args.trials.split(",")):
        runs = simulate(space, config.search, trials, n_trials, seeds)
        print(f"surrogate searches of {n_trials} trials, {len(seeds)} seeds, fence - no fence:")
        for i, what in enumerate(("picked trial's true loss", "best true loss", "guided > 1")):
            fence, plain = runs["fence"][:, i], runs["no fence"][:, i]
            d = fence - plain
            print(
                f"  {what:24s}  fence {fence.mean():.4f}  no fence {plain.mean():.4f}  "
                f"difference {d.mean():+.4f} ± {d.std(ddof=1) / math.sqrt(len(d)):.4f}"
            )


if __name__ == "__main__":
    main()
