"""Strict YAML (no duplicate keys, aliases or deep nesting) and `--set KEY=VALUE` overrides."""

import copy
from collections.abc import Hashable, Iterable
from pathlib import Path
from typing import Any

import yaml

from tuner.errors import ConfigError


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys and aliases (which also stops alias bombs)."""

    max_depth = 100
    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            raise ConfigError(
                f"line {event.start_mark.line + 1}: YAML aliases (*{event.anchor}) are not "
                "supported; write the value out"
            )
        if self._depth >= self.max_depth:
            raise ConfigError(
                f"line {event.start_mark.line + 1}: values nested more than {self.max_depth} "
                "levels deep; flatten the config"
            )
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key, line = self.construct_object(key_node, deep=True), key_node.start_mark.line + 1
            if not isinstance(key, Hashable):
                raise ConfigError(
                    f"line {line}: a key must be a single value, not a {type(key).__name__}; "
                    "write the key as plain text"
                )
            if key in seen:
                raise ConfigError(f"line {line}: duplicate key {key!r}; keep only one of them")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def parse_yaml(text: str, source: str) -> Any:
    """Parse YAML text strictly; errors name `source` and the line."""
    try:
        return yaml.load(text, Loader=_StrictLoader)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{source}: not valid YAML{where}: {problem}") from exc


def read_config_file(path: Path) -> dict[str, Any]:
    """A config file's mapping, with a one-line error for every way it can be wrong."""
    if not path.exists():
        raise ConfigError(f"{path}: file not found; check the path")
    if path.is_dir():
        raise ConfigError(f"{path}: is a directory; give the path of a YAML config file")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: is not UTF-8 text; save the config as UTF-8") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror})") from exc
    if "\x00" in text:
        raise ConfigError(f"{path}: is a binary file, not a YAML config; give a YAML text file")
    raw = parse_yaml(text, str(path))
    if raw is None:
        raise ConfigError(f"{path}: is empty; it needs at least the data: and space: sections")
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{path}: must be a mapping with data: and space: sections (got a {type(raw).__name__})"
        )
    return raw


def apply_overrides(raw: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Apply `key.path=value` overrides (value parsed as YAML) to a copy of `raw`."""
    result = copy.deepcopy(raw)
    for item in overrides:
        key, sep, text = item.partition("=")
        parts = key.strip().split(".")
        if not sep or not all(parts):
            raise ConfigError(f"--set {item}: expected key.path=value, e.g. evaluation.splits=5")
        value = parse_yaml(text, f"--set {key}") if text.strip() else ""
        node = result
        for depth, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                above = ".".join(parts[: depth + 1])
                raise ConfigError(f"--set {key}: {above} is not a section (it is {child!r})")
            node = child
        node[parts[-1]] = value
        if parts == ["data", "path"] and isinstance(value, str) and not is_url(value):
            node[parts[-1]] = str(Path(value).expanduser().resolve())  # relative to the user
    return result


def is_url(path: str) -> bool:
    """Whether a data path is a web address rather than a file."""
    return path.startswith(("http://", "https://"))
