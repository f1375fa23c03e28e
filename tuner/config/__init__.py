"""The search config: YAML in, a validated frozen `Config` out, and the space's names and bounds.

Owns: the config schema and its checks, strict YAML reading and `--set` overrides, durations,
the hyperparameters a space may hold, and the conversion between named hyperparameters and the
optimiser's coordinates (`space`).
May import: `tuner.errors` only.
"""
