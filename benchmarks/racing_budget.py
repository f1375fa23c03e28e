"""Under a time budget, what does racing buy? Whole searches on a surrogate of logged trials.

    python benchmarks/racing_budget.py LOG [LOG ...] --config CONFIG [--set KEY=VALUE ...]
        [--searches 60] [--budget 600] [--speed 1.0] [--noise-df DF]
        [--policies shipped,early,off,top1,post,hybrid,racefit,racemin,cautious,cautious-half,
         off-cautious,post-cautious]

Racing (tuner/racing.py) scores a trial that ranks in the top `search.race_top` on extra
rounds of splits. With a trial budget it costs time only; with a time budget every round is a
trial not run. This script runs `tuner`'s own proposer (`Proposer`, with the config's
acquisition and `evaluation.max_params` check), its time reserve (`budget.final_reserve`) and
its cut of the final re-score (`budget.fit_final`) on a simulated clock, against a surrogate
built from the trial lines `tuner search` printed (the `.log` files of benchmarks/results/).
`--budget 0` runs the config's trial budget instead, with no time budget.

- the true loss of a point and its split losses are benchmarks/surrogate.py's (a random forest
  of the logged losses, Gaussian split noise of 0.064, more above 0.7, or with `--noise-df DF`
  Student's t noise of the same spread);
- the seconds of one 2-split call are its forest of the logged trials' own seconds, times
  `--speed`, times a log-normal factor (sigma 0.25) per call; a racing round and a final call
  cost one call each;
- the search starts 15 s into the budget (process and TensorFlow start, the first trace), and
  each trial costs 0.3 s more (proposal, storage).

Each policy runs the same `--searches` seeds. For each it prints the mean true loss of the
winner (the finalist with the lowest mean on its fresh final splits, as `tuner search` picks
it, or the best search-time trial when no final re-score fits), trials run, racing seconds, the
final's finalists and splits, and each policy's paired difference to the shipped one.

Policies: `shipped` (tuner/racing.py's rank rule: a trial in the top `search.race_top` of at
least `search.init_points` others; replayed here on plain means, as there is no
split-difficulty baseline; without the time check `racefit` adds, as tuner was before
2026-12-02), `early` (the rule before 2026-12-01: the top `race_top` of at least `race_top`
others, so random start-up points were raced too), `off` (`race_top` 0), `top1` (the shipped
rule with `race_top` 1: only a trial that beats every other is raced), `post` (`racefit`, with
the finalists chosen by the GP's posterior mean at their points rather than by their
search-time means; before 2026-12-02's twelfth session it raced by the shipped rule), `hybrid`
(the shipped rule once `search.init_points` trials have completed; before that, a trial is
raced only when it beats every other, of at least `race_top`), `racefit` (the shipped rule,
less a racing round expected to run into the time kept for the final re-score: tuner's rule
since 2026-12-02) and `racemin` (the same, with only the smallest final re-score kept: the best
finalist alone on `MIN_SPLITS` splits); `cautious` and `cautious-half` (`racefit`, with the
finalists ranked by their mean plus one or half a standard error of it, as the noise told to
the GP: a mean on two splits must be lower than one on six to rank as high;
`winner.finalist_order` with its caution 1 or 0.5, tuner's finalist order since the second
2026-12-02 change; `racefit` ranks them by their means alone, as tuner did before);
`off-cautious` (no racing, finalists as `cautious`); `post-cautious` (`post`, ranked by the
posterior mean of the loss plus one posterior standard deviation). As in tuner, simulated trial
k has its own splits (`trial_seed`), so no policy's ranking adjusts for shared split difficulty
(before 2026-12-02's eleventh-session fix every simulated trial had the search's seed, and the
ranking made that adjustment).

Honesty: the loss each search reports for its winner (winner.py: on confirmation splits after
two or more finalists, else the winner's mean on its final splits, else its search-time loss)
minus its true loss, and how many searches had no time left for any final re-score.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tuner.config.schema import Config, load_config
from tuner.config.space import SearchSpace
from tuner.optimize.asking import trial_seed
from tuner.optimize.optimizer import Proposer
from tuner.search.budget import MIN_SPLITS, call_seconds, end_seconds, final_reserve, fit_final
from tuner.search.final import candidates, final_chunks
from tuner.search.racing import on_top
from tuner.study.store import TrialRecord, TrialState
from tuner.study.winner import finalist_order, ranked
from tuner.training.data import load_dataset
from tuner.training.evaluate import size_limit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: the repo root
from benchmarks.loss_fence import posterior
from benchmarks.surrogate import Surrogate, logged
from benchmarks.surrogate import fitted as surrogate_of

START = 15.0  # seconds before the first trial starts: process, TensorFlow, first trace
PER_TRIAL = 0.3  # seconds of proposal and storage per trial
BASELINE = 6.0  # seconds of the split-difficulty baseline at the end
POLICIES = (
    *("shipped", "early", "off", "top1", "post", "hybrid"),
    *("racefit", "racemin", "cautious", "cautious-half", "off-cautious", "post-cautious"),
)
FITTED = ("racefit", "cautious", "cautious-half", "post", "post-cautious")  # tuner's racing room
# Standard errors added to a trial's mean to rank it for the final re-score.
CAUTION = {"cautious": 1.0, "cautious-half": 0.5, "off-cautious": 1.0, "post-cautious": 1.0}


def load(paths: Sequence[Path], names: Sequence[str]) -> list[tuple[list[float], float, float]]:
    """Each distinct logged point with seconds: (values in `names` order, mean loss, seconds);
    a repeated point's lines merged (`surrogate.logged`)."""
    return [
        ([t.params[k] for k in names], t.loss, t.seconds)
        for t in logged(paths, names)
        if t.seconds is not None
    ]


