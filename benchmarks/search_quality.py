"""Search quality: tuner against random search, Optuna, KerasTuner and the course's setup.

    python benchmarks/search_quality.py --config CONFIG [--set KEY=VALUE]... [--seeds 5]
        [--trials 30] [--time 600] [--rescore-splits 20] [--tables equal-trials,equal-time]
        [--methods tuner,random,...] [--results PATH]

Two tables. Equal trials: `tuner search` as shipped, random search, Optuna's TPE and
KerasTuner's BayesianOptimization, each with --trials trials on tuner's own evaluator. Equal
time: `tuner search --time-budget`, random search and Optuna's TPE on tuner's own evaluator, and
the course's setup (bayes_opt driving the course's Keras `fit`, learning rate linear and log10),
each for --time seconds. Every method's reported best is then re-scored on the same
--rescore-splits fresh splits (tuner's bootstrap, one seed no search uses) and the tables give
mean ± standard error over seeds. Each finished (table, method, seed) cell is written to
--results at once; a rerun skips finished cells. Progress goes to stderr, the tables to stdout.
Optuna and KerasTuner need `pip install -e '.[bench]'`.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import math
import os
import platform
import signal
import sys
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from benchmarks.quality_methods import (  # noqa: E402
    COURSE_POINT,
    METHODS,
    OPTIONAL,
    RESCORE_SEED,
    UNLIMITED,
    Budget,
    Rescorer,
    Setting,
    run_method,
)
from tuner.config.schema import load_config  # noqa: E402
from tuner.config.space import SearchSpace  # noqa: E402
from tuner.errors import TunerError, UsageError  # noqa: E402
from tuner.training.evaluate import load_for_scoring  # noqa: E402

REFERENCE_KEY = "reference/course-point/0"
Cell = Mapping[str, Any]
# Methods of each table, tuner first. The peers (random search, Optuna, KerasTuner) score with
# tuner's own evaluator; the course's setups with the course's Keras `fit`.
TABLES: dict[str, tuple[str, ...]] = {
    "equal-trials": ("tuner", "random", "optuna", "kerastuner"),
    "equal-time": ("tuner", "random", "optuna", "course-linear", "course-log"),
}
PEERS = ("random", "optuna", "kerastuner")
REFERENCE_LABEL = "course's example point (dropout 0.2, lr 1e-3, pct 0.2, shrink 0.2), not searched"
HEADER = (
    "| method | seeds | re-scored best (mean ± SE) | its reported best | optimism "
    "(re-scored - reported) | trials | wall time |"
)


class Stop(Exception):
    """A one-line error for the user; exit code 2."""


def log(message: str) -> None:
    """Progress, to stderr."""
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", type=Path, required=True, help="The tuner config to search.")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument(
        "--seeds",
        type=_seeds,
        default=[1, 2, 3, 4, 5],
        help="N (seeds 1..N) or a list: 3,4,5 or 3, [5].",
    )
    parser.add_argument("--trials", type=int, default=30, help="Trials per equal-trials search.")
    parser.add_argument("--time", type=float, default=600, help="Seconds per equal-time search.")
    parser.add_argument("--rescore-splits", type=int, default=20, help="Fresh splits [20].")
    parser.add_argument("--tables", default=",".join(TABLES), help="Comma-separated tables.")
    parser.add_argument("--methods", default=",".join(METHODS), help="Comma-separated methods.")
    parser.add_argument("--results", type=Path, help="[runs/search_quality/<config name>.json]")
    parser.add_argument("--objective", help=argparse.SUPPRESS)  # tests: a cheap module:function
    args = parser.parse_args(argv)
    args.tables = _choices("--tables", args.tables, TABLES)
    args.methods = _choices("--methods", args.methods, METHODS)
    if min(args.trials, args.rescore_splits) < 1 or args.time <= 0:
        raise Stop("--trials, --rescore-splits and --time must be positive")
    args.results = args.results or Path("runs/search_quality") / f"{args.config.stem}.json"
    return args


def _seeds(text: str) -> list[int]:
    """`--seeds 5` is seeds 1 to 5; `--seeds 3,4,5` exactly those (to add seeds to a file)."""
    if "," not in text:
        seeds = list(range(1, int(text) + 1))
    else:
        seeds = sorted({int(item) for item in text.split(",") if item.strip()})
    if not seeds or seeds[0] < 1:
        raise argparse.ArgumentTypeError(f"seeds are positive integers (got {text!r})")
    return seeds


def _choices(option: str, text: str, known: Sequence[str]) -> list[str]:
    chosen = [item.strip() for item in text.split(",") if item.strip()]
    unknown = [item for item in chosen if item not in known]
    if unknown or not chosen:
        raise Stop(
            f"{option}: unknown {', '.join(unknown) or 'empty list'}; known: {', '.join(known)}"
        )
    return chosen


def plan(args: argparse.Namespace) -> list[tuple[str, str, int]]:
    """Cells in the order they run: seed by seed, so a stopped run still has paired seeds."""
    return [
        (table, method, seed)
        for table in args.tables
        for seed in args.seeds
        for method in TABLES[table]
        if method in args.methods
    ]


def check_tools(cells: Sequence[tuple[str, str, int]]) -> None:
    """Refuse before any work when an optional package that a method needs is missing."""
    methods = {method for _, method, _ in cells}
    missing = [OPTIONAL[m] for m in sorted(methods) if m in OPTIONAL]
    missing = [name for name in missing if importlib.util.find_spec(name) is None]
    if missing:
        raise Stop(
            f"{' and '.join(missing)} not installed: pip install -e '.[bench]' "
            "(or leave those methods out with --methods)"
        )


def check_course(args: argparse.Namespace, task: str) -> None:
    """The course's own evaluation is for classification only (softmax, log loss)."""
    course = {"course-linear", "course-log"} & {m for _, m, _ in plan(args)}
    if course and task != "classification" and not args.objective:
        raise Stop(
            f"{', '.join(sorted(course))}: the course's evaluation is for classification only; "
            "leave it out with --methods"
        )


