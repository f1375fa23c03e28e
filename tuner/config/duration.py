"""Durations as a user writes them: seconds, or text such as `90s`, `10m`, `2h` or `1h30m`."""

import math
import re
from typing import Any

_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
_SECONDS = re.compile(_NUMBER)
_DURATION = re.compile(rf"(?:{_NUMBER}\s*[smh]\s*)+")
_DURATION_PART = re.compile(rf"({_NUMBER})\s*([smh])")
_UNIT_SECONDS = {"s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: Any) -> float:
    """Seconds from a number, or from text such as `90`, `90s`, `10m`, `2h` or `1h30m`."""
    hint = "give seconds or a duration such as 90s, 10m, 2h or 1h30m"
    text = value.strip().lower() if isinstance(value, str) else ""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif _SECONDS.fullmatch(text):
        seconds = float(text)
    elif _DURATION.fullmatch(text):
        parts = _DURATION_PART.findall(text)
        seconds = sum(float(number) * _UNIT_SECONDS[unit] for number, unit in parts)
    else:
        raise ValueError(f"not a duration (got {value!r}); {hint}")
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"must be more than 0 seconds (got {value!r}); {hint}")
    return seconds