def fitted(space: SearchSpace, trials: list, speed: float, df: float | None = None) -> Surrogate:
    """The surrogate of `load`'s trials, its calls `speed` times the logged seconds."""
    params = [dict(zip(space.names, t[0], strict=True)) for t in trials]
    losses, seconds = [t[1] for t in trials], [t[2] for t in trials]
    return surrogate_of(space, params, losses, seconds, speed, df)


def _room(config: Config, trials: Sequence[TrialRecord], left: float) -> float:
    """Seconds a racing round may take and end before the time kept for the end (tuner's
    `Deadline.room`)."""
    return left - end_seconds(config, trials, BASELINE)


def _least(config: Config, trials: Sequence[TrialRecord], left: float, each: float) -> float:
    """Seconds a racing round may take and leave the smallest final re-score that counts: the
    best finalist alone on `MIN_SPLITS` fresh splits, priced at the slowest of the finalists
    and this trial (`each` a call), and the baseline."""
    chosen = candidates(trials, config.search.final_candidates)
    splits = config.evaluation.splits
    slowest = max([call_seconds(t, splits) for t in chosen] + [each])
    calls = min(len(final_chunks(config)), math.ceil(MIN_SPLITS / splits))
    return left - calls * slowest - BASELINE


def _races(policy: str, config: Config, done: Sequence[TrialRecord], loss: float) -> bool:
    """Whether a trial of this mean loss is raced (again), given the completed trials: tuner's
    `on_top` with the policy's top and start."""
    search = config.search
    top = 1 if policy == "top1" else search.race_top
    if policy in ("off", "off-cautious") or top == 0:
        return False
    others = [t.loss for t in ranked(done)]
    if policy == "hybrid" and top <= len(others) < search.init_points:
        top = 1  # a random start-up point is raced when it beats every other
    start = top if policy in ("early", "hybrid") else search.init_points
    return on_top(others, loss, top, start)


@dataclass
class Outcome:
    truth: float  # the winner's true loss
    best: float  # the best true loss among the trials run
    trials: int
    racing: float  # seconds spent on racing rounds
    finalists: int
    final_splits: int
    among: float  # the best true loss among the finalists (the winner, when there is none)
    first_race: int | None  # the number of the first trial raced
    reported: float  # the loss the search reports for its winner
    unscored: bool  # no final re-score fitted: the winner's search-time loss is reported
    late: int  # racing rounds started though expected to run into the time kept for the end
    records: list[TrialRecord]  # the search's trials, each on its own splits (`trial_seed`)


def by_posterior(
    proposer: Proposer, trials: list[TrialRecord], caution: float = 0.0
) -> list[TrialRecord]:
    """The trials from the best GP posterior mean at their points, less `caution` posterior
    standard deviations, down."""
    mean, std = posterior(proposer, trials, [t.point for t in trials])
    return [trials[i] for i in np.argsort(-(mean - caution * std), kind="stable")]


