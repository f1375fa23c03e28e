"""What users see and take home: terminal results and progress, the HTML report and its plots,
the exported model and its predictions, and `tuner init`'s starter config.

Owns: every print; nothing below this layer writes to the terminal.
May import: `tuner.engine` and everything below it.
"""
