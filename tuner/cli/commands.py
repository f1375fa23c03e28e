"""The `tuner` command: parses arguments, calls the library, maps errors to exit codes."""

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

import tuner
from tuner import __version__
from tuner.cli import options
from tuner.engine.signals import leave_on_next_signal
from tuner.errors import SearchInterrupted, TunerError


@contextmanager
def _handled(debug: bool) -> Iterator[None]:
    """Turn the tool's errors into a one-line message and an exit code."""
    from tuner.outputs.report import print_error

    previous = os.environ.get("TUNER_DEBUG")
    if debug:  # worker processes inherit it: they keep the frameworks' own stderr lines
        os.environ["TUNER_DEBUG"] = "1"
    try:
        yield
    except (TunerError, KeyboardInterrupt) as exc:
        if isinstance(exc, SearchInterrupted | KeyboardInterrupt):
            leave_on_next_signal()
        if debug:
            raise
        print_error(str(exc) if isinstance(exc, TunerError) else "interrupted")
        raise SystemExit(getattr(exc, "exit_code", 130)) from None
    finally:  # a caller in this process (a test, a notebook) keeps its own setting
        if previous is None:
            os.environ.pop("TUNER_DEBUG", None)
        else:
            os.environ["TUNER_DEBUG"] = previous


def _start_frameworks_quietly(debug: bool) -> None:
    """Import Keras and run its first operation with file descriptor 2 on /dev/null unless
    --debug: TensorFlow prints its C++ start-up lines (absl, CUDA probing, CPU features) there
    and no variable silences them all. fd 2 comes back after, for our own messages."""
    if debug:
        return
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import keras

        keras.ops.zeros(1)  # the first operation probes the devices, which prints too
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _reporter(config: Any, quiet: bool, events: Any = None) -> tuple[tuple[str, ...], Any]:
    """The searched names and the reporter of a search or worker command: progress on stderr
    (none with --quiet), and the --events file's."""
    from tuner.config.space import SearchSpace
    from tuner.engine.reporter import Tee
    from tuner.outputs.progress import ConsoleReporter, QuietReporter, stderr_console

    names = SearchSpace(config.space).names
    shown = QuietReporter() if quiet else ConsoleReporter(stderr_console(), names)
    return names, shown if events is None else Tee(shown, events)


@click.group(name="tuner", context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tuner")
def cli() -> None:
    """Bayesian hyperparameter search for Keras networks on tabular data."""


@cli.command(short_help="Search a config's space; print the best trial.")
@options.combined(options.CONFIG, options.SET)
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    help="Run folder for the default SQLite study [default: runs/<config name>/].",
)
@click.option("--storage", metavar="URL", help="SQLAlchemy URL of the study database.")
@click.option("--study", "study_name", metavar="NAME", help="Study name [default: config name].")
@click.option(
    "--resume",
    is_flag=True,
    help="Continue the study: finished trials count, interrupted ones run again.",
)
@click.option(
    "--time-budget",
    metavar="DURATION",
    help="End the search, final re-score included, in about this long: 90s, 10m, 2h "
    "(search.time_budget).",
)
@click.option(
    "--warm-start", metavar="URL", help="Tell the optimiser another study's trials first (its URL)."
)
@click.option(
    "--warm-study", metavar="NAME", help="The warm-start study [default: this study's name]."
)
@options.TRIAL_RUNNING
def search(
    config: Path,
    overrides: tuple[str, ...],
    out: Path | None,
    storage: str | None,
    study_name: str | None,
    resume: bool,
    time_budget: str | None,
    warm_start: str | None,
    warm_study: str | None,
    workers: int | None,
    gpus: str | None,
    trials_per_gpu: int,
    events: Path | None,
    objective: str,
    json: bool,
    quiet: bool,
    debug: bool,
) -> None:
    """Search the space of CONFIG with Bayesian optimisation; print the best trial."""
    with _handled(debug):
        from tuner.outputs.events import following
        from tuner.outputs.report import print_search_result, print_time_up
        from tuner.study.store import sqlite_url

        name = study_name or config.stem
        given = options.warm_overrides(warm_start, warm_study, name)
        given += options.budget_overrides(time_budget)
        cfg = tuner.load_config(config, [*overrides, *given])
        url = storage or sqlite_url((out or Path("runs") / config.stem) / "study.db")
        with following(events) as follower:
            names, reporter = _reporter(cfg, quiet, follower)
            parallel = {"workers": workers, "gpus": gpus, "trials_per_gpu": trials_per_gpu}
            study = {"storage": url, "study": name, "resume": resume, "reporter": reporter}
            result = tuner.search(cfg, objective=objective, **study, **parallel)
            if follower is not None:
                follower.done(result.to_dict())
        if result.time_up and cfg.search.time_budget and not quiet:
            print_time_up(cfg.search.time_budget)
        print_search_result(result, names, json)


