"""Wall time of the course's 30-point search, and the optimiser's overhead at 300 trials.

    python benchmarks/search_speed.py [--data PATH] [--skip-search] [--trials 300]

The search is `tuner search configs/course-log.yaml` on the local copy of the course's data
with evaluation.max_params=1000000, run as a fresh process (TensorFlow's start included).
The overhead part times one suggest (a fresh optimiser, every trial registered, suggest())
with 300 synthetic trials in the study, the cost a search pays before each guided trial.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tuner.config import load_config  # noqa: E402
from tuner.optimizer import Proposer  # noqa: E402
from tuner.space import SearchSpace  # noqa: E402
from tuner.store import TrialRecord, TrialState  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "jh-simple-dataset.csv"
CONFIG = ROOT / "configs" / "course-log.yaml"


def search_wall_time(data: Path) -> float:
    with tempfile.TemporaryDirectory() as out:
        command = [
            sys.executable, "-m", "tuner.cli", "search", str(CONFIG),
            "--set", f"data.path={data}", "--set", "evaluation.max_params=1000000",
            "--out", out, "--quiet", "--json",
        ]  # fmt: skip
        started = time.perf_counter()
        result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=False)
        seconds = time.perf_counter() - started
    print(f"search exit code {result.returncode}; best: {result.stdout.strip()[:300]}")
    return seconds


def optimiser_overhead(trials: int) -> list[float]:
    config = load_config(CONFIG)
    space = SearchSpace(config.space)
    proposer = Proposer(space, config.search)
    rng = np.random.default_rng(0)
    history = []
    for number in range(trials):
        point = {name: float(rng.uniform()) for name in space.names}
        history.append(
            TrialRecord(number=number, state=TrialState.COMPLETE, point=point,
                        params=space.params(point), seed=number, loss=float(rng.uniform(0.5, 2)))
        )  # fmt: skip
    seconds = []
    for k in range(3):
        started = time.perf_counter()
        proposer.propose(config.search.init_points + trials + k, history)
        seconds.append(time.perf_counter() - started)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--trials", type=int, default=300)
    parser.add_argument("--skip-search", action="store_true")
    args = parser.parse_args()
    seconds = optimiser_overhead(args.trials)
    print(f"suggest + register with {args.trials} trials in the study: "
          f"median {np.median(seconds):.2f} s per proposal (runs: "
          f"{', '.join(f'{s:.2f}' for s in seconds)})")  # fmt: skip
    if not args.skip_search:
        wall = search_wall_time(args.data)
        print(f"tuner search configs/course-log.yaml (30 points, max_params 1M): {wall:.0f} s wall")


if __name__ == "__main__":
    main()
