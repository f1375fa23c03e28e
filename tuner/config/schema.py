"""The search config's rules: every error names the key path, the value and what is allowed."""

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tuner.config.duration import parse_duration
from tuner.config.hyperparameters import ACTIVATIONS, HYPERPARAMETERS, Scalar, check_domain
from tuner.config.yamlfile import apply_overrides, is_url, read_config_file
from tuner.errors import ConfigError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class Param(_Section):
    """One entry of `space`: a fixed value, a range (`low`/`high`) or a choice (`values`)."""

    model_config = ConfigDict(populate_by_name=True)  # merged with _Section's

    value: Scalar | None = None
    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = Field(False, alias="int")
    values: list[Scalar] | None = None

    @model_validator(mode="before")
    @classmethod
    def _scalar_is_fixed(cls, data: Any) -> Any:
        return data if isinstance(data, Mapping) else {"value": data}

    @model_validator(mode="after")
    def _one_form(self) -> Self:
        forms = [f for f, keys in _FORMS.items() if self.model_fields_set & keys]
        if len(forms) > 1:
            raise ValueError(
                f"use one form: a fixed value, low/high or values (got {' and '.join(forms)})"
            )
        values, low, high = self.values, self.low, self.high
        if values is not None:
            if len(values) < 2:
                raise ValueError(
                    f"values needs at least two entries (got {values!r}); add one, or give the "
                    "value alone"
                )
            if len({repr(v) for v in values}) != len(values):
                raise ValueError(f"values must not repeat (got {values!r})")
        elif low is not None or high is not None:
            if low is None or high is None:
                raise ValueError(f"a range needs both low and high (got low={low}, high={high})")
            if not high > low:
                raise ValueError(
                    f"high must be greater than low (got low={low}, high={high}); swap or widen "
                    "them"
                )
            if self.log and low <= 0:
                raise ValueError(
                    f"a log-scale range needs low > 0 (got low={low}); raise low or remove "
                    "`log: true`"
                )
        elif self.value is None:
            raise ValueError(
                "give a fixed value, {low: .., high: ..} or {values: [..]} (got nothing)"
            )
        return self

    def to_data(self) -> Any:
        """This entry in its shortest YAML form."""
        if self.kind == "fixed":
            return self.value
        if self.kind == "choice":
            return {"values": list(self.values or [])}
        data: dict[str, Any] = {"low": self.low, "high": self.high}
        if self.log:
            data["log"] = True
        if self.integer:
            data["int"] = True
        return data

    @property
    def kind(self) -> Literal["fixed", "range", "choice"]:
        """Which of the three forms this entry has."""
        if self.values is not None:
            return "choice"
        if self.low is not None:
            return "range"
        return "fixed"


_FORMS = {
    "a fixed value": {"value"},
    "low/high": {"low", "high", "log", "integer"},
    "values": {"values"},
}


class DataConfig(_Section):
    """Where the data is and what to predict."""

    path: str = Field(min_length=1)
    target: str = Field(min_length=1)
    task: Literal["classification", "regression"] = "classification"
    drop: list[str] = []
    categorical: list[str] | None = None


class NetworkConfig(_Section):
    """The course's rule that turns neuron_pct / neuron_shrink into layers."""

    # Upper limits keep decoding finite: wider or deeper networks are far past any max_params.
    max_neurons: int = Field(5000, ge=1, le=1_000_000_000)
    min_neurons: int = Field(25, ge=0)
    max_layers: int = Field(10, ge=0, le=1000)
    activation: Literal[ACTIVATIONS] = "prelu"  # type: ignore[valid-type]


class EvaluationConfig(_Section):
    """How one point is scored: bootstrap splits with early stopping."""

    splits: int = Field(2, ge=1)
    test_size: float = Field(0.1, gt=0.0, lt=1.0)
    epochs: int = Field(500, ge=1)
    patience: int = Field(10, ge=0)
    min_delta: float = Field(0.001, ge=0.0)
    # 100M parameters take about 2 GB with Adam's state and a best-weights copy.
    max_params: int = Field(100_000_000, ge=1)
    timeout: float | None = Field(None, gt=0.0)
    worker_trials: int = Field(50, ge=1)


