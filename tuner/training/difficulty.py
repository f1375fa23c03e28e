"""Split difficulty: how much harder or easier a set of held-out parts is than held-out parts in
general, measured by a baseline model, so that it can be taken out of the winner's reported loss.

Some held-out parts are harder than others for every model alike. On the course's data the
per-split losses of different networks on the same 20 splits correlate at 0.95 (0.97 on the
penguins), and a logistic regression's losses on them at 0.93 (0.97). A winner's mean on 10
confirmation splits is therefore off by about as much as those 10 splits are hard. A baseline
(logistic regression for classification, ridge for regression) fitted on each of the same splits
measures that: its mean there against its mean on `search.difficulty_splits` other fresh splits.
The reported loss subtracts the difference, scaled by how the finalists' split losses move with
the baseline's (a control variate):

    adjusted = mean(loss_i) - slope * (mean(baseline_i) - reference)

The slope is the within-finalist least-squares slope of split loss on baseline loss over the
final and confirmation splits, clipped to [0, 2]; 0 (no adjustment) with fewer than
`MIN_PAIRS` pairs. The confirmation's mean is unbiased already; this makes it less noisy, as
long as the baseline's difficulty is the networks'. No Keras import; the baseline needs
scikit-learn only.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from tuner.config.schema import Config
    from tuner.training.data import Dataset, PreparedSplit

DIFFICULTY_TAG = 0x64696666  # "diff"
MIN_PAIRS = 6  # (split loss, baseline loss) pairs below which no slope is fitted
MAX_SLOPE = 2.0
MIN_REFERENCE = 10  # reference splits below which (a time budget's cut) nothing is adjusted


@dataclass(frozen=True)
class Difficulty:
    """The baseline's losses on a reported score's splits (`seeds`, `splits`) and on
    `reference_splits` other fresh splits (from `reference_seed`), and the fitted slope."""

    seeds: tuple[int, ...]
    splits: int
    baseline: tuple[float, ...]  # on each of the reported score's splits
    reference_seed: int
    reference_splits: int
    reference: float  # the baseline's mean over the reference splits
    reference_std: float
    slope: float
    pairs: int  # the pairs the slope was fitted on
    slope_se: float = 0.0
    finalists: tuple[int, ...] = ()  # the trials whose final splits gave pairs

    @property
    def shift(self) -> float:
        """How much harder the reported splits are than the reference ones, in the loss."""
        return self.slope * (float(np.mean(self.baseline)) - self.reference)

    def adjusted(self, losses: Sequence[float]) -> tuple[float, float]:
        """(adjusted mean, its standard error) of `losses`, one per reported split.

        The error adds the spread left once difficulty is taken out, the reference's own error
        and the slope's (over the difference it scales)."""
        own = np.asarray(losses, dtype="float64")
        left = own - self.slope * np.asarray(self.baseline, dtype="float64")
        spread = float(np.std(left, ddof=1)) if len(left) > 1 else 0.0
        ref_se = self.reference_std / math.sqrt(max(1, self.reference_splits))
        gap = float(np.mean(self.baseline)) - self.reference
        parts = [spread**2 / max(1, len(left)), (self.slope * ref_se) ** 2]
        return float(own.mean()) - self.shift, math.sqrt(sum(parts) + (gap * self.slope_se) ** 2)

    def scores(self, seeds: Sequence[int], splits: int) -> bool:
        """True when made for a score on these seeds and splits."""
        return (self.seeds, self.splits) == (tuple(seeds), splits)

    def holds(self, seeds: Sequence[int], splits: int, reference_splits: int) -> bool:
        """True when made for a score on these seeds and splits, with this many reference
        splits (so a resumed search keeps it)."""
        return self.scores(seeds, splits) and self.reference_splits == reference_splits

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (also how it is stored)."""
        data = asdict(self)
        for key in ("seeds", "baseline", "finalists"):
            data[key] = list(data[key])
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Difficulty:
        """Back from the stored JSON."""
        keys = ("seeds", "baseline", "finalists")
        return cls(**{**data, **{key: tuple(data.get(key) or ()) for key in keys}})


def slope(groups: Sequence[tuple[Sequence[float], Sequence[float]]]) -> tuple[float, int, float]:
    """(slope, pairs, its standard error): the pooled within-group least-squares slope of loss
    on baseline loss, over groups of (losses, baseline losses) on the same splits; each group
    is one point, so the points' own levels do not count. Clipped to [0, `MAX_SLOPE`]; 0 below
    `MIN_PAIRS` pairs."""
    xs, ys = [], []
    for losses, baseline in groups:
        y, x = np.asarray(losses, dtype="float64"), np.asarray(baseline, dtype="float64")
        if len(y) >= 2 and len(y) == len(x) and np.all(np.isfinite(y)):
            xs.append(x - x.mean())
            ys.append(y - y.mean())
    pairs = sum(len(x) for x in xs)
    dx, dy = (np.concatenate(xs), np.concatenate(ys)) if xs else (np.zeros(0), np.zeros(0))
    within = float(dx @ dx)
    if pairs < MIN_PAIRS or within <= 0.0:
        return 0.0, pairs, 0.0
    fitted = float(dx @ dy) / within
    free = max(1, pairs - len(xs) - 1)
    se = math.sqrt(float(np.sum((dy - fitted * dx) ** 2)) / free / within)
    return min(MAX_SLOPE, max(0.0, fitted)), pairs, se


def reference_seed(search_seed: int) -> int:
    """The seed of the reference splits: apart from the search's, final and confirmation
    seeds by its entropy (a 31-bit draw, as rescoring.fresh_seed's)."""
    state = np.random.SeedSequence([search_seed, DIFFICULTY_TAG]).generate_state(1)[0]
    return int(state >> 1)


def baseline_losses(
    dataset: Dataset, seed: int, splits: int, test_size: float
) -> tuple[float, ...]:
    """The baseline's held-out loss on each of the `splits` splits from `seed`, the splits a
    network scored with that seed trains and is measured on: log loss of a logistic regression
    (classification) or RMSE of a ridge regression, on the same preprocessing."""
    from tuner.training.data import make_splits, prepare_split

    parts = [
        prepare_split(dataset, train, test)
        for train, test in make_splits(dataset, splits, test_size, seed)
    ]
    losses = _scores(dataset, parts)
    if not all(math.isfinite(x) for x in losses):
        raise ValueError(f"the baseline's loss is not finite on a split from seed {seed}")
    return losses


def part_baselines(dataset: Dataset, parts: Sequence[PreparedSplit]) -> tuple[float, ...]:
    """The baseline's held-out loss on each prepared split; empty when any is not finite or
    a fit fails (a trial is then compared by its plain losses)."""
    try:
        losses = _scores(dataset, parts)
    except (ValueError, ArithmeticError):
        return ()
    return losses if all(math.isfinite(x) for x in losses) else ()


def _scores(dataset: Dataset, parts: Sequence[PreparedSplit]) -> tuple[float, ...]:
    from sklearn.exceptions import ConvergenceWarning
    from threadpoolctl import threadpool_limits

    # One BLAS thread: with more, their spinning made these small fits 12x slower here.
    with threadpool_limits(1), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return tuple(_fit_and_score(dataset, part) for part in parts)


def _fit_and_score(dataset: Dataset, part: PreparedSplit) -> float:
    if dataset.task == "classification":
        from sklearn.linear_model import LogisticRegression
        from sklearn.metrics import log_loss

        # tol 1e-3: a third of the default's iterations, the same losses to 1e-3 (course data)
        model = LogisticRegression(tol=1e-3, max_iter=1000).fit(part.x_train, part.y_train)
        probs = np.zeros((len(part.y_test), dataset.n_outputs))
        probs[:, model.classes_] = model.predict_proba(part.x_test)
        probs /= probs.sum(axis=1, keepdims=True)  # float32 inputs: sums off 1 by 1e-7
        return float(log_loss(part.y_test, probs, labels=list(range(dataset.n_outputs))))
    from sklearn.linear_model import Ridge

    model = Ridge().fit(part.x_train, part.y_train)
    error = model.predict(part.x_test) - part.y_test
    return float(np.sqrt(np.mean(error**2)))


def baseline_fits(config: Config) -> int:
    """The baseline fits at the end of a search: on the reference, final and confirmation
    splits (0 when `search.difficulty_splits` or the final re-score is off)."""
    search = config.search
    if search.difficulty_splits <= 0 or search.final_candidates <= 0:
        return 0
    return search.difficulty_splits + search.final_splits + search.confirm_splits


def fit_seconds(dataset: Dataset, test_size: float) -> float:
    """Seconds of one baseline fit on this data, timed once."""
    started = time.perf_counter()
    baseline_losses(dataset, 0, 1, test_size)
    return time.perf_counter() - started
