"""The `tuner` command: Click commands that parse, call the library and map errors to exit
codes.

May import: every other subpackage.
"""

from tuner.cli.commands import cli, main

__all__ = ["cli", "main"]