class AcquisitionConfig(_Section):
    """bayes_opt's acquisition function: ucb uses kappa, ei and poi use xi."""

    kind: Literal["ucb", "ei", "poi"] = "ucb"
    kappa: float = Field(2.576, ge=0.0)
    xi: float = Field(0.0, ge=0.0)


class WarmStartConfig(_Section):
    """Another study of the same space whose completed trials the optimiser is told first."""

    storage: str = Field(min_length=1)
    study: str = Field(min_length=1)


class SearchConfig(_Section):
    """The trial budget and the optimiser's settings."""

    init_points: int = Field(10, ge=0)
    n_iter: int = Field(20, ge=0)
    seed: int = 1
    acquisition: AcquisitionConfig = AcquisitionConfig()
    max_consecutive_failures: int = Field(5, ge=1)
    heartbeat: float = Field(30.0, gt=0)
    grace: float = Field(120.0, gt=0)
    max_retries: int = Field(1, ge=0)
    liar: Literal["mean", "worst"] = "mean"
    noise: Literal["auto", "none"] = "auto"
    time_budget: float | None = None
    warm_start: WarmStartConfig | None = None

    @field_validator("time_budget", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return None if value is None else parse_duration(value)

    # The end of the search (engine/final.py); 0 finalists turns it off.
    final_candidates: int = Field(3, ge=0)
    final_splits: int = Field(10, ge=2)
    confirm_splits: int = Field(10, ge=0)
    final_share: float = Field(0.2, ge=0.0, lt=1.0)

    @model_validator(mode="after")
    def _budget(self) -> Self:
        if self.init_points + self.n_iter < 1:
            raise ValueError(
                f"init_points + n_iter must be at least 1 (got {self.init_points} + {self.n_iter})"
            )
        return self

    @property
    def budget(self) -> int:
        """Trials that a search runs to completion."""
        return self.init_points + self.n_iter


class Config(_Section):
    """A whole search: data, space, network rule, evaluation and search settings."""

    data: DataConfig
    space: dict[str, Param]
    network: NetworkConfig = NetworkConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    search: SearchConfig = SearchConfig()

    @model_validator(mode="after")
    def _known_hyperparameters(self) -> Self:
        for name, param in self.space.items():
            if name not in HYPERPARAMETERS:
                known = ", ".join(HYPERPARAMETERS)
                raise ValueError(f"space.{_key(name)}: unknown hyperparameter; known ones: {known}")
            check_domain(name, param, HYPERPARAMETERS[name])
        if "activation" in self.space and "activation" in self.network.model_fields_set:
            raise ValueError(
                "space.activation: network.activation is set too; remove network.activation "
                "(space.activation takes its place)"
            )
        for name, hp in HYPERPARAMETERS.items():
            if hp.default is None and not hp.optional and name not in self.space:
                raise ValueError(
                    f"space.{name}: required hyperparameter is missing; add e.g. "
                    f"`{name}: {hp.example}`"
                )
        return self

    def full_space(self) -> dict[str, Any]:
        """Every hyperparameter's entry, defaults written out: equal spaces compare equal."""
        full = {n: hp.default for n, hp in HYPERPARAMETERS.items() if hp.default is not None}
        full["activation"] = self.network.activation  # the activation unless space names one
        full.update({name: param.to_data() for name, param in self.space.items()})
        return full

    def to_dict(self) -> dict[str, Any]:
        """The config as plain JSON-ready data, as it would be written in YAML."""
        data = self.model_dump(mode="json", by_alias=True, exclude={"space"})
        data["space"] = {name: param.to_data() for name, param in self.space.items()}
        if "activation" in self.space:  # written once: in space, where it is searched
            del data["network"]["activation"]
        return data


def space_differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Keys of `space` whose definitions differ between two `Config.full_space`s."""
    keys = sorted(set(old) | set(new))
    return [f"space.{k}" for k in keys if old.get(k) != new.get(k)]


# Keys of earlier versions: a config that names one is refused, a stored study still opens.
REMOVED_KEYS: dict[str, str] = {
    "search.race_top": "racing found no better winners at equal time",
    "search.race_splits": "racing found no better winners at equal time",
    "search.comparison": "trials are compared on their own splits",
    "search.cost_aware": "cost-aware proposals found worse points",
    "search.difficulty_splits": "the split-difficulty adjustment cost time for no better winner",
}


def validate_config(raw: Mapping[str, Any]) -> Config:
    """A Config from a raw mapping; ConfigError with one line on the first problem."""
    sections = raw if isinstance(raw, Mapping) else {}
    for key, reason in REMOVED_KEYS.items():
        section, name = key.split(".")
        if isinstance(sections.get(section), Mapping) and name in sections[section]:
            raise ConfigError(f"{key}: this key was removed ({reason}); delete it")
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_error(exc.errors()[0])) from exc


def validate_stored(raw: Mapping[str, Any]) -> Config:
    """`validate_config` for a stored config: removed keys are dropped, so old studies open."""
    data = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in raw.items()}
    for key in REMOVED_KEYS:
        section, name = key.split(".")
        if isinstance(data.get(section), dict):
            data[section].pop(name, None)
    return validate_config(data)


def load_config(path: Path, overrides: Iterable[str] = ()) -> Config:
    """Read, override and validate a config file; a relative data.path is relative to it."""
    raw = read_config_file(path)
    data = raw.get("data")
    if isinstance(data, dict) and isinstance(data.get("path"), str):
        data_path = data["path"]
        if data_path and not is_url(data_path) and not Path(data_path).expanduser().is_absolute():
            data["path"] = str((path.parent / data_path).resolve())
    return validate_config(apply_overrides(raw, overrides))


def _key(part: object) -> str:
    """A key path's part as written, or quoted when empty or not printable."""
    text = str(part)
    return text if text.isprintable() and text.strip() == text and text else repr(text)


def format_error(error: Mapping[str, Any]) -> str:
    """One pydantic error as `key.path: what is wrong (got value)`."""
    loc = tuple(_key(part) for part in error["loc"])
    kind, got = error["type"], error.get("input")
    if len(loc) > 1 and loc[-1] in _SCALAR_TAGS:  # pydantic tags each type it tried
        if loc[-2] == "value":
            return (
                f"{'.'.join(loc[:-2])}: must be a single value, {{low: .., high: ..}} or "
                f"{{values: [..]}} (got {got!r}); write it in one of these forms"
            )
        where = ".".join(loc[:-1])
        return f"{where}: must be true/false, a number or text (got {got!r}); use one of these"
    where = ".".join(loc)
    if kind == "value_error":
        message = str(error["ctx"]["error"])
        return f"{where}: {message}" if where else message
    if kind == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1])
        hint = f"; allowed keys: {', '.join(allowed)}" if allowed else ""
        return f"{where}: unknown key{hint}"
    if kind == "missing":
        parent = ".".join(loc[:-1])
        hint = f"add `{loc[-1]}:` under `{parent}:`" if parent else f"add a `{loc[-1]}:` section"
        return f"{where}: required key is missing; {hint}"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return (
            f"{where}: must be a section of `key: value` entries (got {got!r}); "
            f"write its keys indented under `{loc[-1] if loc else where}:`"
        )
    message = error["msg"][0].lower() + error["msg"][1:]
    hint = _HINTS.get(kind, "fix the value")
    return f"{where}: {message} (got {got!r}); {hint}"


# What to do, for pydantic's own error kinds (its message says the rule).
_HINTS = {
    **dict.fromkeys(["int_type", "int_parsing", "int_from_float"], "write a whole number, e.g. 5"),
    **dict.fromkeys(["float_type", "float_parsing"], "write a number, e.g. 0.5"),
    "finite_number": "write a finite number",
    "bool_type": "write true or false",
    "string_type": "write it as text",
    "string_too_short": "give a non-empty value",
    "list_type": "write a list, e.g. [a, b]",
    "literal_error": "use one of these",
    **dict.fromkeys(["greater_than", "greater_than_equal"], "raise the value"),
    **dict.fromkeys(["less_than", "less_than_equal"], "lower the value"),
}


_SCALAR_TAGS = ("bool", "int", "float", "str")


def _allowed_keys(loc: tuple[str, ...]) -> list[str]:
    model: Any = Config
    if loc and loc[0] == "space":
        model = Param if len(loc) == 2 else None
    else:
        for part in loc:
            field = model.model_fields.get(part)
            model = field.annotation if field else None
            if not (isinstance(model, type) and issubclass(model, BaseModel)):
                return []
    if model is None:
        return []
    return [f.alias or name for name, f in model.model_fields.items()]