@cli.command(short_help="Work on a study that tuner search created (another box).")
@options.combined(options.SET)
@click.option("--storage", required=True, metavar="URL", help="SQLAlchemy URL of the study.")
@click.option("--study", "study_name", required=True, metavar="NAME", help="Study name.")
@options.TRIAL_RUNNING
def worker(
    overrides: tuple[str, ...],
    storage: str,
    study_name: str,
    workers: int | None,
    gpus: str | None,
    trials_per_gpu: int,
    events: Path | None,
    objective: str,
    json: bool,
    quiet: bool,
    debug: bool,
) -> None:
    """Join a study: read its config from the database and run trials until its budget is spent."""
    with _handled(debug):
        from tuner.engine.api import Parallel, join_study, joined_config
        from tuner.outputs.events import following
        from tuner.outputs.report import print_search_result

        cfg = joined_config(storage, study_name, overrides)
        with following(events) as follower:
            names, reporter = _reporter(cfg, quiet, follower)
            parallel = Parallel(workers, gpus, trials_per_gpu)
            result = join_study(cfg, storage, study_name, reporter, objective, parallel)
            if follower is not None:
                follower.done(result.to_dict())
        print_search_result(result, names, json)


@cli.command(short_help="Score one point of a config's space.")
@options.combined(options.CONFIG, options.SET)
@click.option(
    "--vector",
    metavar="V1,V2,...",
    help="Values of the searched hyperparameters, in the order of the config's space.",
)
@click.option(
    "--param",
    "assignments",
    multiple=True,
    metavar="NAME=VALUE",
    help="A searched hyperparameter by name (repeatable); the by-name form of --vector.",
)
@click.option("--seed", type=int, help="Seed of the splits and weights [default: search.seed].")
@options.combined(options.JSON, options.QUIET, options.DEBUG)
def evaluate(
    config: Path,
    overrides: tuple[str, ...],
    vector: str | None,
    assignments: tuple[str, ...],
    seed: int | None,
    json: bool,
    quiet: bool,
    debug: bool,
) -> None:
    """Score one point of CONFIG's space by bootstrap, exactly as the search does."""
    with _handled(debug):
        from tuner.config.space import SearchSpace
        from tuner.engine.api import evaluate_config
        from tuner.outputs.progress import stderr_console
        from tuner.outputs.report import print_score
        from tuner.training.evaluate import load_for_scoring

        cfg = tuner.load_config(config, overrides)
        params = SearchSpace(cfg.space).params_from_options(vector, assignments)
        dataset = load_for_scoring(cfg)  # data errors stay the only line on stderr
        if not quiet:
            stderr_console().print(f"evaluating {cfg.evaluation.splits} split(s)...")
        chosen = cfg.search.seed if seed is None else seed
        score, arch = evaluate_config(cfg, params, chosen, dataset)
        print_score(score, params, arch.describe(), json)


def _results(config: Path | None, storage: str | None, study: str | None) -> Any:
    from tuner.study.results import load_results, study_location

    return load_results(*study_location(config, storage, study))


@cli.command(short_help="List every trial of a study.")
@options.combined(options.STUDY_CONFIG, options.STORAGE, options.STUDY)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "json"]),
    default="table",
    show_default=True,
    help="Output format.",
)
@click.option(
    "--top",
    type=click.IntRange(min=1),
    metavar="N",
    help="Only the N best trials by search-time loss, best first [default: every trial].",
)
@options.combined(options.JSON, options.DEBUG)
def trials(
    config: Path | None,
    storage: str | None,
    study: str | None,
    fmt: str,
    top: int | None,
    json: bool,
    debug: bool,
) -> None:
    """Every trial of a study: state, parameters, loss, std, metrics, epochs, seconds, error."""
    with _handled(debug):
        from tuner.outputs.report import print_trials

        print_trials(_results(config, storage, study), "json" if json else fmt, top)


