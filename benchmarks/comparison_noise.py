"""How noisy is comparing two trials by their 2-split means, and how much does adjusting each
split loss by the baseline's loss on that split (search.comparison: adjusted) take away?

    python benchmarks/comparison_noise.py RESULTS.json [RESULTS.json ...] [--pairs 20000]

Reads `search_quality.py` results files of one data set: every distinct winner's losses on the
benchmark's fixed re-score splits and the split-difficulty baseline's losses on the same splits
(`rescore_difficulty`, written by the report). It then draws pairs of winners and splits: the
error of the difference of two 2-split means against the difference of their means over all
the fixed splits, when the two trials have independent splits (as tuner scores trials), the
same after the adjustment (the pooled within-network slope, and a slope of 1), and when the two
share their splits (common random numbers). Winners over 1.5 times the baseline's loss (diverged)
are left out, as tuner/adjustment.py leaves them out of its slope.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

SOUND_RATIO = 1.5  # as tuner.study.adjustment.SOUND_RATIO


def load(paths: Sequence[Path]) -> tuple[np.ndarray, np.ndarray]:
    """(networks x splits losses, the baseline's losses on the same splits)."""
    nets: dict[str, list[float]] = {}
    fixed: list[float] | None = None
    for path in paths:
        results = json.loads(path.read_text())
        found = (results.get("rescore_difficulty") or {}).get("fixed")
        if found is not None and fixed is not None and not np.allclose(found, fixed):
            raise SystemExit(f"{path}: its re-score splits are not the others'; one data set")
        fixed = found or fixed
        for cell in results["cells"].values():
            losses = cell.get("rescore_split_losses")
            if losses and cell.get("params") is not None:
                nets[json.dumps(cell["params"], sort_keys=True)] = losses
    if fixed is None:
        raise SystemExit("no rescore_difficulty in these files: run search_quality.py's report")
    base = np.array(fixed)
    table = np.array([v for v in nets.values() if len(v) == len(base)])
    return table[table.mean(axis=1) <= SOUND_RATIO * base.mean()], base


def errors(table: np.ndarray, base: np.ndarray, pairs: int, seed: int = 0) -> dict[str, float]:
    """Standard deviation of the comparison's error, each way."""
    rng = np.random.default_rng(seed)
    within = table - table.mean(axis=1, keepdims=True)
    dx = base - base.mean()
    slope = float((within @ dx).sum() / (len(table) * dx @ dx))
    out: dict[str, list[float]] = {"independent": [], "adjusted": [], "slope 1": [], "common": []}
    for _ in range(pairs):
        a, b = rng.choice(len(table), 2, replace=False)
        s = rng.choice(len(base), 4, replace=False)
        truth = table[a].mean() - table[b].mean()
        la, lb = table[a, s[:2]].mean(), table[b, s[2:]].mean()
        ba, bb = base[s[:2]].mean(), base[s[2:]].mean()
        out["independent"].append(la - lb - truth)
        out["adjusted"].append((la - slope * ba) - (lb - slope * bb) - truth)
        out["slope 1"].append((la - ba) - (lb - bb) - truth)
        out["common"].append(table[a, s[:2]].mean() - table[b, s[:2]].mean() - truth)
    return {"slope": slope, **{k: float(np.std(v)) for k, v in out.items()}}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, nargs="+")
    parser.add_argument("--pairs", type=int, default=20000)
    args = parser.parse_args(argv)
    table, base = load(args.results)
    if len(table) < 2:
        raise SystemExit("fewer than 2 sound winners in these files")
    correlation = np.median([np.corrcoef(row, base)[0, 1] for row in table])
    found = errors(table, base, args.pairs)
    print(
        f"{len(table)} networks x {len(base)} splits; one network's split losses vs the "
        f"baseline's: median correlation {correlation:.3f}, within-network slope "
        f"{found['slope']:.2f}"
    )
    print(f"error of a 2-split difference between two networks ({args.pairs} pairs), sd:")
    plain = found["independent"]
    print(f"  {'independent':<12} {plain:.4f}")
    for key in ("adjusted", "slope 1", "common"):
        ratio = f"{plain / found[key]:.1f}x" if found[key] > 0 else "infinitely"
        print(f"  {key:<12} {found[key]:.4f}  ({ratio} smaller)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
