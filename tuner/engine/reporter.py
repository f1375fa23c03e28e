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

    def trial_progress(self, trial: TrialRecord, epoch: int, loss: float) -> None:
        """A running trial ended `epoch` (from 1) with mean held-out loss `loss` (at most about
        twice a second per trial, and only from objectives that report epochs)."""

    def eta_changed(self, seconds: float | None) -> None:
        """The search's estimated seconds left, its end included (None: not known yet); called
        before each `trial_finished`."""

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


class Tee(Reporter):
    """Hands every hook to each of `reporters` in turn: the console and an events file."""

    def __init__(self, *reporters: Reporter) -> None:
        self.reporters = reporters

    def search_started(self, study: str, budget: int, done: int, rerun: int, end: str) -> None:
        for reporter in self.reporters:
            reporter.search_started(study, budget, done, rerun, end)

    def trial_started(self, trial: TrialRecord) -> None:
        for reporter in self.reporters:
            reporter.trial_started(trial)

    def trial_progress(self, trial: TrialRecord, epoch: int, loss: float) -> None:
        for reporter in self.reporters:
            reporter.trial_progress(trial, epoch, loss)

    def eta_changed(self, seconds: float | None) -> None:
        for reporter in self.reporters:
            reporter.eta_changed(seconds)

    def trial_finished(self, trial: TrialRecord, best: TrialRecord | None) -> None:
        for reporter in self.reporters:
            reporter.trial_finished(trial, best)

    def slots_changed(self, running: Mapping[str, int | None]) -> None:
        for reporter in self.reporters:
            reporter.slots_changed(running)

    def search_finished(self, trials: Sequence[TrialRecord]) -> None:
        for reporter in self.reporters:
            reporter.search_finished(trials)

    def final_started(self, candidates: Sequence[TrialRecord], splits: int, todo: int) -> None:
        for reporter in self.reporters:
            reporter.final_started(candidates, splits, todo)

    def final_scored(self, trial: TrialRecord) -> None:
        for reporter in self.reporters:
            reporter.final_scored(trial)

    def confirm_started(self, trial: TrialRecord, splits: int) -> None:
        for reporter in self.reporters:
            reporter.confirm_started(trial, splits)

    def confirm_scored(self, trial: TrialRecord) -> None:
        for reporter in self.reporters:
            reporter.confirm_scored(trial)

    def final_finished(self, winner: Winner) -> None:
        for reporter in self.reporters:
            reporter.final_finished(winner)