def search(
    config: Config, surrogate: Surrogate, allowed: Callable, policy: str, seed: int
) -> Outcome:
    """One time-budgeted search on the simulated clock."""
    cfg = config.model_copy(update={"search": config.search.model_copy(update={"seed": seed})})
    search_cfg, splits = cfg.search, cfg.evaluation.splits
    budget = float(search_cfg.time_budget or math.inf)
    proposer = Proposer(surrogate.space, search_cfg, allowed)
    rng = np.random.default_rng(seed)
    clock, trials, racing, first_race, late = START, [], 0.0, None, 0
    while len(trials) < search_cfg.budget:
        if budget - clock <= final_reserve(cfg, trials, BASELINE):
            break
        point = proposer.propose(len(trials), trials)
        losses = surrogate.splits(point, splits, rng)
        own = surrogate.call(point, rng)
        clock += own + PER_TRIAL
        left = budget - clock
        losses, race, into = _raced(policy, cfg, surrogate, trials, point, losses, own, left, rng)
        clock, racing, late = clock + race, racing + race, late + into
        if race and first_race is None:
            first_race = len(trials)
        trials.append(
            TrialRecord(
                len(trials), TrialState.COMPLETE, point, surrogate.space.params(point),
                trial_seed(seed, len(trials)),
                loss=float(np.mean(losses)), split_losses=tuple(losses), seconds=own,
                race_seconds=race or None,
            )
        )  # fmt: skip
    left = max(0.0, budget - clock) if math.isfinite(budget) else None
    return _ending(policy, cfg, surrogate, proposer, trials, left, rng, (racing, first_race, late))


def _raced(
    policy: str, cfg: Config, surrogate: Surrogate, done: list[TrialRecord], point: Any,
    losses: list[float], own: float, left: float, rng: np.random.Generator,
) -> tuple[list[float], float, int]:  # fmt: skip
    """A trial's split losses after the racing rounds the policy runs (`left`: seconds left
    after its first call), the rounds' seconds, and how many started into the end's time."""
    splits, race, late = cfg.evaluation.splits, 0.0, 0
    while len(losses) < cfg.search.race_splits and _races(policy, cfg, done, np.mean(losses)):
        each = (own + race) / (len(losses) // splits)  # the mean call so far
        into_end = bool(done) and _room(cfg, done, left - race) < each
        if policy in FITTED and into_end:
            break  # the round would run into the end's time
        if policy == "racemin" and done and _least(cfg, done, left - race, each) < each:
            break  # the round would leave too little for the smallest final
        late += into_end
        losses = losses + surrogate.splits(point, splits, rng)
        race += surrogate.call(point, rng)
    return losses, race, late


def _ending(
    policy: str, cfg: Config, surrogate: Surrogate, proposer: Proposer,
    trials: list[TrialRecord], left: float | None, rng: np.random.Generator,
    racing: tuple[float, int | None, int],
) -> Outcome:  # fmt: skip
    """The search's final re-score in the time `left`, its winner and what it reports."""
    final = fit_final(cfg, trials, left, BASELINE).search
    if policy.startswith("post"):
        pool = by_posterior(proposer, trials, CAUTION.get(policy, 0.0))
    else:
        pool = finalist_order(trials, CAUTION.get(policy, 0.0))
    order = pool[: final.final_candidates]
    chosen, among, count, mean = _final(surrogate, order, final, rng, pool[0])
    finalists = min(len(pool), final.final_candidates)
    reported = mean
    if finalists > 1 and count and final.confirm_splits > 0:  # winner.py: the confirmation
        reported = float(np.mean(surrogate.splits(chosen.point, final.confirm_splits, rng)))
    best = min(surrogate.truth(t.point) for t in trials)
    seconds, first_race, late = racing
    return Outcome(
        surrogate.truth(chosen.point), best, len(trials), seconds,
        finalists, count, among, first_race, reported, count == 0, late, trials,
    )  # fmt: skip


def _final(
    surrogate: Surrogate, order: list[TrialRecord], final: Any, rng: np.random.Generator,
    best: TrialRecord,
) -> tuple[TrialRecord, float, int, float]:  # fmt: skip
    """The winner (the finalist with the lowest mean on its fresh splits, else `best`), the
    best true loss among the finalists, the fresh splits each got (independent noise: the
    real re-score's shared split difficulty, which pairs the finalists, is not modelled) and
    the winner's mean on them (its search-time loss without a final)."""
    count = final.final_splits if order else 0
    chosen, mean = best, best.loss
    if order and count:
        means = [float(np.mean(surrogate.splits(t.point, count, rng))) for t in order]
        chosen, mean = order[int(np.argmin(means))], min(means)
    among = min((surrogate.truth(t.point) for t in order), default=surrogate.truth(chosen.point))
    return chosen, among, count, mean


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("logs", nargs="+", type=Path)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--searches", type=int, default=60)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--budget", type=float, default=600.0, help="seconds; 0: trials")
    parser.add_argument("--speed", type=float, default=1.0)
    parser.add_argument("--noise-df", type=float, help="Student's t split noise (> 2)")
    parser.add_argument("--policies", default=",".join(POLICIES))
    args = parser.parse_args()
    config = load_config(args.config, args.overrides)
    if args.budget > 0:  # else the config's trial budget alone
        timed = {"time_budget": args.budget, "n_iter": 10**6}
        config = config.model_copy(update={"search": config.search.model_copy(update=timed)})
    space = SearchSpace(config.space)
    trials = load(args.logs, space.names)
    if len(trials) < 40:
        sys.exit(f"{len(trials)} distinct trials of this space in the logs; need 40 or more")
    surrogate = fitted(space, trials, args.speed, args.noise_df)
    allowed = size_limit(config, load_dataset(config.data))
    policies = args.policies.split(",")
    seeds = range(args.seed, args.seed + args.searches)
    rows: dict[str, list[Outcome]] = {p: [] for p in policies}
    for seed in seeds:
        for policy in policies:
            rows[policy].append(search(config, surrogate, allowed, policy, seed))
        print(f"seed {seed}: " + "  ".join(f"{p} {rows[p][-1].truth:.4f}" for p in policies),
              file=sys.stderr, flush=True)  # fmt: skip
    length = f"{args.budget:.0f} s" if args.budget > 0 else f"{config.search.budget} trials"
    print(f"{len(trials)} logged trials; {len(seeds)} searches of {length} per policy, "
          f"speed {args.speed}")  # fmt: skip
    _print_rows(rows)


