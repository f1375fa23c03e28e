"""benchmarks/search_quality.py: end to end on a cheap noisy objective, its samplers and tables."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from benchmarks.quality_methods import (
    COURSE_POINT,
    RESCORE_SEED,
    Budget,
    CourseSampler,
    RandomSampler,
    Setting,
    course_bounds,
    tuner_command,
    with_evaluation,
)
from benchmarks.search_quality import TABLES, mean_se, paired, table_text, targets_text
from tests.objectives import noisy_bowl
from tuner.config.schema import load_config
from tuner.config.space import SearchSpace
from tuner.optimize.asking import trial_seed

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "search_quality.py"
CONFIG = ROOT / "configs" / "default.yaml"
COURSE = ROOT / "configs" / "course-log.yaml"
MISSING = [name for name in ("optuna", "keras_tuner") if importlib.util.find_spec(name) is None]
needs_bench = pytest.mark.skipif(
    bool(MISSING), reason=f"{' and '.join(MISSING)} not installed: pip install -e '.[bench]'"
)
needs_optuna = pytest.mark.skipif(
    "optuna" in MISSING, reason="optuna not installed: pip install -e '.[bench]'"
)
CHEAP = ["--objective", "tests.objectives:noisy_bowl", "--rescore-splits", "2", "--seeds", "1"]
PEERS = ["tuner", "random", "optuna", "kerastuner"]


def run_script(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, str(SCRIPT), "--config", str(CONFIG), *CHEAP, *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=300)


def cheap_loss(params: dict, seed: int, splits: int | None = None) -> float:
    """What the noisy bowl scores a point with this seed: the search's (the config's splits)
    or the re-scoring's."""
    config = load_config(CONFIG)
    config = with_evaluation(config, splits=splits or config.evaluation.splits)
    return noisy_bowl(config, None)(params, seed).loss


def check_cell(cell: dict, trials_run: int, method: str = "") -> None:
    """The reported best of a sampler is one of its search's own trials (seed trial_seed(1, k));
    tuner's is what `tuner search --json` printed. The benchmark's re-scoring is the same point
    on the fresh seed that every method shares."""
    params = cell["params"]
    if method != "tuner":
        search_losses = [cheap_loss(params, trial_seed(1, k)) for k in range(trials_run)]
        assert min(abs(cell["reported"] - loss) for loss in search_losses) < 1e-9
    assert cell["rescored"] == pytest.approx(cheap_loss(params, RESCORE_SEED, 2), abs=1e-12)
    assert cell["rescored"] != pytest.approx(cell["reported"], abs=1e-6)
    assert cell["rescore_split_losses"] and len(cell["rescore_split_losses"]) == 2


