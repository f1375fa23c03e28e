"""What a user takes home, on tables tuner never saw: hold out 20% of the rows, run the everyday
session on the rest (`tuner init`, `tuner search` with init's defaults, `tuner export`, `tuner
predict`), and score the exported model on the rows held out. Beside it: the loss `tuner best`
reported, and scikit-learn's logistic (or ridge) regression and gradient boosting fitted on the
same rows with tuner's preprocessing.

Targets: the mean |reported - held-out| within two standard errors of the held-out loss; the
exported network no worse than logistic/ridge regression on at least three of the four tables.

    python benchmarks/take_home.py > benchmarks/results/take-home.out

Tables (none of scikit-learn's bundled sets, kept for an independent check): the penguins in
data/ (island, 3 classes, 344 rows), vega_datasets' Seattle weather (5 classes, 1,461 rows) and
cars (miles per gallon, regression, 398 rows), statsmodels' fair affairs survey (binary, 6,366
rows). `pip install -e '.[bench]'` installs the two packages.
"""

import argparse
import importlib.resources
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import train_test_split

from tuner.config.schema import DataConfig
from tuner.training.data import load_dataset, make_preprocessor
from tuner.training.metrics import metrics

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Table:
    """A data set, its target and task, and the columns that are not features."""

    name: str
    load: Callable[[], pd.DataFrame]
    target: str
    task: str


def _package_csv(package: str, name: str) -> pd.DataFrame:
    return pd.read_csv(importlib.resources.files(package) / name)


def _weather() -> pd.DataFrame:
    frame = _package_csv("vega_datasets", "_data/seattle-weather.csv")
    frame["month"] = pd.to_datetime(frame.pop("date")).dt.month
    return frame


def _cars() -> pd.DataFrame:
    frame = pd.read_json(importlib.resources.files("vega_datasets") / "_data/cars.json")
    frame["Year"] = pd.to_datetime(frame["Year"]).dt.year
    return frame.drop(columns=["Name"]).dropna(subset=["Miles_per_Gallon"])


def _fair() -> pd.DataFrame:
    frame = _package_csv("statsmodels.datasets.fair", "fair.csv")
    frame["affair"] = np.where(frame.pop("affairs") > 0, "yes", "no")
    return frame


TABLES = (
    Table(
        "penguins", lambda: pd.read_csv(ROOT / "data" / "penguins.csv"), "island", "classification"
    ),
    Table("seattle-weather", _weather, "weather", "classification"),
    Table("cars", _cars, "Miles_per_Gallon", "regression"),
    Table("fair", _fair, "affair", "classification"),
)


def _tuner(*args: str, cwd: Path) -> str:
    """Run a tuner command as a user would; its stdout."""
    done = subprocess.run(
        [str(Path(sys.executable).parent / "tuner"), *args], cwd=cwd, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"tuner {' '.join(args)} failed: {done.stderr.strip()[-2000:]}")
    return done.stdout


def _row_losses(task: str, y: np.ndarray, predictions: np.ndarray) -> np.ndarray:
    """Per-row log loss (probabilities clipped as scikit-learn clips them) or squared error."""
    if task == "classification":
        probs = np.clip(predictions, np.finfo("float64").eps, 1.0)
        probs = probs / probs.sum(axis=1, keepdims=True)
        return -np.log(probs[np.arange(len(y)), y])
    return (predictions.reshape(-1) - y) ** 2


def _loss(task: str, rows: np.ndarray) -> tuple[float, float]:
    """Mean loss and its standard error (RMSE's by the delta method)."""
    mean, se = float(rows.mean()), float(rows.std(ddof=1) / np.sqrt(len(rows)))
    if task == "classification":
        return mean, se
    return float(np.sqrt(mean)), se / (2 * float(np.sqrt(mean)))


def _peers(task: str, train: Path, held_out: pd.DataFrame, target: str) -> dict[str, np.ndarray]:
    """Logistic/ridge regression and gradient boosting on tuner's preprocessing of `train`."""
    dataset = load_dataset(DataConfig(path=str(train), target=target, task=task))
    pipeline = make_preprocessor(dataset)
    x = pipeline.fit_transform(dataset.features)
    x_out = pipeline.transform(held_out[list(dataset.features.columns)])
    if task == "classification":
        models = {
            "linear": LogisticRegression(max_iter=2000),
            "boosting": HistGradientBoostingClassifier(random_state=0),
        }
        return {k: m.fit(x, dataset.target).predict_proba(x_out) for k, m in models.items()}
    models = {"linear": Ridge(), "boosting": HistGradientBoostingRegressor(random_state=0)}
    return {k: m.fit(x, dataset.target).predict(x_out) for k, m in models.items()}


