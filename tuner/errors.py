"""The tool's error types and the exit code each maps to."""


class TunerError(Exception):
    """Base of every error the tool raises on purpose; the message is for the user."""

    exit_code = 1


class UsageError(TunerError):
    """Bad input from the user (config, data, command line): exit code 2."""

    exit_code = 2


class ConfigError(UsageError):
    """The config file or an override is invalid; the message names the key path."""


class DataError(UsageError):
    """The data file cannot be used; the message names the file or column."""


class StudyError(UsageError):
    """The study cannot be created or resumed as asked."""


class TrialFailed(TunerError):
    """One trial failed; it is recorded with its kind and the search goes on."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message


class SearchInterrupted(TunerError):
    """The search was stopped by a signal; finished trials are kept."""

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum


class SearchFailed(TunerError):
    """The search ran but has nothing to report (no trial completed)."""


class TrialRejected(StudyError):
    """A result for a trial this worker no longer owns (failed as stale); it is not recorded."""