@pytest.mark.slow
@needs_bench
def test_equal_trials_end_to_end_then_rerun_skips(tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    args = ["--set", "search.init_points=2", "--trials", "5", "--tables", "equal-trials"]
    args += ["--results", str(results)]
    done = run_script(*args)
    assert done.returncode == 0, done.stderr[-3000:]
    for label in (
        "tuner (as shipped)",
        "random search",
        "Optuna TPE",
        "KerasTuner",
        "example point",
    ):
        assert label in done.stdout
    assert "equal trials: tuner" in done.stdout and "honesty: tuner mean reported" in done.stdout
    cells = json.loads(results.read_text())["cells"]
    assert sorted(cells) == sorted(
        ["reference/course-point/0", *(f"equal-trials/{m}/1" for m in PEERS)]
    )
    assert RESCORE_SEED not in {trial_seed(1, k) for k in range(5)}
    for method in PEERS:
        cell = cells[f"equal-trials/{method}/1"]
        assert cell.get("crash") is None and cell["no_winner"] is None and cell["trials"] == 5, cell
        check_cell(cell, 5, method)
        assert 1e-4 <= cell["params"]["learning_rate"] <= 0.03
    reference = cells["reference/course-point/0"]
    assert reference["params"] == {**reference["params"], **COURSE_POINT}
    assert reference["rescored"] == pytest.approx(cheap_loss(reference["params"], RESCORE_SEED, 2))

    again = run_script(*args)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stderr.count("finished before; skipped") == 5
    assert json.loads(results.read_text())["cells"] == cells
    assert again.stdout.splitlines()[1:] == done.stdout.splitlines()[1:]

    other = run_script(*[a if a != "5" else "4" for a in args])
    assert other.returncode == 2
    assert other.stderr.strip().splitlines()[-1].startswith("error: --results: ")
    assert "other trials" in other.stderr


@pytest.mark.slow
@needs_optuna
def test_equal_time_runs_every_method_until_the_time_is_spent(tmp_path: Path) -> None:
    # tuner, random search and Optuna on tuner's evaluator, the course's two setups on theirs
    # (here all the cheap objective), each for the same seconds; every winner re-scored on the
    # same fresh splits.
    methods = list(TABLES["equal-time"])
    results = tmp_path / "results.json"
    done = run_script(
        *["--tables", "equal-time", "--methods", ",".join(methods), "--time", "4"],
        *["--results", str(results)],
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for label in ("tuner (as shipped)", "random search", "Optuna TPE", "linear learning rate"):
        assert label in done.stdout
    assert "log10 learning rate" in done.stdout and "equal time, peers: tuner" in done.stdout
    cells = json.loads(results.read_text())["cells"]
    for method in methods:
        cell = cells[f"equal-time/{method}/1"]
        assert (
            cell.get("crash") is None
            and cell["no_winner"] is None
            and cell["wall_s"] >= 4
            and cell["trials"] >= 1
        ), cell
        check_cell(cell, cell["trials"], method)
    assert 0 <= cells["equal-time/course-linear/1"]["params"]["learning_rate"] <= 0.03
    assert 1e-4 <= cells["equal-time/course-log/1"]["params"]["learning_rate"] <= 0.03


@pytest.mark.parametrize(
    ("methods", "missing"),
    [("tuner,optuna,random", "optuna"), (",".join(PEERS), "keras_tuner and optuna")],
)
def test_a_missing_optional_package_names_the_install_command(
    tmp_path: Path, methods: str, missing: str
) -> None:
    # Both packages made unimportable (a None in sys.modules), whether installed here or not.
    argv = [str(SCRIPT), "--config", str(CONFIG), "--methods", methods]
    argv += ["--results", str(tmp_path / "r.json")]
    code = (
        "import runpy, sys; sys.modules['optuna'] = sys.modules['keras_tuner'] = None; "
        f"sys.argv = {argv!r}; runpy.run_path(sys.argv[0], run_name='__main__')"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stderr.strip().splitlines()[-1] == (
        f"error: {missing} not installed: pip install -e '.[bench]' "
        "(or leave those methods out with --methods)"
    )
    assert not (tmp_path / "r.json").exists()


def test_tuner_runs_as_shipped_with_the_same_budget() -> None:
    config = load_config(CONFIG, ["search.init_points=2"])
    setting = Setting(CONFIG, ("search.init_points=2",), config, None)  # type: ignore[arg-type]
    trials = tuner_command(setting, 3, Budget(trials=30), Path("out"))
    assert trials[1:5] == ["-m", "tuner.cli.commands", "search", str(CONFIG)]
    sets = [trials[i + 1] for i, item in enumerate(trials) if item == "--set"]
    assert sets == [
        "search.init_points=2",
        "search.seed=3",
        "search.init_points=2",
        "search.n_iter=28",
    ]
    timed = tuner_command(setting, 3, Budget(seconds=600), Path("out"))
    assert timed[timed.index("--time-budget") + 1] == "10m"
    # No trial longer than the budget, nor than the config's own timeout.
    timeout = min(600, config.evaluation.timeout or 600)
    assert f"evaluation.timeout={timeout}" in timed and "search.n_iter=1000000" in timed
    assert Budget(seconds=90).trial_timeout(with_evaluation(config, timeout=30.0)) == 30
    assert Budget(trials=5).trial_timeout(config) == config.evaluation.timeout


def test_random_search_is_uniform_in_tuners_scaled_space() -> None:
    space = SearchSpace(load_config(CONFIG).space)
    sampler = RandomSampler(space, seed=1)
    draws = [sampler.ask() for _ in range(4000)]
    log_lr = np.log10([d["learning_rate"] for d in draws])
    low, high = math.log10(1e-4), math.log10(0.03)
    assert low <= log_lr.min() and log_lr.max() <= high
    # uniform in log space: each decade-wide slice gets its share, not the top one most
    assert np.mean(log_lr < low + 1) == pytest.approx(1 / (high - low), abs=0.03)
    assert all(d["batch_size"] == 32 and d["batch_norm"] is False for d in draws[:5])


def test_course_setup_bounds_are_the_courses() -> None:
    config = load_config(COURSE, ["data.path=/nonexistent.csv"])
    linear, fixed = course_bounds(config, log_lr=False)
    assert linear == {
        "dropout": (0.0, 0.499),
        "learning_rate": (0.0, 0.1),
        "neuron_pct": (0.01, 1.0),
        "neuron_shrink": (0.01, 1.0),
    }
    assert fixed == {"batch_norm": False, "batch_size": 32, "l2": 0.0, "optimizer": "adam"}
    log, _ = course_bounds(config, log_lr=True)
    assert log["log10_learning_rate"] == pytest.approx((-4.0, -1.0))
    sampler = CourseSampler(config, seed=1, log_lr=True)
    rates = []
    for _ in range(12):  # 10 random points, then the Gaussian process's suggestions
        params = sampler.ask()
        rates.append(params["learning_rate"])
        sampler.tell(abs(math.log10(params["learning_rate"]) + 3), "")
    assert all(1e-4 <= r <= 0.1 for r in rates)


@needs_bench
def test_optuna_and_kerastuner_propose_within_the_space_with_log_ranges(tmp_path: Path) -> None:
    from benchmarks.quality_methods import KerasTunerSampler, OptunaSampler

    space = SearchSpace(load_config(CONFIG).space)
    for sampler in (OptunaSampler(space, 1), KerasTunerSampler(space, 1, 20, tmp_path)):
        for k in range(14):  # past both samplers' random start-up
            params = sampler.ask()
            assert params is not None and set(params) == {*space.names, *space.fixed}
            # (KerasTuner's log scale can land an ulp outside: 0.030000000000000002)
            assert 1e-4 <= params["learning_rate"] <= 0.03 * (1 + 1e-12)
            assert 0.002 <= params["neuron_pct"] <= 0.05 * (1 + 1e-12)
            sampler.tell(None if k == 3 else float(params["dropout"]), "failed")


def _cell(method: str, seed: int, reported: float, rescored: float | None, table: str) -> dict:
    error = None if rescored is not None else "diverged"
    return {
        "table": table,
        "method": method,
        "seed": seed,
        "reported": reported,
        "rescored": rescored,
        "rescore_error": error,
        "no_winner": None,
        "trials": 30,
        "wall_s": 100.0,
    }


def test_tables_pair_seeds_and_count_a_failed_rescoring_as_worst() -> None:
    cells = [
        _cell("tuner", 1, 0.66, 0.665, "equal-trials"),
        _cell("tuner", 2, 0.65, 0.655, "equal-trials"),
        _cell("random", 1, 0.64, 0.67, "equal-trials"),
        _cell("random", 2, 0.64, 0.68, "equal-trials"),
        _cell("optuna", 1, 0.60, 0.64, "equal-trials"),
        _cell("optuna", 2, 0.62, None, "equal-trials"),
        _cell("optuna", 3, 0.62, 0.60, "equal-trials"),  # no tuner seed 3: not paired
    ]
    seeds, means = paired(cells, ["tuner", "random", "optuna"])
    assert seeds == [1, 2] and means["tuner"] == pytest.approx(0.66)
    assert means["optuna"] == math.inf
    text = targets_text(cells)
    assert "tuner 0.6600 vs the best other, random, 0.6750" in text and ": met" in text
    honesty = (
        "honesty: tuner mean reported - re-scored -0.0050 over 2 searches (needs within ±0.01)"
    )
    assert f"{honesty}: met; mean |reported - re-scored| 0.0050" in text
    table = table_text("equal-trials", cells[:4], None, "30 trials each")
    # Optimism is re-scored - reported: positive when the reported loss was too good.
    assert "| tuner (as shipped) | 2 | 0.6600 ± 0.0050 | 0.6550 | 0.005 ± 0.000 |" in table
    random_row = "| random search (tuner's scaled space) | 2 | 0.6750 ± 0.0050 | 0.6400 | 0.035 ±"
    assert random_row in table
    assert "beside it, random: mean reported - re-scored -0.0350" in text
    assert mean_se([0.5]) == "0.5000" and mean_se([]) == "-"


def test_equal_time_target_needs_a_hundredth_and_0_665() -> None:
    cells = [
        _cell("tuner", 1, 0.66, 0.664, "equal-time"),
        _cell("course-log", 1, 0.66, 0.672, "equal-time"),
    ]
    assert "equal time: tuner 0.6640" in targets_text(cells)
    assert "(seeds [1]; needs tuner <= 0.6620 and <= 0.665): NOT met" in targets_text(cells)
    cells[1]["rescored"] = 0.675
    assert "and <= 0.665): met" in targets_text(cells)


def test_the_equal_time_table_has_random_search_and_optuna_beside_the_course() -> None:
    cells = [
        _cell("tuner", 1, 0.66, 0.664, "equal-time"),
        _cell("random", 1, 0.64, 0.668, "equal-time"),
        _cell("optuna", 1, 0.63, 0.662, "equal-time"),
        _cell("course-log", 1, 0.66, 0.680, "equal-time"),
    ]
    table = table_text("equal-time", cells, None, "600 s each")
    rows = [line.split(" |")[0] for line in table.splitlines() if line.startswith("| ")][1:]
    assert rows == [
        "| tuner (as shipped)",
        "| random search (tuner's scaled space)",
        "| Optuna TPE",
        "| course setup (bayes_opt + Keras fit), log10 learning rate",
    ]
    text = targets_text(cells)
    assert "equal time: tuner 0.6640 vs course setup with log10 learning rate 0.6800" in text
    assert "equal time, peers: tuner 0.6640 vs the best other, optuna, 0.6620" in text
    assert text.splitlines()[3].endswith("NOT met")
    assert "equal time, peers" not in targets_text(cells[:1] + cells[3:])


def test_seeds_are_one_to_n_or_a_list_to_add_to_a_results_file() -> None:
    from benchmarks.search_quality import parse, plan

    args = parse(["--config", str(CONFIG), "--seeds", "5,3,4", "--tables", "equal-time"])
    args.methods = ["tuner", "course-log"]
    assert plan(args) == [
        ("equal-time", method, seed) for seed in (3, 4, 5) for method in ("tuner", "course-log")
    ]
    assert parse(["--config", str(CONFIG), "--seeds", "2"]).seeds == [1, 2]
    for bad in ("0", "2,0", ","):
        with pytest.raises(SystemExit):
            parse(["--config", str(CONFIG), "--seeds", bad])


def test_the_course_setups_winner_is_rescored_without_the_parameter_limit() -> None:
    # The course's setup searches with no parameter limit, so a winner over max_params is a
    # fair pick; the re-score must not count it as failed. Real training, tiny and short.
    from benchmarks.quality_methods import UNLIMITED, Rescorer
    from benchmarks.search_quality import refused_by_limit, rescore_unlimited
    from tuner.training.evaluate import load_for_scoring

    overrides = ("evaluation.max_params=50", "evaluation.epochs=3")
    config = load_config(CONFIG, list(overrides))
    setting = Setting(CONFIG, overrides, config, load_for_scoring(config))
    point = {**SearchSpace(config.space).fixed, **COURSE_POINT}
    rescorer = Rescorer(setting, 2)
    try:
        limited = rescorer(point)
        stored = {"method": "course-log", "reported": 0.7, "params": point, **limited}
        assert refused_by_limit(stored) and "course-log" in UNLIMITED
        assert not refused_by_limit({**stored, "method": "tuner"})
        redone = rescore_unlimited("equal-time/course-log/1", stored, rescorer)
    finally:
        rescorer.close()
    assert limited["rescored"] is None and limited["rescore_error"].startswith("too_large")
    assert "rescore_error" not in redone and not refused_by_limit(redone)
    assert redone["reported"] == 0.7 and redone["params"] == point
    assert 0 < redone["rescored"] < 5 and len(redone["rescore_split_losses"]) == 2


def _children(parent: int, marker: str) -> list[int]:
    """Live (not zombie) processes whose parent is `parent` and whose command has `marker`."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            command = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == parent and fields[0] != "Z" and marker in command:
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads processes from /proc (Linux)")
def test_sigterm_stops_the_tuner_search_it_runs(tmp_path: Path) -> None:
    # Python's default SIGTERM ended the script at once and left its `tuner search` running.
    command = [sys.executable, str(SCRIPT), "--config", str(CONFIG), *CHEAP]
    command += ["--tables", "equal-time", "--methods", "tuner", "--time", "300"]
    command += ["--results", str(tmp_path / "results.json")]
    log = tmp_path / "stderr.txt"
    with log.open("wb") as stderr:  # a file, not a pipe: the search would hold a pipe open
        script = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=stderr)
    children: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while not children and time.monotonic() < deadline and script.poll() is None:
            time.sleep(0.2)
            children = _children(script.pid, "--time-budget")
        assert children, f"no tuner search started; the script: {log.read_text()[-2000:]}"
        script.send_signal(signal.SIGTERM)
        script.wait(timeout=60)
        assert script.returncode == 128 + signal.SIGTERM, log.read_text()[-2000:]
        assert "terminated; finished cells are kept" in log.read_text()
        assert not [pid for pid in children if _alive(pid)], "its tuner search still runs"
    finally:
        script.kill()
        for pid in children:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
