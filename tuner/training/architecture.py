"""Decode hyperparameters into a network architecture with the course's rule. Pure: no Keras."""

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from tuner.config.hyperparameters import checked_choice, checked_number
from tuner.config.schema import NetworkConfig
from tuner.errors import TrialFailed

Task = Literal["classification", "regression"]
# Activations with weights of their own: one slope per unit.
_PARAMETRIC = {"prelu"}


@dataclass(frozen=True)
class Architecture:
    """A dense network: hidden layer widths and what goes around them."""

    n_inputs: int
    n_outputs: int
    task: Task
    hidden: tuple[int, ...]
    dropout: float
    batch_norm: bool
    activation: str
    l2: float = 0.0

    @property
    def n_params(self) -> int:
        """Parameters as Keras counts them (trainable and not)."""
        return sum(count for _, _, count in self.layers())

    def layers(self) -> list[tuple[str, int, int]]:
        """(layer, units, parameters) for each hidden block and the output layer."""
        rows, width = [], self.n_inputs
        for index, units in enumerate(self.hidden, start=1):
            count = width * units + units + (4 * units if self.batch_norm else 0)
            count += units if self.activation in _PARAMETRIC else 0
            rows.append((f"hidden {index}", units, count))
            width = units
        rows.append(("output", self.n_outputs, width * self.n_outputs + self.n_outputs))
        return rows

    def describe(self) -> str:
        """One line for people, e.g. `47 -> 500 -> 125 -> 31 -> 7 (91,411 parameters)`."""
        if not self.hidden:
            kind = "softmax" if self.task == "classification" else "linear"
            shape = f"{self.n_inputs} -> {self.n_outputs}, no hidden layer ({kind} regression)"
        else:
            layers = " -> ".join(str(n) for n in (self.n_inputs, *self.hidden, self.n_outputs))
            extras = f"{self.activation}, dropout {self.dropout:.3g}"
            extras += ", batch norm" if self.batch_norm else ""
            extras += f", l2 {self.l2:.3g}" if self.l2 > 0 else ""
            shape = f"{layers} ({extras})"
        return f"{shape}, {self.n_params:,} parameters"


def hidden_layers(
    neuron_pct: float, neuron_shrink: float, network: NetworkConfig
) -> tuple[int, ...]:
    """The course's rule: start at pct * max_neurons, shrink by a factor while above the floor."""
    layers: list[int] = []
    # The count stays a real number between layers, as in the course; only the width is cut.
    count: float = int(neuron_pct * network.max_neurons)
    while count > network.min_neurons and count >= 1 and len(layers) < network.max_layers:
        if not math.isfinite(count):
            raise TrialFailed(
                "too_large",
                f"neuron_shrink {neuron_shrink:g} makes layer {len(layers) + 1} infinitely wide; "
                "search neuron_shrink over a smaller range",
            )
        layers.append(int(count))
        count *= neuron_shrink
    return tuple(layers)


def decode(
    params: Mapping[str, Any], network: NetworkConfig, n_inputs: int, n_outputs: int, task: Task
) -> Architecture:
    """The network of one point (TrialFailed when the layers grow without bound)."""
    pct, shrink = checked_number(params, "neuron_pct"), checked_number(params, "neuron_shrink")
    hidden = hidden_layers(pct, shrink, network)
    dropout, batch_norm = checked_number(params, "dropout"), bool(params.get("batch_norm", False))
    activation = checked_choice(params, "activation", network.activation)
    l2 = checked_number(params, "l2")
    return Architecture(n_inputs, n_outputs, task, hidden, dropout, batch_norm, activation, l2)


@dataclass(frozen=True)
class Training:
    """How a network is trained: the optimiser, its learning rate and the batch size."""

    optimizer: str
    learning_rate: float
    batch_size: int


def training_of(params: Mapping[str, Any]) -> Training:
    """The training settings of a point; `optimizer` defaults to adam, `batch_size` to 32."""
    optimizer, rate = checked_choice(params, "optimizer"), checked_number(params, "learning_rate")
    return Training(optimizer, rate, int(checked_number(params, "batch_size")))