def config_name(path: Path) -> str:
    """The config's path relative to the repository when inside it (so that a results file
    kept in the repository serves every checkout), else absolute."""
    resolved = path.resolve()
    return str(resolved.relative_to(ROOT)) if resolved.is_relative_to(ROOT) else str(resolved)


def settings(args: argparse.Namespace, table: str) -> dict[str, Any]:
    """What a cell's result depends on; a stored cell with other settings is not reused."""
    common = {
        "config": config_name(args.config),
        "sets": list(args.overrides),
        "objective": args.objective,
        "rescore_splits": args.rescore_splits,
        "rescore_seed": RESCORE_SEED,
    }
    if table == "equal-trials":
        return {**common, "trials": args.trials}
    if table == "equal-time":
        return {**common, "seconds": args.time}
    return common


def load_results(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {"cells": {}}
    try:
        return json.loads(path.read_text())  # type: ignore[no-any-return]
    except (OSError, json.JSONDecodeError) as exc:
        raise Stop(f"--results: cannot read {path} ({exc}); move it away or give another") from exc


def save_results(path: Path, results: dict[str, Any]) -> None:
    """Write the whole file anew, atomically: a kill leaves the old or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(results, indent=1) + "\n")
    partial.replace(path)


def pending(results: dict[str, Any], key: str, wanted: dict[str, Any], path: Path) -> bool:
    """Whether a cell must run: not stored, or crashed. Other settings: refused."""
    old = results["cells"].get(key)
    if old is None:
        return True
    if old["settings"] != wanted:
        changed = sorted(k for k in wanted if old["settings"].get(k) != wanted[k])
        raise Stop(
            f"--results: {path} holds {key} made with other {', '.join(changed)}; "
            "give another --results file for these settings"
        )
    return old.get("crash") is not None


def rescored_text(result: dict[str, Any]) -> str:
    """`re-scored 0.6634`, or why the re-score failed."""
    done = result["rescored"]
    return f"re-scored {done:.4f}" if done is not None else str(result["rescore_error"])


def refused_by_limit(cell: dict[str, Any] | None) -> bool:
    """A course-setup cell stored before its re-score lifted the parameter limit: re-score it."""
    return (
        cell is not None
        and cell.get("method") in UNLIMITED
        and cell.get("rescored") is None
        and str(cell.get("rescore_error", "")).startswith("too_large")
    )


def rescore_unlimited(key: str, cell: dict[str, Any], rescore: Rescorer) -> dict[str, Any]:
    """The stored cell, its winner re-scored anew without the parameter limit (on a crash, the
    cell as stored: its search is not lost)."""
    log(f"[{key}] re-scoring its winner without the parameter limit")
    try:
        again = rescore(cell["params"], False)
    except Exception:
        log(f"[{key}] re-scoring crashed:\n{traceback.format_exc()}")
        return cell
    log(f"[{key}] {rescored_text(again)}")
    return {**{name: value for name, value in cell.items() if name != "rescore_error"}, **again}


def run_cell(
    setting: Setting, key: str, budget: Budget, rescore: Callable[..., dict[str, Any]]
) -> dict[str, Any]:
    """One search and the re-scoring of its reported best."""
    table, method, seed = key.split("/")
    prefixed = dataclasses.replace(setting, log=lambda text: log(f"[{key}] {text}"))
    prefixed.log("search starts")
    outcome = run_method(method, prefixed, int(seed), budget)
    cell: dict[str, Any] = {
        "table": table,
        "method": method,
        "seed": int(seed),
        "reported": outcome.reported,
        "params": outcome.params,
        "trials": outcome.trials,
        "failed": outcome.failed,
        "wall_s": round(outcome.seconds, 2),
        "extra": outcome.extra,
        "no_winner": outcome.no_winner,
    }
    if outcome.params is not None:
        prefixed.log(f"reported {outcome.reported:.4f} after {outcome.trials} trials; re-scoring")
        cell.update(rescore(outcome.params, method not in UNLIMITED))
        prefixed.log(rescored_text(cell))
        if method == "tuner" and hasattr(rescore, "exported"):  # what tuner reports is of this
            cell.update(rescore.exported(outcome.params))
    else:
        prefixed.log(f"no winner: {outcome.no_winner}")
    return cell


def guarded(key: str, function: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """A cell's crash is recorded in it (and run again by a rerun); the run goes on."""
    try:
        return function(*args)
    except UsageError:
        raise  # bad input (the objective, the config): every cell would fail the same way
    except Exception as exc:
        log(f"[{key}] crashed:\n{traceback.format_exc()}")
        return {"crash": f"{type(exc).__name__}: {exc}"}


def reference_cell(setting: Setting, rescore: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
    """The course's example point re-scored on the same splits, for scale."""
    params = {**SearchSpace(setting.config.space).fixed, **COURSE_POINT}
    log(f"[{REFERENCE_KEY}] re-scoring the course's example point")
    return {"params": params, **rescore(params)}


def run_all(args: argparse.Namespace, setting: Setting) -> dict[str, Any]:
    results = load_results(args.results)
    todo = [(REFERENCE_KEY, "reference")] + [
        ("/".join((t, m, str(s))), t) for t, m, s in plan(args)
    ]
    rescorer: Rescorer | None = None
    try:
        for key, table in todo:
            wanted = settings(args, table)
            due = pending(results, key, wanted, args.results)  # refuses other settings
            rescore_only = not due and refused_by_limit(results["cells"].get(key))
            if not due and not rescore_only:
                log(f"[{key}] finished before; skipped")
                continue
            rescorer = rescorer or Rescorer(setting, args.rescore_splits)
            if rescore_only:
                cell = rescore_unlimited(key, results["cells"][key], rescorer)
            elif table == "reference":
                cell = guarded(key, reference_cell, setting, rescorer)
            else:
                budget = Budget(args.trials) if table == "equal-trials" else Budget(None, args.time)
                cell = guarded(key, run_cell, setting, key, budget, rescorer)
            table_name, method, seed = key.split("/")
            cell.update({"table": table_name, "method": method, "seed": int(seed)})
            cell.update(settings=wanted, finished_at=time.strftime("%Y-%m-%d %H:%M:%S"))
            results["cells"][key] = cell
            save_results(args.results, results)
    finally:
        if rescorer is not None:
            rescorer.close()
    return results


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


def peers_target(cells: Sequence[Cell], name: str) -> str:
    """tuner's re-scored best no worse than every peer's (mean over paired seeds)."""
    others = [m for m in PEERS if any(c["method"] == m for c in cells)]
    if not any(c["method"] == "tuner" for c in cells) or not others:
        return f"{name}: not checked (needs tuner and random, optuna or kerastuner)"
    seeds, means = paired(cells, ["tuner", *others])
    if not seeds:
        return f"{name}: not checked (no seed that tuner and every peer finished)"
    rival = min(others, key=lambda m: means[m])
    return (
        f"{name}: tuner {means['tuner']:.4f} vs the best other, {rival}, "
        f"{means[rival]:.4f} (seeds {seeds}; needs tuner <= every other): "
        f"{_verdict(means['tuner'] <= means[rival])}"
    )


def course_target(cells: Sequence[Cell]) -> str:
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
    """tuner's mean (reported - re-scored) within ±0.01 over seeds; the mean |reported -
    re-scored| beside it (it also holds both scores' noise, about 0.017 for unbiased 10- and
    20-split means on the course's data), and the others' optimism."""
    lines = []
    for method in METHODS:
        # tuner reports its exported ensemble's loss: compared with that procedure re-scored.
        key = "exported_rescored" if method == "tuner" else "rescored"
        gaps = [
            c["reported"] - c.get(key, c["rescored"])
            for c in cells
            if c["method"] == method
            and c.get(key, c.get("rescored")) is not None
            and c.get("reported")
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
        else:
            lines.append(f"  beside it, {method}: mean reported - re-scored {mean:+.4f}")
    if not lines or not lines[0].startswith("honesty"):
        lines.insert(0, "honesty: not checked (no re-scored tuner search)")
    return lines


def targets_text(cells: Sequence[Cell]) -> str:
    """Which of the search-quality targets the finished cells meet."""
    trials = [c for c in cells if c["table"] == "equal-trials"]
    timed = [c for c in cells if c["table"] == "equal-time"]
    lines = ["Targets (thresholds are for the course's data):"]
    lines.append("  " + peers_target(trials, "equal trials"))
    lines.append("  " + course_target(timed))
    if any(c["method"] in PEERS for c in timed):
        lines.append("  " + peers_target(timed, "equal time, peers"))
    lines += ["  " + line for line in honesty_target([c for c in cells if c["table"] in TABLES])]
    return "\n".join(lines)


def report(args: argparse.Namespace, setting: Setting, results: dict[str, Any]) -> None:
    """The tables and targets, on stdout, from the cells these settings select."""
    cells = [
        results["cells"][f"{t}/{m}/{s}"]
        for t, m, s in plan(args)
        if f"{t}/{m}/{s}" in results["cells"]
    ]
    reference = results["cells"].get(REFERENCE_KEY)
    print(
        f"Search quality, {os.cpu_count()} CPUs ({platform.machine()}): {args.config} "
        f"({len(setting.dataset)} rows){''.join(' --set ' + s for s in args.overrides)}; "
        f"re-scored on {args.rescore_splits} fresh splits (seed {RESCORE_SEED})"
    )
    budgets = {"equal-trials": f"{args.trials} trials each", "equal-time": f"{args.time:g} s each"}
    for table in args.tables:
        mine = [c for c in cells if c["table"] == table]
        print()
        print(table_text(table, mine, reference, budgets[table]))
    print()
    print(targets_text(cells))


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C: `subprocess.run` then kills the `tuner search` it waits on
    (Python's default for SIGTERM ends this script at once and leaves that search running)."""


def _terminated(_signum: int, _frame: FrameType | None) -> None:
    raise Terminated


def main(argv: Sequence[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _terminated)
    try:
        args = parse(argv)
        check_tools(plan(args))
        config = load_config(args.config, args.overrides)
        check_course(args, config.data.task)
        setting = Setting(
            args.config,
            tuple(args.overrides),
            config,
            load_for_scoring(config),
            args.objective,
            log,
        )
        results = run_all(args, setting)
        report(args, setting, results)
    except (Stop, TunerError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        name = "terminated" if isinstance(exc, Terminated) else "interrupted"
        print(f"{name}; finished cells are kept: rerun the command to go on", file=sys.stderr)
        return 128 + (signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
