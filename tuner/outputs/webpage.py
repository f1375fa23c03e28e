"""`tuner report`: one self-contained HTML page about a study, its plots also as PNG files."""

import base64
import html
import statistics
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import yaml

from tuner import __version__
from tuner.errors import DataError, UsageError
from tuner.outputs.report import (
    METRIC_LABELS,
    all_metrics,
    baseline_rows,
    baselines_of,
    format_metric,
    main_metrics,
    reported_source,
    winner_metrics,
)
from tuner.study.results import StudyResults
from tuner.study.store import TrialState
from tuner.training.architecture import Architecture, hidden_layers
from tuner.training.data import load_dataset
from tuner.training.evaluate import architecture_for

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1000px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: right; }
th { background: #f2f2f2; } td.text { text-align: left; }
img { max-width: 100%; display: block; margin: 0.5em 0 1.5em; }
pre { background: #f7f7f7; padding: 1em; overflow-x: auto; }
"""

_CAPTIONS = {
    "convergence": "Convergence: loss per trial and best so far",
    "parameters": "Each searched hyperparameter against the loss",
    "splits": "Spread of the per-split losses of the top trials",
    "timings": "Seconds per trial",
}


def _table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    def cell(value: object) -> str:
        kind = "" if isinstance(value, int | float) else ' class="text"'
        text = f"{value:.4g}" if isinstance(value, float) else str(value)
        return f"<td{kind}>{html.escape(text.lower() if isinstance(value, bool) else text)}</td>"

    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(cell(c) for c in row) + "</tr>" for row in rows)
    return f"<table>{f'<tr>{head}</tr>' if any(header) else ''}{body}</table>"


def best_architecture(results: StudyResults) -> tuple[Architecture | None, str]:
    """The best trial's network on the study's data, or None and why it could not be decoded."""
    params, network = results.best.params, results.config.network
    try:
        dataset = load_dataset(results.config.data)
    except DataError as exc:
        layers = hidden_layers(params["neuron_pct"], params["neuron_shrink"], network)
        return None, f"hidden layers {list(layers)}; the data is not readable here ({exc})"
    return architecture_for(results.config, dataset, params), ""


def _architecture_section(results: StudyResults) -> str:
    if not results.completed:
        return "<p>No trial completed.</p>"
    arch, note = best_architecture(results)
    if arch is None:
        return f"<p>{html.escape(note)}</p>"
    rows = [("input", arch.n_inputs, 0), *arch.layers()]
    return f"<p>{html.escape(arch.describe())}</p>" + _table(["layer", "units", "parameters"], rows)


def _summary(results: StudyResults) -> str:
    states = [t.state.value for t in results.trials]
    counts = ", ".join(f"{states.count(k)} {k}" for k in ("complete", "failed", "running"))
    rows: list[tuple[str, object]] = [
        ("study", results.name),
        ("storage", results.storage),
        ("trials", f"{len(states)} ({counts})"),
    ]
    if results.completed:
        winner = results.winner
        rows.append(("best trial", winner.describe()))
        source, found = winner_metrics(winner)
        note = "" if source == reported_source(winner) else " (search-time)"
        for name in all_metrics(results.config.data.task):
            if name in found:
                rows.append((f"best {METRIC_LABELS[name]}", format_metric(found[name]) + note))
        rows += [(f"best {k}", v) for k, v in winner.trial.params.items()]
    else:
        rows.append(("best trial", "none: no trial completed"))
    return _table(["", ""], rows)


def _baselines(results: StudyResults) -> str:
    """The winner beside the baselines on the same splits; nothing for older studies."""
    if not results.completed or not baselines_of(results.winner):
        return ""
    task = results.config.data.task
    header = ["model", "loss ± se", *(METRIC_LABELS[m] for m in main_metrics(task))]
    intro = "<p>Scored on the same splits as the winner's confirmation.</p>"
    return (
        "<h2>Against baselines</h2>" + intro + _table(header, baseline_rows(results.winner, task))
    )


def _top_trials(results: StudyResults, top: int = 10) -> str:
    names, metrics = results.names, main_metrics(results.config.data.task)
    rows = [
        (
            t.number,
            *(t.params.get(n) for n in names),
            t.loss,
            t.loss_std or 0.0,
            *(format_metric(t.metrics.get(m)) for m in metrics),
            ", ".join(f"{x:.4f}" for x in t.split_losses),
            t.seconds or 0.0,
        )
        for t in results.ranked()[:top]
    ]
    labels = [METRIC_LABELS[m] for m in metrics]
    return _table(["trial", *names, "loss", "std", *labels, "split losses", "seconds"], rows)


def _failures(results: StudyResults) -> str:
    failed = [t for t in results.trials if t.state == TrialState.FAILED]
    if not failed:
        return "<p>No trial failed.</p>"
    rows = []
    for kind, count in sorted(results.failures().items()):
        example = next(t for t in failed if (t.error_kind or "unknown") == kind)
        rows.append((kind, count, f"#{example.number}: {example.error or ''}"))
    return _table(["kind", "trials", "example"], rows)


def _timings(results: StudyResults) -> str:
    seconds = [t.seconds for t in results.trials if t.seconds is not None]
    if not seconds:
        return "<p>No trial has finished.</p>"
    rows = [
        ("total", sum(seconds)),
        ("mean per trial", statistics.fmean(seconds)),
        ("median per trial", statistics.median(seconds)),
        ("slowest", max(seconds)),
    ]
    return _table(["", "seconds"], rows)


def _image(name: str, png: bytes) -> str:
    data = base64.b64encode(png).decode("ascii")
    caption = html.escape(_CAPTIONS[name])
    return f'<h3>{caption}</h3><img alt="{caption}" src="data:image/png;base64,{data}">'


def render(results: StudyResults, plots: dict[str, bytes]) -> str:
    config = yaml.safe_dump(results.config.to_dict(), sort_keys=False)
    images = {name: _image(name, png) for name, png in plots.items()}
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>tuner report: {html.escape(results.name)}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>Study {html.escape(results.name)}</h1>",
        _summary(results),
        _baselines(results),
        "<h2>Convergence</h2>",
        images.get("convergence", ""),
        "<h2>Hyperparameters</h2>",
        images.get("parameters", ""),
        "<h2>Top trials</h2>",
        images.get("splits", ""),
        _top_trials(results),
        "<h2>Best trial's network</h2>",
        _architecture_section(results),
        "<h2>Failures by kind</h2>",
        _failures(results),
        "<h2>Timings</h2>",
        _timings(results),
        images.get("timings", ""),
        "<h2>Config</h2>",
        f"<pre>{html.escape(config)}</pre>",
        f"<footer><p>tuner {__version__}, "
        f"{datetime.now(UTC).isoformat(timespec='seconds')}</p></footer>",
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def write_report(results: StudyResults, out: Path) -> dict[str, object]:
    """Write the page and its PNGs (`<stem>-<plot>.png` beside it); returns what was written."""
    from tuner.outputs.plots import all_plots

    if out.is_dir():
        raise UsageError(f"--out: {out} is a folder; give the path of an .html file")
    plots = all_plots(results)
    page = render(results, plots)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    pngs = [out.with_name(f"{out.stem}-{name}.png") for name in plots]
    for path, png in zip(pngs, plots.values(), strict=True):
        path.write_bytes(png)
    return {"html": str(out), "bytes": out.stat().st_size, "plots": [str(p) for p in pngs]}
