"""A study read back from its database: config, trials and the winner."""

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from tuner.config.schema import Config, validate_stored
from tuner.config.space import SearchSpace
from tuner.errors import StudyError, UsageError
from tuner.study.store import Storage, TrialRecord, TrialState, require_database, sqlite_url
from tuner.study.winner import Winner, winner


@dataclass(frozen=True)
class StudyResults:
    """One study as stored: where it is, the config it was created with, and its trials."""

    name: str
    storage: str
    config: Config
    trials: tuple[TrialRecord, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return SearchSpace(self.config.space).names

    @property
    def completed(self) -> list[TrialRecord]:
        """Completed trials with a loss, by number."""
        return [t for t in self.trials if t.state == TrialState.COMPLETE and t.loss is not None]

    @property
    def winner(self) -> Winner:
        """The reported winner (`winner.winner`); StudyError when no trial completed."""
        found = winner(self.trials)
        if found is None:
            raise StudyError(
                f"study '{self.name}' has no completed trial yet; run or resume `tuner search`"
            )
        return found

    @property
    def best(self) -> TrialRecord:
        return self.winner.trial

    def ranked(self) -> list[TrialRecord]:
        return sorted(self.completed, key=lambda t: (t.loss, t.number))

    def failures(self) -> dict[str, int]:
        failed = (t.error_kind or "unknown" for t in self.trials if t.state == TrialState.FAILED)
        return dict(Counter(failed))


def study_location(config: Path | None, storage: str | None, study: str | None) -> tuple[str, str]:
    """The storage URL and study name from a config file and/or `--storage`/`--study`."""
    if config is None and (storage is None or study is None):
        raise UsageError(
            "give a config file (its default run folder and study name), "
            "or both --storage URL and --study NAME"
        )
    if config is not None and not config.is_file():
        raise UsageError(f"{config}: config file not found; check the path")
    name = study or (config.stem if config else "")
    url = storage or sqlite_url(Path("runs") / config.stem / "study.db")  # type: ignore[union-attr]
    return url, name


def load_results(url: str, name: str) -> StudyResults:
    """A study and its trials (the config read by `validate_stored`, so old studies open)."""
    require_database(url)
    storage = Storage(url)
    try:
        study = storage.get_study(name)
        if study is None:
            raise StudyError(
                f"--study: no study '{name}' in {url}; check the name (tuner search --study)"
            )
        trials = tuple(storage.trials(study))
    finally:
        storage.close()
    return StudyResults(name, url, validate_stored(study.config), trials)
