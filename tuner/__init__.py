"""Bayesian hyperparameter search for Keras networks on tabular data."""

from __future__ import annotations

__version__ = "0.1.0"