def _print_rows(rows: dict[str, list[Outcome]]) -> None:
    """A line per policy: its means, and its winners' true loss paired against the first's."""
    policies = list(rows)
    base = np.array([o.truth for o in rows[policies[0]]])
    for policy in policies:
        out = rows[policy]
        truth = np.array([o.truth for o in out])
        d = truth - base
        se = d.std(ddof=1) / math.sqrt(len(d)) if len(d) > 1 else 0.0
        print(
            f"{policy:8s} winner's true loss {truth.mean():.4f}  best found "
            f"{np.mean([o.best for o in out]):.4f}  best finalist "
            f"{np.mean([o.among for o in out]):.4f}  trials {np.mean([o.trials for o in out]):.1f}"
            f"  racing {np.mean([o.racing for o in out]):.0f} s  finalists "
            f"{np.mean([o.finalists for o in out]):.1f} on "
            f"{np.mean([o.final_splits for o in out]):.1f}  - {policies[0]} "
            f"{d.mean():+.4f} ± {se:.4f}  {_honesty(out)}"
        )


def _honesty(out: Sequence[Outcome]) -> str:
    """Reported minus true loss of the winners (mean ± SE, and the mean |gap|), and the
    searches left with no final re-score."""
    gap = np.array([o.reported - o.truth for o in out])
    se = gap.std(ddof=1) / math.sqrt(len(gap)) if len(gap) > 1 else 0.0
    unscored = [o.reported - o.truth for o in out if o.unscored]
    text = (
        f"reported - true {gap.mean():+.4f} ± {se:.4f} (|gap| {np.abs(gap).mean():.4f}), "
        f"{len(unscored)} of {len(out)} with no final"
    )
    return text + (f" (their gap {np.mean(unscored):+.4f})" if unscored else "")


if __name__ == "__main__":
    main()
