"""The tables and target checks of benchmarks/search_quality.py, from its finished cells.

A cell is one (table, method, seed) search with its re-scoring, as stored in the results file.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from benchmarks.quality_methods import METHODS
from tuner.training.difficulty import slope

Cell = Mapping[str, Any]
TABLES: dict[str, tuple[str, ...]] = {
    "equal-trials": ("tuner", "random", "optuna", "kerastuner"),
    "equal-time": ("tuner", "course-linear", "course-log"),
}
REFERENCE_LABEL = "course's example point (dropout 0.2, lr 1e-3, pct 0.2, shrink 0.2), not searched"
HEADER = (
    "| method | seeds | re-scored best (mean ± SE) | its reported best | optimism "
    "(re-scored - reported) | trials | wall time |"
)


def mean_se(values: Sequence[float], digits: int = 4) -> str:
    """`mean ± standard error` (the mean alone for one value; `-` for none)."""
    if not values:
        return "-"
    mean = float(np.mean(values))
    if len(values) == 1:
        return f"{mean:.{digits}f}"
    se = float(np.std(values, ddof=1) / math.sqrt(len(values)))
    return f"{mean:.{digits}f} ± {se:.{digits}f}"


def _row(label: str, cells: Sequence[Cell]) -> str:
    ran = [c for c in cells if c.get("crash") is None]
    rescored = [c["rescored"] for c in ran if c.get("rescored") is not None]
    reported = [c["reported"] for c in ran if c.get("reported") is not None]
    # Positive optimism: the method reported a lower loss than its winner scores afresh.
    optimism = [
        c["rescored"] - c["reported"]
        for c in ran
        if c.get("reported") is not None and c.get("rescored") is not None
    ]
    notes = [f"seed {c['seed']}: {_failure(c)}" for c in cells if _failure(c)]
    failed = f" (failed: {'; '.join(notes)})" if notes else ""
    reported_text = f"{np.mean(reported):.4f}" if reported else "-"
    trials = f"{np.mean([c['trials'] for c in ran]):.1f}" if ran else "-"
    wall = f"{np.mean([c['wall_s'] for c in ran]):.0f} s" if ran else "-"
    return (
        f"| {label}{failed} | {len(cells)} | {mean_se(rescored)} | {reported_text} | "
        f"{mean_se(optimism, 3)} | {trials} | {wall} |"
    )


def _failure(cell: Cell) -> str | None:
    """Why a cell has no re-scored best: it crashed, found nothing, or failed re-scoring."""
    return cell.get("crash") or cell.get("no_winner") or cell.get("rescore_error")


def table_text(table: str, cells: Sequence[Cell], reference: Cell | None, budget: str) -> str:
    """One markdown table: a row per method (mean over seeds), then the course's point."""
    lines = [f"{table} ({budget})", "", HEADER, "|---|---:|---:|---:|---:|---:|---:|"]
    for method in TABLES[table]:
        mine = sorted((c for c in cells if c["method"] == method), key=lambda c: c["seed"])
        if mine:
            lines.append(_row(METHODS[method][0], mine))
    if reference is not None and reference.get("rescored") is not None:
        lines.append(f"| {REFERENCE_LABEL} | - | {reference['rescored']:.4f} | - | - | - | - |")
    return "\n".join(lines)


def paired(cells: Sequence[Cell], methods: Sequence[str]) -> tuple[list[int], dict[str, float]]:
    """Seeds that every method has, and each method's mean re-scored best over them.

    A search or re-scoring that failed counts as infinitely bad."""
    by = {(c["method"], c["seed"]): c for c in cells}
    seeds = sorted({s for _, s in by if all((m, s) in by for m in methods)})
    means = {
        m: float(np.mean([_value(by[m, s]) for s in seeds])) if seeds else math.nan for m in methods
    }
    return seeds, means


def _value(cell: Cell) -> float:
    rescored = cell.get("rescored")
    return math.inf if rescored is None else float(rescored)


def _verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def equal_trials_target(cells: Sequence[Cell]) -> str:
    """tuner's re-scored best no worse than any other method's (mean over paired seeds)."""
    others = [m for m in TABLES["equal-trials"][1:] if any(c["method"] == m for c in cells)]
    if not any(c["method"] == "tuner" for c in cells) or not others:
        return "equal trials: not checked (needs tuner and another method)"
    seeds, means = paired(cells, ["tuner", *others])
    if not seeds:
        return "equal trials: not checked (no seed that every method finished)"
    rival = min(others, key=lambda m: means[m])
    return (
        f"equal trials: tuner {means['tuner']:.4f} vs the best other, {rival}, "
        f"{means[rival]:.4f} (seeds {seeds}; needs tuner <= every other): "
        f"{_verdict(means['tuner'] <= means[rival])}"
    )


