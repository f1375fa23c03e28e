"""The search: the loop (one slot or N), worker processes, signals, the time budget, and the
final re-score of the finalists; `api` holds the library functions behind the commands.

Owns: running trials and ending a search.
May import: `tuner.optimize`, `tuner.study`, `tuner.training`, `tuner.config`, `tuner.errors`.
"""
