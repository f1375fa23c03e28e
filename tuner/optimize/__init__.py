"""Proposing points: a noise-aware GP from bayes_opt driven by suggest/register from the stored
trials, the acquisition, and what a worker is handed when it asks for work.

Owns: the choice of the next point.
May import: `tuner.study`, `tuner.training`, `tuner.config`, `tuner.errors`.
"""