def run_table(table: Table, seed: int, work: Path) -> dict:
    """The session on one table; the figures of its row in the results."""
    frame = table.load()
    stratify = frame[table.target] if table.task == "classification" else None
    train, held_out = train_test_split(frame, test_size=0.2, random_state=seed, stratify=stratify)
    train.to_csv(work / "train.csv", index=False)
    started = time.perf_counter()
    config = _tuner("init", "train.csv", "--target", table.target, cwd=work)
    config = config.replace("seed: 1}", f"seed: {seed}}}")
    (work / "search.yaml").write_text(config)
    _tuner("search", "search.yaml", "--quiet", cwd=work)
    best = json.loads(_tuner("best", "search.yaml", "--json", cwd=work))
    _tuner("export", "search.yaml", "--out", "model", "--quiet", cwd=work)
    held_out.drop(columns=[table.target]).to_csv(work / "held-out.csv", index=False)
    _tuner("predict", "model", "held-out.csv", "--out", "predictions.csv", cwd=work)
    seconds = time.perf_counter() - started
    meta = json.loads((work / "model" / "model.json").read_text())
    predicted = pd.read_csv(work / "predictions.csv")
    if table.task == "classification":
        classes = [str(c) for c in meta["classes"]]
        y = pd.Categorical(held_out[table.target].astype(str), categories=classes).codes
        network = predicted[[f"p_{c}" for c in classes]].to_numpy()
    else:
        y, network = held_out[table.target].to_numpy(dtype="float64"), predicted["prediction"]
        network = network.to_numpy()
    peers = _peers(table.task, work / "train.csv", held_out, table.target)
    n_classes = len(meta["classes"]) or 1
    scored = {"network": network, **peers}
    row = {"table": table.name, "rows": len(frame), "seed": seed, "seconds": round(seconds, 1)}
    row["reported"], row["reported_se"] = best["loss"], best.get("loss_se")
    for name, predictions in scored.items():
        loss, se = _loss(table.task, _row_losses(table.task, y, predictions))
        row[name] = {"loss": loss, "se": se, **metrics(table.task, y, predictions, n_classes)}
    return row


def _table(rows: list[dict]) -> str:
    lines = [
        "| table | rows | loss | held-out (exported) | reported by best | linear | boosting "
        "| main metric: network, linear |",
        "|---|---:|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        net, lin, boost = r["network"], r["linear"], r["boosting"]
        metric = "roc_auc" if "roc_auc" in net else "r2"
        cells = [
            f"{r['table']} (seed {r['seed']})",
            str(r["rows"]),
            "rmse" if metric == "r2" else "log loss",
            f"{net['loss']:.4f} ± {net['se']:.4f}",
            f"{r['reported']:.4f} ± {r['reported_se'] or 0:.4f}",
            f"{lin['loss']:.4f}",
            f"{boost['loss']:.4f}",
            f"{metric} {net[metric]:.3f}, {lin[metric]:.3f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _verdict(rows: list[dict]) -> list[str]:
    gaps = [abs(r["reported"] - r["network"]["loss"]) / r["network"]["se"] for r in rows]
    tables = sorted({r["table"] for r in rows}, key=[r["table"] for r in rows].index)
    mean = {  # each table's mean over its seeds: (network, linear)
        t: [np.mean([r[k]["loss"] for r in rows if r["table"] == t]) for k in ("network", "linear")]
        for t in tables
    }
    beats = [t for t, (net, lin) in mean.items() if net <= lin]
    runs = sum(r["network"]["loss"] <= r["linear"]["loss"] for r in rows)
    return [
        "|reported - held-out| in held-out standard errors: "
        + ", ".join(f"{g:.2f}" for g in gaps)
        + f"; mean {np.mean(gaps):.2f} (target: within 2)",
        f"the exported network no worse than linear on {len(beats)} of {len(tables)} tables "
        f"(mean over seeds; target: at least 3 of 4), in {runs} of {len(rows)} runs",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", default=",".join(t.name for t in TABLES))
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--json", type=Path, help="also write every row to this JSON file")
    parser.add_argument("--from-json", type=Path, help="print the tables of a --json file")
    args = parser.parse_args()
    wanted = args.tables.split(",")
    rows = json.loads(args.from_json.read_text()) if args.from_json else []
    for table in [t for t in TABLES if t.name in wanted and not args.from_json]:
        for seed in range(1, args.seeds + 1):
            with tempfile.TemporaryDirectory() as folder:
                rows.append(run_table(table, seed, Path(folder)))
            print(f"{table.name} seed {seed}: {json.dumps(rows[-1])}", file=sys.stderr, flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    print(_table(rows))
    print()
    print("\n".join(_verdict(rows)))


if __name__ == "__main__":
    main()
