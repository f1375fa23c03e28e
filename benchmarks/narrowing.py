"""What narrowing the stack to its active replicas saves, against masking stopped ones.

Scores the same points on the same splits twice, interleaved (A B A B ...): once with the
stack narrowed when `worth_narrowing` says so (the product), once with stopped replicas masked
until the last one stops (the trainer before). Prints seconds, the ratio and both losses per
point, then the median and total-time ratios. Needs the course's data (../shared/data/).

    python benchmarks/narrowing.py [--splits 10] [--points 4] [--reps 1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import tuner.training.trainer  # noqa: E402
from tuner.training.data import load_dataset  # noqa: E402
from tuner.training.evaluate import evaluate_point, with_splits  # noqa: E402

sys.path.insert(0, str(ROOT / "benchmarks"))
from evaluate_speed import DATA, LARGE_POINT, course_config, points  # noqa: E402

NARROWING = tuner.training.trainer.worth_narrowing


def timed(config, dataset, params, seed: int, narrow: bool) -> tuple[float, float]:
    tuner.training.trainer.worth_narrowing = NARROWING if narrow else (lambda *_: False)
    started = time.perf_counter()
    score = evaluate_point(config, dataset, params, seed)
    return time.perf_counter() - started, score.loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--splits", type=int, default=10)
    parser.add_argument("--points", type=int, default=4)
    parser.add_argument("--reps", type=int, default=1)
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args()
    config = with_splits(course_config(args.data), args.splits)
    dataset = load_dataset(config.data)
    # evaluate_speed's points less its network over 1M parameters (minutes per call here).
    chosen = [p for p in points(config, dataset, args.points + 1) if p != LARGE_POINT]
    timed(config, dataset, chosen[0], 0, True)  # Keras import and first trace, not counted
    ratios, masked_total, narrowed_total = [], 0.0, 0.0
    for rep in range(args.reps):
        for index, params in enumerate(chosen):
            seed = 1000 * rep + index
            masked, loss_m = timed(config, dataset, params, seed, False)
            narrowed, loss_n = timed(config, dataset, params, seed, True)
            ratios.append(masked / narrowed)
            masked_total, narrowed_total = masked_total + masked, narrowed_total + narrowed
            print(
                f"rep {rep} point {index} | masked {masked:6.1f} s loss {loss_m:.4f} | "
                f"narrowed {narrowed:6.1f} s loss {loss_n:.4f} | ratio {ratios[-1]:.2f}x",
                flush=True,
            )
    print(
        f"{args.splits} splits per call: median ratio {statistics.median(ratios):.2f}x, "
        f"total-time ratio {masked_total / narrowed_total:.2f}x "
        f"({masked_total:.0f} s / {narrowed_total:.0f} s)"
    )


if __name__ == "__main__":
    main()
