"""The named hyperparameters a space may hold, what each may take, and the checks of a value."""

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from tuner.errors import UsageError

if TYPE_CHECKING:
    from tuner.config.schema import Param

Scalar = bool | int | float | str
ACTIVATIONS = ("prelu", "relu", "leaky_relu", "elu", "selu", "tanh", "gelu", "swish")
OPTIMIZERS = ("adam", "sgd", "rmsprop")


@dataclass(frozen=True)
class Hyperparameter:
    """What one hyperparameter may take; without `default` or `optional` it must be searched."""

    kind: Literal["float", "int", "bool", "choice"]
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    default: Scalar | None = None
    example: str = ""
    choices: tuple[str, ...] = ()
    optional: bool = False


HYPERPARAMETERS: dict[str, Hyperparameter] = {
    "dropout": Hyperparameter("float", 0.0, 1.0, high_open=True, example="{low: 0.0, high: 0.5}"),
    "learning_rate": Hyperparameter("float", 0.0, example="{low: 1.0e-4, high: 0.1, log: true}"),
    "neuron_pct": Hyperparameter("float", 0.0, 1.0, low_open=True, example="{low: 0.01, high: 1}"),
    "neuron_shrink": Hyperparameter("float", 0.0, low_open=True, example="{low: 0.01, high: 1}"),
    "batch_norm": Hyperparameter("bool", default=False),
    "batch_size": Hyperparameter("int", 1.0, None, default=32),
    "activation": Hyperparameter("choice", choices=ACTIVATIONS, optional=True),
    "l2": Hyperparameter("float", 0.0, None, default=0.0),
    "optimizer": Hyperparameter("choice", choices=OPTIMIZERS, default="adam"),
}


def check_domain(name: str, param: "Param", hp: Hyperparameter) -> None:
    """Refuse a space entry whose form or values do not fit the hyperparameter (ValueError)."""
    where = f"space.{name}"
    if param.kind == "range":
        if hp.kind == "bool":
            raise ValueError(f"{where}: is true/false; use {{values: [false, true]}} to search it")
        if hp.kind == "choice":
            raise ValueError(
                f"{where}: is a choice among {', '.join(hp.choices)}; search it with "
                f"{{values: [{hp.choices[0]}, {hp.choices[1]}]}}"
            )
        if param.integer and hp.kind != "int":
            raise ValueError(f"{where}: is a real number; remove `int: true`")
        _check_in_domain(where, "low", param.low, hp)
        _check_in_domain(where, "high", param.high, hp)
        whole = float(param.low).is_integer() and float(param.high).is_integer()
        if hp.kind == "int" and not whole:
            raise ValueError(
                f"{where}: bounds must be whole numbers (got low={param.low}, high={param.high})"
            )
        return
    values = param.values if param.kind == "choice" else [param.value]
    for value in values:
        _check_type(where, value, hp)
        _check_in_domain(where, "value", value, hp)  # type: ignore[arg-type]


def _check_type(where: str, value: Any, hp: Hyperparameter) -> None:
    if hp.kind == "choice":
        if not (isinstance(value, str) and value in hp.choices):
            raise ValueError(f"{where}: must be one of {', '.join(hp.choices)} (got {value!r})")
        return
    ok = {
        "bool": isinstance(value, bool),
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, int | float) and not isinstance(value, bool),
    }[hp.kind]
    if not ok:
        wanted = {"bool": "true or false", "int": "a whole number", "float": "a number"}
        raise ValueError(f"{where}: must be {wanted[hp.kind]} (got {value!r})")


def _check_in_domain(where: str, key: str, value: float | None, hp: Hyperparameter) -> None:
    if hp.kind in ("bool", "choice") or value is None:
        return
    if hp.low is not None and (value < hp.low or (hp.low_open and value == hp.low)):
        rule = "above" if hp.low_open else "at least"
        raise ValueError(f"{where}: {key} must be {rule} {hp.low:g} (got {key}={value})")
    if hp.high is not None and (value > hp.high or (hp.high_open and value == hp.high)):
        rule = "below" if hp.high_open else "at most"
        raise ValueError(f"{where}: {key} must be {rule} {hp.high:g} (got {key}={value})")


def checked_number(params: Mapping[str, Any], name: str) -> float:
    """A real hyperparameter of a point (its default when absent), finite and in its domain."""
    hp = HYPERPARAMETERS[name]
    value = params.get(name, hp.default)
    low = "" if hp.low is None else f"{'above' if hp.low_open else 'at least'} {hp.low:g}"
    high = "" if hp.high is None else f"{'below' if hp.high_open else 'at most'} {hp.high:g}"
    rule = " and ".join(r for r in (low, high) if r)
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if ok and hp.low is not None:
        ok = value > hp.low if hp.low_open else value >= hp.low
    if ok and hp.high is not None:
        ok = value < hp.high if hp.high_open else value <= hp.high
    if not ok:
        raise UsageError(f"{name}: must be a finite number {rule} (got {value!r}); change it")
    return float(value)


def checked_choice(params: Mapping[str, Any], name: str, default: str | None = None) -> str:
    """A choice hyperparameter of a point (`default`, else the registry's, when absent)."""
    hp = HYPERPARAMETERS[name]
    value = params.get(name, default if default is not None else hp.default)
    if not (isinstance(value, str) and value in hp.choices):
        raise UsageError(f"{name}: must be one of {', '.join(hp.choices)} (got {value!r})")
    return value
