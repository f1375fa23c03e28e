"""The figures of benchmarks/gpu_check.sh from the files it wrote: the course's 30-trial search
with K trials per GPU (wall time, trials per minute, each slot's speed against a lone trial),
and the out-of-memory search's trials by kind.

    python benchmarks/gpu_summary.py OUT_FOLDER [--oom OUT_FOLDER/oom-trials.json]
"""

import argparse
import collections
import json
from pathlib import Path


def _load(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def searches(folder: Path) -> None:
    """One line per K: wall time, trials per minute, per-slot speed against K = 1."""
    lone = None
    print("K | run s | end s | completed | trials/min | per slot, against K=1 | target")
    for k in (1, 2, 4):
        result, listed = _load(folder / f"search-k{k}.json"), _load(folder / f"trials-k{k}.json")
        if result is None or listed is None:
            print(f"{k} | no result (the search failed or ran out of time: see the log)")
            continue
        done = sum(t["state"] == "complete" for t in listed["trials"])
        trials_s = result["run_seconds"] - (result.get("end_seconds") or 0.0)
        rate = 60.0 * done / max(trials_s, 1e-9)
        lone = rate if k == 1 else lone
        slot = "" if lone is None or k == 1 else f"{rate / k / lone:.0%}"
        under = "under 60 s" if result["run_seconds"] < 60 else "over 60 s"
        print(
            f"{k} | {result['run_seconds']:.0f} | {result.get('end_seconds') or 0:.0f} | "
            f"{done} | {rate:.1f} | {slot} | {under}; slot >= 70%"
        )


def oom(path: Path) -> None:
    """How the trials of the out-of-memory search ended."""
    listed = _load(path)
    if listed is None:
        print("out of memory: no trials listed")
        return
    kinds = collections.Counter(t["error_kind"] or t["state"] for t in listed["trials"])
    verdict = "met" if kinds.get("oom") and len(listed["trials"]) > 1 else "NOT met"
    print(f"out of memory: trials by kind {dict(kinds)}; recorded oom and went on: {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--oom", type=Path)
    args = parser.parse_args()
    if args.oom is not None:
        oom(args.oom)
    else:
        searches(args.folder)


if __name__ == "__main__":
    main()
