"""YAML text -> plain data, remembering the line of every key so errors can name ``file:line``.

PyYAML's node marks are lost once objects are built, so we compose the node tree and build the
data ourselves, keeping ``lines[path]`` for each mapping key and sequence item. Environment
variables are interpolated here, scalar by scalar, so an unset variable is reported at its line;
such a problem, a value that does not fit its tag (``!!int x``), a repeated key, are collected
(``SourceText.problems``) and reported with the schema's, all at once.

No file may crash or hang the loader: nesting is bounded (``MAX_DEPTH``, checked while
composing, before PyYAML's recursion could overflow), so are the values that aliases expand to
(``MAX_EXPANDED``, against "billion laughs"), and a recursive alias (``&a [*a]``) is refused.
Merge keys (``<<``) are built here too, under the same bounds, with YAML's rule: explicit keys
override merged ones.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import yaml

from tcsms_poller.config.interpolate import InterpolationError, interpolate
from tcsms_poller.exits import ConfigError

__all__ = ["MAX_DEPTH", "MAX_EXPANDED", "Loc", "Problem", "SourceText", "format_loc", "parse_yaml"]

Loc = tuple[str | int, ...]
MAX_DEPTH = 64  # levels of nesting; a configuration needs fewer than ten
MAX_EXPANDED = 10_000  # values built again through aliases
_MERGE_TAG = "tag:yaml.org,2002:merge"
_SECRET_WORDS = re.compile(r"secret|token|key|password|header|hmac", re.IGNORECASE)
_STR_TAG = "tag:yaml.org,2002:str"
_KINDS = {
    "tag:yaml.org,2002:int": "an integer",
    "tag:yaml.org,2002:float": "a number",
    "tag:yaml.org,2002:bool": "a boolean (true or false)",
    "tag:yaml.org,2002:null": "null",
    "tag:yaml.org,2002:timestamp": "a timestamp",
    "tag:yaml.org,2002:binary": "base64 binary",
}


def format_loc(loc: Loc) -> str:
    """``("apps", 0, "by_number")`` -> ``apps[0].by_number``.

    A key that is empty, not printable or long is quoted and cut, so a message stays one line.
    """
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
            continue
        key = part if part.isprintable() and 0 < len(part) <= 64 else repr(part[:64])
        text += f".{key}" if text else key
    return text


@dataclass(frozen=True, slots=True)
class SourceText:
    """Parsed configuration data and where each piece came from."""

    name: str
    data: Any
    lines: Mapping[Loc, int] = field(default_factory=dict)
    problems: tuple[Problem, ...] = ()
    failed: frozenset[Loc] = frozenset()  # where a problem was found: no schema error there

    def has_failed(self, loc: Loc) -> bool:
        """Whether a problem was already found at ``loc`` or inside it."""
        return any(loc[: len(bad)] == bad for bad in self.failed)

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


def _may_be_secret(loc: Loc) -> bool:
    """Whether a value at ``loc`` may be a secret, and so must not be echoed in an error."""
    return any(_SECRET_WORDS.search(str(part)) for part in loc)


class _ShapeError(Exception):
    """A shape no configuration has (too deep, too many expansions, a cycle): stop building."""

    def __init__(self, mark: yaml.Mark | None, message: str) -> None:
        super().__init__(message)
        self.mark = mark


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing nesting deeper than ``MAX_DEPTH`` while composing."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _ShapeError(
                    self.peek_event().start_mark,  # type: ignore[no-untyped-call]
                    f"nested deeper than {MAX_DEPTH} levels",
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


class _Builder:
    def __init__(self, name: str, environ: Mapping[str, str]) -> None:
        self._name = name
        self._environ = environ
        self._constructor = yaml.SafeLoader("")
        self._built: set[int] = set()  # ids of the nodes built once
        self._open: set[int] = set()  # ids of the collections being built: a cycle if met again
        self._expanded = 0
        self._depth = 0
        self.lines: dict[Loc, int] = {}
        self.problems: list[Problem] = []
        self.failed: set[Loc] = set()

    def report(self, node: yaml.Node, loc: Loc, message: str, *, at_value: bool = True) -> None:
        """A problem at ``node``; ``at_value``: the schema has nothing to add at ``loc``."""
        line = node.start_mark.line + 1
        prefix = f"{format_loc(loc)}: " if loc else ""
        self.problems.append(Problem(line, f"{self._name}:{line}: {prefix}{message}"))
        if at_value:
            self.failed.add(loc)

    def build(self, node: yaml.Node, loc: Loc) -> Any:
        key = id(node)
        if key in self._open:
            raise _ShapeError(node.start_mark, "a recursive alias (an anchor used inside itself)")
        if key in self._built:
            self._expanded += 1
            if self._expanded > MAX_EXPANDED:
                raise _ShapeError(
                    node.start_mark, f"aliases expand to more than {MAX_EXPANDED} values"
                )
        self._built.add(key)
        if isinstance(node, yaml.ScalarNode):
            return self._scalar(node, loc)
        self._depth += 1
        self._open.add(key)
        try:
            if self._depth > MAX_DEPTH:
                raise _ShapeError(node.start_mark, f"nested deeper than {MAX_DEPTH} levels")
            if isinstance(node, yaml.MappingNode):
                return self._mapping(node, loc)
            return [self._item(item, (*loc, index)) for index, item in enumerate(node.value)]
        finally:
            self._open.discard(key)
            self._depth -= 1

    def _scalar(self, node: yaml.ScalarNode, loc: Loc, *, at_value: bool = True) -> Any:
        try:
            value = self._constructor.construct_object(node, deep=True)
        except yaml.constructor.ConstructorError as error:
            problem = str(error.problem).replace(
                "could not determine a constructor for the", "unknown"
            )
            self.report(node, loc, problem, at_value=at_value)
            return None
        except Exception:  # noqa: BLE001 - PyYAML raises anything for a value unfit for its tag
            text = node.value if len(node.value) <= 40 else node.value[:40] + "..."
            kind = _KINDS.get(node.tag, node.tag)
            shown = "the value" if _may_be_secret(loc) else repr(text)
            self.report(node, loc, f"{shown} is not {kind}", at_value=at_value)
            return None
        if isinstance(value, str) and node.tag == _STR_TAG:
            try:
                return interpolate(value, self._environ)
            except InterpolationError as error:
                self.report(node, loc, str(error), at_value=at_value)
        return value

    def _item(self, node: yaml.Node, loc: Loc) -> Any:
        self.lines[loc] = node.start_mark.line + 1
        return self.build(node, loc)

    def _key(self, node: yaml.Node, loc: Loc) -> str | None:
        """The key's text; None (and a problem) for anything but a string."""
        if not isinstance(node, yaml.ScalarNode):
            self.report(node, loc, "keys must be strings, not a list or mapping", at_value=False)
            return None
        reported = len(self.problems)
        value = self._scalar(node, loc, at_value=False)
        if isinstance(value, str):
            return value
        if len(self.problems) == reported:
            self.report(node, loc, f"keys must be strings, not {value!r}", at_value=False)
        return None

    def _mapping(self, node: yaml.MappingNode, loc: Loc) -> dict[str, Any]:
        result: dict[str, Any] = {}
        # YAML merge keys (<<: *defaults) first: the mapping's own keys override them.
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                result.update(self._merged(value_node, loc))
        explicit: set[str] = set()
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            key = self._key(key_node, loc)
            if key is None:
                continue
            if key in explicit:
                self.report(key_node, (*loc, key), "duplicate key")
                continue
            explicit.add(key)
            self.lines[(*loc, key)] = key_node.start_mark.line + 1
            result[key] = self.build(value_node, (*loc, key))
        return result

    def _merged(self, node: yaml.Node, loc: Loc) -> dict[str, Any]:
        """What ``<<`` brings in: one mapping, or a list of them where earlier ones win."""
        sources = node.value if isinstance(node, yaml.SequenceNode) else [node]
        merged: dict[str, Any] = {}
        for source in reversed(sources):
            value = self.build(source, loc)
            if not isinstance(value, dict):
                self.report(source, loc, "<< must name a mapping or a list of mappings")
                continue
            merged.update(value)
        return merged