@cli.command(short_help="Show the best trial of a study.")
@options.combined(options.STUDY_CONFIG, options.STORAGE, options.STUDY, options.JSON, options.DEBUG)
def best(
    config: Path | None, storage: str | None, study: str | None, json: bool, debug: bool
) -> None:
    """The best completed trial of a study, with the network it decodes to."""
    with _handled(debug):
        from tuner.outputs.report import print_best
        from tuner.outputs.webpage import best_architecture

        results = _results(config, storage, study)
        results.best  # noqa: B018  (refuses a study without a completed trial)
        arch, note = best_architecture(results)
        print_best(results, arch.describe() if arch else note, json)


@cli.command(short_help="Write an HTML report of a study, with PNG plots.")
@options.combined(options.STUDY_CONFIG, options.STORAGE, options.STUDY)
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    default=Path("report.html"),
    show_default=True,
    help="The HTML file; the plots are written beside it as <name>-<plot>.png.",
)
@options.combined(options.JSON, options.DEBUG)
def report(
    config: Path | None, storage: str | None, study: str | None, out: Path, json: bool, debug: bool
) -> None:
    """One self-contained HTML page: convergence, parameters, splits, network, failures."""
    with _handled(debug):
        from tuner.outputs.report import print_written
        from tuner.outputs.webpage import write_report

        written = write_report(_results(config, storage, study), out)
        lines = [f"report  {written['html']} ({written['bytes']:,} bytes)"]
        lines += [f"plot    {p}" for p in written["plots"]]  # type: ignore[attr-defined]
        print_written(written, lines, json)


@cli.command(short_help="Train the winner's ensemble on all the data; save the model.")
@options.combined(options.STUDY_CONFIG, options.STORAGE, options.STUDY)
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    required=True,
    help="Model folder to write (refused when it exists and is not empty, unless --force).",
)
@click.option("--force", is_flag=True, help="Write into a non-empty --out folder.")
@options.combined(options.JSON, options.QUIET, options.DEBUG)
def export(
    config: Path | None,
    storage: str | None,
    study: str | None,
    out: Path,
    force: bool,
    json: bool,
    quiet: bool,
    debug: bool,
) -> None:
    """Train the winner's evaluation.splits networks on all the data, each as a trial trains
    on a split of it, and save the model averaging them to --out: the procedure whose loss
    `tuner best` reports (this replaces --seeds, which kept the best of several refits)."""
    with _handled(debug):
        from tuner.outputs.export import check_model_folder, export_model
        from tuner.outputs.progress import stderr_console
        from tuner.outputs.report import print_written

        results = _results(config, storage, study)
        check_model_folder(out, force)
        _start_frameworks_quietly(debug)
        if not quiet:
            members = results.config.evaluation.splits
            trial = results.best.number
            stderr_console().print(f"training trial {trial}'s {members} network(s) on all rows...")
        meta = export_model(results, out, force=force).meta
        score = meta["score"]
        lines = [
            f"model         {out}",
            f"trial         {meta['trial']}",
            f"architecture  {meta['architecture']['description']}",
            f"networks      {meta['architecture']['members']}, averaged",
            f"estimate      {score['estimate']}; search loss {score['search_loss']:.4f}",
            f"seconds       {meta['seconds']:.1f}",
        ]
        print_written(meta, lines, json)


@cli.command(short_help="Predict with an exported model.")
@click.argument("model", type=click.Path(path_type=Path))
@click.argument("data", type=click.Path(path_type=Path))
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="CSV file of predictions to write.",
)
@click.option("--id", "id_column", metavar="COLUMN", help="Column copied to the output as the id.")
@options.combined(options.JSON, options.DEBUG)
def predict(
    model: Path, data: Path, out: Path, id_column: str | None, json: bool, debug: bool
) -> None:
    """Apply MODEL (a folder from `tuner export`) to the CSV file DATA."""
    with _handled(debug):
        from tuner.outputs.export import predict_file
        from tuner.outputs.report import print_written

        _start_frameworks_quietly(debug)
        written = predict_file(model, data, out, id_column)
        print_written(written, [f"predictions  {out} ({written['rows']} rows)"], json)


@cli.command(short_help="Write a starter config for a CSV file.")
@click.argument("data", type=click.Path(path_type=Path))
@click.option("--target", required=True, metavar="COLUMN", help="The column to predict.")
@options.combined(options.DEBUG)
def init(data: Path, target: str, debug: bool) -> None:
    """Print a commented starter config for the CSV file DATA on stdout."""
    with _handled(debug):
        from tuner.outputs.report import print_text
        from tuner.outputs.starter import starter_config

        print_text(starter_config(data, target))


def main() -> None:
    cli(prog_name="tuner")


if __name__ == "__main__":
    sys.exit(main())
