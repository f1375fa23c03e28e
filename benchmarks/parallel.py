"""Parallel workers on one study: ask latency, duplicates and throughput; real tiny networks.

    python benchmarks/parallel.py [--workers 1,2,4,8,16,32] [--trials 64] [--sleep 0.2]
                                  [--skip-networks] [--postgres URL]

Part 1, the cheap objective: N threads in one process, each with its own database connection,
loop ask -> sleep (the "trial") -> tell on one study until `--trials` have completed. It times
every `Storage.ask` (the serialised transaction: lock, stale check, optimiser rebuilt from the
trials with the constant liar, insert) and counts duplicates: a fresh point proposed while an
identical point was running. SQLite is a file in a temporary folder; PostgreSQL is
`--postgres URL` (an admin URL; a database is created on it) or a throwaway server started
from the local binaries (tests/postgres.py).

Part 2, real tiny networks: `tuner search` on the tests' tiny data set (150 rows, 2 splits,
4 epochs) with --workers 1 and 2, as fresh processes (TensorFlow's start included).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import make_tiny_frame, tiny_config_dict  # noqa: E402
from tests.objectives import bowl_loss  # noqa: E402
from tests.postgres import fresh_database, throwaway_server  # noqa: E402
from tuner.config.schema import validate_config  # noqa: E402
from tuner.optimize.asking import Asker  # noqa: E402
from tuner.study.store import Storage, TrialState, sqlite_url  # noqa: E402


def _config(trials: int) -> dict:
    raw = tiny_config_dict(Path("/unused.csv"), search={"init_points": 8, "n_iter": trials - 8})
    return raw


def _loop(url: str, raw: dict, sleep: float, latencies: list[float]) -> None:
    storage = Storage(url)
    asker = Asker(validate_config(raw))
    study = storage.get_study("bench")
    try:
        while True:
            started = time.perf_counter()
            trial = storage.ask(study, asker.choose, grace=120).trial
            latencies.append(time.perf_counter() - started)
            if trial is None:
                return
            time.sleep(sleep)
            storage.finish_trial(trial, state="complete", loss=bowl_loss(trial.params))
    finally:
        storage.close()


def _duplicates(url: str) -> int:
    storage = Storage(url)
    trials = storage.trials(storage.get_study("bench"))
    storage.close()
    seen: dict[str, list] = {}
    count = 0
    for trial in (t for t in trials if t.retry_of is None):
        key = json.dumps(trial.point, sort_keys=True)
        count += key in seen
        seen.setdefault(key, []).append(trial)
    assert all(t.state == TrialState.COMPLETE for t in trials)
    return count


def cheap_run(url: str, workers: int, trials: int, sleep: float) -> dict:
    raw = _config(trials)
    setup = Storage(url)
    setup.create_study("bench", raw)
    setup.close()
    latencies: list[float] = []
    threads = [
        threading.Thread(target=_loop, args=(url, raw, sleep, latencies)) for _ in range(workers)
    ]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    ordered = sorted(latencies)
    return {
        "workers": workers,
        "median_ask_ms": 1000 * statistics.median(ordered),
        "p95_ask_ms": 1000 * ordered[int(0.95 * (len(ordered) - 1))],
        "duplicates": _duplicates(url),
        "trials_per_min": 60 * trials / seconds,
    }


def networks_run(workers: int, trials: int) -> float:
    with tempfile.TemporaryDirectory() as folder:
        csv = Path(folder) / "tiny.csv"
        make_tiny_frame().to_csv(csv, index=False)
        config = Path(folder) / "tiny.yaml"
        search = {"init_points": 4, "n_iter": trials - 4}
        config.write_text(yaml.safe_dump(tiny_config_dict(csv, search=search)))
        command = [sys.executable, "-m", "tuner.cli.commands", "search", str(config), "--quiet",
                   "--workers", str(workers), "--out", folder]  # fmt: skip
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, cwd=ROOT)
        return 60 * trials / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", default="1,2,4,8,16,32")
    parser.add_argument("--trials", type=int, default=64)
    parser.add_argument("--sleep", type=float, default=0.2)
    parser.add_argument("--network-trials", type=int, default=12)
    parser.add_argument("--skip-networks", action="store_true")
    parser.add_argument("--postgres", help="admin URL of a PostgreSQL server")
    args = parser.parse_args()
    counts = [int(n) for n in args.workers.split(",")]
    print("| backend | workers | median ask (ms) | p95 ask (ms) | duplicates | trials/min |")
    print("|---|---:|---:|---:|---:|---:|")
    with contextlib.ExitStack() as stack:
        admin = args.postgres or stack.enter_context(throwaway_server())
        for backend in ("sqlite", "postgresql"):
            for workers in counts:
                with tempfile.TemporaryDirectory() as folder:
                    url = sqlite_url(Path(folder) / "b.db")
                    if backend == "postgresql":
                        url = fresh_database(admin)
                    r = cheap_run(url, workers, args.trials, args.sleep)
                print(f"| {backend} | {workers} | {r['median_ask_ms']:.0f} | "
                      f"{r['p95_ask_ms']:.0f} | {r['duplicates']} | {r['trials_per_min']:.0f} |",
                      flush=True)  # fmt: skip
    if not args.skip_networks:
        for workers in (1, 2):
            rate = networks_run(workers, args.network_trials)
            print(f"tiny networks, {workers} worker(s): {rate:.1f} trials/min", flush=True)


if __name__ == "__main__":
    main()