def equal_time_target(cells: Sequence[Cell]) -> str:
    """tuner at least 0.01 better than the course setup with log lr, and <= 0.665."""
    seeds, means = paired(cells, ["tuner", "course-log"])
    if not seeds:
        return "equal time: not checked (needs tuner and course-log on the same seeds)"
    tuner, course = means["tuner"], means["course-log"]
    ok = tuner <= course - 0.01 and tuner <= 0.665
    return (
        f"equal time: tuner {tuner:.4f} vs course setup with log10 learning rate {course:.4f} "
        f"(seeds {seeds}; needs tuner <= {course - 0.01:.4f} and <= 0.665): {_verdict(ok)}"
    )


def honesty_target(cells: Sequence[Cell]) -> list[str]:
    """tuner's mean (reported - re-scored) within +-0.01, as issue 6 words it ("on average over
    seeds"); the mean |reported - re-scored| beside it (it also holds both scores' noise, about
    0.017 for unbiased 10- and 20-split means on the course's data), and the others' optimism."""
    lines = []
    for method in METHODS:
        gaps = [
            c["reported"] - c["rescored"]
            for c in cells
            if c["method"] == method and c.get("rescored") is not None and c.get("reported")
        ]
        if not gaps:
            continue
        mean, mean_abs = float(np.mean(gaps)), float(np.mean(np.abs(gaps)))
        if method == "tuner":
            lines.insert(
                0,
                f"honesty: tuner mean reported - re-scored {mean:+.4f} over {len(gaps)} "
                f"search{'es' if len(gaps) != 1 else ''} (needs within ±0.01): "
                f"{_verdict(abs(mean) <= 0.01)}; mean |reported - re-scored| {mean_abs:.4f}",
            )
            lines.insert(1, _unadjusted(cells))
        else:
            lines.append(f"  beside it, {method}: mean reported - re-scored {mean:+.4f}")
    if not lines or not lines[0].startswith("honesty"):
        lines.insert(0, "honesty: not checked (no re-scored tuner search)")
    return lines


def _unadjusted(cells: Sequence[Cell]) -> str:
    """tuner's gaps before its split-difficulty adjustment (difficulty.py), where it made one."""
    gaps = [
        c["extra"]["raw_loss"] - c["rescored"]
        for c in cells
        if c["method"] == "tuner"
        and c.get("rescored") is not None
        and (c.get("extra") or {}).get("raw_loss") is not None
    ]
    if not gaps:
        return "  tuner's reported losses were not adjusted for split difficulty"
    return (
        f"  before the split-difficulty adjustment ({len(gaps)} search(es)): mean "
        f"{np.mean(gaps):+.4f}, mean |reported - re-scored| {np.mean(np.abs(gaps)):.4f}"
    )


def typical_honesty(cells: Sequence[Cell], difficulty: Mapping[str, Any]) -> list[str]:
    """tuner's reported - re-scored with each re-score taken to typical splits: less the
    re-score splits' difficulty (the baseline's mean on them - its --population mean) times the
    slope of the winner's 20 split losses on the baseline's (tuner/difficulty.py)."""
    fixed, population = difficulty["fixed"], difficulty["population"]
    offset = float(np.mean(fixed)) - population
    head = (
        f"  the re-score's {len(fixed)} splits for the baseline: {np.mean(fixed):.4f}, against "
        f"{population:.4f} ± {difficulty['population_se']:.4f} on other splits ({offset:+.4f})"
    )
    rows = []
    for c in cells:
        losses = c.get("rescore_split_losses")
        if c["method"] != "tuner" or not losses or c.get("reported") is None:
            continue
        typical = c["rescored"] - slope([(losses, fixed)])[0] * offset
        raw = (c.get("extra") or {}).get("raw_loss")
        rows.append(
            (c["reported"] - typical, (raw if raw is not None else c["reported"]) - typical)
        )
    if not rows:
        return [head]
    gaps, raws = np.array(rows).T
    return [
        head,
        f"  against typical splits: tuner mean reported - re-scored {gaps.mean():+.4f} (mean "
        f"|gap| {np.abs(gaps).mean():.4f}; unadjusted {raws.mean():+.4f}, "
        f"{np.abs(raws).mean():.4f}): {_verdict(abs(gaps.mean()) <= 0.01)}",
    ]


def targets_text(cells: Sequence[Cell], difficulty: Mapping[str, Any] | None = None) -> str:
    """Which of issue 6's targets the finished cells meet."""
    trials = [c for c in cells if c["table"] == "equal-trials"]
    time_cells = [c for c in cells if c["table"] == "equal-time"]
    searched = [c for c in cells if c["table"] in TABLES]
    lines = ["Targets (issue 6; thresholds are for the course's data):"]
    lines.append("  " + equal_trials_target(trials))
    lines.append("  " + equal_time_target(time_cells))
    lines += ["  " + line for line in honesty_target(searched)]
    if difficulty is not None:
        lines += typical_honesty(searched, difficulty)
    return "\n".join(lines)
