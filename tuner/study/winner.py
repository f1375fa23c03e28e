"""The trial a study reports, and its loss: the lowest of a few noisy means is biased low, so a
winner reports its confirmation when it has one: the estimate, on splits that did not choose
it, of the procedure `tuner export` saves (an ensemble of its networks, training/ensemble.py)."""

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tuner.study.noise import mean_noise, pooled_variance
from tuner.study.store import TrialRecord, TrialState

# Standard errors added to a search-time mean to rank it for the final re-score: a mean on few
# splits must be lower than a better-known one to rank as high.
CAUTION = 1.0


@dataclass(frozen=True)
class Winner:
    """The trial a study reports, and its loss: confirmed, else re-scored, else search-time."""

    trial: TrialRecord
    loss: float
    loss_std: float
    loss_se: float
    search_loss: float
    final_splits: int = 0
    final_candidates: int = 0  # the finalists the end kept (1: a lone one, maybe not re-scored)
    final_loss: float | None = None  # its mean on the final splits it was chosen on
    confirm_splits: int = 0
    members: int = 1  # networks averaged in the procedure that `loss` estimates

    @property
    def rescored(self) -> bool:
        """True when the finalists' re-score on fresh splits chose this winner."""
        return self.final_splits > 0

    @property
    def confirmed(self) -> bool:
        """True when `loss` comes from confirmation splits (a lone finalist's, without a
        re-score, too)."""
        return self.confirm_splits > 0

    @property
    def fresh(self) -> bool:
        """True when `loss` is on fresh splits (a confirmation's or a re-score's), not on the
        splits the search chose by."""
        return self.confirmed or self.rescored

    @property
    def reported_splits(self) -> int:
        if self.confirmed:
            return self.confirm_splits
        return self.final_splits if self.rescored else len(self.trial.split_losses)

    def describe(self) -> str:
        """`#11: loss 0.4612 ± 0.0150, an ensemble of 2 networks on 6 fresh splits`: the loss
        a user acts on, and what it is the loss of."""
        trial = self.trial
        text = f"#{trial.number}: loss {self.loss:.4f} ± {self.loss_se:.4f}"
        if self.confirmed:
            what = f"an ensemble of {self.members} networks" if self.members > 1 else "a network"
            return f"{text}, {what} on {self.reported_splits} fresh splits"
        if not self.rescored:
            splits = self.reported_splits
            text += f" (search-time, {splits} splits; a single network's, not re-scored"
            return f"{text}{_failed(trial)})"
        text += f" on {self.reported_splits} fresh splits (a single network's{_failed(trial)}"
        if _failed(trial) and self.final_candidates > 1:
            text += f"; the best of {self.final_candidates} finalists' means is biased low"
        return f"{text})"

    def to_dict(self) -> dict[str, Any]:
        """The keys `--json` adds to the winner's trial."""
        return {
            "loss": self.loss,
            "loss_std": self.loss_std,
            "loss_se": self.loss_se,
            "loss_splits": self.reported_splits,
            "search_loss": self.search_loss,
            "final_loss": self.final_loss,
            "final_splits": self.final_splits,
            "final_candidates": self.final_candidates,
            "confirm_splits": self.confirm_splits,
            "members": self.members,
        }


def _failed(trial: TrialRecord) -> str:
    """`; its confirmation failed: diverged` when it did, else ''."""
    confirm = trial.confirm
    if confirm is None or confirm.ok:
        return ""
    return f"; its confirmation failed: {confirm.error_kind}"


def ranked(trials: Sequence[TrialRecord]) -> list[TrialRecord]:
    """Completed trials from the lowest search-time loss up, one per distinct point."""
    done = [t for t in trials if t.state == TrialState.COMPLETE and t.loss is not None]
    distinct: list[TrialRecord] = []
    for trial in sorted(done, key=lambda t: (t.loss, t.number)):
        if all(trial.params != t.params for t in distinct):
            distinct.append(trial)
    return distinct


def finalist_order(trials: Sequence[TrialRecord], caution: float = CAUTION) -> list[TrialRecord]:
    """`ranked` by search-time mean plus `caution` standard errors: the finalists' order."""
    order = ranked(trials)
    pooled = pooled_variance(order)
    if pooled is None:
        return order

    def key(trial: TrialRecord) -> float:
        assert trial.loss is not None
        return trial.loss + caution * math.sqrt(mean_noise(trial, pooled))

    return sorted(order, key=key)


def finalists(order: Sequence[TrialRecord]) -> list[TrialRecord]:
    """The first trials of `finalist_order` re-scored on the same fresh splits as the first."""

    def splits(trial: TrialRecord) -> tuple[Any, ...] | None:
        return None if trial.final is None else (trial.final.seeds, trial.final.splits)

    first = splits(order[0]) if order else None
    return [] if first is None else list(itertools.takewhile(lambda t: splits(t) == first, order))


def winner(trials: Sequence[TrialRecord]) -> Winner | None:
    """The finalist with the lowest re-scored mean, else the first of `finalist_order` (its
    confirmation's loss when a lone end confirmed it)."""
    order = finalist_order(trials)
    if not order:
        return None
    group = finalists(order)
    scored = [t for t in group if t.final is not None and t.final.ok]
    if not scored:
        return _unscored(order[0])
    best = min(scored, key=lambda t: (t.final.loss, t.loss, t.number))  # type: ignore[union-attr]
    confirmed = best.confirm is not None and best.confirm.ok
    final, reported = best.final, best.confirm if confirmed else best.final
    assert final is not None and reported is not None and best.loss is not None
    loss = (reported.loss, reported.loss_std or 0.0, reported.loss_se, best.loss)
    splits, members = (reported.splits, confirm_members(best)) if confirmed else (0, 1)
    found = (final.splits, len(group), final.loss, splits, members)
    return Winner(best, *loss, *found)  # type: ignore[arg-type]


def _unscored(trial: TrialRecord) -> Winner:
    """The first finalist, not re-scored: confirmed (by a lone end, which re-scores a lone
    finalist only when it cannot confirm it), else at its search-time loss."""
    assert trial.loss is not None
    confirm = trial.confirm
    if confirm is not None and confirm.ok:
        assert confirm.loss is not None
        loss = (confirm.loss, confirm.loss_std or 0.0, confirm.loss_se, trial.loss)
        return Winner(trial, *loss, 0, 1, None, confirm.splits, confirm_members(trial))
    std = trial.loss_std or 0.0
    se = std / math.sqrt(max(1, len(trial.split_losses)))
    return Winner(trial, trial.loss, std, se, trial.loss)


def confirm_members(trial: TrialRecord) -> int:
    """The networks averaged in `trial`'s confirmation (stored beside it by the end of the
    search; 1, a single network, in a confirmation stored before ensembles)."""
    stored = trial.attrs.get("confirm")
    return int(stored.get("members", 1)) if isinstance(stored, Mapping) else 1
