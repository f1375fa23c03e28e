"""Named hyperparameters <-> the optimiser's coordinates (ranges scaled to [0, 1])."""

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import yaml

from tuner.config.hyperparameters import HYPERPARAMETERS, Hyperparameter, Scalar
from tuner.config.schema import Param
from tuner.errors import UsageError

# A coordinate this close to a bound is the bound: the polish stops near 0 rather than at it,
# and exp(log(low)) is not low to the last digit.
EDGE = 1e-9

Coordinate = float | str


@dataclass(frozen=True)
class Dimension:
    """One searched hyperparameter and its encoding."""

    name: str
    param: Param
    hp: Hyperparameter

    @property
    def bounds(self) -> tuple[float, float] | tuple[str, ...]:
        """The entry of bayes_opt's pbounds for this dimension."""
        if self.param.kind == "choice":
            return tuple(json.dumps(v) for v in self.param.values or [])
        return (0.0, 1.0)

    def to_value(self, coordinate: Coordinate) -> Scalar:
        """The hyperparameter's value at an optimiser coordinate."""
        if self.param.kind == "choice":
            return json.loads(str(coordinate))
        low, high = float(self.param.low or 0.0), float(self.param.high or 0.0)
        u = float(coordinate)
        if u <= EDGE:
            value = low
        elif u >= 1.0 - EDGE:
            value = high
        elif self.param.log:
            value = math.exp(math.log(low) + u * (math.log(high) - math.log(low)))
        else:
            value = low + u * (high - low)
        value = min(max(value, low), high)
        return round(value) if self.hp.kind == "int" else value

    def to_coordinate(self, value: Scalar) -> Coordinate:
        """The optimiser coordinate of a value (the inverse of `to_value`)."""
        if self.param.kind == "choice":
            return json.dumps(value)
        low, high = float(self.param.low or 0.0), float(self.param.high or 0.0)
        if self.param.log:
            return (math.log(float(value)) - math.log(low)) / (math.log(high) - math.log(low))
        return (float(value) - low) / (high - low)

    def check(self, value: Scalar, source: str = "") -> Scalar:
        """A user's value checked and in its proper type; `source` names the option."""
        where = f"{source} {self.name}".strip()
        if self.param.kind == "choice":
            for allowed in self.param.values or []:
                if value == allowed and type(value) is type(allowed):
                    return allowed
            raise UsageError(f"{where}: must be one of {self.param.values} (got {value!r})")
        low, high = self.param.low, self.param.high
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if not number or not math.isfinite(value):
            raise UsageError(
                f"{where}: must be a finite number between {low} and {high} (got {value!r})"
            )
        if not low <= value <= high:  # type: ignore[operator]
            raise UsageError(f"{where}: must be between {low} and {high} (got {value})")
        if self.hp.kind == "int":
            if not float(value).is_integer():
                raise UsageError(f"{where}: must be a whole number (got {value})")
            return int(value)
        return float(value)


class SearchSpace:
    """The searched dimensions in config order, and the fixed values."""

    def __init__(self, space: Mapping[str, Param]) -> None:
        searched = {name: param for name, param in space.items() if param.kind != "fixed"}
        self.dimensions = tuple(Dimension(n, p, HYPERPARAMETERS[n]) for n, p in searched.items())
        fixed = {name: hp.default for name, hp in HYPERPARAMETERS.items() if hp.default is not None}
        fixed.update({n: p.value for n, p in space.items() if p.kind == "fixed"})
        self.fixed: dict[str, Scalar] = {n: v for n, v in fixed.items() if n not in self.names}  # type: ignore[misc]

    @property
    def names(self) -> tuple[str, ...]:
        """The searched hyperparameters, in the order of `--vector`."""
        return tuple(d.name for d in self.dimensions)

    def pbounds(self) -> dict[str, tuple[float, float] | tuple[str, ...]]:
        return {d.name: d.bounds for d in self.dimensions}

    def params(self, point: Mapping[str, Coordinate]) -> dict[str, Scalar]:
        """All hyperparameters (searched and fixed) at an optimiser point."""
        values = {d.name: d.to_value(point[d.name]) for d in self.dimensions}
        return {**values, **self.fixed}

    def point(self, params: Mapping[str, Scalar]) -> dict[str, Coordinate]:
        """The optimiser point of a full set of hyperparameters."""
        return {d.name: d.to_coordinate(params[d.name]) for d in self.dimensions}

    def params_from_options(
        self, vector: str | None, assignments: Sequence[str]
    ) -> dict[str, Scalar]:
        """The point of `tuner evaluate`: from `--vector`, from `--param`s, or all fixed."""
        if vector is not None and assignments:
            raise UsageError("give either --vector or --param, not both")
        if vector is not None:
            return self.params_from_vector(vector)
        if assignments or self.names:
            return self.params_from_assignments(assignments)
        return dict(self.fixed)

    def params_from_vector(self, text: str) -> dict[str, Scalar]:
        """Parse `--vector 0.2,0.001,...` (values of the searched hyperparameters, in order)."""
        items = [item.strip() for item in text.split(",")] if text.strip() else []
        if len(items) != len(self.dimensions):
            raise UsageError(
                f"--vector: expected {len(self.dimensions)} values in the order "
                f"{','.join(self.names)} (got {len(items)})"
            )
        values = {
            d.name: d.check(_parse_scalar(f"--vector {d.name}", t), "--vector")
            for d, t in zip(self.dimensions, items, strict=True)
        }
        return {**values, **self.fixed}

    def params_from_assignments(self, assignments: Sequence[str]) -> dict[str, Scalar]:
        """Parse `--param name=value` items; every searched hyperparameter must be given."""
        given: dict[str, Scalar] = {}
        by_name = {d.name: d for d in self.dimensions}
        for item in assignments:
            name, sep, text = item.partition("=")
            name = name.strip()
            if not sep:
                raise UsageError(f"--param {item}: expected name=value, e.g. learning_rate=0.001")
            if name not in by_name:
                fixed = f"fixed in the config ({self.fixed.get(name)!r})"
                hint = fixed if name in self.fixed else "not a hyperparameter of this space"
                raise UsageError(f"--param {name}: {hint}; searched: {', '.join(self.names)}")
            given[name] = by_name[name].check(_parse_scalar(f"--param {name}", text), "--param")
        missing = [n for n in self.names if n not in given]
        if missing:
            raise UsageError(f"--param: missing value for {', '.join(missing)}")
        return {**{n: given[n] for n in self.names}, **self.fixed}


def _parse_scalar(name: str, text: str) -> Scalar:
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        value = text
    if text.strip().lower() in {"nan", ".nan", "inf", "-inf", ".inf", "-.inf"}:
        value = float(text.strip().lstrip("."))
    if not isinstance(value, bool | int | float | str):
        raise UsageError(f"{name}: must be a single value (got {text!r}); give a number")
    return value
