"""Warm start: the completed trials of another study of the same space, told first."""

from tuner.config.schema import Config, space_differences, validate_stored
from tuner.errors import ConfigError, StudyError
from tuner.study.store import Storage, TrialRecord, TrialState, require_database


def warm_trials(config: Config) -> tuple[TrialRecord, ...]:
    """The completed trials of the `search.warm_start` study (() without one)."""
    warm = config.search.warm_start
    if warm is None:
        return ()
    key = "search.warm_start"
    require_database(warm.storage, key, "check the URL (--warm-start)")
    try:
        storage = Storage(warm.storage)  # read only: a missing SQLite file is not created
    except StudyError as exc:
        raise StudyError(f"{key}: {str(exc).removeprefix('--storage: ')}") from exc
    try:
        study = storage.get_study(warm.study)
        if study is None:
            raise StudyError(
                f"search.warm_start: no study '{warm.study}' in {warm.storage}; "
                "check the name (--warm-study)"
            )
        trials = storage.trials(study)
    finally:
        storage.close()
    try:
        theirs = validate_stored(study.config).full_space()
    except ConfigError as exc:
        raise StudyError(
            f"search.warm_start: the config of study '{warm.study}' cannot be read ({exc})"
        ) from exc
    differing = space_differences(theirs, config.full_space())
    if differing:
        raise StudyError(
            f"search.warm_start: study '{warm.study}' searched another space (differs in "
            f"{', '.join(differing)}); warm-start from a study of the same space"
        )
    return tuple(t for t in trials if t.state == TrialState.COMPLETE and t.loss is not None)
