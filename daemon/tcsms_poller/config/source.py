"""YAML text -> plain data, remembering the line of every key so errors can name ``file:line``.

PyYAML's node marks are lost once objects are built, so we compose the node tree and build the
data ourselves, keeping ``lines[path]`` for each mapping key and sequence item. Environment
variables are interpolated here, scalar by scalar, so an unset variable is reported at its line.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import yaml

from tcsms_poller.config.interpolate import InterpolationError, interpolate
from tcsms_poller.exits import ConfigError

__all__ = ["Loc", "Problem", "SourceText", "format_loc", "parse_yaml"]

Loc = tuple[str | int, ...]


def format_loc(loc: Loc) -> str:
    """``("apps", 0, "by_number")`` -> ``apps[0].by_number``."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


@dataclass(frozen=True, slots=True)
class SourceText:
    """Parsed configuration data and where each piece came from."""

    name: str
    data: Any
    lines: Mapping[Loc, int] = field(default_factory=dict)

    def line_of(self, loc: Loc) -> int | None:
        """The line of ``loc`` or of its nearest ancestor that has one (a missing key)."""
        for end in range(len(loc), -1, -1):
            line = self.lines.get(loc[:end])
            if line is not None:
                return line
        return None

    def problem(self, loc: Loc, message: str) -> Problem:
        """What is wrong at ``loc``, placed at its line."""
        line = self.line_of(loc)
        where = f"{self.name}:{line}" if line is not None else self.name
        text = f"{where}: {format_loc(loc)}: {message}" if loc else f"{where}: {message}"
        return Problem(line or 0, text)


class Problem(NamedTuple):
    """One configuration error: its line (to report in file order) and its one-line text."""

    line: int
    text: str

    @staticmethod
    def raise_all(problems: list[Problem]) -> None:
        """Raise one ``ConfigError`` listing every problem in file order, if there is any."""
        if problems:
            raise ConfigError("\n".join(problem.text for problem in sorted(problems)))


class _Builder:
    def __init__(self, name: str, environ: Mapping[str, str]) -> None:
        self._name = name
        self._environ = environ
        self._constructor = yaml.SafeLoader("")
        self.lines: dict[Loc, int] = {}

    def fail(self, node: yaml.Node, loc: Loc, message: str) -> ConfigError:
        prefix = f"{format_loc(loc)}: " if loc else ""
        return ConfigError(f"{self._name}:{node.start_mark.line + 1}: {prefix}{message}")

    def build(self, node: yaml.Node, loc: Loc) -> Any:
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, loc)
        if isinstance(node, yaml.SequenceNode):
            return [self._item(item, (*loc, index)) for index, item in enumerate(node.value)]
        value = self._constructor.construct_object(node, deep=True)
        if isinstance(value, str) and node.tag == "tag:yaml.org,2002:str":
            try:
                return interpolate(value, self._environ)
            except InterpolationError as error:
                raise self.fail(node, loc, str(error)) from None
        return value

    def _item(self, node: yaml.Node, loc: Loc) -> Any:
        self.lines[loc] = node.start_mark.line + 1
        return self.build(node, loc)

    def _mapping(self, node: yaml.MappingNode, loc: Loc) -> dict[str, Any]:
        self._constructor.flatten_mapping(node)  # YAML merge keys (<<: *defaults)
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = self._constructor.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                raise self.fail(key_node, loc, f"keys must be strings, not {key!r}")
            if key in result:
                raise self.fail(key_node, (*loc, key), "duplicate key")
            self.lines[(*loc, key)] = key_node.start_mark.line + 1
            result[key] = self.build(value_node, (*loc, key))
        return result


def parse_yaml(text: str, name: str, environ: Mapping[str, str]) -> SourceText:
    """Parse one YAML document; syntax errors become a ``ConfigError`` with file:line."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = error.problem or error.context or "invalid YAML"
        raise ConfigError(f"{name}{line}: invalid YAML: {problem}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{name}: invalid YAML: {error}") from None
    if node is None:
        raise ConfigError(f"{name}: the configuration is empty")
    builder = _Builder(name, environ)
    try:
        data = builder.build(node, ())
    except yaml.constructor.ConstructorError as error:
        mark = error.problem_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{name}{line}: invalid YAML: {error.problem}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{name}:1: the configuration must be a mapping of sections")
    builder.lines[()] = node.start_mark.line + 1  # a missing section is reported at the top
    return SourceText(name=name, data=data, lines=builder.lines)
