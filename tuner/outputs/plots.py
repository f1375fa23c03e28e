"""The report's figures as PNG bytes (matplotlib, imported only by the report)."""

import io
import itertools
import math

import matplotlib

matplotlib.use("Agg")
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from tuner.outputs.report import baselines_of
from tuner.study.results import StudyResults
from tuner.study.store import TrialState

_DPI = 100
_FAILED = "#c0392b"
_POINT = "#2c7fb8"


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=_DPI, bbox_inches="tight")
    return buffer.getvalue()


def convergence(results: StudyResults) -> bytes:
    """Loss of each completed trial, the best so far, and failed trials marked at the bottom."""
    figure = Figure(figsize=(8, 4))
    ax = figure.subplots()
    done = results.completed
    ax.scatter([t.number for t in done], [t.loss for t in done], color=_POINT, label="trial")
    best = itertools.accumulate((float(t.loss or math.inf) for t in done), min)
    ax.step([t.number for t in done], list(best), where="post", color="black", label="best so far")
    failed = [t.number for t in results.trials if t.state == TrialState.FAILED]
    if failed and done:
        low = min(t.loss or 0.0 for t in done)
        ax.scatter(failed, [low] * len(failed), marker="x", color=_FAILED, label="failed")
    if done:
        _baseline_lines(ax, results)
    metric = "log loss" if results.config.data.task == "classification" else "RMSE"
    ax.set(xlabel="trial", ylabel=f"held-out {metric} (mean over splits)", title="convergence")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(loc="best")
    return _png(figure)


def _baseline_lines(ax: Axes, results: StudyResults) -> None:
    """The winner's baselines as horizontal lines, those under the worst trial's loss only: one
    far above would squeeze the trials into a band (the report's table has every one)."""
    highest = max(float(t.loss or 0.0) for t in results.completed)
    for style, baseline in zip(("--", ":"), baselines_of(results.winner).values(), strict=False):
        loss = float(baseline["loss"])
        if loss <= highest:
            ax.axhline(loss, color="grey", linestyle=style, label=str(baseline.get("name", "")))


def _param_axis(ax: Axes, results: StudyResults, name: str) -> None:
    done = results.completed
    values = [t.params.get(name) for t in done]
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
    labels = sorted({str(v) for v in values})

    def position(value: object) -> object:
        return value if numeric else labels.index(str(value))

    ax.scatter([position(v) for v in values], [t.loss for t in done], color=_POINT)
    param = results.config.space.get(name)
    if numeric and param is not None and param.log:
        ax.set_xscale("log")
    if not numeric:
        ax.set_xticks(range(len(labels)), labels)
    best = results.best
    ax.scatter([position(best.params.get(name))], [best.loss], color="black", marker="*", s=150)
    ax.set_xlabel(name)


def parameters(results: StudyResults) -> bytes:
    """Each searched hyperparameter against the loss; the best trial starred."""
    names = list(results.names) or list(results.best.params)
    cols = min(len(names), 3)
    rows = math.ceil(len(names) / cols)
    figure = Figure(figsize=(4 * cols, 3.2 * rows))
    axes = figure.subplots(rows, cols, squeeze=False)
    for index, ax in enumerate(axes.flat):
        if index >= len(names):
            ax.set_visible(False)
            continue
        _param_axis(ax, results, names[index])
        if index % cols == 0:
            ax.set_ylabel("loss")
    figure.suptitle("hyperparameters against the loss")
    return _png(figure)


def split_spread(results: StudyResults, top: int = 5) -> bytes:
    """Per-split losses of the best trials: a box per trial with the splits as points."""
    ranked = [t for t in results.ranked() if t.split_losses][:top]
    figure = Figure(figsize=(8, 4))
    ax = figure.subplots()
    data = [list(t.split_losses) for t in ranked]
    ax.boxplot(data, tick_labels=[f"#{t.number}" for t in ranked])
    for position, losses in enumerate(data, start=1):
        ax.scatter([position] * len(losses), losses, color=_POINT, zorder=3)
    title = f"spread of per-split losses, top {len(ranked)} trials"
    ax.set(xlabel="trial (best first)", ylabel="held-out loss per split", title=title)
    return _png(figure)


def timings(results: StudyResults) -> bytes:
    """Seconds per trial, failed ones in red."""
    figure = Figure(figsize=(8, 3))
    ax = figure.subplots()
    trials = [t for t in results.trials if t.seconds is not None]
    colours = [_FAILED if t.state == TrialState.FAILED else _POINT for t in trials]
    ax.bar([t.number for t in trials], [t.seconds for t in trials], color=colours)
    ax.set(xlabel="trial", ylabel="seconds", title="time per trial (failed in red)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return _png(figure)


def all_plots(results: StudyResults) -> dict[str, bytes]:
    """Every figure of the report by name; the loss figures need a completed trial."""
    plots = {}
    if results.completed:
        plots["convergence"] = convergence(results)
        plots["parameters"] = parameters(results)
        plots["splits"] = split_spread(results)
    plots["timings"] = timings(results)
    return plots