def parse_yaml(text: str, name: str, environ: Mapping[str, str]) -> SourceText:
    """Parse one YAML document; syntax errors become a ``ConfigError`` with file:line."""
    loader: _BoundedLoader | None = None
    try:
        loader = _BoundedLoader(text)  # checks the characters already
        node = loader.get_single_node()
    except _ShapeError as error:
        raise _fatal_error(name, error) from None
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = error.problem or error.context or "invalid YAML"
        raise ConfigError(f"{name}{line}: invalid YAML: {problem}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{name}: invalid YAML: {error}") from None
    finally:
        if loader is not None:
            loader.dispose()
    if node is None:
        raise ConfigError(f"{name}: the configuration is empty")
    builder = _Builder(name, environ)
    try:
        data = builder.build(node, ())
    except _ShapeError as error:
        raise _fatal_error(name, error) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{name}:1: the configuration must be a mapping of sections")
    builder.lines[()] = node.start_mark.line + 1  # a missing section is reported at the top
    return SourceText(
        name=name,
        data=data,
        lines=builder.lines,
        problems=tuple(builder.problems),
        failed=frozenset(builder.failed),
    )


def _fatal_error(name: str, error: _ShapeError) -> ConfigError:
    line = f":{error.mark.line + 1}" if error.mark is not None else ""
    return ConfigError(f"{name}{line}: invalid YAML: {error}")
