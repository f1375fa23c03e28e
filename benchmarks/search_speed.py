"""Wall time of the course's 30-point search, and the optimiser's overhead per proposal.

    python benchmarks/search_speed.py [--data PATH] [--skip-search] [--trials 50,150,300]
                                      [--trial-seconds 3.0] [--repeats 5] [--set KEY=VALUE ...]

The search is `tuner search configs/course-log.yaml` on the local copy of the course's data
with evaluation.max_params=1000000, run as a fresh process (TensorFlow's start included);
--set adds overrides (`--set search.final_candidates=0` times the 30 trials without the final
re-score).

The overhead part times what a search pays before each guided trial (a fresh optimiser, every
trial registered, suggest()) with 50, 150 and 300 synthetic trials in the study. The synthetic
trials look like the course's: a smooth loss surface with 2 noisy splits per trial (split
standard deviation 0.045) and seconds that grow with the network (neuron_pct), so the noise
model has its real work to do. The ratio is to --trial-seconds, a typical trial on the course's
data with max_params 1M (about 3 s on 2 cores). CPU seconds are printed beside the wall seconds:
on a machine shared with other jobs, the wall time includes waiting for a core.
"""

from __future__ import annotations

import argparse
import itertools
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tuner.config.schema import load_config  # noqa: E402
from tuner.config.space import SearchSpace  # noqa: E402
from tuner.optimize.optimizer import Proposer  # noqa: E402
from tuner.study.store import TrialRecord, TrialState  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "jh-simple-dataset.csv"
CONFIG = ROOT / "configs" / "course-log.yaml"


def search_wall_time(data: Path, sets: list[str]) -> float:
    with tempfile.TemporaryDirectory() as out:
        command = [
            sys.executable, "-m", "tuner.cli.commands", "search", str(CONFIG),
            "--set", f"data.path={data}", "--set", "evaluation.max_params=1000000",
            *itertools.chain.from_iterable(("--set", s) for s in sets),
            "--out", out, "--quiet", "--json",
        ]  # fmt: skip
        started = time.perf_counter()
        result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=False)
        seconds = time.perf_counter() - started
    print(f"search exit code {result.returncode}; best: {result.stdout.strip()[:300]}")
    return seconds


def synthetic_history(space: SearchSpace, trials: int, seed: int = 0) -> list[TrialRecord]:
    """Trials on a smooth surface (best near the middle), 2 noisy splits, size-driven seconds."""
    rng = np.random.default_rng(seed)
    history = []
    for number in range(trials):
        point = {name: float(rng.uniform()) for name in space.names}
        u = np.array(list(point.values()))
        loss = 0.67 + 0.4 * float(np.sum((u - 0.4) ** 2))
        splits = tuple(float(v) for v in loss + rng.normal(0.0, 0.045, 2))
        seconds = float(0.5 * np.exp(3.0 * u[2] + rng.normal(0.0, 0.2)))
        history.append(
            TrialRecord(number=number, state=TrialState.COMPLETE, point=point,
                        params=space.params(point), seed=number, loss=float(np.mean(splits)),
                        split_losses=splits, seconds=seconds)
        )  # fmt: skip
    return history


def optimiser_overhead(trials: int, repeats: int) -> tuple[list[float], list[float]]:
    """Wall and CPU seconds of `repeats` proposals with `trials` trials in the study."""
    config = load_config(CONFIG)
    space = SearchSpace(config.space)
    proposer = Proposer(space, config.search)
    history = synthetic_history(space, trials)
    wall, cpu = [], []
    for k in range(repeats):
        started, cpu_started = time.perf_counter(), time.process_time()
        # A proposal in the middle of the guided phase.
        proposer.propose(config.search.init_points + config.search.n_iter // 2 + k, history)
        wall.append(time.perf_counter() - started)
        cpu.append(time.process_time() - cpu_started)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--trials", default="50,150,300", help="study sizes, comma-separated")
    parser.add_argument("--trial-seconds", type=float, default=3.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-search", action="store_true")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    for trials in (int(t) for t in args.trials.split(",")):
        wall, cpu = optimiser_overhead(trials, args.repeats)
        median = float(np.median(wall))
        print(f"suggest + register with {trials:3d} trials in the study: "
              f"median {median:.3f} s per proposal ({np.median(cpu):.3f} s CPU), "
              f"{100 * median / args.trial_seconds:.1f}% of a {args.trial_seconds:g} s trial "
              f"(runs: {', '.join(f'{s:.3f}' for s in wall)})")  # fmt: skip
    if not args.skip_search:
        wall = search_wall_time(args.data, args.set)
        extra = "".join(f" --set {s}" for s in args.set)
        print(
            f"tuner search configs/course-log.yaml (30 points, max_params 1M{extra}): "
            f"{wall:.0f} s wall"
        )


if __name__ == "__main__":
    main()
