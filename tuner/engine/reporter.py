"""The hooks a search calls as it goes, each a no-op here: a reporter overrides those it needs."""

from collections.abc import Mapping, Sequence

from tuner.study.store import TrialRecord
from tuner.study.winner import Winner


class Reporter:
    """What a search tells whoever watches it; each hook does nothing unless overridden."""

    def search_started(self, study: str, budget: int, done: int, rerun: int, end: str) -> None:
        """The search starts: its budget, trials done, interrupted ones to rerun, its end's plan."""

    def trial_started(self, trial: TrialRecord) -> None:
        """A trial starts."""

    def trial_finished(self, trial: TrialRecord, best: TrialRecord | None) -> None:
        """A trial ended (completed or failed); `best` is the best trial so far."""

    def slots_changed(self, running: Mapping[str, int | None]) -> None:
        """Which trial each worker slot runs (None: idle), with several slots."""

    def search_finished(self, trials: Sequence[TrialRecord]) -> None:
        """No trial is left to run."""

    def final_started(self, candidates: Sequence[TrialRecord], splits: int, todo: int) -> None:
        """The finalists' re-score starts: `todo` of them on `splits` fresh splits each."""

    def final_scored(self, trial: TrialRecord) -> None:
        """A finalist was re-scored (or its re-score failed): `trial.final`."""

    def confirm_started(self, trial: TrialRecord, splits: int) -> None:
        """The winner's confirmation on `splits` more fresh splits starts."""

    def confirm_scored(self, trial: TrialRecord) -> None:
        """The winner was confirmed (or its confirmation failed): `trial.confirm`."""

    def final_finished(self, winner: Winner) -> None:
        """The search is over: its winner and the loss it reports."""
