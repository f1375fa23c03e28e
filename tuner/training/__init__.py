"""Scoring one point: the data and its preprocessing, the point's network (pure decoding), the
trainers, and the bootstrap evaluation that turns a point into a mean held-out loss.

Owns: everything that touches Keras; Keras is imported lazily, only when a network trains.
May import: `tuner.config`, `tuner.errors`.
"""
